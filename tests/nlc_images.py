"""Test data for the image path: shards (generated or really downloaded) and split files for them.

`write_shards` writes Parquet shards of small generated JPEGs through the real shard writer;
`real_download` makes an offline world, serves it and runs `download` once per test session (the
shards every test of the image path can share); `write_splits` writes split files in the schema of
`build-splits` with labels that follow the images' colours, so a backbone has something to learn.
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from openimages_pipe import download, world_layout, world_make
from openimages_pipe.download_input import InputConfig
from openimages_pipe.fetch import FetchConfig
from openimages_pipe.shard_writer import ParquetShardWriter, ShardRecord
from openimages_pipe.world_layout import free_port
from openimages_pipe.world_server import ServeConfig, WorldServer

COLOURS = ((200, 40, 40), (40, 160, 60), (40, 70, 210), (230, 200, 40))


def image_ids(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{x:016x}" for x in rng.integers(0, 2**63, n, dtype=np.int64)]


def jpeg(i: int, width: int, height: int) -> bytes:
    """A flat background with a square of colour i % 4: the class an image's labels say."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    side = min(width, height) // 2
    image.paste(
        COLOURS[i % len(COLOURS)], (width // 4, height // 4, width // 4 + side, height // 4 + side)
    )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def write_shards(out: Path, ids: list[str], rows_per_shard: int = 10, size: int = 64) -> Path:
    """Shards like `download`'s in out/shards/, images alternating landscape and portrait."""
    writer = ParquetShardWriter(out / "shards", "part", rows_per_shard, fsync=False)
    for i, image_id in enumerate(ids):
        w, h = (size * 4 // 3, size) if i % 2 else (size, size * 4 // 3)
        writer.add(ShardRecord(image_id, jpeg(i, w, h), w, h, w * 4, h * 4, "original", None, True))
    writer.close()
    return out


def lists(rows: list[list[int]]) -> pa.Array:
    return pa.array([sorted(set(r)) for r in rows], pa.list_(pa.int32()))


def write_splits(out: Path, ids: list[str], classes: int = 4, seed: int = 0) -> Path:
    """classes/T/V_train/V_eval.parquet + splits.json: image i shows class i % 4 (see `jpeg`);
    its machine labels hold that class and, with probability 0.3, a wrong one; V images have
    that class verified positive, and the next class and any wrong label verified negative."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    true = [i % len(COLOURS) % classes for i in range(len(ids))]
    noisy = [[t, int(rng.integers(classes))] if rng.random() < 0.3 else [t] for t in true]
    side = rng.choice(["T", "V_train", "V_eval"], len(ids), p=[0.5, 0.2, 0.3])
    for name in ("T", "V_train", "V_eval"):
        at = np.flatnonzero(side == name)
        columns = {
            "image_id": pa.array([ids[i] for i in at]),
            "labels": lists([noisy[i] for i in at]),
            "confidences": pa.array(
                [[0.9] * len(set(noisy[i])) for i in at], pa.list_(pa.float32())
            ),
        }
        if name != "T":
            columns["verified_pos"] = lists([[true[i]] for i in at])
            # every V image has a verified negative: the next class, beside any wrong machine label
            wrong = [[c for c in {*noisy[i], (true[i] + 1) % classes} if c != true[i]] for i in at]
            columns["verified_neg"] = lists(wrong)
        pq.write_table(pa.table(columns), out / f"{name}.parquet")
    counts = np.bincount(true, minlength=classes)
    pq.write_table(
        pa.table({
            "class_index": pa.array(range(classes), pa.int32()),
            "label_name": [f"/m/c{c}" for c in range(classes)],
            "display_name": [f"colour {c}" for c in range(classes)],
            "t_count": counts, "v_pos": counts, "v_neg": np.ones(classes, np.int64),
        }),
        out / "classes.parquet",
    )  # fmt: skip
    (out / "splits.json").write_text(json.dumps({"generator": "tests/nlc_images.py"}))
    return out


@cache
def _real_download(root: Path) -> Path:
    base = world_layout.base_url(port=free_port())
    world_make.run(world_make.MakeConfig(out=root, seed=3, images=40, base_url=base, workers=1))
    csvs = tuple(sorted((root / "data" / "images").rglob("images.csv")))
    out = root / "download"
    with WorldServer(ServeConfig(world=root)):
        download.run(
            download.DownloadConfig(
                out=out,
                input=InputConfig(csvs=csvs, mirror_template=world_layout.mirror_template(base)),
                fetch=FetchConfig(allow_private=True, per_host=64, first_byte_timeout=5.0),
                rows_per_shard=6,  # several shards: DDP ranks get disjoint shares of them
                workers=1,
                quiet=True,
            )
        )
    return out


def real_download(tmp_path_factory) -> Path:
    """A download folder of real shards, made once per session: world -> serve -> download."""
    return _real_download(tmp_path_factory.getbasetemp() / "nlc_real_download")


def shard_ids(download_dir: Path) -> list[str]:
    files = sorted((download_dir / "shards").glob("*.parquet"))
    return [
        i for f in files for i in pq.read_table(f, columns=["image_id"])["image_id"].to_pylist()
    ]
