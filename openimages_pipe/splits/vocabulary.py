"""The vocabulary of the splits: which classes they use, each class's index and its name.

Owns reading class files (a labelmap or trainable-classes list, one MID a line; a
class-descriptions file, MID and name, with or without a header; V1's `dict.csv`), the V1 rule
that computes a vocabulary from the data, and the class table handed on to `build-splits`:
`class_index` is the position of the MID in the sorted vocabulary, so the same set of MIDs always
gets the same indices, whichever file or rule chose it.

Also owns the class resolver (`ClassResolver`): the names and MIDs a user types on the command line
(`--classes Cat "Teddy bear" /m/0bt9lr`), matched against a class names file, for `select`,
`download --classes` and `build-splits --classes`. An unknown name is an error that suggests the
nearest names; a name that several MIDs share selects all of them, with a note saying so.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from openimages_pipe import packaged
from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader
from openimages_pipe.formats.kinds import MID_PREFIXES
from openimages_pipe.formats.reader import FileKind

# Open Images V1's README: "only around 6000 labels are considered 'trainable' with at least 50
# images in the validation set and at least 20 images in the training set". We count training
# images with a machine label of the class and V images with a human-verified positive.
V1_MIN_TRAIN_IMAGES = 20
V1_MIN_VAL_IMAGES = 50
CLASS_SCHEMA = {"class_index": pl.Int32, "label_name": pl.String, "display_name": pl.String}
SUGGESTIONS = 3  # nearest names offered for an unknown one


def read_class_file(path: Path) -> pl.DataFrame:
    """(label_name, display_name) from a class list or a class-descriptions file, in file order.

    A list has no names: display_name is null there. Repeated MIDs keep their first row.
    """
    info = reader.inspect_csv(path)
    if info.kind not in (FileKind.CLASS_LIST, FileKind.CLASS_DESCRIPTIONS):
        raise InputError(
            f"expected a class list (one MID a line) or a class-descriptions file (MID,name), "
            f"but this is a {info.kind.value} file",
            path,
            1,
        )
    table = reader.scan(path, info.kind.family).collect()
    if "display_name" not in table.columns:
        table = table.with_columns(display_name=pl.lit(None, pl.String))
    return (
        table.select(pl.col("label_name").str.strip_chars(), pl.col("display_name"))
        .filter(pl.col("label_name") != "")
        .unique("label_name", keep="first", maintain_order=True)
    )


def read_class_names(path: Path) -> pl.DataFrame:
    """(label_name, display_name) from `dict.csv` or any class-descriptions file."""
    names = read_class_file(path)
    if names["display_name"].null_count() == names.height and names.height:
        raise InputError("expected class names (MID,name), but this file has only MIDs", path, 1)
    return names


def trainable(counts: pl.DataFrame, min_train_images: int, min_val_images: int) -> pl.Series:
    """MIDs passing the V1 rule, from (label_name, train_images, val_images) counts."""
    keep = (pl.col("train_images") >= min_train_images) & (pl.col("val_images") >= min_val_images)
    return counts.filter(keep)["label_name"]


def class_table(mids: pl.Series, names: pl.DataFrame | None) -> pl.DataFrame:
    """The vocabulary: class_index = position of the MID in sorted order, with its name if known."""
    table = (
        pl.DataFrame({"label_name": mids.cast(pl.String)})
        .unique()
        .sort("label_name")
        .with_row_index("class_index")
    )
    if names is None:
        return table.with_columns(display_name=pl.lit(None, pl.String)).cast(CLASS_SCHEMA)
    return (
        table.join(names, on="label_name", how="left", validate="1:1")
        .sort("class_index")
        .select(list(CLASS_SCHEMA))
        .cast(CLASS_SCHEMA)
    )


def merge_names(*tables: pl.DataFrame | None) -> pl.DataFrame | None:
    """One name per MID; earlier tables win (e.g. --class-names over a descriptions --classes)."""
    given = [t.drop_nulls("display_name") for t in tables if t is not None]
    if not given:
        return None
    return pl.concat(given).unique("label_name", keep="first", maintain_order=True)


def class_of_rank(mids: pl.DataFrame, classes: pl.DataFrame) -> pl.Series:
    """rank -> class_index (null outside the vocabulary), for every MID seen in the labels."""
    return mids.join(
        classes.select("label_name", "class_index"), on="label_name", how="left", validate="1:1"
    ).sort("rank")["class_index"]


def with_counts(classes: pl.DataFrame, per_mid: pl.DataFrame) -> pl.DataFrame:
    """classes.parquet: machine labels in T (t_count), verifications in V (v_pos, v_neg)."""
    counted = ("t_count", "v_pos", "v_neg")
    return (
        classes.join(
            per_mid.select("label_name", *counted), on="label_name", how="left", validate="1:1"
        )
        .with_columns(pl.col(*counted).fill_null(0).cast(pl.Int64))
        .sort("class_index")
    )


def link_rot(classes: pl.DataFrame, per_mid: pl.DataFrame) -> pl.DataFrame:
    """Per class: images of T and V that would carry it (a machine label in T, a verified
    positive in V) had every image been downloaded, how many were, and the share lost."""
    counts = per_mid.select(
        "label_name",
        images=pl.col("train_images") + pl.col("val_images"),
        kept=pl.col("t_count") + pl.col("v_pos"),
    )
    return (
        classes.join(counts, on="label_name", how="left", validate="1:1")
        .with_columns(pl.col("images", "kept").fill_null(0).cast(pl.Int64))
        .with_columns(lost=pl.col("images") - pl.col("kept"))
        .with_columns(lost_share=pl.col("lost") / pl.col("images"))
        .sort("lost_share", "images", descending=True, nulls_last=True)
    )


class MatchedBy(enum.StrEnum):
    """How a requested class was found in the class names."""

    MID = "mid"  # given as a MID
    NAME = "name"  # given as a display name, case and spaces ignored


@dataclass(frozen=True)
class ResolvedClass:
    """One class a user asked for, and the MIDs it stands for (several where a name is shared)."""

    query: str
    matched_by: MatchedBy
    label_names: tuple[str, ...]
    display_names: tuple[str | None, ...]

    @property
    def note(self) -> str | None:
        """What a user should know about this match, or None."""
        if len(self.label_names) > 1:
            mids = ", ".join(self.label_names)
            return f'"{self.query}" names {len(self.label_names)} classes ({mids}): all selected'
        if self.display_names == (None,):
            return f"{self.query} is not in the class names: selected by its MID alone"
        return None


def name_key(name: str) -> str:
    """A display name as matched: case, spaces and underscores (OIDv4_ToolKit's `Teddy_bear`)
    ignored. On V1's dict.csv this merges no two different names (7,805 names, 7,805 keys)."""
    return "".join(name.replace("_", " ").split()).casefold()


def is_mid(text: str) -> bool:
    return text.startswith(MID_PREFIXES) and len(text) > 3 and " " not in text


class ClassResolver:
    """Requested classes -> MIDs, from a (label_name, display_name) table such as `dict.csv`."""

    def __init__(self, names: pl.DataFrame, path: Path | None = None) -> None:
        self.path = path
        self.name_of: dict[str, str | None] = {}
        self.mids_of: dict[str, list[str]] = {}  # name key -> MIDs, in file order
        self.spelling: dict[str, str] = {}  # name key -> the first display name written so
        for mid, display in names.select("label_name", "display_name").iter_rows():
            self.name_of.setdefault(mid, display)
            if display:
                key = name_key(display)
                self.mids_of.setdefault(key, []).append(mid)
                self.spelling.setdefault(key, display)

    def resolve(self, values: Sequence[str]) -> tuple[ResolvedClass, ...]:
        """Each value as one class, or, if it is not one, as a comma-separated list of classes
        (so that `--classes "ducks, geese and swans"` and `--classes Cat,Dog` both work)."""
        found = []
        for value in values:
            if self._find(value.strip()) is not None or "," not in value:
                found.append(self.one(value))
            else:
                found += [self.one(part) for part in value.split(",") if part.strip()]
        if not found:
            raise InputError("--classes: no class given")
        return tuple(found)

    def one(self, query: str) -> ResolvedClass:
        query = query.strip()
        hit = self._find(query)
        if hit is not None:
            return hit
        if is_mid(query):  # a MID the names lack (a later release's): taken as it is
            return ResolvedClass(query, MatchedBy.MID, (query,), (None,))
        raise InputError(self._unknown(query), self.path)

    def _find(self, query: str) -> ResolvedClass | None:
        if query in self.name_of:
            return ResolvedClass(query, MatchedBy.MID, (query,), (self.name_of[query],))
        mids = self.mids_of.get(name_key(query))
        if not mids:
            return None
        return ResolvedClass(query, MatchedBy.NAME, tuple(mids), tuple(map(self.name_of.get, mids)))

    def _unknown(self, query: str) -> str:
        near = difflib.get_close_matches(name_key(query), self.mids_of, n=SUGGESTIONS, cutoff=0.6)
        known = f"{len(self.mids_of):,} names; case, spaces and underscores are ignored"
        if not near:
            return f'unknown class "{query}": no class of that name or MID ({known})'
        shown = ", ".join(f'"{self.spelling[k]}"' for k in near)
        return f'unknown class "{query}": did you mean: {shown}? ({known})'


def resolved_table(resolved: Sequence[ResolvedClass]) -> pl.DataFrame:
    """(label_name, display_name, query) of every MID selected, first request first, once each."""
    rows = [
        (mid, name, r.query)
        for r in resolved
        for mid, name in zip(r.label_names, r.display_names, strict=True)
    ]
    return pl.DataFrame(rows, schema=["label_name", "display_name", "query"], orient="row").unique(
        "label_name", keep="first", maintain_order=True
    )


def given_classes(
    classes: Path | tuple[str, ...], class_names: Path | None
) -> tuple[pl.DataFrame, dict]:
    """`build-splits --classes`: a class file, or names and MIDs resolved against --class-names
    (default: the shipped V1 dict.csv). The (label_name, display_name) table and its record."""
    if isinstance(classes, Path):
        return read_class_file(classes), {"source": "file", "path": str(classes)}
    names_path = class_names or packaged.dict_csv()
    resolved = ClassResolver(read_class_names(names_path), names_path).resolve(classes)
    how = {
        "source": "command_line",
        "requested": list(classes),
        "class_names": str(names_path),
        "resolved": [resolved_record(r) for r in resolved],
    }
    return resolved_table(resolved).drop("query"), how


def resolved_record(r: ResolvedClass) -> dict:
    return {
        "query": r.query,
        "matched_by": r.matched_by.value,
        "label_names": list(r.label_names),
        "display_names": list(r.display_names),
        **({"note": r.note} if r.note else {}),
    }
