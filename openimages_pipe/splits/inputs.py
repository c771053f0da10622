"""Reading the inputs of `build-splits`: the download manifest, the images and the label rows.

Owns the edge between the CSVs (read through `reader`, which owns Open Images' column names) and
the query in `query`: every image becomes a row of one table sorted by ImageID, whose row
number `img` stands for the image from then on; every label row becomes a few numbers (its
file, `img`, a categorical MID, a float32 confidence, machine or human) flagged as it is read, so
that the CSVs are parsed once: only when a row is bad does the reader read its file again, to
name the line. At full V1 scale: 9.2M images in 0.6 GB, 81M label rows in 1.2 GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from openimages_pipe.download import manifest, storage
from openimages_pipe.download.storage import Folder
from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader, releases

MANIFEST_COLUMNS = ("image_id", "status")
# Download statuses, best first: an image listed twice takes the better one. The manifest writes
# the first three; "other" is any other value, "not_in_manifest" an image the manifest lacks.
STATUSES = ("ok", "failed", "missing", "other", "not_in_manifest")
STATUS = pl.Enum(STATUSES)
TRAIN = "train"


def image_key() -> pl.Expr:
    """The ImageID as the 64-bit number it is: 8 bytes, not a 16-character string, and ordered
    like the (lower-case) IDs. Null where it is not hex."""
    return pl.col("image_id").str.to_integer(base=16, dtype=pl.UInt64, strict=False)


def bad_image_id() -> pl.Expr:
    """True where the reader would refuse the ImageID (`reader.IMAGE_ID_PATTERN`, 16 hex digits).

    The same test as the pattern (tests/test_splits_hash.py checks it on the edge cases), at a
    quarter of the cost on 81M rows: the hex parse that `image_key` does anyway accepts exactly
    [+]?[0-9a-fA-F]+, so 16 bytes without a leading '+' are 16 hex digits."""
    image_id = pl.col("image_id")
    parsed = image_key().is_not_null() & ~image_id.str.starts_with("+")
    return ~(parsed & (image_id.str.len_bytes() == 16)).fill_null(False)


def lookup(table: pl.Series, index: str | pl.Expr) -> pl.Expr:
    """`table[index]` on every row: the join of a dense row number to its row, as a gather."""
    return pl.lit(table).gather(pl.col(index) if isinstance(index, str) else index)


def _scan_each(paths: Sequence[Path], kind: str) -> pl.LazyFrame:
    """The files of one kind as one table, each row tagged with its file's position."""
    frames = [
        reader.scan(path, kind, validate=False).with_columns(file=pl.lit(i, pl.UInt16))
        for i, path in enumerate(paths)
    ]
    return pl.concat(frames, how="diagonal_relaxed")


def check_rows(frame: pl.DataFrame, paths: Sequence[Path], kind: str) -> None:
    """Stop at a bad row (flagged while reading); the reader's validating pass locates it."""
    bad = frame.lazy().filter(pl.col("bad")).select("file").head(1).collect()
    if bad.height:
        path = paths[bad.item()]
        reader.scan(path, kind, validate=True)  # raises InputError with file, line and value
        raise InputError(f"a row of this {kind} file is malformed", path)


def manifest_parts(folder: Folder) -> list[str]:
    """The keys of every file that records outcomes in a download folder (local or s3://): the
    merged manifests and the journal parts that an interrupted run has not merged yet (its
    images are in the shards already, as `status` counts them)."""
    parts = manifest.all_manifest_files(folder)
    if not parts:
        raise InputError(
            "no download manifest: expected manifest.parquet, manifest/*.parquet or the journal "
            "of a run (.journal/*/*.parquet)",
            folder.url,
        )
    return parts


def load_manifest(directory: Path | str) -> pl.DataFrame:
    """(key, status) per image of a download manifest, sorted by key; an image listed more than
    once takes its best status. Only `image_id` and `status` are read, so that manifests written
    by older or newer versions still work; a download merging its journal meanwhile is read
    whole (`manifest.read_listed`)."""
    return manifest.read_listed(storage.locate(directory), manifest_parts, _read_statuses)


def _read_statuses(parts: list[str], folder: Folder) -> pl.DataFrame:
    frames = [manifest.read_file(part, folder, MANIFEST_COLUMNS) for part in parts]
    status = pl.col("status").cast(pl.String)
    known = status.replace_strict(STATUSES[:3], STATUSES[:3], default="other").fill_null("other")
    ranked = pl.concat(frames).select(key=image_key(), status=known.cast(STATUS))
    table = ranked.drop_nulls("key").sort("key")
    keys = table["key"].to_numpy()
    if (keys[1:] == keys[:-1]).any():  # listed twice: the best status (Enum order) wins
        table = table.group_by("key", maintain_order=True).agg(pl.col("status").min())
    return table


def load_images(paths: Sequence[Path]) -> pl.LazyFrame:
    """ImageID, its key and subset from the images CSVs, flagging rows the reader would refuse."""
    return _scan_each(paths, "images").select(
        "file", "image_id", "subset", key=image_key(), bad=bad_image_id()
    )


