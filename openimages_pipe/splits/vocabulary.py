"""The vocabulary of the splits: which classes they use, each class's index and its name.

Owns reading class files (a labelmap or trainable-classes list, one MID a line; a
class-descriptions file, MID and name, with or without a header; V1's `dict.csv`), the V1 rule
that computes a vocabulary from the data, and the class table handed on to `build-splits`:
`class_index` is the position of the MID in the sorted vocabulary, so the same set of MIDs always
gets the same indices, whichever file or rule chose it.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader
from openimages_pipe.formats.reader import FileKind

# Open Images V1's README: "only around 6000 labels are considered 'trainable' with at least 50
# images in the validation set and at least 20 images in the training set". We count training
# images with a machine label of the class and V images with a human-verified positive.
V1_MIN_TRAIN_IMAGES = 20
V1_MIN_VAL_IMAGES = 50
CLASS_SCHEMA = {"class_index": pl.Int32, "label_name": pl.String, "display_name": pl.String}


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
