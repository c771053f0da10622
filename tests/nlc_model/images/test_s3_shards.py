"""`train --shards` and `embed` read a download in object storage (SeaweedFS on 127.0.0.1: the
`s3_out` fixture) exactly as they read it on a disk: the same index, the same images through
forked loader workers (each with its own S3 connections), the same embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from nlc_model.images import shards
from nlc_model.images import train_backbone as tb
from nlc_model.images.launch import load_config, save_config
from openimages_pipe.cli import app
from openimages_pipe.download import storage

QUIET = Console(quiet=True)


@pytest.fixture
def s3_download(image_inputs: tuple[Path, Path], s3_out: str) -> str:
    """The session's real download folder, copied file by file into a fresh bucket prefix."""
    local, bucket = image_inputs[0], storage.locate(s3_out)
    bucket.make()
    for path in sorted(p for p in local.rglob("*.parquet") if ".journal" not in p.parts):
        data = path.read_bytes()
        bucket.write(path.relative_to(local).as_posix(), lambda out, d=data: out.write(d))
    return s3_out


def stream_images(index: shards.ShardIndex, workers: int) -> dict[int, torch.Tensor]:
    spec = shards.StreamSpec(24, train=False)
    stream = shards.ShardStream(index, np.arange(len(index)), spec, workers=workers)
    seen: dict[int, torch.Tensor] = {}
    for images, positions in shards.loader(stream, 4, pin=False):
        for image, p in zip(images, positions.tolist(), strict=True):
            assert p not in seen, f"image {p} delivered twice"
            seen[p] = image
    return seen


def test_the_bucket_indexes_and_streams_as_the_disk_does(image_inputs, s3_download) -> None:
    local = shards.read_index(image_inputs[0])
    remote = shards.read_index(s3_download)
    assert remote.root == s3_download and remote.files == local.files
    assert remote.image_ids.to_pylist() == local.image_ids.to_pylist()
    for name in ("file", "group", "offset"):
        assert np.array_equal(getattr(remote, name), getattr(local, name))
    from_disk, from_bucket = stream_images(local, 0), stream_images(remote, 2)
    assert sorted(from_bucket) == list(range(len(local)))  # each image once, over 2 workers
    assert all(torch.equal(from_bucket[p], from_disk[p]) for p in from_disk)


def test_embed_reads_the_bucket(image_inputs, backbone_config, s3_download, tmp_path) -> None:
    tb.run(backbone_config(tmp_path / "run", image_size=40, steps=1), QUIET)
    weights = str(tmp_path / "run" / "baseline" / tb.CHECKPOINT)
    tables = {}
    for name, where in (("disk", str(image_inputs[0])), ("bucket", s3_download)):
        out = tmp_path / f"{name}.parquet"
        argv = ["embed", "--shards", where, "--weights", weights, "--out", str(out),
                "--workers", "2", "--device", "cpu"]  # fmt: skip
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, result.output
        tables[name] = pq.read_table(out)
    disk, bucket = tables["disk"], tables["bucket"]
    assert bucket["image_id"].to_pylist() == disk["image_id"].to_pylist()
    assert np.allclose(
        np.stack(bucket["embedding"].to_numpy(zero_copy_only=False)),
        np.stack(disk["embedding"].to_numpy(zero_copy_only=False)),
        atol=1e-5,
    )
    config = json.loads(bucket.schema.metadata[b"oi_pipe_config"])
    assert config["shards"] == s3_download


def test_train_backbone_reads_the_bucket(backbone_config, s3_download, tmp_path) -> None:
    cfg = backbone_config(tmp_path / "run", shards=s3_download, steps=2)
    save_config(cfg, tmp_path / "launch.json")
    assert load_config(tmp_path / "launch.json").shards == s3_download  # not s3:/ collapsed
    results = tb.run(cfg, QUIET)
    assert (tmp_path / "run" / "baseline" / tb.CHECKPOINT).is_file()
    assert 0.0 <= results["baseline"]["AP_all"] <= 1.0


def test_a_bucket_without_shards_is_one_line(image_inputs, s3_out: str, tmp_path: Path) -> None:
    storage.locate(s3_out).make()
    argv = ["train", "--stage", "backbone", "--shards", s3_out, "--splits", str(image_inputs[1]),
            "--out", str(tmp_path / "run"), "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert lines == [
        f"error: {s3_out}: no Parquet shards here (write them with `oi-pipe download`)"
    ]
