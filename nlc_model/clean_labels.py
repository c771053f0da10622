"""`clean-labels`: the cleaned label vectors c = g(y, f(I)) of every image of T.

The cleaned version of the noisy dataset is a product of the method in its own right (Veit et al.
name it as one). Loads g from a finished nlc variant of a training run and writes, per image, the
classes whose c is at least `threshold` (at most `top_k` of them) with their c as confidence. The
columns are those of `T.parquet` (`image_id`, `labels` sorted, `confidences` aligned), so the
file can stand in for it; the resolved config and the checkpoint used are in its metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from rich.console import Console

from nlc_model import data, loop, train
from nlc_model.models import CleanerConfig, LabelCleaner
from openimages_pipe.errors import InputError

CLEANING_VARIANTS = ("nlc-joint", "nlc-pretrained")  # the variants that train g
CHUNK = 8192  # images of T per forward pass of g
SCHEMA = pa.schema(
    [("image_id", pa.large_string()), ("labels", pa.list_(pa.int32())),
     ("confidences", pa.list_(pa.float32()))]
)  # fmt: skip


@dataclass(frozen=True)
class CleanLabelsConfig:
    run: Path
    splits: Path
    features: Path
    out: Path
    variant: str = "nlc-joint"
    threshold: float = 0.5  # c at or above this is a label of the cleaned dataset
    top_k: int = 50  # at most this many labels per image, the highest c first
    device: str = "auto"


def load_cleaner(cfg: CleanLabelsConfig, device: torch.device) -> tuple[LabelCleaner, Path]:
    if cfg.variant not in CLEANING_VARIANTS:
        msg = f"--variant must be one that trains g: {', '.join(CLEANING_VARIANTS)}"
        raise InputError(msg, value=cfg.variant)
    path = cfg.run / cfg.variant / train.CHECKPOINT
    ckpt = loop.load_checkpoint(path)
    if not ckpt["state"]["done"]:
        raise InputError("this variant has not finished: rerun `oi-pipe train` to resume", path)
    g = LabelCleaner(CleanerConfig(**ckpt["cleaner"])).to(device)
    g.load_state_dict(ckpt["g"])
    return g.eval(), path


def to_lists(indices: torch.Tensor, values: torch.Tensor, keep: torch.Tensor, classes: int):
    """(k, K) top indices and values, (k, K) keep mask -> list columns sorted by class index."""
    indices = torch.where(keep, indices, classes)  # dropped entries sort last
    indices, order = indices.sort(dim=1)
    values, keep = values.gather(1, order), keep.gather(1, order)
    offsets = np.concatenate([[0], keep.sum(1).cumsum(0).cpu().numpy()]).astype(np.int32)
    labels = pa.array(indices[keep].cpu().numpy().astype(np.int32))
    scores = pa.array(values[keep].float().cpu().numpy())
    return (pa.ListArray.from_arrays(pa.array(offsets), x) for x in (labels, scores))


@torch.no_grad()
def clean(g: LabelCleaner, split: data.SplitSet, table: torch.Tensor, cfg, writer) -> dict:
    """Write c of every image of the split; count labels kept, removed and added."""
    d, device = g.cfg.classes, table.device
    counts = {"images": len(split), "noisy_labels": 0, "kept": 0, "added": 0}
    for a in range(0, len(split), CHUNK):
        rows = torch.arange(a, min(a + CHUNK, len(split)), device=device)
        y = split.noisy.dense(rows, d)  # (k, d)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            c = g(y, table[split.feature_rows[rows]].float()).float()  # (k, d)
        top = torch.topk(c, min(cfg.top_k, d), dim=1)
        keep = top.values >= cfg.threshold  # (k, K)
        was = y.gather(1, top.indices) > 0
        counts["noisy_labels"] += int(y.sum())
        counts["kept"] += int((keep & was).sum())
        counts["added"] += int((keep & ~was).sum())
        labels, scores = to_lists(top.indices, top.values, keep, d)
        ids = split.image_ids.slice(a, len(rows)).cast(pa.large_string())
        writer.write_table(pa.table([ids, labels, scores], schema=writer.schema))
    counts["removed"] = counts["noisy_labels"] - counts["kept"]
    return counts


def run(cfg: CleanLabelsConfig, console: Console | None = None) -> dict:
    console = console or Console()
    device = train.pick_device(cfg.device)
    g, ckpt = load_cleaner(cfg, device)
    loaded = data.load_train_data(cfg.splits, cfg.features, device, ("T",))
    if loaded.features.dim != g.cfg.features:
        msg = f"embedding width differs from the one g was trained on ({g.cfg.features})"
        raise InputError(msg, cfg.features, value=str(loaded.features.dim))
    if len(loaded.classes) != g.cfg.classes:
        msg = f"class count differs from the one g was trained on ({g.cfg.classes})"
        raise InputError(msg, cfg.splits / "classes.parquet", value=str(len(loaded.classes)))
    config = {k: str(v) for k, v in asdict(cfg).items()} | {"checkpoint": str(ckpt)}
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = cfg.out.with_name(cfg.out.name + ".tmp")
    meta = {b"oi_pipe_config": json.dumps(config).encode()}
    with pq.ParquetWriter(tmp, SCHEMA.with_metadata(meta)) as writer:
        counts = clean(g, loaded.splits["T"], loaded.features.table, cfg, writer)
    os.replace(tmp, cfg.out)
    counts["images_without_features"] = loaded.dropped["T"]
    console.print(
        f"{counts['images']:,} images of T cleaned into {cfg.out}: of {counts['noisy_labels']:,} "
        f"machine labels {counts['kept']:,} kept, {counts['removed']:,} removed; "
        f"{counts['added']:,} labels added; {counts['images_without_features']:,} images "
        "without features left out"
    )
    return counts
