"""`oi-pipe select`: the images of chosen classes, picked from the label CSVs.

Composes the stages: resolve the classes (`splits.vocabulary.ClassResolver`), read the evidence
(`evidence`), apply the rules (`rules`) with the restrictions of `images`, and write the result
(`outputs`). OUT/ holds:

    ids.txt         one ImageID per line, sorted: the format `download --ids` reads
    labels.parquet  image_id, label_name, source (human|machine), confidence: the selected positives
    select.json     the resolved config, the classes as resolved, counts per class; written last
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from openimages_pipe import packaged
from openimages_pipe.errors import InputError
from openimages_pipe.formats import paths as input_paths
from openimages_pipe.select import evidence, images, outputs, rules
from openimages_pipe.select.records import LabelSource
from openimages_pipe.splits import vocabulary
from openimages_pipe.splits.outputs import config_record

MACHINE_MIN_CONFIDENCE = 0.5  # the default: below it a machine label is mostly wrong


@dataclass(frozen=True)
class SelectConfig:
    """Everything `select` needs; saved, resolved, in select.json and labels.parquet."""

    labels: tuple[Path, ...]  # image-level label CSVs, machine and/or human, any release
    classes: tuple[str, ...]  # names or MIDs as typed (a value may be a comma-separated list)
    out: Path
    class_names: Path | None = None  # dict.csv or class-descriptions; default: V1's dict.csv
    source: LabelSource = LabelSource.ANY
    min_confidence: float = MACHINE_MIN_CONFIDENCE  # machine labels below it never select
    images: tuple[Path, ...] = ()  # only images these images CSVs list
    subsets: tuple[str, ...] = ()  # only rows of these subsets of the images CSVs
    downloaded: Path | None = None  # only images this download's manifest says are ok
    exclusive: bool = False  # only images with no positive label of another class
    max_per_class: int | None = None  # each class brings in at most this many images
    seed: int = 0  # of the rank that --max-per-class keeps the lowest of


@dataclass(frozen=True)
class SelectSummary:
    config: SelectConfig  # as resolved: absolute paths, the default class names
    out: Path
    images: int
    labels: int
    per_class: pl.DataFrame  # one row per chosen MID: label_name, display_name, query, steps
    notes: tuple[str, ...]  # what the resolver said (shared names, MIDs without a name)
    seconds: float


def resolve(cfg: SelectConfig) -> SelectConfig:
    """Validate the config; expand patterns and make paths absolute, for the record."""
    if not cfg.labels:
        raise InputError("give at least one --labels CSV")
    if not 0.0 <= cfg.min_confidence <= 1.0:
        raise InputError("--min-confidence must lie in [0, 1]", value=str(cfg.min_confidence))
    if cfg.max_per_class is not None and cfg.max_per_class < 1:
        raise InputError("--max-per-class must be at least 1", value=str(cfg.max_per_class))
    if cfg.subsets and not cfg.images:
        raise InputError("--subset needs --images: the Subset column is in the images CSVs")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise InputError("--out must be a folder", Path(cfg.out))

    def absolute(paths: tuple[Path, ...], option: str) -> tuple[Path, ...]:
        return tuple(p.absolute() for p in input_paths.expand(paths, option))

    return replace(
        cfg,
        labels=absolute(cfg.labels, "--labels"),
        images=absolute(cfg.images, "--images"),
        out=Path(cfg.out).absolute(),
        class_names=Path(cfg.class_names or packaged.dict_csv()).absolute(),
        downloaded=None if cfg.downloaded is None else Path(cfg.downloaded).absolute(),
        source=LabelSource(cfg.source),
    )


def restricted(
    cfg: SelectConfig, pairs: pl.DataFrame, mids: list[str], tally: rules.Tally
) -> pl.DataFrame:
    """The positive pairs of the images that --images/--subset, --downloaded and --exclusive
    allow, in that order; each step counts what it dropped."""
    if cfg.images:
        pairs = _drop(pairs, images.listed(cfg.images, cfg.subsets), "not_in_images", tally)
    if cfg.downloaded is not None:
        pairs = _drop(pairs, images.downloaded(cfg.downloaded), "not_downloaded", tally)
    if cfg.exclusive:
        keys = pairs.get_column("key").unique()
        others = evidence.read_other_classes(cfg.labels, keys, mids)
        shown = rules.positive_keys(rules.judge(others, cfg.source, cfg.min_confidence))
        pairs = _drop(pairs, shown, "not_exclusive", tally, allowed=False)
    return pairs


def _drop(
    pairs: pl.DataFrame, keys: pl.Series, step: str, tally: rules.Tally, allowed: bool = True
) -> pl.DataFrame:
    kept, dropped = rules.restrict(pairs, keys, allowed=allowed)
    tally.add(step, dropped)
    return kept


def choose(cfg: SelectConfig, classes: pl.DataFrame) -> tuple[pl.DataFrame, rules.Tally, dict]:
    """The labels of the selected images, the per-class tally, and the label rows read."""
    mids = classes.get_column("label_name").to_list()
    found, label_counts = evidence.read_evidence(cfg.labels, mids)
    tally = rules.Tally()
    judged = rules.judge(found, cfg.source, cfg.min_confidence)
    tally.add("candidates", judged)
    tally.add("vetoed_by_human_negative", judged.filter("vetoed"))
    eligible = restricted(cfg, judged.filter("positive"), mids, tally)
    tally.add("eligible", eligible)
    keys = None  # every eligible image, without a cap
    if cfg.max_per_class is not None:
        brought_in = rules.cap(eligible, cfg.max_per_class, cfg.seed)
        over = eligible.join(brought_in, on=["key", "label_name"], how="anti")
        tally.add("over_max_per_class", over)
        keys = brought_in.get_column("key").unique()
    labels = rules.selected_labels(eligible, keys)
    tally.add("selected", labels.unique(["key", "label_name"]))
    return labels, tally, vars(label_counts)


def run(cfg: SelectConfig) -> SelectSummary:
    """Select the images of `cfg.classes` from `cfg.labels` and write them to `cfg.out`."""
    started = time.perf_counter()
    cfg = resolve(cfg)
    names = vocabulary.read_class_names(cfg.class_names)
    resolved = vocabulary.ClassResolver(names, cfg.class_names).resolve(cfg.classes)
    classes = vocabulary.resolved_table(resolved)
    labels, tally, label_counts = choose(cfg, classes)
    per_class = tally.table(classes)
    frame = outputs.labels_frame(labels)
    images_selected = frame.get_column("image_id").n_unique()
    counts = {"label_rows": label_counts, "images": images_selected, "labels": frame.height}
    found = [vocabulary.resolved_record(r) for r in resolved]
    record = outputs.make_record(config_record(cfg), found, counts, per_class)
    record["rank"] = {"definition": rules.RANK_NAME, "seed": cfg.seed}
    record["seconds"] = round(time.perf_counter() - started, 2)
    outputs.write(cfg.out, frame, record)
    notes = tuple(r.note for r in resolved if r.note)
    seconds = record["seconds"]
    return SelectSummary(cfg, cfg.out, images_selected, frame.height, per_class, notes, seconds)


def describe(summary: SelectSummary) -> str:
    table = outputs.describe(summary.per_class, summary.images, summary.labels, summary.out)
    return "\n".join([*(f"note: {n}" for n in summary.notes), table])
