"""`oi-pipe download` takes quoted glob patterns for its CSVs, expanded in sorted order."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.download import manifest
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.worlds import IMAGES

runner = CliRunner()


def test_a_pattern_downloads_every_csv_it_matches(offline_world: Path, tmp_path: Path) -> None:
    pattern = str(offline_world / "data" / "images" / "*" / "images.csv")
    assert len(list((offline_world / "data" / "images").glob("*/images.csv"))) >= 2
    with WorldServer(ServeConfig(world=offline_world)) as server:
        args = ["download", pattern, "--out", str(tmp_path / "dl"), "--quiet",
                "--allow-private-addresses", "--workers", "1",
                "--mirror-url", world_layout.mirror_template(server.base_url)]  # fmt: skip
        result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert manifest.load_all(tmp_path / "dl").height == IMAGES  # every subset's images


def test_a_pattern_that_matches_nothing_is_one_line_and_exit_1(tmp_path: Path) -> None:
    pattern = str(tmp_path / "*" / "images.csv")
    result = runner.invoke(app, ["download", pattern, "--out", str(tmp_path / "dl")])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"error: download: no file matches this pattern (value: {pattern!r})"
    )