def index_images(images: pl.DataFrame, manifest: pl.DataFrame | None) -> pl.DataFrame:
    """One row per image, sorted by key: img (row), key, image_id, subset, train, status, ok.

    An ID listed twice in one subset is one image; listed in two subsets, it is an error (it
    would be in both T and V). Rows with an empty Subset are left out (counted by the caller)."""
    ordered = images.lazy().drop_nulls("subset").sort("key").collect().lazy()
    repeated = pl.col("key") == pl.col("key").shift(1)
    clash = ordered.filter(repeated & (pl.col("subset") != pl.col("subset").shift(1))).head(1)
    clash = clash.collect()
    if clash.height:
        raise InputError(
            "this ImageID is listed in two subsets; an image has one subset",
            value=clash.item(0, "image_id"),
        )
    table = (
        ordered.filter(~repeated.fill_null(False))
        .with_row_index("img")
        .select("img", "key", "image_id", "subset", train=pl.col("subset") == TRAIN)
    )
    if manifest is None:
        return table.with_columns(status=pl.lit(None, STATUS), ok=pl.lit(True)).collect()
    return (
        table.with_columns(status=manifest_status(manifest))
        .with_columns(ok=pl.col("status") == STATUSES[0])
        .collect()
    )


def manifest_status(manifest: pl.DataFrame) -> pl.Expr:
    """Each image's status, looked up in the manifest's sorted keys by binary search: a join
    of 9M by 9M rows at about half the cost of a hash join."""
    if manifest.height == 0:
        return pl.lit(STATUSES[-1], STATUS)
    keys = manifest["key"]
    at = pl.lit(keys).search_sorted(pl.col("key")).clip(upper_bound=len(keys) - 1)
    found = lookup(keys, at) == pl.col("key")
    absent = pl.lit(STATUSES[-1], STATUS)
    return pl.when(found).then(lookup(manifest["status"], at)).otherwise(absent)


def load_labels(paths: Sequence[Path], images: pl.DataFrame) -> pl.LazyFrame:
    """Every label row: its file, image row `img` (null: not in the images CSV), MID, confidence,
    human (True: a verification, False: machine, null: another Source), and its image's flags."""
    source = pl.col("source")
    human = (
        pl.when(source.is_in(sorted(releases.all_human_sources())))
        .then(True)
        .when(source.is_in(sorted(releases.all_machine_sources())))
        .then(False)
    )
    confidence_ok = pl.col("confidence").is_between(0.0, 1.0).fill_null(False)
    bad = bad_image_id() | pl.col("label_name").is_null() | ~confidence_ok
    attached = images.lazy().select("key", "img", "train", "ok")
    return (
        _scan_each(paths, "labels")
        .select(
            "file",
            key=image_key(),
            mid=pl.col("label_name").cast(pl.Categorical),
            confidence=pl.col("confidence").cast(pl.Float32),
            human=human,
            bad=bad,
        )
        # Not validate="m:1": index_images made the keys unique, and checking it again here
        # doubles the cost of this join of 81M rows.
        .join(attached, on="key", how="left")
        .drop("key")
    )


def rows_per_file(frame: pl.DataFrame, files: int) -> list[int]:
    counted = frame.select(*((pl.col("file") == i).sum().alias(str(i)) for i in range(files)))
    return list(counted.row(0))


def read_images(paths: Sequence[Path], downloaded: Path | str | None) -> tuple[pl.DataFrame, dict]:
    """The images table (see `index_images`), checked, and what was read."""
    manifest = None if downloaded is None else load_manifest(downloaded)
    raw = load_images(paths).collect(engine="streaming")
    check_rows(raw, paths, "images")
    images = index_images(raw, manifest)
    without_subset = raw["subset"].null_count()
    counts = {
        "rows": raw.height,
        "rows_per_file": rows_per_file(raw, len(paths)),
        "distinct": images.height,
        "without_subset": without_subset,
        "repeated_rows": raw.height - without_subset - images.height,
        "by_subset": dict(images.group_by("subset").len().sort("subset").iter_rows()),
    }
    if manifest is not None:
        by_status = images.group_by("status").len().sort("status")
        counts["by_status"] = {str(k): v for k, v in by_status.iter_rows()}
    return images, counts


def read_labels(
    paths: Sequence[Path], images: pl.DataFrame, min_confidence: float
) -> tuple[pl.DataFrame, dict]:
    """Every label row (see `load_labels`), checked, and what was read and will be dropped."""
    raw = load_labels(paths, images).collect(engine="streaming")
    check_rows(raw, paths, "labels")
    human, conf, known = pl.col("human"), pl.col("confidence"), pl.col("img").is_not_null()
    below = known & ~human & (conf < pl.lit(min_confidence, pl.Float32))
    counts = raw.select(
        rows=pl.len(),
        machine_rows=(~human).sum(),
        human_rows=human.sum(),
        label_rows_other_source=human.is_null().sum(),
        label_rows_image_not_in_images_csv=(~known & human.is_not_null()).sum(),
        machine_labels_below_min_confidence=below.sum(),
        human_labels_not_0_or_1=(known & human & (conf != 0) & (conf != 1)).sum(),
    ).row(0, named=True)
    counts["rows_per_file"] = rows_per_file(raw, len(paths))
    return raw, counts


def verified_train_to_v(
    images: pl.DataFrame, labels: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """`--verified-from all`: every training image with a human verdict (Confidence 0 or 1) is
    no longer a training image, so it leaves T and joins V with its machine labels and verdicts.
    Returns both tables re-flagged and how many images moved."""
    verdict = pl.col("human").fill_null(False) & pl.col("confidence").is_in([0.0, 1.0])
    moved = labels.filter(verdict & pl.col("train").fill_null(False)).get_column("img").unique()
    train = pl.col("train") & ~pl.col("img").is_in(moved.implode())
    return images.with_columns(train), labels.with_columns(train), moved.len()
