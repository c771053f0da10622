"""`select` on small hand-made label files: one test per rule of the issue."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from openimages_pipe.errors import InputError
from openimages_pipe.select import outputs
from openimages_pipe.select import selection as select
from openimages_pipe.select.records import LabelSource
from tests.fixtures.paths import SHARED_DATA
from tests.fixtures.splits_data import A, B, C, Content, iid, manifest, write, write_csv


def content() -> Content:
    """A's images: t1 (machine 0.9), t2 (0.4: too low), t3 (0.7), v1 (0.9, but a human says
    no), v2 (machine 0.3, a human says yes), v4 (0.6). t1 also shows B, t3 C; v4 is verified not
    to show C, which it has no other label of."""
    images = {f"t{i}": "train" for i in range(1, 4)} | {f"v{i}": "validation" for i in range(1, 5)}
    machine = [
        ("t1", A, "0.9"), ("t1", B, "0.6"), ("t2", A, "0.4"), ("t3", A, "0.7"), ("t3", C, "0.9"),
        ("v1", A, "0.9"), ("v2", A, "0.3"), ("v3", B, "0.8"), ("v4", A, "0.6"),
    ]  # fmt: skip
    human = [("v1", A, "0"), ("v2", A, "1"), ("v3", B, "1"), ("v4", C, "0")]
    return Content(images, machine, human)


def config(tmp_path: Path, classes=(A,), release: str = "v1", **options) -> select.SelectConfig:
    files = write(tmp_path, content(), release)
    return select.SelectConfig(
        labels=files.machine_labels + files.human_labels, classes=tuple(classes),
        out=tmp_path / "select", class_names=files.class_names, **options,
    )  # fmt: skip


def selected(cfg: select.SelectConfig) -> set[str]:
    select.run(cfg)
    return set(outputs.read_ids(cfg.out))


def ids(*names: str) -> set[str]:
    return {iid(n) for n in names}


def per_class(cfg: select.SelectConfig) -> dict[str, dict]:
    record = json.loads((cfg.out / outputs.SELECT_JSON).read_text())
    return {row["label_name"]: row for row in record["per_class"]}


@pytest.mark.parametrize("release", ["v1", "v6"])
def test_a_human_negative_never_selects_and_vetoes_a_machine_label(
    tmp_path: Path, release: str
) -> None:
    cfg = config(tmp_path, release=release)
    assert selected(cfg) == ids("t1", "t3", "v2", "v4")  # v1 vetoed; t2 below 0.5
    assert per_class(cfg)[A] | {"query": None} == {
        "label_name": A, "display_name": "Apple", "query": None, "candidates": 5,
        "vetoed_by_human_negative": 1, "eligible": 4, "selected": 4,
    }  # fmt: skip
    assert selected(replace(cfg, classes=(C,))) == ids("t3")  # v4's "no" selects nothing
    assert selected(replace(cfg, source=LabelSource.MACHINE)) == ids("t1", "t3", "v1", "v4")
    assert selected(replace(cfg, source=LabelSource.HUMAN)) == ids("v2")


def test_labels_hold_the_selected_positives(tmp_path: Path) -> None:
    cfg = config(tmp_path, min_confidence=0.3)
    select.run(cfg)
    labels = pl.read_parquet(cfg.out / outputs.LABELS_PARQUET)
    assert labels.schema == {"image_id": pl.String, "label_name": pl.String,
                             "source": pl.String, "confidence": pl.Float32}  # fmt: skip
    rows = [(r[0], r[2], round(r[3], 3)) for r in labels.rows()]
    assert rows == [
        (iid("v2"), "human", 1.0),
        (iid("v2"), "machine", 0.3),
        (iid("v4"), "machine", 0.6),
        (iid("t1"), "machine", 0.9),
        (iid("t2"), "machine", 0.4),
        (iid("t3"), "machine", 0.7),
    ]  # sorted by ImageID: validation (0xa...) before train (0xf...)
    assert outputs.read_ids(cfg.out) == sorted({r[0] for r in rows})
    record = json.loads((cfg.out / outputs.SELECT_JSON).read_text())
    assert record["config"]["classes"] == [A] and record["config"]["min_confidence"] == 0.3
    assert record["counts"]["images"] == 5 and record["counts"]["labels"] == 6
    assert (
        json.loads(pl.read_parquet_metadata(cfg.out / outputs.LABELS_PARQUET)["oi_pipe_select"])[
            "classes"
        ]
        == record["classes"]
    )


def test_exclusive_keeps_images_with_no_positive_outside_the_classes(tmp_path: Path) -> None:
    cfg = config(tmp_path, exclusive=True)
    # t1 shows B and t3 C; v4's human "no" for C is not a positive of C
    assert selected(cfg) == ids("v2", "v4")
    assert per_class(cfg)[A]["not_exclusive"] == 2
    assert selected(replace(cfg, classes=(A, B))) == ids("t1", "v2", "v3", "v4")
    # by the same --source rule: without machine labels, nothing else is positive on t1 or t3
    assert selected(replace(cfg, source=LabelSource.HUMAN, classes=(B,))) == ids("v3")


def test_images_subset_and_downloaded_restrict(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    files = write(tmp_path, content())
    assert selected(replace(cfg, images=files.images, subsets=("validation",))) == ids("v2", "v4")
    listed = write_csv(tmp_path / "few.csv", ("ImageID", "OriginalURL"), [[iid("t3"), "u"]])
    assert selected(replace(cfg, images=(listed,))) == ids("t3")
    statuses = {"t1": "ok", "t3": "missing", "v2": "ok", "v4": "failed"}
    manifest(tmp_path / "dl" / "manifest.parquet", statuses)
    assert selected(replace(cfg, downloaded=tmp_path / "dl")) == ids("t1", "v2")
    assert per_class(cfg)[A]["not_downloaded"] == 2
    with pytest.raises(InputError, match="--subset needs --images"):
        select.run(replace(cfg, subsets=("train",)))
    with pytest.raises(InputError, match="needs a Subset column"):
        select.run(replace(cfg, images=(listed,), subsets=("train",)))


def test_a_bad_row_of_a_chosen_class_names_its_file_and_line(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    bad = write_csv(
        tmp_path / "bad.csv", ("ImageID", "Source", "LabelName", "Confidence"),
        [[iid("t1"), "machine", B, "7"], [iid("t1"), "machine", A, "1.5"]],
    )  # fmt: skip
    with pytest.raises(InputError) as e:
        select.run(replace(cfg, labels=(*cfg.labels, bad)))
    assert e.value.path == bad and e.value.line == 2  # the first bad row, whatever its class
    assert select.run(replace(cfg, labels=(*cfg.labels, bad), classes=(C,))).images == 1


def test_a_rerun_replaces_the_selection_whole(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    select.run(cfg)
    select.run(replace(cfg, classes=(B,)))
    assert sorted(p.name for p in cfg.out.iterdir()) == sorted(
        [outputs.IDS_TXT, outputs.LABELS_PARQUET, outputs.SELECT_JSON]
    )  # no temporary file left behind
    assert set(outputs.read_ids(cfg.out)) == ids("t1", "v3")


def test_genuine_v6_verifications_and_class_descriptions(tmp_path: Path) -> None:
    """Rows of the published V6 files (../shared/data/openimages-real): the class descriptions'
    header has a trailing space; the image was verified to show a human eye and no bird."""
    real = SHARED_DATA / "openimages-real" / "v6"
    cfg = select.SelectConfig(
        labels=(real / "train-annotations-human-imagelabels-boxable-4rows.csv",),
        classes=("human_eye", "BIRD"), out=tmp_path, source=LabelSource.HUMAN,
        class_names=real / "oidv6-class-descriptions.csv",
    )  # fmt: skip
    summary = select.run(cfg)
    assert outputs.read_ids(tmp_path) == ["000002b66c9c498e"]
    counts = {r["display_name"]: r["selected"] for r in summary.per_class.iter_rows(named=True)}
    assert counts == {"Human eye": 1, "Bird": 0}
