"""`oi-pipe download` end to end against the world's fault-injecting server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from PIL import Image

from openimages_pipe.download import manifest, spool, storage
from openimages_pipe.download import pipeline as download
from openimages_pipe.download.fetch import FetchConfig
from openimages_pipe.download.records import Md5Mode, OutputFormat, Source
from openimages_pipe.download.tasks import InputConfig
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.images import flat, png_claiming
from tests.fixtures.worlds import IMAGES, Served, image_csvs, shard_ids, write_world

# Short timeouts against short server delays: every transient fault clears within the retries.
FAST = "slow=0.6,stall=0.6,retry_after=1,transient=2"


@pytest.fixture(scope="module")
def world(offline_world: Path) -> Path:
    return offline_world  # the session's (tests/conftest.py): IMAGES images


def config(world: Path, out: Path, base: str, **fetch: object) -> download.DownloadConfig:
    sources = fetch.pop("sources", (Source.ORIGINAL, Source.THUMBNAIL, Source.MIRROR))
    settings: dict = {
        "allow_private": True,
        "first_byte_timeout": 0.4,
        "total_timeout": 10,
        "retries": 3,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
        "per_host": 64,
    }
    fetch_cfg = FetchConfig(**{**settings, **fetch})
    return download.DownloadConfig(
        out=out,
        input=InputConfig(
            csvs=image_csvs(world),
            sources=sources,  # type: ignore[arg-type]
            mirror_template=world_layout.mirror_template(base),
        ),
        fetch=fetch_cfg,
        rows_per_shard=7,
        workers=1,
        quiet=True,
    )


def test_clean_world_downloads_every_image_once_verified(world: Path, tmp_path: Path) -> None:
    with WorldServer(ServeConfig(world=world)) as srv:
        download.run(config(world, tmp_path, srv.base_url))
        rows = manifest.load_all(tmp_path)
        assert rows.height == IMAGES and set(rows["status"]) == {"ok"}
        assert rows.filter(pl.col("source") == "original")["verified"].all()
        sizes = {p.stem: p.stat().st_size for p in (world / "served" / "original").iterdir()}
        originals = rows.filter(pl.col("source") == "original")
        assert [sizes[i] for i in originals["image_id"]] == originals["bytes"].to_list()
        assert sorted(shard_ids(tmp_path)) == sorted(rows["image_id"])
        first = pq.read_table(next(iter(sorted(tmp_path.glob("shards/*.parquet")))))
        provenance = json.loads(first.schema.metadata[b"oi_pipe_download"])
        assert provenance["resize"]["image_size"] == 256 and provenance["out"] == str(tmp_path)
        img = Image.open(io.BytesIO(first["image"][0]["bytes"].as_py()))
        assert min(img.size) == 256 or max(img.size) < 256
        # a rerun has nothing left to do: no request reaches the server
        before = sum(srv.state.requests.values())
        download.run(config(world, tmp_path, srv.base_url))
        assert sum(srv.state.requests.values()) == before
        assert manifest.load_all(tmp_path)["attempts"].to_list() == rows["attempts"].to_list()


EXPECTED = {
    "none": ("ok", "ok"),
    "404": ("missing", "http_404"),
    "410": ("missing", "http_410"),
    "placeholder": ("missing", "placeholder"),
    "403": ("missing", "http_403"),
    "429": ("ok", "ok"),
    "500": ("ok", "ok"),
    "503": ("ok", "ok"),
    "slow_first_byte": ("ok", "ok"),
    "stall_midway": ("ok", "ok"),
    "truncated": ("ok", "ok"),
    "reset": ("ok", "ok"),
    "html": ("missing", "not_an_image"),
    "changed": ("missing", "md5_mismatch"),
    "redirect_loop": ("missing", "redirect_loop"),
    "huge": ("missing", "too_large"),
}


@pytest.mark.parametrize("spooled", [True, False], ids=["spooled", "pickled"])
def test_every_fault_ends_with_the_right_status_and_reason(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spooled: bool
) -> None:
    """Both ways a body reaches the workers: memory files, or bytes through the pool's pipe."""
    probed: list = []
    probe = spool.probe
    monkeypatch.setattr(spool, "probe", _recording(probe, probed, spooled))
    with WorldServer(ServeConfig(world=world, faults=f"all,{FAST}")) as srv:
        fates = {k: str(v) for k, v in srv.fates.items()}
        download.run(
            config(world, tmp_path, srv.base_url, sources=(Source.ORIGINAL,), md5=Md5Mode.STRICT)
        )
    rows = manifest.load_all(tmp_path)
    assert rows.height == IMAGES
    for image_id, status, reason in rows.select("image_id", "status", "reason").iter_rows():
        assert (status, reason) == EXPECTED[fates[image_id]], (image_id, fates[image_id])
    ok = set(rows.filter(pl.col("status") == "ok")["image_id"])
    assert set(shard_ids(tmp_path)) == ok  # a placeholder or a changed photo is never stored
    assert len(shard_ids(tmp_path)) == len(ok)
    (spools,) = probed
    assert (spools is not None) == (spooled and hasattr(os, "memfd_create"))
    if spools is not None:
        assert spools._busy == {}  # every spool came back, the failed and capped ones too


