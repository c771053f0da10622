"""`--out s3://bucket/prefix`: a download into a real S3-compatible server (SeaweedFS on
127.0.0.1, the `s3_server` fixture), read back by `status` and `build-splits --downloaded`, with
the same kill-and-resume promise as a local folder, and one run per share (a lease object).

Also: a URL of another scheme, or one whose `//` collapsed, is one line and exit 1, and never
becomes a local folder. The kill-and-resume test is the local folder's, run on a bucket too
(tests/download/test_pipeline.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.download import lease, manifest, s3, storage
from openimages_pipe.download.manifest import Share
from openimages_pipe.errors import InputError, OutputError
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_signals import cli_args, wait_for
from tests.fixtures.worlds import IMAGES, image_csvs

LOCK = ".lock-00000-of-00001"


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("gs://bucket/prefix", "unsupported URL scheme gs://"),
        ("file:///tmp/x", "unsupported URL scheme file://"),
        ("s3:/bucket/prefix", "looks like a URL with one slash"),
        ("s3://Not_A_Bucket/p", "not an S3 bucket name"),
    ],
)
def test_a_url_that_is_not_s3_is_one_line_and_never_a_local_folder(
    offline_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    csv = str(image_csvs(offline_world)[0])
    for argv in (["download", csv, "--out", out], ["status", out]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 1, result.output
        assert message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no folder named gs:, file: or s3:


def test_status_and_build_splits_read_the_bucket(
    offline_world: Path, s3_out: str, tmp_path: Path
) -> None:
    with WorldServer(ServeConfig(world=offline_world, faults="404=0.3")) as srv:
        argv = cli_args(offline_world, s3_out, srv.base_url, "--sources", "original")
        subprocess.run(argv, check=True, timeout=120)
    result = CliRunner().invoke(app, ["status", s3_out, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    rows = manifest.load_all(storage.locate(s3_out))
    assert summary["images"] == IMAGES == rows.height
    assert summary["status"]["ok"] == rows.filter(pl.col("status") == "ok").height
    assert 0 < summary["status"]["ok"] < IMAGES and summary["last_run"]["images"] == IMAGES

    data = offline_world / "data"
    inputs = [f"--images={p}" for p in image_csvs(offline_world)]
    inputs += [f"--machine-labels={p}" for p in sorted(data.glob("machine_ann/*/labels.csv"))]
    inputs += [f"--human-labels={p}" for p in sorted(data.glob("human_ann/*/labels.csv"))]
    inputs += ["--class-names", str(data / "dict.csv"), "--min-train-images=0"]
    built = CliRunner().invoke(
        app, ["build-splits", *inputs, "--min-val-images=0", "--downloaded", s3_out,
              "--out", str(tmp_path / "splits")],
    )  # fmt: skip
    assert built.exit_code == 0, built.output
    record = json.loads((tmp_path / "splits" / "splits.json").read_text())
    assert record["config"]["downloaded"] == s3_out
    by_status = record["counts"]["images"]["by_status"]
    assert by_status["ok"] == summary["status"]["ok"]
    kept = pl.concat(
        pl.read_parquet(tmp_path / "splits" / f"{n}.parquet", columns=["image_id"])
        for n in ("T", "V_train", "V_eval")
    )["image_id"]
    assert set(kept) <= set(rows.filter(pl.col("status") == "ok")["image_id"])


def test_polars_reads_the_bucket_as_it_reads_a_disk(
    offline_world: Path, s3_out: str, s3_server
) -> None:
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        argv = cli_args(offline_world, s3_out, srv.base_url, "--limit", "6")
        subprocess.run(argv, check=True, timeout=120)
    env = s3_server.env()
    options = {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "aws_endpoint_url": env["AWS_ENDPOINT_URL"],
        "aws_region": env["AWS_REGION"],
        "aws_allow_http": "true",
    }
    shards = pl.read_parquet(f"{s3_out}/shards/*.parquet", storage_options=options)
    listed = pl.read_parquet(f"{s3_out}/manifest.parquet", storage_options=options)
    assert sorted(shards["image_id"]) == sorted(listed["image_id"]) and shards.height == 6
    assert shards.schema["image"] == pl.Struct({"bytes": pl.Binary, "path": pl.String})


def test_a_second_run_on_a_share_in_use_is_refused(offline_world: Path, s3_out: str) -> None:
    folder = storage.locate(s3_out)
    folder.make()
    with folder.lock(LOCK, "in use"):  # this process holds the share: alive, on this machine
        with WorldServer(ServeConfig(world=offline_world)) as srv:
            argv = cli_args(offline_world, s3_out, srv.base_url)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert "another download of share 00000-of-00001 is running here" in done.stderr
        assert manifest.all_manifest_files(folder) == []
    assert not folder.is_file(LOCK)  # let go on leaving


def test_a_lease_of_another_machine_holds_until_nobody_renews_it(
    s3_out: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = storage.locate(s3_out)
    folder.make()
    other = json.dumps({"machine": "elsewhere/boot/1", "pid": 1, "started": "1", "token": "x"})
    folder.client.put(folder.object(LOCK), other.encode())
    with pytest.raises(InputError, match="held by pid 1 on elsewhere"), folder.lock(LOCK, "x"):
        pass
    monkeypatch.setattr(lease, "LEASE_S", 1.0)
    time.sleep(2.5)  # Last-Modified has whole seconds
    with folder.lock(LOCK, "in use"):
        assert json.loads(folder.read_bytes(LOCK))["pid"] == os.getpid()


def test_a_run_that_lost_its_lease_writes_nothing_more(
    s3_out: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = storage.locate(s3_out)
    folder.make()
    monkeypatch.setattr(lease, "RENEW_S", 0.2)
    with folder.lock(LOCK, "in use"):
        folder.write("a.txt", lambda f: f.write(b"mine"))
        folder.client.put(folder.object(LOCK), b"{}")  # another run took the share over
        assert wait_for(lambda: folder._leases[0].lost is not None, 10)
        with pytest.raises(OutputError, match="another run took the share lock over"):
            folder.write("b.txt", lambda f: f.write(b"too late"))
    assert folder.is_file(LOCK)  # not ours any more: left alone
    assert not folder.is_file("b.txt")


def test_the_share_count_is_claimed_once_per_bucket(s3_out: str) -> None:
    folder = storage.locate(s3_out)
    folder.make()
    manifest.claim_share_count(folder, Share(0, 2))
    manifest.claim_share_count(folder, Share(1, 2))
    with pytest.raises(InputError, match="--num-shards 2"):
        manifest.claim_share_count(folder, Share(0, 3))
    assert folder.create(".num-shards", b"3\n") is False
    assert folder.read_bytes(".num-shards") == b"2\n"


def test_signed_requests_are_refused_with_a_wrong_secret(s3_out: str, s3_server) -> None:
    wrong = {**s3_server.env(), "AWS_SECRET_ACCESS_KEY": "wrong"}
    client = s3.S3Client(s3.Credentials.from_env(wrong))
    with pytest.raises(s3.S3Error, match="HTTP 403"):
        client.put(s3.ObjectUrl("oi-pipe-ready", "x"), b"x", if_none_match=True)
