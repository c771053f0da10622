"""A generated feature world with known truth and Open Images-like label noise, as split files.

Used by the tests and by `benchmarks/train_variants.py`. Classes come in families of related
classes (a bus and a truck); class frequency has a long tail (Zipf). Every image has a few true
classes and features that are a noisy sum of its classes' vectors; siblings share part of their
vector, so they are close in feature space, as related classes are for a real backbone.

Machine labels are noisy the way the paper measured Open Images' to be: each true class is kept
with its class's recall; false positives are added until they are `fp_rate` of all labels (26.6%),
most of them (`related_share`) a sibling of a class that is in the image. Classes differ in how
strongly they attract false positives (log-normal), and a share of them is `confused`: the machine
rarely finds them but often puts them on their siblings' images, so annotation quality runs from
near perfect to mostly wrong. V images carry human verifications of their machine labels (V1's
protocol) plus, for `human_added` of the true classes the machine missed, a verified positive.

`make_world` returns everything in memory; `write_world` writes the schema of `build-splits`
(`classes.parquet`, `T.parquet`, `V_train.parquet`, `V_eval.parquet`, `splits.json`) and a
features table (`image_id`, `embedding`), shuffled over one or more files, without the rows of
`missing_features` of the images.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

GATHER_FLOATS = 2**25  # bounds the (images, k, D) gather of class vectors: 128 MB at a time


@dataclass(frozen=True)
class WorldConfig:
    classes: int = 100  # d
    families: int = 25  # groups of related classes; false positives come mostly from siblings
    features: int = 64  # D
    t_images: int = 20_000
    v_images: int = 4_000  # split into V_train (clean_fraction) and V_eval
    labels_per_image: float = 2.5  # mean true classes of an image (1 + Poisson)
    zipf: float = 1.0  # class frequency ~ 1 / rank^zipf
    family_share: float = 0.5  # cosine between two siblings' feature vectors
    noise: float = 0.35  # std of the feature noise per dimension (class vectors have norm 1)
    fp_rate: float = 0.266  # Open Images V1's measured false-positive rate of machine labels
    related_share: float = 0.85  # of false positives, the share that is a sibling of a true class
    recall: tuple[float, float] = (0.6, 0.95)  # range of per-class recall of the machine
    attraction_spread: float = 1.0  # log-normal sigma of how strongly classes draw false positives
    confused: float = 0.15  # share of classes the machine mostly puts on their siblings' images
    human_added: float = 0.1  # share of missed true classes of V images verified as positives
    clean_fraction: float = 0.25  # V_train's share of V, as in the paper
    missing_features: float = 0.01  # images whose feature row is left out of the table
    seed: int = 0


@dataclass(frozen=True)
class ClassPlan:
    family: np.ndarray  # (d,) family of each class
    frequency: np.ndarray  # (d,) probability of each class when drawing true labels
    recall: np.ndarray  # (d,)
    attraction: np.ndarray  # (d,) weight as a false positive
    vectors: np.ndarray  # (d, D) unit feature vector of each class


@dataclass(frozen=True)
class World:
    cfg: WorldConfig
    plan: ClassPlan
    classes: pa.Table
    splits: dict[str, pa.Table]  # T, V_train, V_eval in the schema of build-splits
    truth: dict[str, np.ndarray]  # (n, k) padded true classes per split (pad = d)
    features: pa.Table  # image_id, embedding; missing_features of the rows left out
    stats: dict[str, float]  # measured noise of the machine labels (`label_stats`)


def plan_classes(cfg: WorldConfig, rng: np.random.Generator) -> ClassPlan:
    d, dim = cfg.classes, cfg.features
    family = rng.permutation(d) % cfg.families
    frequency = 1.0 / np.arange(1, d + 1) ** cfg.zipf
    frequency = rng.permutation(frequency / frequency.sum())
    recall = rng.uniform(*cfg.recall, d)
    attraction = rng.lognormal(0.0, cfg.attraction_spread, d)
    confused = rng.random(d) < cfg.confused
    recall[confused] = rng.uniform(0.05, 0.3, confused.sum())
    attraction[confused] *= 5.0
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    shared = unit(rng.standard_normal((cfg.families, dim)))[family]
    own = unit(rng.standard_normal((d, dim)))
    # Mixing a family vector with an own one gives siblings cosine ~ family_share.
    vectors = unit(np.sqrt(cfg.family_share) * shared + np.sqrt(1 - cfg.family_share) * own)
    return ClassPlan(family, frequency, recall, attraction, vectors.astype(np.float32))


def dedupe(rows: np.ndarray, pad: int) -> np.ndarray:
    """Sort each row, turn repeats into `pad`, and move the pads to the end. (n, k) -> (n, k)."""
    rows = np.sort(rows, axis=1)
    repeat = np.zeros_like(rows, dtype=bool)
    repeat[:, 1:] = rows[:, 1:] == rows[:, :-1]
    return np.sort(np.where(repeat, pad, rows), axis=1)


def draw_truth(n: int, cfg: WorldConfig, plan: ClassPlan, rng: np.random.Generator) -> np.ndarray:
    """True classes of n images, (n, k) sorted, padded with d."""
    kmax = int(3 * cfg.labels_per_image) + 2
    k = np.minimum(1 + rng.poisson(cfg.labels_per_image - 1, n), kmax)
    draws = rng.choice(cfg.classes, size=(n, kmax), p=plan.frequency)
    return dedupe(np.where(np.arange(kmax) < k[:, None], draws, cfg.classes), cfg.classes)


def contains(rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(n, k) rows, (n, m) values -> (n, m): is each value in its row?"""
    return (values[:, :, None] == rows[:, None, :]).any(axis=2)


