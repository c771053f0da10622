"""The reader on rows copied from the genuine published files of V1-V7 (../shared/data).

Each file there is described, with where it comes from, in openimages-real/SOURCE.md; the layouts
it lacks (segmentation, relationships, point labels) are written here from the official READMEs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.errors import InputError
from openimages_pipe.formats import paths, reader, releases
from openimages_pipe.formats.kinds import FileKind
from tests.fixtures.paths import SHARED_DATA

REAL = SHARED_DATA / "openimages-real"
runner = CliRunner()

ALL = ("v1", "v2", "v3", "v4", "v5", "v6", "v7")
V3_ON = ALL[2:]
KINDS = {  # file -> (kind, releases that could have written it)
    "v1/labels-machine-readme.csv": (FileKind.MACHINE_LABELS, ALL),
    "v1/labels-human-1row.csv": (FileKind.HUMAN_LABELS, ("v1", "v2")),
    "v2/annotations-human-readme.csv": (FileKind.HUMAN_LABELS, ("v1", "v2")),
    "v3/annotations-human-readme.csv": (FileKind.HUMAN_LABELS, V3_ON),
    "v6/train-annotations-human-imagelabels-boxable-4rows.csv": (FileKind.HUMAN_LABELS, V3_ON),
    "v2/annotations-human-bbox-train-readme.csv": (FileKind.BOXES, ("v2",)),
    "v2/annotations-human-bbox-validation-readme.csv": (FileKind.BOXES, ("v2",)),
    "v3/annotations-human-bbox-train-readme.csv": (FileKind.BOXES, ("v3",)),
    "v3/annotations-human-bbox-validation-readme.csv": (FileKind.BOXES, V3_ON),
    "v6/oidv6-train-annotations-bbox-3rows.csv": (FileKind.BOXES, ("v6", "v7")),
    "v6/oidv6-class-descriptions.csv": (FileKind.CLASS_DESCRIPTIONS, ("v6", "v7")),
    "v4/train-images-boxable-with-rotation-2rows.csv": (FileKind.IMAGES, ("v4", "v5", "v6", "v7")),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_genuine_file_is_its_kind_of_its_releases(name: str) -> None:
    info = reader.inspect_csv(REAL / name)
    assert (info.kind, info.releases) == KINDS[name]


def test_the_v6_class_descriptions_header_with_a_trailing_space_is_read() -> None:
    path = REAL / "v6/oidv6-class-descriptions.csv"
    assert path.read_bytes().split(b"\n")[0] == b"LabelName,DisplayName "  # the genuine header
    names = reader.read_class_descriptions(path)
    assert names.columns == ["label_name", "display_name"] and names.height == 19_994


def test_header_cells_lose_whitespace_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        "\ufeff ImageID ,Source,LabelName , Confidence\n000026e7ee790996,machine,/m/04hgtk,0.7\n"
    )
    info = reader.inspect_csv(path)
    assert info.kind is FileKind.MACHINE_LABELS and info.columns[0] == "ImageID"
    assert reader.scan(path).collect()["label_name"].to_list() == ["/m/04hgtk"]


def test_box_rows_are_not_labels(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="expected a labels file, but this is a boxes file"):
        reader.scan(REAL / "v2/annotations-human-bbox-train-readme.csv", "labels")
    boxes = reader.scan(REAL / "v6/oidv6-train-annotations-bbox-3rows.csv", "boxes").collect()
    assert boxes.height == 3 and {"image_id", "label_name", "XMin", "XClick4Y"} <= set(
        boxes.columns
    )


NOT_LABELS = {  # headers of the official READMEs (V5-V7 download pages)
    FileKind.SEGMENTATIONS: "MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,"
    "PredictedIoU,Clicks",
    FileKind.RELATIONSHIPS: "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,"
    "YMin2,YMax2,RelationshipLabel",
    FileKind.POINT_LABELS: "ImageID,Source,LabelName,EstimatedYesNo,X,Y,YesVotes,NoVotes,"
    "UnsureVotes",
}


@pytest.mark.parametrize("kind", sorted(NOT_LABELS))
def test_other_annotation_kinds_are_named(tmp_path: Path, kind: FileKind) -> None:
    path = tmp_path / f"{kind}.csv"
    header = NOT_LABELS[kind]
    row = ",".join("0000c64e1253d68f" if c == "ImageID" else "/m/01g317" if "LabelName" in c
                   else "x" for c in header.split(","))  # fmt: skip
    path.write_text(f"{header}\n{row}\n")
    assert reader.inspect_csv(path).kind is kind


def test_build_splits_refuses_a_boxes_file_as_human_labels(tmp_path: Path) -> None:
    from openimages_pipe.splits import build
    from tests.fixtures.splits_data import basic, write

    cfg = write(tmp_path, basic(), "v2")
    boxes = REAL / "v2/annotations-human-bbox-train-readme.csv"
    args = ["build-splits", "--out", str(tmp_path / "out"), "--human-labels", str(boxes)]
    for option, files in (("--images", cfg.images), ("--machine-labels", cfg.machine_labels)):
        args += [x for f in files for x in (option, str(f))]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert f"{boxes}:1: this is a boxes file of bounding boxes" in result.output
    assert "--human-labels takes image-level labels" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(InputError, match="--machine-labels takes image-level labels"):
        build.run(build.SplitsConfig(cfg.images, (boxes,), cfg.human_labels, tmp_path / "o2"))


EARLY = "an early V1 layout of labels.csv"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("v1/labels-machine-2016-10-05-readme.csv", f"{EARLY} (October 2016)"),
        ("v1/labels-wide-2016-09-28-readme.csv", f"{EARLY} (September 2016)"),
        ("v1/labels-wide-2016-09-30-issue1.csv", f"{EARLY} (September 2016)"),
        ("other/open-images-dataset-validation-4rows.tsv", "a TsvHttpData-1.0 URL list"),
    ],
)
def test_early_v1_layouts_and_url_lists_are_named(name: str, says: str) -> None:
    with pytest.raises(InputError) as error:
        reader.inspect_csv(REAL / name)
    assert error.value.message.startswith(says) and error.value.line == 1


def test_inspect_reports_every_file_then_exits_1_if_one_failed() -> None:
    good, bad = REAL / "v1/labels-machine-readme.csv", REAL / "v1/images-2016-09-30-issue1.csv"
    boxes = REAL / "v2/annotations-human-bbox-train-readme.csv"
    result = runner.invoke(
        app, ["inspect", str(good), str(bad), str(boxes)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 1
    assert "machine_labels" in result.output and "boxes" in result.output  # the others, reported
    assert (
        f"error: {bad}:2: ImageID is not 16 hex digits (value: '106528377697029')" in result.output
    )


def test_inspect_json_has_one_object_per_file() -> None:
    files = [
        REAL / "v3/annotations-human-readme.csv",
        REAL / "v1/labels-wide-2016-09-28-readme.csv",
    ]
    result = runner.invoke(app, ["inspect", "--json", *map(str, files)])
    assert result.exit_code == 1
    start = result.output.index("[")
    reports = json.loads(result.output[start : result.output.rindex("]") + 1])
    assert [set(r) for r in reports] == [
        {"path", "kind", "header", "releases", "rows", "error"}
    ] * 2
    good, bad = reports
    assert good == {"path": str(files[0]), "kind": "human_labels", "header": True,
                    "releases": list(V3_ON), "rows": 9, "error": None}  # fmt: skip
    assert bad["kind"] is None and bad["rows"] is None and "early V1 layout" in bad["error"]


def test_glob_patterns_expand_sorted_and_an_empty_one_is_an_error(tmp_path: Path) -> None:
    for name in ("b/images.csv", "a/images.csv", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    found = paths.expand([str(tmp_path / "*" / "images.csv")], "--images")
    assert found == (tmp_path / "a/images.csv", tmp_path / "b/images.csv")
    with pytest.raises(InputError, match="--images: no file matches this pattern"):
        paths.expand([str(tmp_path / "*" / "labels.csv")], "--images")
    pattern = str(REAL / "v3" / "annotations-human*.csv")
    result = runner.invoke(app, ["inspect", pattern], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and result.output.count("v3, v4, v5, v6, v7") == 2


def test_the_manifests_agree_with_the_genuine_files() -> None:
    boxable = next(
        f for f in releases.release("v4").files if f.name == "class-descriptions-boxable.csv"
    )
    genuine = (REAL / "v4/class-descriptions-boxable.csv").read_text().splitlines()
    assert boxable.rows == len(genuine) == 601
    v5 = {f.name for f in releases.release("v5").files}
    for subset in ("train", "validation", "test"):
        assert f"{subset}-annotations-human-imagelabels-boxable.csv" in v5
    assert releases.release("v2").human_sources == ("human",)