def _recording(probe, probed: list, spooled: bool):
    def recorded(pool):
        probed.append(probe(pool) if spooled else None)
        return probed[-1]

    return recorded


def test_dead_originals_fall_back_to_thumbnail_or_mirror(world: Path, tmp_path: Path) -> None:
    with WorldServer(ServeConfig(world=world, faults="404=1")) as srv:
        download.run(config(world, tmp_path, srv.base_url))
    rows = manifest.load_all(tmp_path)
    mirrored = {p.stem for p in (world / "served" / "mirror").rglob("*.jpg")}
    by_id = {r["image_id"]: r for r in rows.iter_rows(named=True)}
    for image_id, row in by_id.items():
        if image_id in mirrored:
            assert (row["status"], row["source"], row["verified"]) == ("ok", "mirror", False)
        else:
            assert (row["status"], row["reason"]) == ("missing", "http_404")


def test_rate_limited_host_is_failed_not_missing_then_recovers(world: Path, tmp_path: Path) -> None:
    with WorldServer(ServeConfig(world=world, faults="429=1,transient=1000,retry_after=1")) as srv:
        cfg = config(world, tmp_path, srv.base_url, sources=(Source.ORIGINAL,), retries=1)
        download.run(replace(cfg, input=replace(cfg.input, limit=4)))
    rows = manifest.load_all(tmp_path)
    assert set(zip(rows["status"], rows["reason"], strict=True)) == {("failed", "rate_limited")}
    with WorldServer(ServeConfig(world=world)) as srv:  # the host lifts its limit: a rerun recovers
        cfg = config(world, tmp_path, srv.base_url, sources=(Source.ORIGINAL,))
        summary = download.run(replace(cfg, input=replace(cfg.input, limit=4)))
    assert summary.tally.recovered == 4
    assert set(manifest.load_all(tmp_path)["status"]) == {"ok"}


def _cli(world: Path, out: Path, base: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "openimages_pipe.cli",
        "download",
        *map(str, image_csvs(world)),
        "--out",
        str(out),
        "--allow-private-addresses",
        "--quiet",
        "--workers",
        "1",
        "--rows-per-shard",
        "3",
        "--concurrency",
        "2",
        "--per-host",
        "2",
        "--mirror-url",
        world_layout.mirror_template(base),
        *extra,
    ]


def _wait_for(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("sig", "where"),
    [(signal.SIGKILL, "local"), (signal.SIGINT, "local"), (signal.SIGKILL, "s3")],
)
def test_killed_run_resumes_with_no_duplicate_and_no_gap(
    world: Path, tmp_path: Path, sig: int, where: str, request: pytest.FixtureRequest
) -> None:
    """In a local folder and in a bucket (SeaweedFS on 127.0.0.1: `s3_out`, tests/conftest.py)."""
    out = tmp_path if where == "local" else request.getfixturevalue("s3_out")
    folder = storage.locate(out)
    with WorldServer(
        ServeConfig(world=world, faults="slow_first_byte=1,slow=0.3,transient=1000")
    ) as srv:
        proc = subprocess.Popen(_cli(world, out, srv.base_url, "--first-byte-timeout", "5"))
        _wait_for(lambda: len(folder.list("shards/*.parquet")) >= 2, 60)
        os.kill(proc.pid, sig)
        started = time.monotonic()
        code = proc.wait(30)
        if sig == signal.SIGINT:
            assert time.monotonic() - started < 5 and code in (0, 130, 1)
        assert 0 < manifest.load_all(folder).height < IMAGES, "killed midway"
        assert len(shard_ids(out)) == len(set(shard_ids(out)))
    lock = ".lock-00000-of-00001"
    assert where == "local" or folder.is_file(lock) == (sig == signal.SIGKILL)
    with WorldServer(ServeConfig(world=world)) as srv:
        # in a bucket the killed run's lease is left: its holder, a gone process here, loses it
        subprocess.run(_cli(world, out, srv.base_url), check=True, timeout=120)
    rows = manifest.load_all(folder)
    assert rows.height == IMAGES and set(rows["status"]) == {"ok"}
    assert sorted(shard_ids(out)) == sorted(rows["image_id"])
    assert set(rows["shard"]) == set(folder.list("shards/*.parquet"))  # no orphan left
    assert folder.list(".journal/*/*.parquet") == []
    assert where == "local" or not folder.is_file(lock)  # a bucket's lease is let go
    assert not list(tmp_path.rglob(".*tmp*")) and not Path("s3:").exists()


