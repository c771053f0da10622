"""AP over verified pairs only: scikit-learn agreement, a hand-computed case, deciles."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from nlc_model.metrics import VerifiedPairs, average_precision, decile_maps, score_pairs


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return offsets, np.array([c for r in rows for c in r], np.int32)


def _random_case(seed: int, n: int = 60, d: int = 9):
    """Scores for every pair; verdicts (1, 0, or -1 for unverified) on a random subset."""
    rng = np.random.default_rng(seed)
    scores = rng.random((n, d)).astype(np.float32)
    if seed % 2:  # coarse scores: many ties
        scores = np.round(scores * 4) / 4
    verdict = rng.choice([-1, 0, 1], size=(n, d), p=[0.6, 0.25, 0.15])
    pos = [list(np.flatnonzero(verdict[i] == 1)) for i in range(n)]
    neg = [list(np.flatnonzero(verdict[i] == 0)) for i in range(n)]
    pairs = VerifiedPairs.from_csr(_csr(pos), _csr(neg))
    pairs.fill(np.arange(n), scores)
    return scores, verdict, pairs


@pytest.mark.parametrize("seed", range(6))
def test_matches_sklearn_with_unverified_pairs_masked(seed: int) -> None:
    scores, verdict, pairs = _random_case(seed)
    m = score_pairs(pairs, scores.shape[1])
    expected = []
    for c in range(scores.shape[1]):
        seen = verdict[:, c] >= 0  # the unverified images of this class are left out
        truth = verdict[seen, c] == 1
        if truth.any() and not truth.all():
            ap = average_precision_score(truth, scores[seen, c])
            assert m.ap[c] == pytest.approx(ap, abs=1e-12)
            expected.append(ap)
        else:
            assert np.isnan(m.ap[c])
    assert m.classes_evaluated == len(expected)
    assert m.mAP == pytest.approx(np.mean(expected), abs=1e-12)
    seen = verdict >= 0
    ap_all = average_precision_score(verdict[seen] == 1, scores[seen])
    assert m.AP_all == pytest.approx(ap_all, abs=1e-12)


def test_hand_computed_tiny_case() -> None:
    # Class 0 verified on images 0..3: scores 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-).
    # Ranking + - + -: precision at the positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2 = 5/6.
    # Class 1 verified on images 0 (-, 0.6) and 1 (+, 0.2): AP = 1/2.
    # Image 2's class 1 score (0.99) is unverified and must not count.
    scores = np.array([[0.9, 0.6], [0.8, 0.2], [0.7, 0.99], [0.1, 0.5]], np.float32)
    pairs = VerifiedPairs.from_csr(_csr([[0], [1], [0], []]), _csr([[1], [0], [], [0]]))
    pairs.fill(np.arange(4), scores)
    m = score_pairs(pairs, 2)
    assert m.ap.tolist() == pytest.approx([5 / 6, 1 / 2])
    assert m.mAP == pytest.approx((5 / 6 + 1 / 2) / 2)
    # Pooled: 0.9+ 0.8- 0.7+ 0.6- 0.2+ 0.1- -> (1/1 + 2/3 + 3/5) / 3
    assert m.AP_all == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert (m.pairs, m.images, m.classes_evaluated) == (6, 4, 2)


def test_tied_scores_form_one_threshold() -> None:
    # + and - tied at the top, then +: thresholds {0.5: 1 of 2}, {0.1: 2 of 3} -> (1/2 + 2/3) / 2
    ap, pos, neg = average_precision(
        np.zeros(3, np.int64), np.array([0.5, 0.5, 0.1]), np.array([True, False, True]), 1
    )
    assert ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert (pos[0], neg[0]) == (2, 1)


def test_images_without_scores_are_left_out_and_counted() -> None:
    scores, _, pairs = _random_case(0)
    first_half = VerifiedPairs(pairs.offsets, pairs.classes, pairs.labels, pairs.scores.copy())
    first_half.scores[first_half.images >= 30] = np.nan
    m = score_pairs(first_half, scores.shape[1])
    with_pairs = np.diff(pairs.offsets) > 0
    assert m.images == with_pairs[:30].sum()
    assert m.images_without_scores == with_pairs[30:].sum()
    assert m.pairs == pairs.offsets[30]


def test_decile_maps_group_classes_by_key() -> None:
    ap = np.array([0.9, 0.2, np.nan, 0.4, 0.5, 0.6])
    key = np.array([5.0, 1.0, 3.0, 2.0, 4.0, np.nan])
    rows = decile_maps(ap, key, bins=2)  # evaluated with a key: classes 1, 3, 4, 0 by key
    assert [r["classes"] for r in rows] == [2, 2]
    assert rows[0]["mAP"] == pytest.approx(0.3) and rows[1]["mAP"] == pytest.approx(0.7)
    assert (rows[0]["key_min"], rows[0]["key_max"]) == (1.0, 2.0)
    assert (rows[1]["key_min"], rows[1]["key_max"]) == (4.0, 5.0)


def test_decile_maps_of_no_evaluated_class_is_empty() -> None:
    nan = np.full(4, np.nan)
    assert decile_maps(nan, np.arange(4.0)) == []
    assert len(decile_maps(np.array([0.5, 0.7, np.nan]), np.array([1.0, 2.0, 3.0]))) == 2
