"""Machine labels that look like a real classifier's, and the human verification of them.

Owns the label-noise model of a world, independent of any pixels: given the true labels of every
image (`Hierarchy.closure` of its objects), `machine_labels` returns labels whose overall
false-positive rate is `fp_rate` (Open Images V1 reports 26.6%), whose per-class quality ranges from
perfect to entirely wrong, whose false positives mostly come from related classes (a bus labelled
"truck") and whose confidences (0.5-1.0 in 0.1 steps) are higher for true positives. `verify` gives
the human verdicts of the validation/test subsets; `label_stats` measures what was produced.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openimages_pipe.world.classes import Hierarchy

TENTHS = (5, 6, 7, 8, 9, 10)
# Confidence distributions (weights over 0.5..1.0): a classifier is sure of what it gets right.
TP_CONFIDENCE_WEIGHTS = (0.04, 0.07, 0.12, 0.2, 0.27, 0.3)
FP_CONFIDENCE_WEIGHTS = (0.36, 0.26, 0.17, 0.11, 0.07, 0.03)
CLEAN_CLASSES = 3  # classes the machine never gets wrong
BROKEN_CLASSES = 2  # child classes the machine only ever puts on the wrong images
MIDDLE_FP_RANGE = (0.02, 0.8)  # nominal FP rates of the others, before calibration
RECALL_RANGE = (0.6, 0.95)
RELATED_SHARE = 0.85  # of each class's false positives, taken from images of related classes


@dataclass(frozen=True)
class ClassQuality:
    """How good the machine is at one class: nominal FP rate (scaled later) and recall."""

    mid: str
    fp_rate: float
    recall: float


@dataclass(frozen=True)
class MachineLabel:
    image_id: str
    mid: str
    tenths: int  # confidence * 10, 5..10

    @property
    def confidence(self) -> str:
        return f"{self.tenths / 10:.1f}"


@dataclass(frozen=True)
class Verification:
    image_id: str
    mid: str
    present: bool


@dataclass(frozen=True)
class LabelStats:
    labels: int
    fp_rate: float
    recall: float
    related_fp_share: float
    mean_confidence_tp: float
    mean_confidence_fp: float
    per_class_fp: dict[str, float]
    per_class_recall: dict[str, float]


def plan_quality(hierarchy: Hierarchy, rng: random.Random) -> dict[str, ClassQuality]:
    """Per-class quality: a few clean classes, a few broken children, the rest in between."""
    mids = list(hierarchy.mids)
    rng.shuffle(mids)
    children = [m for m in mids if hierarchy.by_mid[m].parent is not None]
    broken = set(children[:BROKEN_CLASSES])
    clean = [m for m in mids if m not in broken][:CLEAN_CLASSES]
    plan = {}
    for mid in hierarchy.mids:
        recall = round(rng.uniform(*RECALL_RANGE), 3)
        fp = round(rng.uniform(*MIDDLE_FP_RANGE), 3)
        if mid in broken:
            fp, recall = 1.0, 0.0
        elif mid in clean:
            fp = 0.0
        plan[mid] = ClassQuality(mid, fp, recall)
    return plan


def machine_labels(
    truth: Mapping[str, frozenset[str]],
    hierarchy: Hierarchy,
    quality: Mapping[str, ClassQuality],
    fp_rate: float,
    rng: random.Random,
) -> list[MachineLabel]:
    """Noisy labels for every image of `truth` (image_id -> true MIDs), sorted by image and MID."""
    image_ids = sorted(truth)
    hits = {
        m: [i for i in image_ids if m in truth[i] and rng.random() < quality[m].recall]
        for m in hierarchy.mids
    }
    fp_counts = _fp_budget(truth, quality, hits, fp_rate)
    labels = [_label(i, m, TP_CONFIDENCE_WEIGHTS, rng) for m in hierarchy.mids for i in hits[m]]
    for mid in hierarchy.mids:
        for image_id in _fp_images(mid, fp_counts[mid], truth, image_ids, hierarchy, rng):
            labels.append(_label(image_id, mid, FP_CONFIDENCE_WEIGHTS, rng))
    return sorted(labels, key=lambda x: (x.image_id, x.mid))


def _label(image_id: str, mid: str, weights: Sequence[float], rng: random.Random) -> MachineLabel:
    return MachineLabel(image_id, mid, rng.choices(TENTHS, weights)[0])


def _fp_budget(
    truth: Mapping[str, frozenset[str]],
    quality: Mapping[str, ClassQuality],
    hits: Mapping[str, list[str]],
    fp_rate: float,
) -> dict[str, int]:
    """How many false positives each class gets so that the overall rate is exactly `fp_rate`.

    Broken classes fire as often as a typical class would on their true images, always wrongly;
    the remaining budget goes to the middle classes in proportion to their nominal FP odds
    (FP = TP * f / (1 - f)), by largest remainder so that the total is exact.
    """
    true_counts = Counter(m for labels in truth.values() for m in labels)
    mean_recall = sum(q.recall for q in quality.values() if q.fp_rate < 1) / max(
        1, sum(q.fp_rate < 1 for q in quality.values())
    )
    counts = {m: 0 for m in quality}
    for mid, q in quality.items():
        if q.fp_rate >= 1:
            counts[mid] = round(true_counts[mid] * mean_recall)
    tp_total = sum(len(v) for v in hits.values())
    budget = round(tp_total * fp_rate / (1 - fp_rate)) - sum(counts.values())
    odds = {
        m: len(hits[m]) * q.fp_rate / (1 - q.fp_rate)
        for m, q in quality.items()
        if 0 < q.fp_rate < 1
    }
    total_odds = sum(odds.values())
    if budget <= 0 or total_odds == 0:
        return counts
    shares = {m: budget * w / total_odds for m, w in odds.items()}
    floors = {m: int(s) for m, s in shares.items()}
    left = budget - sum(floors.values())
    for mid in sorted(shares, key=lambda m: (floors[m] - shares[m], m))[:left]:
        floors[mid] += 1
    counts.update(floors)
    return counts


def _fp_images(
    mid: str,
    count: int,
    truth: Mapping[str, frozenset[str]],
    image_ids: Sequence[str],
    hierarchy: Hierarchy,
    rng: random.Random,
) -> list[str]:
    """`count` images that lack `mid`, mostly ones holding a related (confusable) class."""
    confusers = hierarchy.confusers(mid)
    negatives = [i for i in image_ids if mid not in truth[i]]
    related = [i for i in negatives if truth[i] & confusers]
    other = [i for i in negatives if not truth[i] & confusers]
    count = min(count, len(negatives))
    n_other = min(len(other), count - round(count * RELATED_SHARE))
    n_related = min(len(related), count - n_other)
    n_other = count - n_related  # related ran short: fill up from the others
    return rng.sample(related, n_related) + rng.sample(other, n_other)


def verify(
    labels: Sequence[MachineLabel], truth: Mapping[str, frozenset[str]]
) -> list[Verification]:
    """A human verdict on every machine label: present exactly where the truth has the class."""
    return [Verification(x.image_id, x.mid, x.mid in truth[x.image_id]) for x in labels]


def label_stats(
    labels: Sequence[MachineLabel], truth: Mapping[str, frozenset[str]], hierarchy: Hierarchy
) -> LabelStats:
    """Measured FP rate (overall and per class), recall and confidence of a set of labels."""
    tp, fp, related = Counter(), Counter(), 0
    conf: dict[bool, list[int]] = defaultdict(list)
    for x in labels:
        correct = x.mid in truth[x.image_id]
        (tp if correct else fp)[x.mid] += 1
        conf[correct].append(x.tenths)
        related += not correct and bool(truth[x.image_id] & hierarchy.confusers(x.mid))
    true_counts = Counter(m for labels_ in truth.values() for m in labels_)
    n_fp = sum(fp.values())
    return LabelStats(
        labels=len(labels),
        fp_rate=_ratio(n_fp, len(labels)),
        recall=_ratio(sum(tp.values()), sum(true_counts.values())),
        related_fp_share=_ratio(related, n_fp),
        mean_confidence_tp=_ratio(sum(conf[True]), 10 * len(conf[True])),
        mean_confidence_fp=_ratio(sum(conf[False]), 10 * len(conf[False])),
        per_class_fp={m: _ratio(fp[m], tp[m] + fp[m]) for m in hierarchy.mids if tp[m] + fp[m]},
        per_class_recall={
            m: _ratio(tp[m], true_counts[m]) for m in hierarchy.mids if true_counts[m]
        },
    )


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 0.0