def test_jpeg_format_writes_one_file_per_image(world: Path, tmp_path: Path) -> None:
    with WorldServer(ServeConfig(world=world)) as srv:
        cfg = config(world, tmp_path, srv.base_url)
        download.run(replace(cfg, format=OutputFormat.JPEG))
    rows = manifest.load_all(tmp_path)
    assert set(rows["status"]) == {"ok"}
    for shard in rows["shard"]:
        assert (tmp_path / shard).is_file() and shard.endswith(".jpg")


def test_hostile_rows_each_get_a_clear_outcome_and_lose_nothing_else(tmp_path: Path) -> None:
    world = tmp_path / "w"
    base = world_layout.base_url(port=world_layout.free_port())
    originals = world / "served" / "original"
    write_world(world, base, [
        Served("/good.jpg", "00000000000000a1", "original", originals / "good.jpg",
               flat((300, 200), "teal"), "image/jpeg"),
        Served("/bomb.png", "00000000000000b2", "original", originals / "bomb.png",
               png_claiming(100_000, 100_000), "image/png"),
    ])  # fmt: skip
    csv = tmp_path / "images.csv"
    csv.write_text(
        "ImageID,Subset,OriginalURL,OriginalSize,OriginalMD5,Thumbnail300KURL\n"
        f"00000000000000a1,train,{base}/good.jpg,,,\n"
        f"../../../etc/passwd,train,{base}/good.jpg,,,\n"
        "00000000000000c3,train,file:///etc/passwd,,,\n"
        f"00000000000000b2,train,{base}/bomb.png,,,\n"
    )
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=world)):
        cfg = download.DownloadConfig(
            out=out,
            input=InputConfig(csvs=(csv,), sources=(Source.ORIGINAL,)),
            fetch=FetchConfig(allow_private=True, retries=0, md5=Md5Mode.OFF),
            workers=1,
            quiet=True,
        )
        summary = download.run(cfg)
    rows = {r["image_id"]: r for r in manifest.load_all(out).iter_rows(named=True)}
    assert (rows["00000000000000a1"]["status"], rows["00000000000000a1"]["reason"]) == ("ok", "ok")
    assert rows["00000000000000c3"]["reason"] == "bad_url"
    assert rows["00000000000000b2"]["reason"] == "too_large"
    assert summary.tally.invalid_examples == ["../../../etc/passwd"]
    assert not (tmp_path / "etc").exists() and len(rows) == 3
    assert shard_ids(out) == ["00000000000000a1"]


def test_status_command_reports_counts_and_json(world: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openimages_pipe.cli import app

    with WorldServer(ServeConfig(world=world, faults="404=1")) as srv:
        cfg = config(world, tmp_path, srv.base_url, sources=(Source.ORIGINAL,))
        download.run(replace(cfg, input=replace(cfg.input, limit=5)))
    result = CliRunner().invoke(app, ["status", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    import json

    summary = json.loads(result.output)
    assert summary["status"] == {"missing": 5} and summary["reason"] == {"http_404": 5}
    assert summary["last_run"]["newly_missing"] == 5
    empty = CliRunner().invoke(app, ["status", str(tmp_path / "nothing")])
    assert empty.exit_code == 1 and "no download manifest" in empty.output
