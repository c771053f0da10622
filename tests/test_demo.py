"""`oi-pipe demo` end to end on a tiny world: every stage ran and reported what it produced."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from openimages_pipe import demo
from openimages_pipe.cli import app


def test_demo_makes_reads_serves_and_downloads(tmp_path: Path) -> None:
    result = demo.run(
        demo.DemoConfig(out=tmp_path / "w", images=30, seed=3, faults="404=0.3", learn=False)
    )
    assert sum(result["fates"].values()) == 30
    image_rows = sum(n for name, n in result["rows"].items() if "images" in name)
    assert image_rows == 30
    assert result["rows"]["data/dict.csv"] == 7881
    got = result["download"]
    assert got["images"] == 30
    # a dead Flickr photo comes back from the mirror when the mirror holds it, else it is missing
    assert got["status"].get("missing", 0) <= result["fates"]["404"]
    assert got["status"]["ok"] >= result["fates"]["none"]
    assert got["source"]["original"] == result["fates"]["none"]
    # the splits hold only what was downloaded, and V is split without overlap
    counts = json.loads((tmp_path / "w" / "splits" / "splits.json").read_text())["counts"]
    assert counts, "splits.json records its counts"
    t = pl.read_parquet(tmp_path / "w" / "splits" / "T.parquet")["image_id"].to_list()
    v_train = pl.read_parquet(tmp_path / "w" / "splits" / "V_train.parquet")["image_id"].to_list()
    v_eval = pl.read_parquet(tmp_path / "w" / "splits" / "V_eval.parquet")["image_id"].to_list()
    ok = set(
        pl.read_parquet(tmp_path / "w" / "download" / "manifest.parquet").filter(
            pl.col("status") == "ok"
        )["image_id"]
    )
    assert set(t) | set(v_train) | set(v_eval) <= ok
    assert not (set(t) & (set(v_train) | set(v_eval))) and not set(v_train) & set(v_eval)
    assert len(v_eval) > 0


def test_demo_command_exits_zero(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", str(tmp_path / "w"), "--images", "12", "--faults", "none", "--no-learn"]
    )
    assert result.exit_code == 0, result.output
    assert "source of the ok images" in result.output
