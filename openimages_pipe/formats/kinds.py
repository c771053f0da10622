"""What an Open Images CSV is, from its header cells and first rows: its kind, and its releases.

Owns the kinds (images, image-level labels, class files, and the kinds that are not image-level
labels although they have ImageID, LabelName and Confidence columns: boxes, segmentations,
relationships, point labels, narratives), the early V1 layouts that were never released, and
which releases could have written a file: by its exact columns (from `manifests/`) and, for label
and box files, by the Source values it holds. Plain Python on the first rows: no polars.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path

from openimages_pipe.errors import InputError
from openimages_pipe.formats import releases

MID_PREFIXES = ("/m/", "/g/", "/t/")


class FileKind(enum.StrEnum):
    """What an Open Images CSV holds."""

    IMAGES = "images"
    MACHINE_LABELS = "machine_labels"
    HUMAN_LABELS = "human_labels"
    LABELS = "labels"  # image-level labels whose Source values mix machine and human
    CLASS_DESCRIPTIONS = "class_descriptions"
    CLASS_LIST = "class_list"
    BOXES = "boxes"
    SEGMENTATIONS = "segmentations"
    RELATIONSHIPS = "relationships"
    POINT_LABELS = "point_labels"
    NARRATIVES = "narratives"

    @property
    def family(self) -> str:
        """Kinds that can be read together as one table share a family."""
        return "labels" if self in LABEL_KINDS else self.value

    @property
    def is_labels(self) -> bool:
        return self in LABEL_KINDS


LABEL_KINDS = frozenset({FileKind.MACHINE_LABELS, FileKind.HUMAN_LABELS, FileKind.LABELS})
# What a kind that is not image-level labels holds, for the messages that refuse it as labels.
NOT_LABELS = {
    FileKind.BOXES: "bounding boxes (XMin, XMax, YMin, YMax)",
    FileKind.SEGMENTATIONS: "segmentation masks (MaskPath)",
    FileKind.RELATIONSHIPS: "visual relationships (LabelName1, LabelName2)",
    FileKind.POINT_LABELS: "point-level labels (X, Y)",
    FileKind.NARRATIVES: "localized narratives",
}
# A header with one of these column sets is that kind, whatever else it has.
_SHAPES = (
    (FileKind.SEGMENTATIONS, {"MaskPath"}),
    (FileKind.RELATIONSHIPS, {"LabelName1", "LabelName2"}),
    (FileKind.RELATIONSHIPS, {"RelationshipLabel"}),
    (FileKind.BOXES, {"XMin", "XMax", "YMin", "YMax"}),
    (FileKind.POINT_LABELS, {"X", "Y", "LabelName"}),
    (FileKind.NARRATIVES, {"caption", "image_id"}),
)
_EARLY_LABELS = (
    "an early V1 layout of labels.csv (October 2016), not the released one: the released files "
    "name the column LabelName, not Label"
)
_TSV = "a TsvHttpData-1.0 URL list (CVDF's open-images-dataset-*.tsv), not an Open Images CSV"
_WIDE_LABELS = (
    "an early V1 layout of labels.csv (September 2016), not the released one: one row per image "
    "of Confidence:LabelName cells; the released files have one ImageID,Source,LabelName,"
    "Confidence row per label"
)


def header_cells(row: Sequence[str]) -> list[str]:
    """Header cells as the manifests spell them: whitespace and any byte-order mark stripped
    (the genuine V6 oidv6-class-descriptions.csv header is `LabelName,DisplayName `)."""
    return [cell.strip().lstrip("\ufeff").strip() for cell in row]


def kind_from_header(path: Path, header: list[str], rows: list[list[str]]) -> FileKind:
    cols = set(header)
    for kind, needs in _SHAPES:
        if needs <= cols:
            return kind
    if "ImageID" in cols and cols & {"Source", "Confidence"} and "LabelName" in cols:
        return labels_kind(header, rows)
    if "ImageID" in cols and cols & {"OriginalURL", "Subset", "OriginalMD5"}:
        return FileKind.IMAGES
    if "LabelName" in cols and "DisplayName" in cols:
        return FileKind.CLASS_DESCRIPTIONS
    if "ImageID" in cols and "LabelName" in cols:
        return labels_kind(header, rows)
    raise InputError(_unknown(header), path, 1, ",".join(header)[:200])


def _unknown(header: list[str]) -> str:
    cols = set(header)
    if {"ImageID", "Label", "Confidence"} <= cols:
        return _EARLY_LABELS
    if len(header) >= 2 and header[0] == "ImageID" and header[1].startswith("Confidence:"):
        return _WIDE_LABELS
    if header and header[0].startswith("TsvHttpData"):
        return _TSV
    return "cannot tell what this CSV is: expected an images, labels or class-descriptions header"


def headerless_wide_labels(first: list[str]) -> bool:
    """A headerless row `ImageID,0.9:/m/05wrt,...`: the early wide layout, as its rows look."""
    return len(first) >= 2 and all(":" in c and c.split(":", 1)[1].startswith(MID_PREFIXES)
                                   for c in first[1:] if c)  # fmt: skip


def refuse_headerless(path: Path, first: list[str]) -> None:
    if headerless_wide_labels(first):
        raise InputError(_WIDE_LABELS, path, 1, ",".join(first)[:200])


def labels_kind(header: list[str], rows: list[list[str]]) -> FileKind:
    seen = sources_seen(header, rows)
    if "Source" not in header:
        return FileKind.LABELS
    if seen and seen <= releases.all_machine_sources():
        return FileKind.MACHINE_LABELS
    if seen and seen <= releases.all_human_sources():
        return FileKind.HUMAN_LABELS
    return FileKind.LABELS


def sources_seen(header: list[str], rows: list[list[str]]) -> frozenset[str]:
    if "Source" not in header:
        return frozenset()
    i = header.index("Source")
    return frozenset(r[i].strip() for r in rows if len(r) > i and r[i].strip())


def releases_of(kind: FileKind, columns: tuple[str, ...], has_header: bool,
                sources: frozenset[str]) -> tuple[str, ...]:  # fmt: skip
    """The releases that could have written this file: the exact columns of one of their files
    of this kind (any image-level label kind for labels), and every Source value seen among the
    ones they write (`human` is V1/V2's, `verification` V3's on, ...)."""
    kinds = {"machine_labels", "human_labels"} if kind.is_labels else {kind.value}
    found = []
    for r in releases.load_releases():
        files = (f for k in kinds for f in r.files_of(k))
        if not any(f.columns == columns and f.header == has_header for f in files):
            continue
        written = {*r.machine_sources, *r.human_sources, *r.box_sources}
        if sources and not sources <= written:
            continue
        found.append(r.id)
    return tuple(found)
