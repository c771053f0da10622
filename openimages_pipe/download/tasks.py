"""The read stage of `download`: images CSVs -> the ImageTasks still to do, streamed.

Owns which rows a run takes (subset, ImageID list, share of a split download, limit), which of them
the manifest already settled, and how a row becomes an ImageTask with its candidate URLs. The query
is lazy and streamed in batches, so a 9M-row CSV is read in bounded memory and `--limit` stops
reading early. A row whose ImageID is not 16 hex digits is not fetched: it is reported (line-free,
by value) and counted, and the rest of the file goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from openimages_pipe.download.records import Candidate, ImageTask, Source
from openimages_pipe.errors import InputError
from openimages_pipe.formats import checks as csv_checks
from openimages_pipe.formats import reader

BATCH_ROWS = 20_000
MIRROR_TEMPLATE = "https://open-images-dataset.s3.amazonaws.com/{subset}/{image_id}.jpg"
_PRIOR_COLUMNS = ("image_id", "status", "first_seen", "attempts", "last_ok")


@dataclass(frozen=True)
class InputConfig:
    csvs: tuple[Path, ...]
    subsets: tuple[str, ...] = ()
    ids_file: Path | None = None
    limit: int | None = None
    share_index: int = 0
    share_count: int = 1
    sources: tuple[Source, ...] = (Source.ORIGINAL, Source.THUMBNAIL, Source.MIRROR)
    mirror_template: str = MIRROR_TEMPLATE


@dataclass(frozen=True)
class Batch:
    """One batch of work: the tasks, what the manifest knew of them, and the rows refused."""

    tasks: list[ImageTask]
    prior: dict[str, dict]  # image_id -> status, first_seen, attempts, last_ok of earlier runs
    invalid_ids: list[str]


def read_ids(path: Path) -> pl.DataFrame:
    """An `--ids` file: one ImageID per line (a header line `ImageID` is allowed)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise InputError(f"cannot read the ImageID list ({e.strerror})", path) from None
    ids = []
    for number, line in enumerate(lines, start=1):
        value = line.strip().split(",")[0].strip('"')
        if not value or (number == 1 and value.lower() in ("imageid", "image_id")):
            continue
        if not reader.is_image_id(value):
            raise InputError("ImageID is not 16 hex digits", path, number, value)
        ids.append(value.lower())
    return pl.DataFrame({"image_id": ids}, schema={"image_id": pl.String}).unique()


def select_rows(cfg: InputConfig, done: pl.DataFrame, prior: pl.DataFrame) -> pl.LazyFrame:
    """The rows of this run, in CSV order, with a `valid` flag and the manifest's prior columns."""
    lf = reader.scan(cfg.csvs, reader.FileKind.IMAGES, validate=False)
    lf = lf.with_columns(
        pl.col("image_id").str.to_lowercase(),
        valid=pl.col("image_id").fill_null("").str.contains(reader.IMAGE_ID_PATTERN),
    )
    if cfg.subsets and "subset" in lf.collect_schema():
        lf = lf.filter(pl.col("subset").is_in(cfg.subsets))
    if cfg.ids_file is not None:
        lf = lf.join(read_ids(cfg.ids_file).lazy(), on="image_id", how="semi")
    if cfg.share_count > 1:
        lf = lf.filter(in_share(cfg.share_index, cfg.share_count) | ~pl.col("valid"))
    if cfg.limit is not None:
        lf = lf.head(cfg.limit)
    lf = lf.join(done.lazy(), on="image_id", how="anti", maintain_order="left")
    previous = prior.select(_PRIOR_COLUMNS).lazy()
    return lf.join(previous, on="image_id", how="left", validate="m:1", maintain_order="left")


def in_share(index: int, count: int) -> pl.Expr:
    """Share of an ImageID: its 16 hex digits as an integer, modulo the number of shares.

    ImageIDs are uniformly distributed hex strings, so this is balanced, and anyone can compute it
    in any language: `int(image_id, 16) % count == index`.
    """
    value = pl.col("image_id").str.to_integer(base=16, dtype=pl.UInt64, strict=False)
    return (value % count) == index


def _candidates(row: dict, cfg: InputConfig) -> tuple[Candidate, ...]:
    urls = {
        Source.ORIGINAL: row.get("original_url"),
        Source.THUMBNAIL: row.get("thumbnail_300k_url"),
        Source.MIRROR: (
            cfg.mirror_template.format(subset=row["subset"], image_id=row["image_id"])
            if row.get("subset")
            else None
        ),
    }
    return tuple(Candidate(s, urls[s]) for s in cfg.sources if urls[s])


def task_from_row(row: dict, cfg: InputConfig) -> ImageTask:
    rotation = row.get("rotation")
    return ImageTask(
        image_id=row["image_id"],
        subset=row.get("subset"),
        candidates=_candidates(row, cfg),
        original_size=row.get("original_size"),
        original_md5=row.get("original_md5"),
        rotation=None if rotation is None or rotation != rotation else rotation,
    )


def iter_batches(cfg: InputConfig, done: pl.DataFrame, prior: pl.DataFrame) -> Iterator[Batch]:
    lf = select_rows(cfg, done, prior)
    try:
        for frame in reader.iter_batches(lf, BATCH_ROWS):
            yield _batch(frame, cfg)
    except pl.exceptions.PolarsError as e:
        raise _located(cfg.csvs, e) from None


def _batch(frame: pl.DataFrame, cfg: InputConfig) -> Batch:
    tasks, prior, invalid = [], {}, []
    for row in frame.iter_rows(named=True):
        if not row["valid"]:
            invalid.append(row["image_id"] or "")
            continue
        tasks.append(task_from_row(row, cfg))
        if row["first_seen"] is not None:
            prior[row["image_id"]] = {k: row[k] for k in _PRIOR_COLUMNS[1:]}
    return Batch(tasks, prior, invalid)


def _located(csvs: tuple[Path, ...], error: Exception) -> InputError:
    """Find which file broke the stream, and where, for the one-line error."""
    for path in csvs:
        info = reader.inspect_csv(path)
        located = csv_checks.malformed(info, error)
        if located.line is not None:
            return located
    return InputError(f"malformed CSV: {str(error).strip().splitlines()[0]}", csvs[0])


def count_rows(cfg: InputConfig, done: pl.DataFrame, prior: pl.DataFrame) -> int:
    """How many rows this run will look at (the progress bar's total): one streaming pass."""
    try:
        return select_rows(cfg, done, prior).select(pl.len()).collect(engine="streaming").item()
    except pl.exceptions.PolarsError as e:
        raise _located(cfg.csvs, e) from None