def siblings(sources: np.ndarray, plan: ClassPlan, rng: np.random.Generator) -> np.ndarray:
    """One sibling of each source class, drawn by attraction; -1 where the family has no other."""
    fams = plan.family.max() + 1
    members = [np.flatnonzero(plan.family == f) for f in range(fams)]
    width = max(len(m) for m in members)
    table = np.full((fams, width), -1)
    for f, m in enumerate(members):
        table[f, : len(m)] = m
    cand = table[plan.family[sources]]  # (m, width)
    weight = np.where((cand >= 0) & (cand != sources[:, None]), plan.attraction[cand], 0.0)
    cum = weight.cumsum(axis=1)
    pick = (cum < rng.random(len(sources))[:, None] * cum[:, -1:]).sum(axis=1)
    chosen = cand[np.arange(len(sources)), np.minimum(pick, width - 1)]
    return np.where(cum[:, -1] > 0, chosen, -1)


def draw_false(truth: np.ndarray, lam: float, cfg: WorldConfig, plan, rng) -> np.ndarray:
    """False-positive classes per image, (n, m) padded with d; never a true class."""
    n, d = truth.shape[0], cfg.classes
    m = max(1, int(lam * 3) + 2)
    count = np.minimum(rng.poisson(lam, n), m)
    k = (truth < d).sum(axis=1)
    source = truth[np.arange(n)[:, None], (rng.random((n, m)) * k[:, None]).astype(int)]
    related = siblings(source.ravel(), plan, rng).reshape(n, m)
    anywhere = rng.choice(d, size=(n, m), p=plan.attraction / plan.attraction.sum())
    use_related = (rng.random((n, m)) < cfg.related_share) & (related >= 0)
    draws = np.where(use_related, related, anywhere)
    keep = (np.arange(m) < count[:, None]) & ~contains(truth, draws)
    return dedupe(np.where(keep, draws, d), d)


def machine_labels(truth: np.ndarray, cfg: WorldConfig, plan: ClassPlan, rng) -> np.ndarray:
    """Noisy labels (n, k + m) padded with d: kept true classes plus calibrated false positives."""
    d = cfg.classes
    recall = np.append(plan.recall, 0.0)[truth]  # (n, k); pads get 0
    found = np.where(rng.random(truth.shape) < recall, truth, d)
    wanted = cfg.fp_rate / (1 - cfg.fp_rate) * (found < d).sum()  # false positives to add
    lam = wanted / len(truth)
    trial = draw_false(truth, lam, cfg, plan, rng)  # some draws hit a true class or repeat:
    lam *= wanted / max(1, (trial < d).sum())  # rescale once so the rate comes out right
    return dedupe(np.concatenate([found, draw_false(truth, lam, cfg, plan, rng)], axis=1), d)


def draw_features(truth: np.ndarray, cfg: WorldConfig, plan: ClassPlan, rng) -> np.ndarray:
    """f(I) = sum of the image's class vectors + Gaussian noise: (n, D) float32."""
    vectors = np.vstack([plan.vectors, np.zeros((1, cfg.features), np.float32)])  # pad -> 0
    out = np.empty((len(truth), cfg.features), np.float32)
    chunk = max(1, GATHER_FLOATS // (truth.shape[1] * cfg.features))
    for a in range(0, len(truth), chunk):
        b = min(a + chunk, len(truth))
        noise = rng.standard_normal((b - a, cfg.features), dtype=np.float32) * cfg.noise
        out[a:b] = vectors[truth[a:b]].sum(axis=1) + noise
    return out


def to_lists(padded: np.ndarray, pad: int, values: np.ndarray | None = None) -> pa.Array:
    """Padded rows -> list<int32> of the entries (or list<float32> of `values` there)."""
    mask = padded < pad
    offsets = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int32)
    flat = padded[mask].astype(np.int32) if values is None else values[mask].astype(np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def image_ids(n: int, seed: int) -> np.ndarray:
    # Multiplying by an odd constant is a bijection mod 2^64: distinct, hex like real ImageIDs.
    keys = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)
    return np.array([f"{k:016x}" for k in keys.tolist()])


