"""Training batches, drawn and assembled on the device: T and V_train rows mixed 9:1.

A batch of B rows puts round(B * (1 - clean_share)) images of T first and the rest from V_train
last (the paper's 9:1 at clean_share = 0.1; 0 for T only, 1 for V_train only). Rows come from
`StreamSampler`, a pure function of (seed, step), so a run resumed from a checkpoint draws exactly
the batches the uninterrupted run would have drawn, with no sampler state to save. Features are
gathered from the resident table and label vectors built from CSR rows, all on the device: no
DataLoader, no host round trip.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nlc_model.data import SplitSet, TrainData

UNVERIFIED = ("negative", "masked")


class StreamSampler:
    """Batch `step` takes positions [step * size, (step + 1) * size) of an endless stream of
    shuffled passes over n rows; pass e is randperm(n) seeded by (seed, e)."""

    def __init__(self, n: int, size: int, seed: int, device: torch.device) -> None:
        if n < 1:
            raise ValueError("cannot sample from an empty split")
        self.n, self.size, self.seed, self.device = n, size, seed, device
        self.generator = torch.Generator(device=device)
        self.cache: dict[int, Tensor] = {}

    def permutation(self, epoch: int) -> Tensor:
        if epoch not in self.cache:
            self.cache = {e: p for e, p in self.cache.items() if e >= epoch - 1}  # keep two
            self.generator.manual_seed(self.seed * 1_000_003 + epoch)
            self.cache[epoch] = torch.randperm(self.n, generator=self.generator, device=self.device)
        return self.cache[epoch]

    def rows(self, step: int) -> Tensor:
        """(size,) int64 row indices; plain integer arithmetic, so no device sync."""
        start, stop = step * self.size, (step + 1) * self.size
        parts = []
        for epoch in range(start // self.n, (stop - 1) // self.n + 1):
            a, b = max(start, epoch * self.n), min(stop, (epoch + 1) * self.n)
            parts.append(self.permutation(epoch)[a - epoch * self.n : b - epoch * self.n])
        return torch.cat(parts)


@dataclass(frozen=True)
class Batch:
    x: Tensor  # (B, D) float32 features f(I)
    y: Tensor  # (B, d) noisy machine labels, multi-hot
    v: Tensor  # (Bv, d) verified targets of the last Bv rows (those from V_train)
    v_mask: Tensor  # (Bv, d) 1 where a pair counts in the loss, 0 where it is masked

    @property
    def clean(self) -> int:
        return self.v.shape[0]


def verified_targets(split: SplitSet, rows: Tensor, classes: int, unverified: str) -> tuple:
    """v and its mask for V rows: verified positives are 1, verified negatives 0; unverified
    pairs are negatives (default: labels are sparse, so an unchecked class is almost surely absent,
    and masking them would leave g free to switch on every class nobody checked) or masked."""
    v = split.pos.dense(rows, classes)
    if unverified == "negative":
        return v, torch.ones_like(v)
    return v, (v + split.neg.dense(rows, classes)).clamp(max=1.0)


class BatchMaker:
    """`maker(step)` -> the Batch of that step, with `clean_share` of it from V_train."""

    def __init__(
        self, data: TrainData, size: int, clean_share: float, unverified: str, seed: int
    ) -> None:
        if unverified not in UNVERIFIED:
            raise ValueError(f"unverified must be one of {UNVERIFIED}: {unverified!r}")
        self.clean_size = round(size * clean_share)
        self.noisy_size = size - self.clean_size
        self.t, self.v = data.splits["T"], data.splits["V_train"]
        self.table, self.classes, self.unverified = (
            data.features.table,
            len(data.classes),
            unverified,
        )
        device = self.table.device
        sampler = lambda split, n, s: StreamSampler(len(split), n, s, device) if n else None  # noqa: E731
        self.t_rows = sampler(self.t, self.noisy_size, seed)
        self.v_rows = sampler(self.v, self.clean_size, seed + 1)

    def part(self, split: SplitSet, sampler: StreamSampler | None, step: int):
        """Rows, features (b, D) and noisy labels (b, d) of one split's share of the batch."""
        device = self.table.device
        rows = sampler.rows(step) if sampler else torch.zeros(0, dtype=torch.long, device=device)
        return rows, self.table[split.feature_rows[rows]], split.noisy.dense(rows, self.classes)

    def __call__(self, step: int) -> Batch:
        _, x_t, y_t = self.part(self.t, self.t_rows, step)
        rows, x_v, y_v = self.part(self.v, self.v_rows, step)
        v, mask = verified_targets(self.v, rows, self.classes, self.unverified)
        return Batch(torch.cat([x_t, x_v]).float(), torch.cat([y_t, y_v]), v, mask)
