"""What `build-splits` writes: the Parquet files, and splits.json, the record of how they were made.

Owns the output schema (the trainer reads it: list<int32> labels, list<float32> confidences),
the record (resolved config, inputs with sizes and rows, every count and every drop, the split
hash), the config in every Parquet file's metadata (key `oi_pipe`), and atomic writing: each file
is written under a temporary name and renamed into place; splits.json is removed first and written
last, so a folder holding a splits.json holds a complete set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import polars as pl

from openimages_pipe import __version__
from openimages_pipe.errors import InputError
from openimages_pipe.formats import kinds, reader
from openimages_pipe.splits import split_hash

FORMAT_VERSION = 1
METADATA_KEY = "oi_pipe"
SPLITS_JSON = "splits.json"
PARQUETS = ("classes", "T", "V_train", "V_eval", "link_rot")
T_COLUMNS = ("image_id", "labels", "confidences")
V_COLUMNS = (*T_COLUMNS, "verified_pos", "verified_neg")
LIST_TYPES = {
    "labels": pl.List(pl.Int32),
    "confidences": pl.List(pl.Float32),
    "verified_pos": pl.List(pl.Int32),
    "verified_neg": pl.List(pl.Int32),
}
CLASS_COLUMNS = ("class_index", "label_name", "display_name", "t_count", "v_pos", "v_neg")
IN_METADATA = ("format_version", "config", "split_hash", "vocabulary")
READ_DROPS = (
    "label_rows_other_source",
    "label_rows_image_not_in_images_csv",
    "machine_labels_below_min_confidence",
    "human_labels_not_0_or_1",
)  # made while reading, in pipeline order
ZSTD_LEVEL = 1  # 30% faster than polars' default level (3) for a T.parquet 1% larger


def config_record(cfg: object) -> dict:
    """A config dataclass as JSON values: paths as strings, tuples as lists."""

    def plain(value: object) -> object:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return {k: plain(v) for k, v in asdict(cfg).items()}


def describe_inputs(images: tuple[Path, ...], machine: tuple[Path, ...], human: tuple[Path, ...]):
    """Kind, releases and size of every CSV; refuse an images file without a Subset column."""
    records = []
    for option, paths in (("images", images), ("machine_labels", machine), ("human_labels", human)):
        for path in paths:
            info = reader.inspect_csv(path)
            check_kind(info, option)
            if option == "images" and "Subset" not in info.columns:
                raise InputError(
                    "this images file has no Subset column, so train cannot be told "
                    "from validation and test",
                    path,
                    1,
                )
            records.append(
                {
                    "option": option,
                    "path": str(path),
                    "bytes": path.stat().st_size,
                    "kind": info.kind.value,
                    "releases": list(info.releases),
                }
            )
    return records


def check_kind(info: reader.CsvInfo, option: str) -> None:
    """A file given to an option that takes another kind is refused, naming both: a boxes file
    has ImageID, Source, LabelName and Confidence too, and every box would become a verdict."""
    wanted = "images" if option == "images" else "labels"
    if info.kind.family == wanted:
        return
    flag = "--" + option.replace("_", "-")
    held = f" of {kinds.NOT_LABELS[info.kind]}" if info.kind in kinds.NOT_LABELS else ""
    takes = "an images CSV" if wanted == "images" else "image-level labels (ImageID, Source, "
    takes += "" if wanted == "images" else "LabelName, Confidence, one row per label)"
    raise InputError(f"this is a {info.kind.value} file{held}; {flag} takes {takes}", info.path, 1)


def set_counts(frame: pl.DataFrame) -> dict[str, int]:
    counts = {"images": frame.height}
    for column in ("labels", "verified_pos", "verified_neg"):
        if column in frame.columns:
            counts[column] = int(frame[column].list.len().sum())
    return counts


def for_output(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    return frame.select(columns).cast({c: t for c, t in LIST_TYPES.items() if c in columns})


def make_record(
    config: dict,
    inputs: list[dict],
    counts: dict,
    drops: dict,
    vocabulary: dict,
    frames: dict[str, pl.DataFrame | None],
) -> dict:
    """splits.json: the resolved config, the inputs, every count and every drop."""
    sets = {name: set_counts(frames[name]) for name in ("T", "V_train", "V_eval")}
    sets["V"] = {k: sets["V_train"][k] + sets["V_eval"][k] for k in sets["V_train"]}
    fraction = config["clean_fraction"]
    return {
        "format_version": FORMAT_VERSION,
        "command": "build-splits",
        "versions": {"oi_pipe": __version__, "polars": pl.__version__},
        "config": config,
        "split_hash": {
            "definition": split_hash.NAME,
            "reference": split_hash.REFERENCE,
            "seed": config["seed"],
            "clean_fraction": fraction,
            "threshold": str(split_hash.threshold(fraction)),
        },
        "vocabulary": vocabulary,
        "inputs": inputs,
        "counts": counts | sets,
        "drops": drops,
        "outputs": {f"{k}.parquet": f.height for k, f in frames.items() if f is not None},
    }


def read_drops(image_counts: dict, label_counts: dict, merged_rows: int) -> dict[str, int]:
    """The drops made while reading, in pipeline order, moved out of the counts (which keep the
    totals), and the label rows merged into others."""
    drops = {
        "image_rows_without_subset": image_counts.pop("without_subset"),
        "image_rows_repeated": image_counts.pop("repeated_rows"),
    }
    drops |= {k: label_counts.pop(k) for k in READ_DROPS}
    usable = label_counts["rows"] - sum(drops[k] for k in READ_DROPS)
    return drops | {"duplicate_label_rows_merged": usable - merged_rows}


def vocabulary_drops(
    per_mid: pl.DataFrame, classes: pl.DataFrame, downloaded: bool
) -> dict[str, int]:
    """Label rows dropped for their MID, unused, or lost with their image, from per-MID counts."""
    known = per_mid["label_name"].is_in(classes["label_name"].implode())
    inside, outside = per_mid.filter(known), per_mid.filter(~known)
    drops = {
        "machine_labels_mid_not_in_vocabulary": int(outside["machine_rows"].sum()),
        "human_labels_mid_not_in_vocabulary": int(outside["human_rows"].sum()),
        "human_labels_on_train_images": int(inside["human_on_train"].sum()),
    }
    if downloaded:
        drops["label_rows_of_images_not_downloaded"] = int(inside["rows_not_downloaded"].sum())
    return drops


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_parquets(out: Path, frames: dict[str, pl.DataFrame | None], record: dict) -> None:
    """Every Parquet file, with the resolved config in its metadata."""
    out.mkdir(parents=True, exist_ok=True)
    (out / SPLITS_JSON).unlink(missing_ok=True)  # no complete set here until the new one is
    meta = {METADATA_KEY: json.dumps({k: record[k] for k in IN_METADATA})}
    for name in PARQUETS:
        path, frame = out / f"{name}.parquet", frames.get(name)
        if frame is None:
            path.unlink(missing_ok=True)  # e.g. the link_rot.parquet of an earlier run
            continue
        _atomic_write(
            path, lambda p, f=frame: f.write_parquet(p, compression_level=ZSTD_LEVEL, metadata=meta)
        )


def write_record(out: Path, record: dict) -> None:
    text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(out / SPLITS_JSON, lambda p: p.write_text(text, encoding="utf-8"))


def read_record(splits: Path) -> dict:
    """splits.json of a splits folder, or an InputError saying what is wrong with the folder."""
    path = Path(splits) / SPLITS_JSON
    if not path.is_file():
        raise InputError(f"no {SPLITS_JSON}: not a complete `build-splits` output", splits)
    return json.loads(path.read_text(encoding="utf-8"))
