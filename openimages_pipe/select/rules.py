"""The rules of `select`: from the evidence on each (image, MID) to the images selected.

In the order they apply:

    judge            which (image, MID) pairs are positives under --source and --min-confidence;
                     a human negative (Confidence 0) never selects, and with --source any it
                     vetoes a machine label of the same class on that image
    restrict         keep the positives of the images a restriction allows: --images/--subset,
                     --downloaded, --exclusive (each counted per class as it drops pairs)
    cap              --max-per-class N: each class brings in its N images of lowest rank, a
                     stable hash of (seed, ImageID), so growing N only adds images
    selected_labels  every chosen-class positive of the images brought in

Owns the per-class counts of each step (`Tally`), which select.json and the printed table show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from openimages_pipe.select.evidence import HUMAN, KIND, MACHINE
from openimages_pipe.select.records import LabelSource
from openimages_pipe.splits import split_hash

# The rank of an image in its class is splitmix64 (split_hash) at seed + RANK_SEED_OFFSET: with
# the split's own seed, the images ranked first would be those build-splits puts in V_train.
RANK_SEED_OFFSET = 2**32
RANK_NAME = "splitmix64(ImageID + (seed + 2^32 + 1) * 0x9E3779B97F4A7C15), lowest first"


@dataclass
class Tally:
    """Per-class counts of (image, MID) pairs, step by step, in the order the steps ran."""

    steps: dict[str, pl.DataFrame] = field(default_factory=dict)  # step -> label_name, n

    def add(self, step: str, pairs: pl.DataFrame) -> None:
        self.steps[step] = pairs.group_by("label_name").agg(n=pl.len())

    def table(self, classes: pl.DataFrame) -> pl.DataFrame:
        """One row per chosen MID (classes: label_name, display_name, query), a column a step."""
        table = classes
        for step, counted in self.steps.items():
            counted = counted.with_columns(pl.col("label_name").cast(pl.String)).rename({"n": step})
            table = table.join(counted, on="label_name", how="left", validate="1:1")
        return table.with_columns(pl.col(*self.steps).fill_null(0).cast(pl.Int64))


def judge(evidence: pl.DataFrame, source: LabelSource, min_confidence: float) -> pl.DataFrame:
    """Each pair with by_human, by_machine (the labels that make it a positive), vetoed and
    positive; only candidates are kept (a positive label of the class under --source)."""
    use_human = source in (LabelSource.ANY, LabelSource.HUMAN)
    use_machine = source in (LabelSource.ANY, LabelSource.MACHINE)
    human_yes = (pl.col("human") == 1).fill_null(False)
    human_no = (pl.col("human") == 0).fill_null(False)
    machine_yes = (pl.col("machine") >= pl.lit(min_confidence, pl.Float32)).fill_null(False)
    machine = machine_yes & pl.lit(use_machine)
    vetoed = machine & human_no & pl.lit(source is LabelSource.ANY)
    return (
        evidence.with_columns(by_human=human_yes & pl.lit(use_human), vetoed=vetoed)
        .with_columns(by_machine=machine & ~pl.col("vetoed"))
        .with_columns(positive=pl.col("by_human") | pl.col("by_machine"))
        .filter(pl.col("positive") | pl.col("vetoed"))
    )


def positive_keys(judged: pl.DataFrame) -> pl.Series:
    return judged.filter("positive").get_column("key").unique()


def restrict(
    pairs: pl.DataFrame, keys: pl.Series, *, allowed: bool = True
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, dropped): the pairs whose image is among `keys` (or, not `allowed`, is not)."""
    inside = pl.col("key").is_in(keys.implode())
    keep = inside if allowed else ~inside
    return pairs.filter(keep), pairs.filter(~keep)


def rank(keys: pl.Series, seed: int) -> pl.Series:
    """Each image's rank within a class: a stable hash, the same on every machine (split_hash)."""
    return pl.Series(split_hash.hash_keys(keys.to_numpy(), seed + RANK_SEED_OFFSET))


def cap(pairs: pl.DataFrame, max_per_class: int, seed: int) -> pl.DataFrame:
    """The pairs each class brings in: its `max_per_class` of lowest rank."""
    ranked = pairs.with_columns(rank=rank(pairs["key"], seed))
    first = pl.col("rank").rank("ordinal").over("label_name") <= max_per_class
    return ranked.filter(first).drop("rank")


def selected_labels(positives: pl.DataFrame, keys: pl.Series | None) -> pl.DataFrame:
    """labels.parquet's rows: each chosen-class positive of these images (None: of all), one row
    per kind of label that makes it one (source human: confidence 1; machine: its highest
    confidence), sorted by image."""
    mine = positives if keys is None else positives.filter(pl.col("key").is_in(keys.implode()))
    columns = ("key", "label_name")
    human = mine.filter("by_human").select(
        *columns, source=pl.lit(HUMAN, KIND), confidence=pl.lit(1.0, pl.Float32)
    )
    machine = mine.filter("by_machine").select(
        *columns, source=pl.lit(MACHINE, KIND), confidence="machine"
    )
    return pl.concat([human, machine]).sort("key", "label_name", "source")
