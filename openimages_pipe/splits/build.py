"""`oi-pipe build-splits`: the noisy set T and the verified set V as Parquet, V split 1/4 - 3/4.

Composes the stages: read the inputs (`inputs`), run the query (`query`), choose the
vocabulary (`vocabulary`), assign V's sides (`split_hash`), check the sets and write them with
their record (`outputs`). SPLITS/ holds:

    classes.parquet   class_index int32, label_name, display_name, t_count, v_pos, v_neg
    T.parquet         image_id, labels list<int32> sorted, confidences list<float32> aligned
    V_train.parquet   image_id, labels, confidences (the machine's: the noisy y),
    V_eval.parquet      verified_pos, verified_neg (list<int32> sorted: the human verdicts v)
    link_rot.parquet  with --downloaded: per class, images listed, kept, lost, lost_share
    splits.json       the resolved config, the inputs, every count and every drop
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl

from openimages_pipe.download import storage
from openimages_pipe.errors import InputError
from openimages_pipe.formats import paths as input_paths
from openimages_pipe.splits import inputs as split_inputs
from openimages_pipe.splits import outputs as record_
from openimages_pipe.splits import query as split_query
from openimages_pipe.splits import vocabulary

VERIFIED_FROM = ("validation", "all")


@dataclass(frozen=True)
class SplitsConfig:
    """Everything `build-splits` needs; saved, resolved, with every file it writes."""

    images: tuple[Path, ...]
    machine_labels: tuple[Path, ...]
    human_labels: tuple[Path, ...]
    out: Path
    # a labelmap / trainable list / class-descriptions file, or names and MIDs as typed
    # (resolved against class_names by vocabulary.given_classes)
    classes: Path | tuple[str, ...] | None = None
    class_names: Path | None = None  # dict.csv or class-descriptions: display names
    downloaded: Path | str | None = None  # a download folder (or s3:// URL): only its ok images
    clean_fraction: float = 0.25  # Veit et al.: a quarter of V trains the cleaning network
    seed: int = 0
    min_confidence: float = 0.0  # machine labels below this are dropped
    min_train_images: int = vocabulary.V1_MIN_TRAIN_IMAGES  # the V1 rule, without --classes
    min_val_images: int = vocabulary.V1_MIN_VAL_IMAGES
    # "validation": V is the verified validation and test images (the paper's setting); "all":
    # verified training images leave T and join V too (V4+ verify mostly training images).
    verified_from: str = "validation"


@dataclass(frozen=True)
class SplitsSummary:
    out: str
    classes: int
    t_images: int
    t_labels: int
    v_images: int
    v_train: int
    v_eval: int
    v_machine_labels: int
    v_pos: int
    v_neg: int
    drops: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class SplitsInvariantError(AssertionError):
    """T, V_train and V_eval came out overlapping: a bug, never bad input."""


def resolve(cfg: SplitsConfig) -> SplitsConfig:
    """Validate the config; make paths absolute, so that the record says where data came from."""
    for name in ("images", "machine_labels", "human_labels"):
        if not getattr(cfg, name):
            raise InputError(f"give at least one --{name.replace('_', '-')} CSV")
    if not 0.0 <= cfg.clean_fraction <= 1.0:
        raise InputError("--clean-fraction must lie in [0, 1]", value=str(cfg.clean_fraction))
    if not 0.0 <= cfg.min_confidence <= 1.0:
        raise InputError("--min-confidence must lie in [0, 1]", value=str(cfg.min_confidence))
    if min(cfg.min_train_images, cfg.min_val_images) < 0:
        raise InputError("--min-train-images and --min-val-images must be at least 0")
    if cfg.verified_from not in VERIFIED_FROM:
        choices = ", ".join(VERIFIED_FROM)
        raise InputError(f"--verified-from must be one of {choices}", value=cfg.verified_from)
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise InputError("--out must be a folder", Path(cfg.out))
    if isinstance(cfg.classes, tuple):  # an unknown name fails now, not after the labels are read
        vocabulary.given_classes(cfg.classes, cfg.class_names)

    def absolute(paths: tuple[Path, ...], option: str) -> tuple[Path, ...]:
        return tuple(p.absolute() for p in input_paths.expand(paths, option))

    def maybe(p: Path | None) -> Path | None:
        return None if p is None else Path(p).absolute()

    return replace(
        cfg,
        images=absolute(cfg.images, "--images"),
        machine_labels=absolute(cfg.machine_labels, "--machine-labels"),
        human_labels=absolute(cfg.human_labels, "--human-labels"),
        out=Path(cfg.out).absolute(),
        classes=cfg.classes if isinstance(cfg.classes, tuple) else maybe(cfg.classes),
        class_names=maybe(cfg.class_names),
        downloaded=None if cfg.downloaded is None else _absolute(storage.location(cfg.downloaded)),
    )


def _absolute(location: Path | str) -> Path | str:
    return location.absolute() if isinstance(location, Path) else location


def choose_vocabulary(cfg: SplitsConfig, per_mid: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """The class table from --classes, or from the data by the V1 rule; names from either file."""
    given, how = None, {}
    if cfg.classes is not None:
        given, how = vocabulary.given_classes(cfg.classes, cfg.class_names)
    named = None if cfg.class_names is None else vocabulary.read_class_names(cfg.class_names)
    if given is not None:
        chosen = given["label_name"]
    else:
        chosen = vocabulary.trainable(per_mid, cfg.min_train_images, cfg.min_val_images)
        how = {
            "source": "computed",
            "rule": "V1: at least min_train_images training images "
            "with a machine label and min_val_images V images with a verified positive",
            "min_train_images": cfg.min_train_images,
            "min_val_images": cfg.min_val_images,
        }
    classes = vocabulary.class_table(chosen, vocabulary.merge_names(named, given))
    if classes.height == 0:
        fix = "check the file" if given is not None else "lower --min-train-images/--min-val-images"
        raise InputError(f"the vocabulary is empty: no class to build T and V from; {fix}")
    unused = per_mid.join(classes, on="label_name", how="anti").height
    return classes, how | {
        "classes": classes.height,
        "mids_in_labels": per_mid.height,
        "mids_in_labels_not_in_vocabulary": unused,
    }


def check_sets(sets: dict[str, pl.DataFrame], v_images: int) -> None:
    """No image in both T and V; V_train and V_eval disjoint and covering V; none twice."""
    t, v_train, v_eval = sets["T"]["img"], sets["V_train"]["img"], sets["V_eval"]["img"]
    v = pl.concat([v_train, v_eval])
    problems = {
        "an image is in both T and V": t.is_in(v.implode()).any(),
        "an image is in both V_train and V_eval": v_train.is_in(v_eval.implode()).any(),
        "V_train and V_eval do not cover V": len(v) != v_images,
        "an image is twice in T": t.n_unique() != len(t),
        "an image is twice in V": v.n_unique() != len(v),
    }
    failed = [what for what, bad in problems.items() if bad]
    if failed:
        raise SplitsInvariantError("; ".join(failed))


def build_sets(
    cfg: SplitsConfig, rows: pl.LazyFrame, images: pl.DataFrame
) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
    """T, V_train and V_eval of the downloaded images (`img` still on, for the checks), and how
    many images each set lost to link rot."""
    t = split_query.group_t(rows, images).collect()
    v = split_query.group_v(rows).collect()
    lost = {
        f"{name}_images_not_downloaded": int((~s["ok"]).sum()) for name, s in (("T", t), ("V", v))
    }
    v = split_query.assign_split(v.lazy().filter("ok"), images, cfg.seed, cfg.clean_fraction)
    v = v.collect()
    sets = {"T": t.filter("ok"), "V_train": v.filter("clean"), "V_eval": v.filter(~pl.col("clean"))}
    check_sets(sets, v.height)
    return sets, lost if cfg.downloaded else {}


class _Clock:
    """Seconds per stage, for splits.json."""

    def __init__(self) -> None:
        self.started, self.laps = time.perf_counter(), {}

    def lap(self, stage: str) -> None:
        self.laps[stage] = round(time.perf_counter() - self.started - sum(self.laps.values()), 2)

    def record(self) -> dict[str, float]:
        return self.laps | {"total": round(time.perf_counter() - self.started, 2)}


def read_and_merge(cfg: SplitsConfig, clock: _Clock):
    """The images table, and the label rows read, checked, sorted and merged (12 bytes a row)."""
    images, image_counts = split_inputs.read_images(cfg.images, cfg.downloaded)
    clock.lap("read_images")
    label_paths = cfg.machine_labels + cfg.human_labels
    raw, label_counts = split_inputs.read_labels(label_paths, images, cfg.min_confidence)
    if cfg.verified_from == "all":
        images, raw, moved = split_inputs.verified_train_to_v(images, raw)
        image_counts["train_images_moved_to_v"] = moved
    clock.lap("read_labels")
    mids, rank_of_code = split_query.rank_mids(raw)
    usable = split_query.keep_usable(raw.lazy(), cfg.min_confidence)
    packed = split_query.pack_labels(usable, rank_of_code).collect()
    del raw, usable  # the 81M rows as read; from here on, 12 bytes a row
    merged = split_query.merge_duplicates(split_query.sort_labels(packed))
    clock.lap("sort_and_merge")
    return images, merged, mids, image_counts, label_counts


def output_frames(
    cfg: SplitsConfig, classes: pl.DataFrame, per_mid: pl.DataFrame, sets: dict[str, pl.DataFrame]
) -> dict[str, pl.DataFrame | None]:
    return {
        "classes": vocabulary.with_counts(classes, per_mid).select(record_.CLASS_COLUMNS),
        "T": record_.for_output(sets["T"], record_.T_COLUMNS),
        "V_train": record_.for_output(sets["V_train"], record_.V_COLUMNS),
        "V_eval": record_.for_output(sets["V_eval"], record_.V_COLUMNS),
        "link_rot": vocabulary.link_rot(classes, per_mid) if cfg.downloaded else None,
    }


def run(cfg: SplitsConfig) -> SplitsSummary:
    """Build T, V_train and V_eval from the CSVs in `cfg` and write them to `cfg.out`."""
    cfg, clock = resolve(cfg), _Clock()
    inputs = record_.describe_inputs(cfg.images, cfg.machine_labels, cfg.human_labels)
    images, merged, mids, image_counts, label_counts = read_and_merge(cfg, clock)
    per_mid = mids.join(split_query.count_by_mid(merged, mids.height), on="rank", validate="1:1")
    classes, vocab = choose_vocabulary(cfg, per_mid)
    class_of_rank = vocabulary.class_of_rank(mids, classes)
    rows = split_query.select_rows(split_query.unpack(merged), class_of_rank)
    sets, lost = build_sets(cfg, rows, images)
    clock.lap("vocabulary_and_sets")
    frames = output_frames(cfg, classes, per_mid, sets)
    file_rows = image_counts.pop("rows_per_file") + label_counts.pop("rows_per_file")
    inputs = [entry | {"rows": n} for entry, n in zip(inputs, file_rows, strict=True)]
    drops = record_.read_drops(image_counts, label_counts, merged.height)
    drops |= record_.vocabulary_drops(per_mid, classes, cfg.downloaded is not None) | lost
    counts = {"images": image_counts, "label_rows": label_counts}
    record = record_.make_record(record_.config_record(cfg), inputs, counts, drops, vocab, frames)
    record_.write_parquets(cfg.out, frames, record)
    clock.lap("write")
    record["seconds"] = clock.record()
    record_.write_record(cfg.out, record)
    return summarise(record)


def summarise(record: dict) -> SplitsSummary:
    c = record["counts"]
    return SplitsSummary(
        out=record["config"]["out"],
        classes=record["vocabulary"]["classes"],
        t_images=c["T"]["images"],
        t_labels=c["T"]["labels"],
        v_images=c["V"]["images"],
        v_train=c["V_train"]["images"],
        v_eval=c["V_eval"]["images"],
        v_machine_labels=c["V"]["labels"],
        v_pos=c["V"]["verified_pos"],
        v_neg=c["V"]["verified_neg"],
        drops=dict(record["drops"]),
        seconds=record.get("seconds", {}).get("total", 0.0),
    )


def describe(summary: SplitsSummary) -> str:
    """A few lines for the terminal: what each set holds and what was dropped."""
    s = summary
    dropped = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in s.drops.items() if v)
    return (
        f"splits {s.out}: {s.classes:,} classes, built in {s.seconds:.1f} s\n"
        f"T: {s.t_images:,} images, {s.t_labels:,} machine labels\n"
        f"V: {s.v_images:,} images (V_train {s.v_train:,}, V_eval {s.v_eval:,}), "
        f"{s.v_machine_labels:,} machine labels, {s.v_pos:,} verified positive, "
        f"{s.v_neg:,} verified negative\n"
        f"dropped: {dropped or 'nothing'}"
    )
