"""Reading Open Images CSVs: recognise, normalise, type, validate and stream them.

This module owns the edge where Open Images' column names (`ImageID`, `OriginalURL`, ...) become
oi-pipe's snake_case names; nothing past it sees the official spelling. It hands on polars
LazyFrames, so a 9M-row images CSV or an 80M-row labels CSV is scanned in bounded memory and never
turned into Python objects all at once.

Each file is scanned on its own and the scans are concatenated, so several files of one kind read
as one table whatever their line endings, BOMs or column order. Validation (`checks`) is one
streaming pass per file that stops at the first bad row.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from openimages_pipe.errors import InputError
from openimages_pipe.formats import checks as csv_checks
from openimages_pipe.formats import kinds
from openimages_pipe.formats.kinds import MID_PREFIXES, FileKind

IMAGE_ID_PATTERN = csv_checks.IMAGE_ID_PATTERN
_IMAGE_ID = re.compile(IMAGE_ID_PATTERN)
# Source values are sniffed from the first rows only: enough to tell machine from human files,
# cheap enough to do for every input before the real scan.
SNIFF_ROWS = 1000

COLUMN_NAMES = {
    "ImageID": "image_id",
    "Subset": "subset",
    "OriginalURL": "original_url",
    "OriginalLandingURL": "original_landing_url",
    "License": "license",
    "AuthorProfileURL": "author_profile_url",
    "Author": "author",
    "Title": "title",
    "OriginalSize": "original_size",
    "OriginalMD5": "original_md5",
    "Thumbnail300KURL": "thumbnail_300k_url",
    "Rotation": "rotation",
    "Source": "source",
    "LabelName": "label_name",
    "Confidence": "confidence",
    "DisplayName": "display_name",
}


REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "images": ("ImageID", "OriginalURL"),
    "labels": ("ImageID", "Source", "LabelName", "Confidence"),
    "class_descriptions": ("LabelName", "DisplayName"),
    "class_list": ("LabelName",),
    "boxes": ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"),
    "segmentations": ("MaskPath", "ImageID", "LabelName"),
    "relationships": ("ImageID",),
    "point_labels": ("ImageID", "LabelName", "X", "Y"),
    "narratives": ("image_id", "caption"),
}
HEADERLESS_COLUMNS = {
    FileKind.CLASS_DESCRIPTIONS: ("LabelName", "DisplayName"),
    FileKind.CLASS_LIST: ("LabelName",),
}


@dataclass(frozen=True)
class CsvInfo:
    """What a CSV is, found from its first rows."""

    path: Path
    kind: FileKind
    has_header: bool
    columns: tuple[str, ...]  # official names, in file order (implied for headerless files)
    releases: tuple[str, ...]  # releases whose file of this kind has this header (and Sources)
    sources: tuple[str, ...] = ()  # Source values of the first rows (labels and boxes)

    @property
    def normalised_columns(self) -> tuple[str, ...]:
        return tuple(COLUMN_NAMES.get(c, c) for c in self.columns)


def _first_rows(path: Path, n: int) -> list[list[str]]:
    return [row for _, _, row in itertools.islice(csv_checks.records(path), n)]


def is_image_id(value: str) -> bool:
    return bool(_IMAGE_ID.match(value))


def inspect_csv(path: str | Path) -> CsvInfo:
    """Recognise a CSV's kind and releases from its header (or a headerless file's shape) and,
    for labels and boxes, the Source values of its first rows."""
    path = Path(path)
    rows = _first_rows(path, SNIFF_ROWS + 1)
    if not rows or not rows[0]:
        raise InputError("empty file: expected an Open Images CSV", path, 1)
    first = kinds.header_cells(rows[0])
    if first[0].startswith(MID_PREFIXES):
        kind = FileKind.CLASS_DESCRIPTIONS if len(first) >= 2 else FileKind.CLASS_LIST
        columns, has_header, sources = HEADERLESS_COLUMNS[kind], False, frozenset()
    else:
        kinds.refuse_headerless(path, rows[0])
        kind = kinds.kind_from_header(path, first, rows[1:])
        columns, has_header = tuple(first), True
        sources = kinds.sources_seen(first, rows[1:])
    found = kinds.releases_of(kind, columns, has_header, sources)
    return CsvInfo(path, kind, has_header, columns, found, tuple(sorted(sources)))


def _check_required(info: CsvInfo) -> None:
    missing = [c for c in REQUIRED_COLUMNS[info.kind.family] if c not in info.columns]
    if missing:
        raise InputError(
            f"missing required column {', '.join(missing)} in this {info.kind.value} file "
            f"(found: {', '.join(info.columns)})",
            info.path,
            1,
        )


def _raw_scan(info: CsvInfo) -> pl.LazyFrame:
    lf = pl.scan_csv(
        info.path,
        has_header=info.has_header,
        new_columns=list(info.columns),  # the header as read, stripped (see kinds.header_cells)
        infer_schema=False,  # all text here; typed by _typed so that a bad value can be located
    )
    return lf.rename(dict(zip(info.columns, info.normalised_columns, strict=True)))


_TYPES = {"original_size": pl.Int64, "rotation": pl.Float64, "confidence": pl.Float64}


def _typed(lf: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    casts = [
        pl.col(c).str.strip_chars().cast(t, strict=False) for c, t in _TYPES.items() if c in columns
    ]
    lf = lf.with_columns(casts)
    if "rotation" in columns:  # real files write a missing rotation as "nan" or leave it empty
        lf = lf.with_columns(pl.col("rotation").fill_nan(None))
    return lf


def _as_family(kind: FileKind | str | None) -> str | None:
    if kind is None:
        return None
    return kind.family if isinstance(kind, FileKind) else FileKind(kind).family


def scan(
    paths: str | Path | Sequence[str | Path],
    kind: FileKind | str | None = None,
    validate: bool = True,
) -> pl.LazyFrame:
    """Several CSVs of one kind as one lazy, typed table with normalised column names.

    `kind` (a FileKind or a family: images, labels, class_descriptions, class_list) is checked
    against what each file is; without it, all files must simply be of one family. With `validate`,
    each file is scanned once now and the first bad value raises an InputError naming file and line.
    """
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise InputError("no input files given")
    infos = [inspect_csv(p) for p in paths]
    family = _as_family(kind) or infos[0].kind.family
    frames = []
    for info in infos:
        if info.kind.family != family:
            raise InputError(
                f"expected a {family} file, but this is a {info.kind.value} file", info.path, 1
            )
        _check_required(info)
        raw = _raw_scan(info)
        if validate:
            csv_checks.check_ragged(info)
            csv_checks.validate(info, raw)
        frames.append(_typed(raw, info.normalised_columns))
    return pl.concat(frames, how="diagonal_relaxed")


def iter_batches(lf: pl.LazyFrame, rows: int = 100_000) -> Iterator[pl.DataFrame]:
    """Stream a scan as DataFrames of at most `rows` rows, in file order, in bounded memory."""
    yield from lf.collect_batches(chunk_size=rows, maintain_order=True)


def read_class_descriptions(path: str | Path) -> pl.DataFrame:
    """MID -> display name, from V1's dict.csv or any release's class-descriptions file."""
    return scan(path, FileKind.CLASS_DESCRIPTIONS).collect()