def verify(truth, labels, d: int, share: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Human verdicts: every machine label checked, plus `share` of the missed true classes."""
    right = contains(truth, labels) & (labels < d)
    added = (truth < d) & ~contains(labels, truth) & (rng.random(truth.shape) < share)
    pos = np.concatenate([np.where(right, labels, d), np.where(added, truth, d)], axis=1)
    return dedupe(pos, d), dedupe(np.where(~right, labels, d), d)


def split_table(rows, ids, labels, confidence, verified, d: int) -> pa.Table:
    columns = {
        "image_id": pa.array(ids[rows]),
        "labels": to_lists(labels[rows], d),
        "confidences": to_lists(labels[rows], d, confidence[rows]),
    }
    if verified is not None:
        columns["verified_pos"] = to_lists(verified[0][rows], d)
        columns["verified_neg"] = to_lists(verified[1][rows], d)
    return pa.table(columns)


def class_table(cfg: WorldConfig, labels, verified, t_rows, v_rows) -> pa.Table:
    d = cfg.classes
    count = lambda a: np.bincount(a[a < d], minlength=d).astype(np.int64)  # noqa: E731
    return pa.table(
        {
            "class_index": pa.array(np.arange(d), pa.int32()),
            "label_name": [f"/m/syn{i:04d}" for i in range(d)],
            "display_name": [f"class {i}" for i in range(d)],
            "t_count": count(labels[t_rows]),
            "v_pos": count(verified[0][v_rows]),
            "v_neg": count(verified[1][v_rows]),
        }
    )


def make_world(cfg: WorldConfig) -> World:
    rng = np.random.default_rng(cfg.seed)
    d, n = cfg.classes, cfg.t_images + cfg.v_images
    plan = plan_classes(cfg, rng)
    truth = draw_truth(n, cfg, plan, rng)
    labels = machine_labels(truth, cfg, plan, rng)
    right = contains(truth, labels)
    # A classifier is surer of what it gets right: confidences 0.5-1.0, higher for true labels.
    confidence = 0.5 + 0.5 * np.where(
        right, rng.beta(4, 2, right.shape), rng.beta(2, 4, right.shape)
    )
    verified = verify(truth, labels, d, cfg.human_added, rng)
    ids = image_ids(n, cfg.seed)
    v_rows = np.arange(cfg.t_images, n)
    in_train = rng.random(len(v_rows)) < cfg.clean_fraction
    rows = {"T": np.arange(cfg.t_images), "V_train": v_rows[in_train], "V_eval": v_rows[~in_train]}
    splits = {
        name: split_table(r, ids, labels, confidence, None if name == "T" else verified, d)
        for name, r in rows.items()
    }
    x = draw_features(truth, cfg, plan, rng)
    shown = rng.permutation(np.flatnonzero(rng.random(n) >= cfg.missing_features))
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(x[shown].ravel()), cfg.features)
    features = pa.table({"image_id": pa.array(ids[shown]), "embedding": embedding})
    classes = class_table(cfg, labels, verified, rows["T"], v_rows)
    truths = {k: truth[r] for k, r in rows.items()}
    stats = label_stats(truth, labels, plan.family)
    return World(cfg, plan, classes, splits, truths, features, stats)


def label_stats(truth: np.ndarray, labels: np.ndarray, family: np.ndarray) -> dict[str, float]:
    """Measured noise of machine labels: false-positive rate, share of them from a sibling."""
    d = len(family)
    wrong = (labels < d) & ~contains(truth, labels)
    # Pads get families -1 and -2 so that they never match each other.
    related = contains(np.append(family, -1)[truth], np.append(family, -2)[labels]) & wrong
    return {
        "fp_rate": float(wrong.sum() / max(1, (labels < d).sum())),
        "related_fp_share": float(related.sum() / max(1, wrong.sum())),
    }


def write_world(world: World, splits: Path, features: Path, files: int = 1) -> None:
    """The split files into `splits`; the features into one file or a folder of `files` files."""
    splits.mkdir(parents=True, exist_ok=True)
    pq.write_table(world.classes, splits / "classes.parquet")
    for name, table in world.splits.items():
        pq.write_table(table, splits / f"{name}.parquet")
    counts = {name: t.num_rows for name, t in world.splits.items()}
    meta = {"generator": "nlc_model.synthetic", "config": asdict(world.cfg), "counts": counts}
    meta["label_noise"] = world.stats
    (splits / "splits.json").write_text(json.dumps(meta, indent=2))
    if files == 1:
        features.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(world.features, features)
        return
    features.mkdir(parents=True, exist_ok=True)
    step = -(-world.features.num_rows // files)
    for i in range(files):
        part = world.features.slice(i * step, step)
        pq.write_table(part, features / f"part-{i:05d}.parquet")
