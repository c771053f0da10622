"""`build-splits --downloaded` on the folder of a download that was killed before it merged its
manifest: the journal parts say which images are in the shards, and build-splits sees them as
`status` does. Before, it read only the merged manifest, which a run writes at its start (empty on a
first run) and merges into at its end: a killed first run's folder gave splits with no image."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.download import manifest, storage
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_signals import cli_args, wait_for
from tests.fixtures.worlds import IMAGES, image_csvs


def build_splits(world: Path, downloaded: Path, out: Path) -> dict:
    data = world / "data"
    inputs = [f"--images={p}" for p in image_csvs(world)]
    inputs += [f"--machine-labels={p}" for p in sorted(data.glob("machine_ann/*/labels.csv"))]
    inputs += [f"--human-labels={p}" for p in sorted(data.glob("human_ann/*/labels.csv"))]
    inputs += ["--class-names", str(data / "dict.csv"), "--min-train-images=0"]
    argv = ["build-splits", *inputs, "--min-val-images=0", "--downloaded", str(downloaded),
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    return json.loads((out / "splits.json").read_text())


def kept_images(out: Path) -> set[str]:
    names = ("T", "V_train", "V_eval")
    return {i for n in names for i in pl.read_parquet(out / f"{n}.parquet")["image_id"]}


def test_a_killed_download_is_read_from_its_journal(offline_world: Path, tmp_path: Path) -> None:
    out = tmp_path / "download"
    folder = storage.locate(out)
    slow = "slow_first_byte=1,slow=0.3,transient=1000"
    with WorldServer(ServeConfig(world=offline_world, faults=slow)) as srv:
        proc = subprocess.Popen(cli_args(offline_world, out, srv.base_url, "--sources", "original"))
        assert wait_for(lambda: len(folder.list(".journal/*/*.parquet")) >= 2, 60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    rows = manifest.load_all(folder)
    ok = set(rows.filter(pl.col("status") == "ok")["image_id"])
    assert 0 < len(ok) < IMAGES, "killed midway, with some images recorded"
    merged = pl.read_parquet(out / "manifest.parquet").filter(pl.col("status") == "ok")
    assert merged.height < len(ok), "some recorded images are only in the journal"

    record = build_splits(offline_world, out, tmp_path / "splits")
    assert record["counts"]["images"]["by_status"]["ok"] == len(ok)
    kept = kept_images(tmp_path / "splits")
    assert kept and kept <= ok

    # the rerun merges the journal; build-splits then reads the merged manifest, and more
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        argv = cli_args(offline_world, out, srv.base_url, "--sources", "original")
        subprocess.run(argv, check=True, timeout=120)
    assert folder.is_file("manifest.parquet") and not folder.list(".journal/*/*.parquet")
    after = build_splits(offline_world, out, tmp_path / "splits-after")
    assert after["counts"]["images"]["by_status"]["ok"] == IMAGES
    assert kept < kept_images(tmp_path / "splits-after")
