"""The generated feature world: Open Images-like noise, consistent verifications, the schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nlc_model.synthetic import WorldConfig, make_world, write_world

SMALL = WorldConfig(classes=40, families=10, features=16, t_images=3000, v_images=1000, seed=2)


@pytest.fixture(scope="module")
def world():
    return make_world(SMALL)


def _sets(table, column: str) -> list[set[int]]:
    return [set(x) for x in table.column(column).to_pylist()]


def _truth(world, name: str) -> list[set[int]]:
    return [set(r[r < SMALL.classes].tolist()) for r in world.truth[name]]


def test_false_positive_rate_and_their_source_follow_the_config(world) -> None:
    assert abs(world.stats["fp_rate"] - SMALL.fp_rate) <= 0.02
    assert abs(world.stats["related_fp_share"] - SMALL.related_share) <= 0.05
    low = make_world(WorldConfig(**{**SMALL.__dict__, "fp_rate": 0.1}))
    assert abs(low.stats["fp_rate"] - 0.1) <= 0.02


def test_verifications_agree_with_the_truth(world) -> None:
    for name in ("V_train", "V_eval"):
        table = world.splits[name]
        truth = _truth(world, name)
        labels, pos, neg = (_sets(table, c) for c in ("labels", "verified_pos", "verified_neg"))
        for t, y, p, n in zip(truth, labels, pos, neg, strict=True):
            assert p <= t and not (n & t)
            assert y <= p | n  # every machine label is verified (V1's protocol)
        assert sum(len(p - y) for p, y in zip(pos, labels, strict=True)) > 0  # human-added


def test_annotation_quality_spans_near_perfect_to_mostly_wrong(world) -> None:
    c = world.classes
    pos, neg = c.column("v_pos").to_numpy(), c.column("v_neg").to_numpy()
    quality = pos / np.maximum(1, pos + neg)
    assert quality.min() < 0.3 and quality.max() > 0.95


def test_confidences_are_higher_for_true_labels(world) -> None:
    table, truth = world.splits["T"], _truth(world, "T")
    right, wrong = [], []
    for t, labels, conf in zip(
        truth,
        table.column("labels").to_pylist(),
        table.column("confidences").to_pylist(),
        strict=True,
    ):
        for c, v in zip(labels, conf, strict=True):
            (right if c in t else wrong).append(v)
    assert min(right + wrong) >= 0.5 and max(right + wrong) <= 1.0
    assert np.mean(right) > np.mean(wrong) + 0.1


def test_same_seed_same_world_and_files_in_the_split_schema(world, tmp_path: Path) -> None:
    again = make_world(SMALL)
    assert again.splits["T"].equals(world.splits["T"])
    assert again.features.equals(world.features)
    write_world(world, tmp_path / "s", tmp_path / "f", files=2)
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    expected = ["T.parquet", "V_eval.parquet", "V_train.parquet", "classes.parquet", "splits.json"]
    assert names == expected
    v = pq.read_schema(tmp_path / "s" / "V_eval.parquet")
    assert v.names == ["image_id", "labels", "confidences", "verified_pos", "verified_neg"]
    assert v.field("labels").type.value_type == pa.int32()
    rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "f").glob("*.parquet"))
    n = SMALL.t_images + SMALL.v_images
    assert rows == world.features.num_rows and 0.97 * n < rows < n  # 1% left out
    emb = pq.read_schema(next((tmp_path / "f").glob("*.parquet"))).field("embedding").type
    assert emb.list_size == SMALL.features
