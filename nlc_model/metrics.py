"""The paper's evaluation: AP over verified (image, class) pairs only, as plain numpy.

A pair that no human verified is neither positive nor negative: it is left out. AP of a class
ranks the images where that class is verified; mAP averages it over classes with at least one
verified positive and one verified negative; AP_all pools every verified pair into one ranking.
AP is scikit-learn's definition (`average_precision_score`): the sum over score thresholds of
precision times the gain in recall, tied scores forming one threshold.

`VerifiedPairs` holds the pairs of a split grouped by image, and `fill` takes scores chunk by
chunk, so a (n, d) score matrix never has to exist at once. `decile_maps` breaks mAP down by a
per-class key (class frequency, annotation quality), as in the paper's Figure 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DECILES = 10


def average_precision(groups: np.ndarray, scores: np.ndarray, labels: np.ndarray, n: int):
    """AP of each of n groups, and its positives and negatives. NaN AP where no positive.

    groups (P,) ints in [0, n), scores (P,), labels (P,) bool. One sort for all groups.
    """
    order = np.lexsort((-scores, groups))  # by group, then score descending
    g, s, hit = groups[order], scores[order], labels[order].astype(np.float64)
    new_group = np.ones(len(g), bool)
    new_group[1:] = g[1:] != g[:-1]
    start = np.maximum.accumulate(np.where(new_group, np.arange(len(g)), 0))  # (P,) group start
    tp = np.cumsum(hit)
    tp_before = np.concatenate([[0.0], tp])[start]  # positives of earlier groups
    seen = np.arange(1, len(g) + 1) - start  # rank within the group
    # A threshold ends where the next pair has another score or belongs to another group.
    last = np.ones(len(g), bool)
    last[:-1] = (s[1:] != s[:-1]) | (g[1:] != g[:-1])
    ends = np.flatnonzero(last)
    tie_end = ends[np.cumsum(last) - last]  # (P,) index of the end of each pair's tie
    precision = (tp - tp_before)[tie_end] / seen[tie_end]
    positives = np.bincount(g, weights=hit, minlength=n)
    negatives = np.bincount(g, weights=1 - hit, minlength=n)
    summed = np.bincount(g, weights=hit * precision, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(positives > 0, summed / positives, np.nan)
    return ap, positives.astype(np.int64), negatives.astype(np.int64)


@dataclass
class VerifiedPairs:
    """Every verified pair of a split, grouped by image: pairs offsets[i]:offsets[i + 1]."""

    offsets: np.ndarray  # (n + 1,) int64
    classes: np.ndarray  # (P,) int64
    labels: np.ndarray  # (P,) bool, True for a verified positive
    scores: np.ndarray  # (P,) float32, NaN until filled

    @classmethod
    def from_csr(cls, pos: tuple[np.ndarray, np.ndarray], neg: tuple[np.ndarray, np.ndarray]):
        """From (offsets, indices) of the verified positives and of the verified negatives."""
        n = len(pos[0]) - 1
        image = np.concatenate([np.repeat(np.arange(n), np.diff(p[0])) for p in (pos, neg)])
        order = np.argsort(image, kind="stable")
        classes = np.concatenate([pos[1], neg[1]]).astype(np.int64)[order]
        labels = np.concatenate([np.ones(len(pos[1]), bool), np.zeros(len(neg[1]), bool)])[order]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(image, minlength=n))])
        return cls(offsets, classes, labels, np.full(len(classes), np.nan, np.float32))

    @property
    def images(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    def fill(self, images: np.ndarray, scores: np.ndarray) -> None:
        """Record the scores (k, d) of images (k,) (positions in the split) at their pairs."""
        starts = self.offsets[images]
        lengths = self.offsets[images + 1] - starts
        which = np.repeat(np.arange(len(images)), lengths)
        first = np.cumsum(lengths) - lengths
        flat = starts[which] + np.arange(len(which)) - first[which]
        self.scores[flat] = scores[which, self.classes[flat]]


@dataclass(frozen=True)
class Metrics:
    mAP: float
    AP_all: float
    classes_evaluated: int  # classes with a verified positive and a verified negative
    pairs: int  # verified pairs scored
    images: int  # images with scores
    images_without_scores: int
    ap: np.ndarray  # (d,) AP per class, NaN where not evaluated
    positives: np.ndarray  # (d,) verified positives per class
    negatives: np.ndarray  # (d,)

    @property
    def evaluated(self) -> np.ndarray:
        return (self.positives > 0) & (self.negatives > 0)


def score_pairs(pairs: VerifiedPairs, classes: int) -> Metrics:
    """mAP and AP_all of the filled pairs; pairs of images without scores are left out."""
    have = ~np.isnan(pairs.scores)
    images = np.unique(pairs.images[have])
    scored_images = len(images)
    cls, s, lab = pairs.classes[have], pairs.scores[have], pairs.labels[have]
    ap, pos, neg = average_precision(cls, s, lab, classes)
    evaluated = (pos > 0) & (neg > 0)
    ap = np.where(evaluated, ap, np.nan)
    ap_all = average_precision(np.zeros(len(s), np.int64), s, lab, 1)[0][0]
    with_pairs = int((np.diff(pairs.offsets) > 0).sum())
    return Metrics(
        mAP=float(np.nanmean(ap)) if evaluated.any() else float("nan"),
        AP_all=float(ap_all),
        classes_evaluated=int(evaluated.sum()),
        pairs=int(have.sum()),
        images=scored_images,
        images_without_scores=with_pairs - scored_images,
        ap=ap,
        positives=pos,
        negatives=neg,
    )


def decile_maps(ap: np.ndarray, key: np.ndarray, bins: int = DECILES) -> list[dict]:
    """mAP of the evaluated classes (finite AP and key) in `bins` groups of equal size by key."""
    keep = np.flatnonzero(~np.isnan(ap) & ~np.isnan(key))
    order = keep[np.argsort(key[keep], kind="stable")]
    rows: list[dict] = []
    if len(order) == 0:  # a tiny V_eval can leave no class evaluated: no deciles, not a crash
        return rows
    for i, group in enumerate(np.array_split(order, min(bins, len(order)))):
        rows.append(
            {
                "decile": i + 1,
                "classes": len(group),
                "key_min": float(key[group].min()),
                "key_max": float(key[group].max()),
                "mAP": float(ap[group].mean()),
            }
        )
    return rows
