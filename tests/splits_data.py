"""Hand-made Open Images label files for the build-splits tests, in any release's layout.

`Content` says what is true (images and subsets, machine labels, human verdicts, class names);
`write` puts it on disk with the columns, Source values and class-description header of one
release (from manifests/*.toml) and returns the SplitsConfig that reads it back.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from openimages_pipe import releases
from openimages_pipe.splits import SplitsConfig

A, B, C, D = "/m/01a", "/m/01b", "/m/02c", "/m/0d"  # sorted: class indices 0, 1, 2, 3
NAMES = {A: "Apple", B: "Bus", C: "Cat", D: "Dog"}
SETS = ("T", "V_train", "V_eval")


def iid(name: str) -> str:
    """A readable 16-hex-digit ImageID: t1 -> 00000000000000f1, v3 -> 00000000000000a3."""
    prefix = {"t": "f", "v": "a", "x": "b", "g": "c"}[name[0]]
    return f"{int(prefix + name[1:], 16):016x}"


@dataclass
class Content:
    images: dict[str, str]  # image name -> subset (train, validation, test)
    machine: list[tuple[str, str, str]]  # (image name, MID, confidence as written)
    human: list[tuple[str, str, str]]  # (image name, MID, "0" or "1")
    names: dict[str, str] = field(default_factory=lambda: dict(NAMES))


def basic() -> Content:
    """Four training images, four validation, two test; v4 has no verification."""
    images = {f"t{i}": "train" for i in range(1, 5)}
    images |= {f"v{i}": "validation" for i in range(1, 5)} | {"x1": "test", "x2": "test"}
    machine = [
        ("t1", A, "0.9"), ("t1", B, "0.6"), ("t2", B, "0.8"), ("t2", C, "0.7"), ("t3", A, "1.0"),
        ("t4", D, "0.55"), ("v1", A, "0.9"), ("v1", B, "0.7"), ("v2", A, "0.8"),
        ("v2", C, "0.6"), ("v3", B, "0.9"), ("v4", C, "0.5"), ("x1", A, "0.7"), ("x2", C, "0.9"),
    ]  # fmt: skip
    human = [
        ("v1", A, "1"), ("v1", B, "0"), ("v2", A, "0"), ("v2", C, "1"), ("v3", B, "1"),
        ("v3", D, "1"), ("x1", A, "1"), ("x2", C, "0"),
    ]  # fmt: skip
    return Content(images, machine, human)


def _columns(release: releases.Release, kind: str) -> tuple[tuple[str, ...], bool]:
    official = next(f for f in release.files if f.kind == kind and f.columns)
    return official.columns, official.header


def _image_row(columns: tuple[str, ...], image_id: str, subset: str) -> list[str]:
    values = {"ImageID": image_id, "Subset": subset, "OriginalSize": "1234", "Rotation": "0.0",
              "OriginalMD5": "ZJaXgdaLRYDO5F4ZbOZw7w==", "Title": "a, b"}  # fmt: skip
    return [values.get(c, f"https://example.org/{c}/{image_id}") for c in columns]


def write_csv(path: Path, header: tuple[str, ...] | None, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        if header:
            out.writerow(header)
        out.writerows(rows)
    return path


def write(root: Path, content: Content, release_id: str = "v1", **options) -> SplitsConfig:
    """The content in `release_id`'s layout, one file per kind and subset."""
    release = releases.release(release_id)
    subsets = list(release.subsets)
    image_cols, _ = _columns(release, "images")
    label_cols, _ = _columns(release, "machine_labels")
    name_cols, name_header = _columns(release, "class_descriptions")

    def subset_of(name: str) -> str:  # V1 had no test subset: its validation was V2's val + test
        subset = content.images[name]
        return subset if subset in subsets else "validation"

    images, machine, human = [], [], []
    for subset in subsets:
        mine = [n for n in content.images if subset_of(n) == subset]
        rows = [_image_row(image_cols, iid(n), subset) for n in mine]
        images.append(write_csv(root / release_id / f"{subset}-images.csv", image_cols, rows))
        labels = [[iid(n), "machine", mid, c] for n, mid, c in content.machine if n in mine]
        path = root / release_id / f"{subset}-machine.csv"
        machine.append(write_csv(path, label_cols, labels))
        sources = release.human_sources
        verdicts = [[iid(n), sources[k % len(sources)], mid, c]
                    for k, (n, mid, c) in enumerate(content.human) if n in mine]  # fmt: skip
        if verdicts:
            path = root / release_id / f"{subset}-human.csv"
            human.append(write_csv(path, label_cols, verdicts))
    names = [[mid, name] for mid, name in content.names.items()]
    class_names = write_csv(root / release_id / "classes.csv", name_header and name_cols, names)
    return SplitsConfig(
        images=tuple(images), machine_labels=tuple(machine), human_labels=tuple(human),
        out=root / release_id / "splits", class_names=class_names,
        **{"min_train_images": 1, "min_val_images": 1, **options},
    )  # fmt: skip


def read_sets(out: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(out / f"{name}.parquet") for name in (*SETS, "classes")}


def rows_by_image(frame: pl.DataFrame) -> dict[str, dict]:
    return {row["image_id"]: row for row in frame.iter_rows(named=True)}


def manifest(path: Path, statuses: dict[str, str], **extra: list) -> Path:
    """A download manifest: image name -> status, and any other columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [iid(n) for n in statuses]
    pl.DataFrame({"image_id": ids, "status": list(statuses.values()), **extra}).write_parquet(path)
    return path
