"""Training batches from the image shards: T and V_train images mixed 9:1, labels on the device.

The image path's counterpart of `batches`: a batch of B rows puts B - Bv images of T first and
Bv = round(B * clean_share) images of V_train last, with y (noisy labels of all B rows), v and
its mask (the V_train rows' verified targets, `batches.verified_targets`), so that
`train.compute_losses` takes it unchanged once f(I) replaces the cached features. Each split is
its own endless `ShardStream` with its own loader workers (in proportion to its share); labels
are built on the device from the split's `LabelRows`, from the positions the streams hand on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nlc_model import data
from nlc_model.batches import verified_targets
from nlc_model.data import ClassTable, SplitSet
from nlc_model.images import shards

SPLITS = ("T", "V_train", "V_eval")


@dataclass(frozen=True)
class ImageData:
    """The shards' index and every split attached to it."""

    index: shards.ShardIndex
    classes: ClassTable
    splits: dict[str, SplitSet]  # label rows on the device; feature_rows are index rows
    rows: dict[str, np.ndarray]  # index rows of each split, on the host, for the streams
    dropped: dict[str, int]  # images of each split that are not in the shards


def load_image_data(shard_dir: Path | str, splits: Path, device: torch.device) -> ImageData:
    classes = data.load_classes(splits)
    for name in SPLITS:  # a missing split fails before the shards are indexed
        data.check_file(splits / f"{name}.parquet", data.SPLIT_COLUMNS[name])
    index = shards.read_index(shard_dir)
    sets, rows, dropped = {}, {}, {}
    for name in SPLITS:
        split, dropped[name] = shards.attach_split(index, splits, name, len(classes))
        rows[name], sets[name] = split.feature_rows.numpy(), split.to(device)
    return ImageData(index, classes, sets, rows, dropped)


@dataclass(frozen=True)
class Mix:
    """How a training batch is made: its size, V_train's share, workers and unverified pairs."""

    batch_size: int  # per process
    clean_share: float  # 0: T only, 1: V_train only
    workers: int  # loader processes, shared by the two streams
    unverified: str  # see `batches.verified_targets`

    @property
    def clean(self) -> int:
        return round(self.batch_size * self.clean_share)

    @property
    def clean_workers(self) -> int:
        """V_train's loader workers: in proportion to its share of the batch; at least one when
        there are two or more (with one, the V_train stream reads in the training process)."""
        if self.clean in (0, self.batch_size):
            return self.workers if self.clean else 0
        return min(self.workers // 2, max(1, round(self.workers * self.clean_share)))


def image_batches(
    data: ImageData, spec: shards.StreamSpec, mix: Mix, device: torch.device,
    rank: int = 0, world: int = 1, start_step: int = 0,
) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:  # fmt: skip
    """Endless (images (B, 3, S, S), y (B, d), v (Bv, d), v_mask (Bv, d)) on the device.

    A resumed run (start_step > 0) restarts the epoch of each stream it stopped in."""
    d = len(data.classes)
    parts = []
    for name, size, workers in (
        ("T", mix.batch_size - mix.clean, mix.workers - mix.clean_workers),
        ("V_train", mix.clean, mix.clean_workers),
    ):
        if size:
            rows = data.rows[name]
            epoch = start_step * size * world // len(rows)
            stream = shards.ShardStream(data.index, rows, spec, rank, world, workers, epoch)
            if world > 1:  # every process says what it reads: its own share of the shards
                mine = len(stream.rank_positions(epoch))
                print(f"rank {rank}/{world}: {mine} of {len(rows)} {name} images in epoch {epoch}")
            loader = shards.loader(stream, size, pin=device.type == "cuda")
            parts.append((data.splits[name], iter(loader)))
    empty = torch.zeros(0, d, device=device)
    while True:
        images, ys, v, v_mask = [], [], empty, empty
        for split, batches in parts:
            x, positions = shards.to_device(next(batches), spec, device)
            images.append(x)
            ys.append(split.noisy.dense(positions, d))
            if split.pos is not None:
                v, v_mask = verified_targets(split, positions, d, mix.unverified)
        yield torch.cat(images), torch.cat(ys), v, v_mask
