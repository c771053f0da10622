"""Batches: exactly 9:1, every row once per pass, deterministic per step, built from CSR rows."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from nlc_model.batches import BatchMaker, StreamSampler
from nlc_model.data import LabelRows, load_train_data
from nlc_model.synthetic import WorldConfig, make_world, write_world

TINY = WorldConfig(classes=12, families=4, features=8, t_images=300, v_images=200, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("world")
    write_world(make_world(TINY), root / "splits", root / "features.parquet")
    names = ("T", "V_train", "V_eval")
    return load_train_data(root / "splits", root / "features.parquet", torch.device("cpu"), names)


def _origin(data, x: torch.Tensor) -> list[str]:
    """Which split each feature row of a batch came from, found by its values."""
    table = data.features.table
    where = {}
    for name in ("T", "V_train"):
        for r in data.splits[name].feature_rows.tolist():
            where[tuple(table[r].tolist())] = name
    return [where[tuple(row.tolist())] for row in x]


def test_mixed_batches_are_nine_to_one(data) -> None:
    maker = BatchMaker(data, size=40, clean_share=0.1, unverified="negative", seed=0)
    for step in (0, 7):
        batch = maker(step)
        assert batch.x.shape == (40, TINY.features) and batch.clean == 4
        assert _origin(data, batch.x) == ["T"] * 36 + ["V_train"] * 4


def test_t_only_and_v_only_batches(data) -> None:
    t_only = BatchMaker(data, size=20, clean_share=0.0, unverified="negative", seed=0)(0)
    v_only = BatchMaker(data, size=20, clean_share=1.0, unverified="negative", seed=0)(0)
    assert t_only.clean == 0 and set(_origin(data, t_only.x)) == {"T"}
    assert v_only.clean == 20 and set(_origin(data, v_only.x)) == {"V_train"}


def test_sampler_covers_every_row_once_per_pass_across_batch_edges() -> None:
    sampler = StreamSampler(n=10, size=3, seed=5, device=torch.device("cpu"))
    stream = torch.cat([sampler.rows(s) for s in range(10)])  # 30 positions: three passes
    for p in range(3):
        assert sorted(stream[10 * p : 10 * p + 10].tolist()) == list(range(10))
    assert not torch.equal(stream[:10], stream[10:20])  # each pass is its own shuffle
    fresh = StreamSampler(n=10, size=3, seed=5, device=torch.device("cpu"))
    assert torch.equal(fresh.rows(6), sampler.rows(6))  # a pure function of (seed, step)


def test_dense_builds_multi_hot_rows() -> None:
    lists = pa.array([[0, 3], [], [1, 2, 4]], pa.list_(pa.int32()))
    rows = LabelRows.from_arrow(lists.slice(0, 3))
    y = rows.dense(torch.tensor([2, 0, 1, 2]), classes=5)
    expected = [[0, 1, 1, 0, 1], [1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 0, 1]]
    assert y.tolist() == expected


def test_unverified_pairs_are_negatives_or_masked(data) -> None:
    neg = BatchMaker(data, size=30, clean_share=1.0, unverified="negative", seed=1)(0)
    masked = BatchMaker(data, size=30, clean_share=1.0, unverified="masked", seed=1)(0)
    assert torch.equal(neg.v, masked.v)
    assert bool((neg.v_mask == 1).all())
    # masked: exactly the verified pairs count, and every positive is one of them
    split = data.splits["V_train"]
    rows = StreamSampler(len(split), 30, 2, torch.device("cpu")).rows(0)
    verified = split.pos.dense(rows, TINY.classes) + split.neg.dense(rows, TINY.classes)
    assert torch.equal(masked.v_mask, verified)
    assert bool((masked.v_mask[masked.v == 1] == 1).all())
    assert 0 < masked.v_mask.sum() < masked.v_mask.numel()
