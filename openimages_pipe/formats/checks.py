"""Validating Open Images CSVs: the value checks, and locating a bad row or line in its file.

Owns what makes a value bad (ImageID, LabelName, Confidence, OriginalSize, Rotation) and how the
first bad row of a file is found in one streaming pass and reported by file, line and value. The
line is found only on that error path, by re-reading the file with the csv module, so newlines
inside quoted fields are counted right.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
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


def records(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of every record, as the csv module reads them (newlines
    inside quotes counted right); bad bytes and unreadable records are an InputError at their line.

    The bytes are decoded a line at a time, so that bad UTF-8 late in a file is reported by its
    line, not by a byte offset; a field past the csv module's limit (131,072 characters: no Open
    Images field comes near it) is reported at its line too."""
    number = 0

    def lines(f) -> Iterator[str]:
        nonlocal number
        for number, raw in enumerate(f, start=1):  # noqa: B007 (read by the caller's except)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                reason = f"not UTF-8 text ({e.reason} at byte {e.start + 1} of the line)"
                raise InputError(reason, path, number) from None
            yield text.removeprefix("\ufeff") if number == 1 else text

    try:
        with open(path, "rb") as f:
            rows = csv.reader(lines(f))
            start = 1
            for row in rows:
                yield start, rows.line_num, row
                start = rows.line_num + 1
    except csv.Error as e:
        raise InputError(f"malformed CSV: {e}", path, number) from None
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except OSError as e:  # a folder, no permission, an I/O error
        raise InputError(f"cannot read this file ({e.strerror})", path) from None


def malformed(info: CsvInfo, error: Exception) -> InputError:
    """A parse error located by re-reading the file with the csv module (error path only)."""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    located = ragged(info)
    return located or InputError(f"malformed CSV: {first_line}", info.path)


def ragged(info: CsvInfo, after: int = 0) -> InputError | None:
    """The first record ending past line `after` with more or fewer fields than the header."""
    width = len(info.columns)
    for start, end, row in records(info.path):
        if end <= after or not row or (info.has_header and start == 1):
            continue
        if len(row) != width:
            message = f"malformed CSV: {len(row)} fields where the header has {width}"
            return InputError(message, info.path, start, ",".join(row)[:200])
    return None


def check_ragged(info: CsvInfo) -> None:
    """Refuse a file with a record of the wrong field count: polars reads a short record with its
    last columns empty, so a value that lost its comma would shift every column after it.

    One streaming pass over the raw lines counts the commas outside quotes; only where a line's
    count differs (a ragged record, or a quoted field across lines) is the file re-read with the
    csv module, from that line on, to tell which."""
    if len(info.columns) < 2:
        return
    lines = pl.scan_csv(info.path, has_header=False, separator="\x1f", quote_char=None,
                        new_columns=["line"], infer_schema=False)  # fmt: skip
    commas = pl.col("line").str.replace_all(r'"(?:[^"]|"")*"', "").str.count_matches(",")
    odd = lines.with_row_index("line_no", offset=1).filter(
        pl.col("line").is_not_null() & (commas != len(info.columns) - 1)
    )
    suspects = _collect(info, odd.select("line_no").head(1))
    if suspects.height:
        located = ragged(info, after=suspects.item() - 1)
        if located is not None:
            raise located


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
    seen, start = -1, 1
    for start, _, row in records(path):
        if (has_header and start == 1) or not row:
            continue
        seen += 1
        if seen == index:
            return start
    return start if seen >= 0 else 1
