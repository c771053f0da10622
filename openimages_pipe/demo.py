"""`oi-pipe demo`: every stage that exists, run on an offline world, with what each produced.

Makes a world, reads every CSV back through the reader, serves the world on 127.0.0.1 with seeded
faults, downloads it through them into Parquet shards with a manifest, and builds the noisy set T
and the verified set V of what was downloaded. Later stages join here as they land.
"""

from __future__ import annotations

import collections
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from openimages_pipe.download import pipeline as download
from openimages_pipe.download import status
from openimages_pipe.download.fetch import FetchConfig
from openimages_pipe.download.tasks import InputConfig
from openimages_pipe.errors import InputError
from openimages_pipe.formats import inspect_files
from openimages_pipe.formats.reader import FileKind
from openimages_pipe.splits import build as splits
from openimages_pipe.splits import stats
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world import make as world_make
from openimages_pipe.world import server as world_server


@dataclass(frozen=True)
class DemoConfig:
    out: Path | None = None
    images: int = 1000
    seed: int = 0
    faults: str = "flickr"
    learn: bool = True  # backbone on T, embed, the five variants (torch is imported only then)


def _counter_table(title: str, counts: collections.Counter[str]) -> Table:
    table = Table("outcome", "count", title=title)
    for key, n in counts.most_common():
        table.add_row(key, str(n))
    return table


def _download_config(root: Path, base: str, image_csvs: list[Path]) -> download.DownloadConfig:
    """The demo downloads like a user would, but from 127.0.0.1, which a real run refuses."""
    return download.DownloadConfig(
        out=root / "download",
        input=InputConfig(
            csvs=tuple(image_csvs), mirror_template=world_layout.mirror_template(base)
        ),
        # one host serves everything here, so the per-host limit is the global one
        fetch=FetchConfig(allow_private=True, per_host=64, first_byte_timeout=5.0),
    )


def run(cfg: DemoConfig) -> dict:
    console = Console()
    root = cfg.out or Path(tempfile.mkdtemp(prefix="oi-pipe-demo-"))
    base = world_layout.base_url(port=world_layout.free_port())
    started = time.perf_counter()
    summary = world_make.run(
        world_make.MakeConfig(out=root, seed=cfg.seed, images=cfg.images, base_url=base)
    )
    console.rule(f"1. world make: {root} ({time.perf_counter() - started:.1f} s)")
    console.print(world_make.describe(summary))

    console.rule("2. reader: every CSV of the world, recognised and validated")
    data = world_layout.WorldPaths(root).data
    reports = inspect_files.inspect_files(
        inspect_files.InspectConfig(tuple(sorted(data.rglob("*.csv"))))
    )
    console.print(inspect_files.report_table(reports, data))
    failed = [r for r in reports if r.error]
    if failed:  # the world was just written: a file the reader refuses is a bug, shown as one
        raise InputError(f"the world's own CSV is refused: {failed[0].error}")
    rows = {r.path.relative_to(root).as_posix(): r.rows for r in reports}
    image_csvs = [r.path for r in reports if r.info.kind is FileKind.IMAGES]

    serve = world_server.ServeConfig(world=root, faults=cfg.faults)
    with world_server.WorldServer(serve) as server:
        console.rule(f"3. world serve: {server.base_url} with faults {cfg.faults!r}")
        fates = collections.Counter(str(f) for f in server.fates.values())
        console.print(_counter_table("fates the server drew (seeded by ImageID)", fates))
        console.rule("4. download: original -> thumbnail -> mirror, verified, into Parquet shards")
        download.run(_download_config(root, base, image_csvs))
    downloaded = status.run(status.StatusConfig(root / "download"))

    console.rule("5. build-splits: T and V of what was downloaded, V split 1/4 - 3/4")
    # a tiny world has a few hundred images: V1's 20/50-image thresholds would keep no class
    split_cfg = world_layout.splits_config(
        root, root / "splits", downloaded=root / "download", min_train_images=1, min_val_images=1
    )
    split_summary = splits.run(split_cfg)
    console.print(splits.describe(split_summary))
    split_stats = stats.run(stats.StatsConfig(root / "splits"), console)
    console.print(stats.summary_line(split_stats))
    metrics = _learn(root, console) if cfg.learn else None
    console.print(f"done in {time.perf_counter() - started:.1f} s; everything is in {root}")
    return {
        "metrics": metrics,
        "world": root,
        "fates": fates,
        "rows": rows,
        "download": downloaded,
        "splits": split_summary,
        "stats": split_stats,
    }


def _learn(root: Path, console: Console) -> dict[str, dict]:
    """f on T from the shards, f(I) for every image, then the paper's five variants.

    Sized for 2 CPU cores: a tiny CNN at 64 px trains in well under a minute and its features are
    enough for the label-cleaning network to show its effect (measured: nlc-joint above baseline
    on AP_all by 6-8 points on the 1,000-image world).
    """
    from dataclasses import replace

    from nlc_model import train
    from nlc_model.images import embed, train_backbone
    from nlc_model.loop import TrainSettings

    console.rule("6. train --stage backbone: f and h on T's noisy labels, from the shards")
    backbone = train_backbone.BackboneConfig(
        shards=root / "download", splits=root / "splits", out=root / "backbone", arch="tiny",
        width=16, image_size=64, min_scale=0.35, workers=1, device="cpu",
        training=replace(train_backbone.TRAINING, steps=100, batch_size=64, lr=3e-3, warmup=20,
                         checkpoint_every=10**6),
    )  # fmt: skip
    train_backbone.run(backbone, console)
    console.rule("7. embed: f(I) for every downloaded image")
    features = root / "features.parquet"
    weights = root / "backbone" / "baseline" / "backbone.pt"
    embed.run(embed.EmbedConfig(root / "download", weights, features, batch_size=128, workers=1,
                                device="cpu"), console)  # fmt: skip
    console.rule("8. train: the five variants of Veit et al. on those features")
    variants = train.TrainConfig(
        splits=root / "splits", features=features, out=root / "run", device="cpu",
        training=TrainSettings(steps=100, finetune_steps=50, pretrain_steps=50, batch_size=256,
                               warmup=20, embed=64, hidden=128),
    )  # fmt: skip
    return train.run(variants, console)
