"""`embed`: f(I) of every image in the shards, written as the features table `train` reads.

Takes a download folder's shards and a backbone: a checkpoint of `train --stage backbone` (it
names its network and image size) or a torchvision state dict (with `--arch`). Runs f in eval
mode on each image's centre crop, as evaluation sees it, and writes FEATURES: one Parquet file,
`image_id` string and `embedding` fixed_size_list<float32>[D], one row per image of the shards
(T and V alike; `train` keeps those of its splits), the resolved config in its metadata. The file
is written under a temporary name and moved into place when complete.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nlc_model import train
from nlc_model.images import shards
from nlc_model.images.backbone import (
    Backbone,
    BackboneSpec,
    check_image_size,
    load_weights,
    read_weights,
)
from openimages_pipe.errors import InputError

DEFAULT_SIZE = 224


@dataclass(frozen=True)
class EmbedConfig:
    """Everything `embed` needs; saved, resolved, in the features file's metadata."""

    shards: Path | str  # a download folder (or its shards/), or its s3:// URL
    weights: Path  # a `train --stage backbone` checkpoint or a torchvision state dict
    out: Path  # the features file (.parquet)
    arch: str | None = None  # needed with a torchvision state dict; a checkpoint names its own
    image_size: int | None = None  # default: the checkpoint's, else 224
    batch_size: int = 256
    workers: int = 4  # DataLoader processes reading (and on a CPU, decoding) the shards
    device: str = "auto"


@dataclass(frozen=True)
class EmbedSummary:
    out: Path
    images: int
    dim: int
    seconds: float


def load_backbone(cfg: EmbedConfig) -> tuple[Backbone, int, str]:
    """f in eval mode, the crop size to feed it, and where its weights came from."""
    obj = read_weights(cfg.weights)
    if "backbone" in obj:  # our checkpoint: its network and size, unless overridden
        spec, trained = BackboneSpec(**obj["backbone"]), obj["config"]
        if cfg.arch is not None and cfg.arch != spec.arch:
            msg = f"--arch {cfg.arch}, but the checkpoint holds a {spec.arch}"
            raise InputError(msg, cfg.weights, value=cfg.arch)
        size = cfg.image_size or trained["image_size"]
    elif cfg.arch is None:
        raise InputError("a torchvision state dict needs --arch to say its network", cfg.weights)
    else:
        spec, size = BackboneSpec(cfg.arch), cfg.image_size or DEFAULT_SIZE
    check_image_size(spec.arch, size)
    f = Backbone(spec)
    source = load_weights(cfg.weights, f, obj=obj)
    return f.eval(), size, source


def embedding_column(x: np.ndarray) -> pa.Array:
    """(k, D) float32 -> k fixed_size_list<float32>[D]."""
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), x.shape[1])


def progress(console: Console) -> Progress:
    columns = (
        TextColumn("embed"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
    )
    return Progress(*columns, TimeRemainingColumn(), console=console)


@torch.no_grad()
def run(cfg: EmbedConfig, console: Console | None = None) -> EmbedSummary:
    console = console or Console()
    device = train.pick_device(cfg.device)
    cuda = device.type == "cuda"
    threads = torch.get_num_threads()
    if not cuda:
        torch.set_num_threads(shards.cpu_threads(cfg.workers))
    f, size, source = load_backbone(cfg)  # a bad weights file fails before the shards are read
    index = shards.read_index(cfg.shards)
    f = f.to(device, memory_format=torch.channels_last) if cuda else f.to(device)
    console.print(
        f"{len(index):,} images in {len(index.files)} shards; {source}; {size} px, D = {f.dim}"
    )
    spec = shards.StreamSpec(size, train=False, on_device=cuda)
    stream = shards.ShardStream(index, np.arange(len(index)), spec, workers=cfg.workers)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    config |= {"arch": f.spec.arch, "width": f.spec.width, "image_size": size, "dim": f.dim}
    schema = pa.schema([("image_id", pa.string()), ("embedding", pa.list_(pa.float32(), f.dim))])
    schema = schema.with_metadata({b"oi_pipe_config": json.dumps(config).encode()})
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.out.with_name(f".{cfg.out.name}.tmp-{os.getpid()}")
    started, done = time.perf_counter(), 0
    try:
        with pq.ParquetWriter(tmp, schema) as writer, progress(console) as bar:
            task = bar.add_task("embed", total=len(index), info="")
            for batch in shards.loader(stream, cfg.batch_size, pin=cuda):
                images, positions = shards.to_device(batch, spec, device)
                if cuda:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
                    x = f(images).float().cpu().numpy()  # (B, D)
                ids = index.image_ids.take(pa.array(positions.cpu().numpy())).cast(pa.string())
                writer.write_table(pa.table([ids, embedding_column(x)], schema=schema))
                done += len(x)
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(task, completed=done, info=f"{rate:,.0f} images/s")
        os.replace(tmp, cfg.out)
    finally:
        tmp.unlink(missing_ok=True)  # only there if something failed
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    console.print(f"wrote {done:,} embeddings of width {f.dim} to {cfg.out} in {seconds:.1f} s")
    return EmbedSummary(cfg.out, done, f.dim, seconds)
