"""`oi-pipe select` and `build-splits --classes NAME...` through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from openimages_pipe.cli import app
from tests.fixtures.splits_data import A, B, C, basic, iid, write, write_csv

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def each(option: str, paths) -> list[str]:
    return [arg for path in paths for arg in (option, str(path))]


def test_select_prints_the_counts_per_class(tmp_path: Path) -> None:
    files = write(tmp_path, basic())
    labels = each("--labels", files.machine_labels + files.human_labels)
    out = tmp_path / "sel"
    args = ["select", *labels, "--classes", "apple", "--classes", "/m/0zz", "--out", str(out),
            "--class-names", str(files.class_names)]  # fmt: skip
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "note: /m/0zz is not in the class names: selected by its MID alone"
    assert lines[1].split() == ["class", "MID", "candidates", "vetoed", "eligible", "selected"]
    # apple: t1, t3, v1 (v1 verified yes), v2 (machine 0.8, but verified no), x1
    assert lines[2].split() == ["Apple", A, "5", "1", "4", "4"]
    assert lines[3].split() == ["/m/0zz", "0", "0", "0", "0"]
    assert lines[-1] == f"selected 4 images, 6 labels -> {out}"  # v1, x1: human and machine
    assert (out / "ids.txt").read_text().split() == sorted(iid(n) for n in ("v1", "x1", "t1", "t3"))


def test_an_unknown_class_is_one_line_with_suggestions(tmp_path: Path) -> None:
    files = write(tmp_path, basic())
    args = ["select", "--labels", str(files.machine_labels[0]), "--classes", "Appel",
            "--class-names", str(files.class_names), "--out", str(tmp_path / "sel")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f'error: {files.class_names}: unknown class "Appel": did you mean: "Apple"? '
        "(4 names; case, spaces and underscores are ignored)"
    ]
    assert not (tmp_path / "sel").exists()


def build_splits(tmp_path: Path, *classes: str) -> tuple[object, dict, list[str]]:
    files = write(tmp_path, basic())
    args = ["build-splits", *each("--images", files.images),
            *each("--machine-labels", files.machine_labels),
            *each("--human-labels", files.human_labels), "--class-names", str(files.class_names),
            "--out", str(files.out), *each("--classes", classes)]  # fmt: skip
    result = runner.invoke(app, args, env=WIDE)
    if result.exit_code:
        return result, {}, []
    record = json.loads((files.out / "splits.json").read_text())
    return result, record, pl.read_parquet(files.out / "classes.parquet")["label_name"].to_list()


def test_build_splits_takes_names_and_mids_on_the_command_line(tmp_path: Path) -> None:
    result, record, mids = build_splits(tmp_path, "bus,APPLE", C)
    assert result.exit_code == 0, result.output
    assert mids == [A, B, C]
    vocabulary = record["vocabulary"]
    assert vocabulary["source"] == "command_line" and vocabulary["requested"] == ["bus,APPLE", C]
    assert [r["label_names"] for r in vocabulary["resolved"]] == [[B], [A], [C]]
    assert record["config"]["classes"] == ["bus,APPLE", C]


def test_build_splits_still_takes_a_class_file(tmp_path: Path) -> None:
    labelmap = write_csv(tmp_path / "labelmap.txt", None, [[A], [C]])
    result, record, mids = build_splits(tmp_path, str(labelmap))
    assert result.exit_code == 0, result.output
    assert mids == [A, C] and record["vocabulary"] | {"classes": 0} == {
        "source": "file", "path": str(labelmap), "classes": 0,
        "mids_in_labels": 4, "mids_in_labels_not_in_vocabulary": 2,
    }  # fmt: skip


def test_build_splits_refuses_a_bad_classes_value_before_reading(tmp_path: Path) -> None:
    result, _, _ = build_splits(tmp_path, "Bux")
    assert result.exit_code == 1 and 'did you mean: "Bus"?' in result.output
    result, _, _ = build_splits(tmp_path, "missing-labelmap.txt")
    assert result.exit_code == 1 and "no such class file" in result.output
    labelmap = write_csv(tmp_path / "labelmap.txt", None, [[A]])
    result, _, _ = build_splits(tmp_path, str(labelmap), "Bus")
    assert result.exit_code == 1 and "one class file, or names and MIDs" in result.output


def test_select_comes_before_download_in_help() -> None:
    result = runner.invoke(app, ["--help"], env=WIDE)
    listed = [
        line.strip("│ ").split()[:1] for line in result.output.split("Commands")[-1].splitlines()
    ]
    names = [row[0] for row in listed if row and row[0][0].isalpha()]
    assert names.index("select") == names.index("download") - 1
