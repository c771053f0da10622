"""Machine-label noise and human verification, tested on labels alone (no pixels)."""

from __future__ import annotations

import random

import pytest

from openimages_pipe.world.classes import build_hierarchy, sample_scene
from openimages_pipe.world.labels import (
    TENTHS,
    label_stats,
    machine_labels,
    plan_quality,
    verify,
)

FP_RATE = 0.266


def _truth(images: int, seed: int) -> dict[str, frozenset[str]]:
    h, rng = build_hierarchy(), random.Random(seed)
    return {f"{i:016x}": h.closure(sample_scene(rng, h)) for i in range(images)}


def _labels(truth: dict[str, frozenset[str]], seed: int, fp_rate: float = FP_RATE):
    h = build_hierarchy()
    quality = plan_quality(h, random.Random(seed))
    return machine_labels(truth, h, quality, fp_rate, random.Random(seed + 1))


@pytest.fixture(scope="module")
def big() -> tuple[dict[str, frozenset[str]], list]:
    truth = _truth(3000, seed=11)
    return truth, _labels(truth, seed=3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overall_fp_rate_within_two_points(big, seed: int) -> None:
    truth = _truth(3000, seed=100 + seed) if seed else big[0]
    labels = _labels(truth, seed) if seed else big[1]
    stats = label_stats(labels, truth, build_hierarchy())
    assert abs(stats.fp_rate - FP_RATE) <= 0.02


def test_fp_rate_follows_the_config() -> None:
    truth = _truth(2000, seed=4)
    low = label_stats(_labels(truth, 1, fp_rate=0.1), truth, build_hierarchy())
    assert abs(low.fp_rate - 0.1) <= 0.02


def test_per_class_quality_spans_perfect_to_entirely_wrong(big) -> None:
    truth, labels = big
    per_class = label_stats(labels, truth, build_hierarchy()).per_class_fp
    assert min(per_class.values()) <= 0.05
    assert max(per_class.values()) >= 0.90
    middle = [v for v in per_class.values() if 0.05 < v < 0.9]
    assert len(middle) >= len(per_class) // 2  # most classes are merely noisy


def test_false_positives_mostly_come_from_related_classes(big) -> None:
    truth, labels = big
    assert label_stats(labels, truth, build_hierarchy()).related_fp_share > 0.7


def test_confidences_are_tenths_and_higher_for_true_positives(big) -> None:
    truth, labels = big
    assert {x.confidence for x in labels} == {f"{t / 10:.1f}" for t in TENTHS}
    stats = label_stats(labels, truth, build_hierarchy())
    assert stats.mean_confidence_tp > stats.mean_confidence_fp + 0.1


def test_some_true_labels_are_missed(big) -> None:
    truth, labels = big
    stats = label_stats(labels, truth, build_hierarchy())
    assert 0.5 < stats.recall < 0.95


def test_no_duplicate_labels_and_sorted(big) -> None:
    _, labels = big
    keys = [(x.image_id, x.mid) for x in labels]
    assert len(keys) == len(set(keys))
    assert keys == sorted(keys)


def test_same_seed_same_labels_different_seed_different() -> None:
    truth = _truth(300, seed=9)
    assert _labels(truth, 5) == _labels(truth, 5)
    assert _labels(truth, 5) != _labels(truth, 6)


def test_verification_is_the_truth_of_every_machine_label(big) -> None:
    truth, labels = big
    checks = verify(labels, truth)
    assert [(c.image_id, c.mid) for c in checks] == [(x.image_id, x.mid) for x in labels]
    assert all(c.present == (c.mid in truth[c.image_id]) for c in checks)
    assert {c.present for c in checks} == {True, False}


def test_small_worlds_still_hit_the_rate() -> None:
    """The FP budget is exact, not sampled, so even 60 images land close to the target."""
    truth = _truth(60, seed=2)
    stats = label_stats(_labels(truth, 2), truth, build_hierarchy())
    assert abs(stats.fp_rate - FP_RATE) <= 0.03
