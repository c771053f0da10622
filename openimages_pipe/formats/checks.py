"""Validating Open Images CSVs: the value checks, and locating a bad row or line in its file.

Owns what makes a value bad (ImageID, LabelName, Confidence, OriginalSize, Rotation) and how the
first bad row of a file is found in one streaming pass and reported by file, line and value. The
line is found only on that error path, by re-reading the file with the csv module, so newlines
inside quoted fields are counted right.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import polars as pl

from openimages_pipe.errors import InputError

IMAGE_ID_PATTERN = r"^[0-9a-fA-F]{16}$"


class CsvInfo(Protocol):
    """What the checks need to know of a file: the reader's `CsvInfo` has it (and the reader
    imports the checks, so they name its shape, not its class)."""

    path: Path
    has_header: bool
    columns: tuple[str, ...]

    @property
    def normalised_columns(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class _Check:
    column: str
    message: str
    bad: pl.Expr


def _number(column: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(column).str.strip_chars().cast(dtype, strict=False)


_CHECKS = (
    _Check(
        "image_id",
        "ImageID is not 16 hex digits",
        ~pl.col("image_id").fill_null("").str.contains(IMAGE_ID_PATTERN),
    ),
    _Check("label_name", "LabelName is empty", pl.col("label_name").is_null()),
    _Check(
        "confidence",
        "Confidence is not a number in [0, 1]",
        ~_number("confidence", pl.Float64).is_between(0.0, 1.0).fill_null(False),
    ),
    _Check(
        "original_size",
        "OriginalSize is not a whole number of bytes",
        pl.col("original_size").is_not_null()
        & (_number("original_size", pl.Int64).is_null() | (_number("original_size", pl.Int64) < 0)),
    ),
    _Check(
        "rotation",
        "Rotation is not a number",
        pl.col("rotation").is_not_null() & _number("rotation", pl.Float64).is_null(),
    ),
)


def _collect(info: CsvInfo, lf: pl.LazyFrame) -> pl.DataFrame:
    try:
        return lf.collect(engine="streaming")
    except pl.exceptions.PolarsError as e:
        raise malformed(info, e) from None


def malformed(info: CsvInfo, error: Exception) -> InputError:
    """A parse error located by re-reading the file with the csv module (error path only)."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    width = len(info.columns)
    with open(info.path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        start = 1
        for row in reader:
            if row and len(row) != width and not (info.has_header and reader.line_num == 1):
                message = f"malformed CSV: {len(row)} fields where the header has {width}"
                return InputError(message, info.path, start, ",".join(row)[:200])
            start = reader.line_num + 1
    return InputError(f"malformed CSV: {first_line}", info.path)


def validate(info: CsvInfo, raw: pl.LazyFrame) -> None:
    """One streaming pass that stops at the first bad row and reports where it is."""
    columns = set(info.normalised_columns)
    checks = [c for c in _CHECKS if c.column in columns]
    if not checks:
        _collect(info, raw.select(pl.len()))  # still parse the whole file once
        return
    bad_any = pl.any_horizontal([c.bad for c in checks])
    found = _collect(info, raw.with_row_index("_row").filter(bad_any).head(1))
    if found.height == 0:
        return
    failed = next(c for c in checks if found.select(c.bad).item())
    raise InputError(
        failed.message,
        info.path,
        line_of_record(info.path, found["_row"][0], info.has_header),
        found[failed.column][0],
    )


def line_of_record(path: Path, index: int, has_header: bool) -> int:
    """The 1-based line on which data record `index` starts, counting newlines inside quotes."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        start, seen = 1, -1
        for row in reader:
            if (has_header and reader.line_num == 1) or not row:
                start = reader.line_num + 1
                continue
            seen += 1
            if seen == index:
                return start
            start = reader.line_num + 1
    return start
