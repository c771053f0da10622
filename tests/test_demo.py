"""`oi-pipe demo` end to end on a tiny world: every stage ran and reported what it produced."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from openimages_pipe import demo
from openimages_pipe.cli import app


def test_demo_makes_serves_probes_and_reads_back(tmp_path: Path) -> None:
    result = demo.run(demo.DemoConfig(out=tmp_path / "w", images=30, seed=3, faults="404=0.5"))
    assert sum(result["probe"].values()) == 30
    assert sum(result["fates"].values()) == 30
    # every image the server fated 404 answered 404 to the probe, and only those
    assert result["probe"].get("HTTP 404 ?", 0) == result["fates"]["404"] > 0
    image_rows = sum(n for name, n in result["rows"].items() if "images" in name)
    assert image_rows == 30
    assert result["rows"]["data/dict.csv"] == 7881


def test_demo_command_exits_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", str(tmp_path / "w"), "--images", "12", "--faults", "none"]
    )
    assert result.exit_code == 0, result.output
    assert "HTTP 200 image/jpeg" in result.output
