"""The read stage of `select`: label CSVs in, one row per (image, MID) of the chosen MIDs out.

Owns reading the label CSVs for a few classes. Every file is scanned by polars' streaming engine
and the rows of other MIDs are dropped as their chunk is parsed, so that only the chosen classes'
rows are ever held: at V1 scale (81M rows, 6 GB of CSV) a few million rows of 21 bytes. Those rows
are checked (a bad ImageID or Confidence is located by file and line, as the reader does) and
merged into one row per (image, MID): the human verdict, the highest human Confidence (1 wins
over 0, as in build-splits), and the highest machine Confidence. Also the narrower second pass
that `--exclusive` needs: every other MID of some images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader, releases
from openimages_pipe.splits.inputs import bad_image_id, image_key

HUMAN, MACHINE = "human", "machine"
KIND = pl.Enum([HUMAN, MACHINE])  # a label row's Source, as one of the two that select reads


@dataclass(frozen=True)
class LabelCounts:
    """The label rows of the chosen classes, as read."""

    machine_rows: int
    human_rows: int
    other_source_rows: int  # a Source that is neither a machine's nor a human's: ignored
    human_not_0_or_1: int  # a verification that is neither yes nor no: ignored


def _kind() -> pl.Expr:
    source = pl.col("source")
    return (
        pl.when(source.is_in(sorted(releases.all_human_sources())))
        .then(pl.lit(HUMAN, KIND))
        .when(source.is_in(sorted(releases.all_machine_sources())))
        .then(pl.lit(MACHINE, KIND))
    )


def scan_rows(paths: Sequence[Path], keep: pl.Expr) -> pl.LazyFrame:
    """The label rows for which `keep` holds: file, key, label_name, kind, confidence and bad (a
    row the reader would refuse).

    `keep` sees the raw text columns (image_id, label_name, ...), so it runs before any parse.
    No text column is kept: a string that survives the filter would keep its whole chunk's text
    alive (polars' string views share buffers), ~2.5 GB at V1 scale against 0.5 GB without."""
    frames = [
        reader.scan(path, "labels", validate=False)
        .filter(keep)
        .select(
            file=pl.lit(i, pl.UInt16),
            key=image_key(),
            label_name="label_name",
            kind=_kind(),
            confidence=pl.col("confidence").cast(pl.Float32),
            bad=bad_image_id() | ~pl.col("confidence").is_between(0.0, 1.0).fill_null(False),
        )
        for i, path in enumerate(paths)
    ]
    return pl.concat(frames)


def check_rows(rows: pl.DataFrame, paths: Sequence[Path]) -> None:
    """Stop at a bad row; the reader's validating pass over its file names the line."""
    bad = rows.filter(pl.col("bad"))
    if bad.height:
        path = paths[bad.item(0, "file")]
        reader.scan(path, "labels", validate=True)  # raises InputError with file, line and value
        raise InputError("a label row of this file is malformed", path)


def merge(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (key, label_name): `human` the highest human Confidence of 0 or 1, `machine`
    the highest machine Confidence; null where the image has no such label of the class."""
    conf, kind = pl.col("confidence"), pl.col("kind")
    verdict = (kind == HUMAN) & conf.is_in([0.0, 1.0])
    # when/then, not conf.filter(...): plain max() aggregations stream, at a third of the cost
    return (
        rows.lazy()
        .select(
            "key",
            "label_name",
            human=pl.when(verdict).then(conf),
            machine=pl.when(kind == MACHINE).then(conf),
        )
        .group_by("key", "label_name")
        .agg(pl.col("human", "machine").max())
        .collect(engine="streaming")
    )


def count(rows: pl.DataFrame) -> LabelCounts:
    kind, conf = pl.col("kind"), pl.col("confidence")
    counted = rows.select(
        machine_rows=(kind == MACHINE).sum(),
        human_rows=(kind == HUMAN).sum(),
        other_source_rows=kind.is_null().sum(),
        human_not_0_or_1=((kind == HUMAN) & ~conf.is_in([0.0, 1.0])).sum(),
    )
    return LabelCounts(**counted.row(0, named=True))


def read_evidence(paths: Sequence[Path], mids: Sequence[str]) -> tuple[pl.DataFrame, LabelCounts]:
    """The merged evidence (key, label_name, human, machine) for these MIDs, and the rows read."""
    chosen = pl.Enum(sorted(set(mids)))
    rows = scan_rows(paths, pl.col("label_name").is_in(chosen.categories.implode()))
    rows = rows.with_columns(pl.col("label_name").cast(chosen)).collect(engine="streaming")
    check_rows(rows, paths)
    return merge(rows), count(rows)


def read_other_classes(paths: Sequence[Path], keys: pl.Series, mids: Sequence[str]) -> pl.DataFrame:
    """`--exclusive`'s pass: the merged evidence of every MID but these, on these images only."""
    others = ~pl.col("label_name").is_in(pl.Series(sorted(set(mids)), dtype=pl.String).implode())
    keep = image_key().is_in(keys.implode()) & others
    rows = scan_rows(paths, keep).collect(engine="streaming")
    check_rows(rows, paths)
    return merge(rows)
