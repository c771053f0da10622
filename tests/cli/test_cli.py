"""The command line: version, fast help without torch, and bad input as one line with exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openimages_pipe import __version__
from openimages_pipe.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"oi-pipe {__version__}"


def test_help_lists_only_working_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("inspect", "world", "demo", "train", "evaluate", "clean-labels"):
        assert command in result.output.split("Commands")[-1]


def test_help_lists_the_commands_in_the_order_a_user_meets_them() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    rows = [line.strip("│ ").split() for line in result.output.split("Commands")[-1].splitlines()]
    listed = [row[0] for row in rows if row and row[0][0].isalpha()]
    assert listed == [
        "demo", "select", "download", "status", "build-splits", "stats", "train", "embed",
        "evaluate", "clean-labels", "inspect", "world",
    ]  # fmt: skip


def test_cli_does_not_import_torch() -> None:
    heavy = "('torch', 'torchvision', 'polars', 'aiohttp', 'PIL')"
    code = f"import sys, openimages_pipe.cli; print(sorted(set(sys.modules) & set({heavy})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_csv_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("ImageID,Source,LabelName,Confidence\n000002b66c9c498e,machine,/m/01,7\n")
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.output and "'7'" in result.output
    assert "Traceback" not in result.output


def test_inspect_reports_kind_and_rows(tmp_path: Path) -> None:
    good = tmp_path / "labels.csv"
    good.write_text("ImageID,Source,LabelName,Confidence\n000002b66c9c498e,human,/m/01,1\n")
    result = runner.invoke(app, ["inspect", str(good)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "human_labels" in result.output and "v1" in result.output


def test_download_uses_the_usable_cpus_with_no_cap(monkeypatch) -> None:
    import os

    from openimages_pipe.cli import download as cli_download

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(32)), raising=False)
    assert cli_download.usable_cpus() == 32
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)  # taskset -c 3
    assert cli_download.usable_cpus() == 1
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert cli_download.usable_cpus() == 4


def test_processes_auto_is_the_cpus_within_what_each_process_needs_one_of() -> None:
    from openimages_pipe.download.fetch_processes import resolve

    assert resolve(None, usable=32, per_host=16, concurrency=64, workers=None) == 16
    assert resolve(None, usable=2, per_host=16, concurrency=64, workers=None) == 2
    assert resolve(None, usable=8, per_host=16, concurrency=64, workers=3) == 3
    assert resolve(4, usable=2, per_host=16, concurrency=64, workers=None) == 4


@pytest.mark.parametrize("args", [["--processes", "0"], ["--processes", "x"],
                                  ["--processes", "3", "--per-host", "2"],
                                  ["--processes", "3", "--workers", "2"]])  # fmt: skip
def test_download_refuses_processes_it_cannot_give_a_share(tmp_path: Path, args) -> None:
    csv = tmp_path / "images.csv"
    csv.write_text("ImageID,OriginalURL\n")
    result = runner.invoke(app, ["download", str(csv), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 1, result.output
    assert "--processes" in result.output and "Traceback" not in result.output


def _help_panels(output: str) -> dict[str, list[str]]:
    """The boxes of a rich `--help`: title -> the options (or arguments) listed in it."""
    panels: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line.startswith("╭─"):
            listed = panels.setdefault(line.strip("╭─╮ ").strip(), [])
        elif line.startswith("│"):
            words = line.strip("│ *").split()  # "*": a required one
            if words and (words[0].startswith("--") or words[0].endswith("...")):
                listed.append(words[0])
    return panels


def test_download_help_groups_its_options_in_panels() -> None:
    result = runner.invoke(app, ["download", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    panels = _help_panels(result.output)
    assert list(panels) == [
        "Arguments",
        "Options",
        "Input",
        "Classes",
        "Network",
        "Resize",
        "Output",
        "Sharding",
    ]
    expected = {
        "Input": ["--subset", "--limit", "--ids", "--sources", "--mirror-url", "--retry-missing"],
        "Classes": [
            "--classes", "--labels", "--class-names", "--label-source", "--min-confidence",
            "--exclusive", "--max-per-class", "--seed",
        ],
        "Network": [
            "--concurrency", "--per-host", "--retries", "--timeout", "--first-byte-timeout",
            "--max-mb", "--md5", "--allow-private-addresses", "--user-agent",
        ],
        "Resize": ["--image-size", "--resize-mode", "--quality", "--workers"],
        "Output": ["--out", "--format", "--rows-per-shard", "--quiet"],
        "Sharding": ["--processes", "--shard-index", "--num-shards"],
    }  # fmt: skip
    for panel, options in expected.items():
        assert panels[panel] == options, panel
    assert panels["Arguments"] == ["csvs..."]
    assert panels["Options"] == ["--help"]  # every option of the command is in a panel
    assert "Only the first N images" in result.output  # help texts are there, in their panels


@pytest.mark.parametrize("command", ["train", "embed"])
def test_shards_help_says_a_local_folder_or_an_s3_url(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())  # the help text, unwrapped
    shards = text[text.index("--shards") :]
    assert shards.index("a local folder or s3://BUCKET/PREFIX") < shards.index(" --", 1)
