"""`train --shards` and `embed` read a download in object storage (SeaweedFS on 127.0.0.1: the
`s3_out` fixture) exactly as they read it on a disk: the same index, the same images through
forked loader workers (each with its own S3 connections), the same embeddings; a bucket without
shards, or one that refuses us, is one line naming it.

`s3_download` is a real `download --out s3://...` of the world that `image_inputs` downloaded
(so its splits name the same images), and `on_disk` the same objects copied to a local folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from rich.console import Console
from torch.utils.data import DataLoader, IterableDataset
from typer.testing import CliRunner

from nlc_model.images import shards
from nlc_model.images import train_backbone as tb
from nlc_model.images.launch import load_config, save_config
from openimages_pipe.cli import app
from openimages_pipe.download import storage
from openimages_pipe.errors import InputError
from tests.fixtures.nlc_images import download_world, shard_ids

QUIET = Console(quiet=True)


@pytest.fixture
def s3_download(image_inputs: tuple[Path, Path], s3_out: str) -> str:
    return str(download_world(image_inputs[0].parent, s3_out))


@pytest.fixture
def on_disk(s3_download: str, tmp_path: Path) -> Path:
    """The bucket's manifest and shards, object by object, in a local download folder."""
    bucket, local = storage.locate(s3_download), tmp_path / "copy"
    for key in ["manifest.parquet", *bucket.list("shards/*.parquet")]:
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(bucket.read_bytes(key))
    return local


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, backbone_config) -> Path:
    """A tiny `train --stage backbone` checkpoint (width 4: D = 32), for `embed`."""
    run = tmp_path_factory.mktemp("s3-embed") / "run"
    tb.run(backbone_config(run, image_size=40, steps=1), QUIET)
    return run / "baseline" / tb.CHECKPOINT


def stream_images(index: shards.ShardIndex, workers: int) -> dict[int, torch.Tensor]:
    """Every image of an evaluation stream by position; an image delivered twice fails."""
    spec = shards.StreamSpec(24, train=False)
    stream = shards.ShardStream(index, np.arange(len(index)), spec, workers=workers)
    seen: dict[int, torch.Tensor] = {}
    for images, positions in shards.loader(stream, 4, pin=False):
        for image, p in zip(images, positions.tolist(), strict=True):
            assert p not in seen, f"image {p} delivered twice"
            seen[p] = image
    return seen


def test_the_bucket_indexes_as_its_copy_on_disk(image_inputs, s3_download, on_disk) -> None:
    remote, local = shards.read_index(s3_download), shards.read_index(on_disk)
    assert remote.root == s3_download and local.root == str(on_disk)
    assert remote.files == local.files and len(remote.files) > 1
    assert remote.image_ids.to_pylist() == local.image_ids.to_pylist() == shard_ids(on_disk)
    for name in ("file", "group", "offset"):
        assert np.array_equal(getattr(remote, name), getattr(local, name))
    assert sorted(remote.image_ids.to_pylist()) == sorted(shard_ids(image_inputs[0]))


def test_forked_workers_stream_the_bucket_as_the_disk(s3_download, on_disk) -> None:
    remote, local = shards.read_index(s3_download), shards.read_index(on_disk)
    from_disk, from_bucket = stream_images(local, 0), stream_images(remote, 2)
    assert sorted(from_bucket) == list(range(len(local)))  # each image once, over 2 workers
    assert all(torch.equal(from_bucket[p], from_disk[p]) for p in from_disk)


class FolderOfEachWorker(IterableDataset):
    """Yields (pid, id of the S3 filesystem) of the worker that reads it."""

    def __init__(self, root: str) -> None:
        self.root = root

    def __iter__(self):
        yield os.getpid(), id(shards.folder_of(self.root).fs)


def test_each_forked_worker_makes_its_own_s3_filesystem(s3_download) -> None:
    parent = shards.folder_of(s3_download)  # made before the fork: the workers inherit it
    assert shards.folder_of(s3_download) is parent
    found = list(DataLoader(FolderOfEachWorker(s3_download), batch_size=None, num_workers=2))
    pids = {int(pid) for pid, _ in found}
    assert len(pids) == 2 and os.getpid() not in pids
    # forked memory keeps the parent's addresses: the same id would be the parent's filesystem
    assert id(parent.fs) not in {int(fs) for _, fs in found}


def test_a_shard_gone_from_the_bucket_is_one_line_from_a_worker(s3_download) -> None:
    index = shards.read_index(s3_download)
    bucket = storage.locate(s3_download)
    bucket.delete(index.files[-1])
    with pytest.raises(InputError) as e:
        stream_images(index, 2)
    assert str(e.value).startswith(f"{bucket.where(index.files[-1])}: cannot read")
    assert len(str(e.value).splitlines()) == 1 and "Traceback" not in str(e.value)


def embed_argv(shards_at: str, weights: Path, out: Path) -> list[str]:
    return ["embed", "--shards", shards_at, "--weights", str(weights), "--out", str(out),
            "--batch-size", "8", "--workers", "2", "--device", "cpu"]  # fmt: skip


def by_image(table) -> dict[str, list[float]]:
    return dict(zip(table["image_id"].to_pylist(), table["embedding"].to_pylist(), strict=True))


def test_embed_reads_the_bucket(checkpoint, s3_download, on_disk, tmp_path) -> None:
    tables = {}
    for name, where in (("disk", str(on_disk)), ("bucket", s3_download)):
        out = tmp_path / f"{name}.parquet"
        result = CliRunner().invoke(app, embed_argv(where, checkpoint, out))
        assert result.exit_code == 0, result.output
        tables[name] = pq.read_table(out)
    # rows come in the order the workers deliver them: compare image by image
    disk, bucket = (by_image(tables[name]) for name in ("disk", "bucket"))
    assert sorted(bucket) == sorted(disk) == sorted(shard_ids(on_disk))
    np.testing.assert_allclose([bucket[i] for i in disk], list(disk.values()), atol=1e-5)
    bucket = tables["bucket"]
    assert json.loads(bucket.schema.metadata[b"oi_pipe_config"])["shards"] == s3_download


def train_argv(shards_at: str, splits: Path, out: Path) -> list[str]:
    return ["train", "--stage", "backbone", "--shards", shards_at, "--splits", str(splits),
            "--out", str(out), "--arch", "tiny", "--width", "4", "--image-size", "32",
            "--steps", "2", "--batch-size", "4", "--warmup", "0", "--workers", "2",
            "--device", "cpu"]  # fmt: skip


def test_train_backbone_reads_the_bucket(image_inputs, s3_download, tmp_path) -> None:
    result = CliRunner().invoke(app, train_argv(s3_download, image_inputs[1], tmp_path / "run"))
    assert result.exit_code == 0, result.output
    saved = torch.load(tmp_path / "run" / "baseline" / tb.CHECKPOINT, weights_only=True)
    assert saved["config"]["shards"] == s3_download  # the resolved config names the bucket
    assert saved["state"]["done"] and saved["state"]["samples"] == 2 * 4


def test_the_config_for_torchrun_keeps_an_s3_url_whole(backbone_config, s3_out, tmp_path) -> None:
    cfg = backbone_config(tmp_path / "run", shards=s3_out)
    save_config(cfg, tmp_path / "launch.json")
    loaded = load_config(tmp_path / "launch.json")
    assert loaded.shards == s3_out and loaded == cfg  # a Path would make it s3:/t-.../oi/run


@pytest.mark.parametrize("command", ["train", "embed"])
@pytest.mark.parametrize("bucket", ["empty", "missing"])
def test_a_bucket_without_shards_is_one_line(
    image_inputs, checkpoint, s3_out: str, tmp_path: Path, command: str, bucket: str
) -> None:
    if bucket == "empty":
        storage.locate(s3_out).make()
    out = tmp_path / "out"
    argv = {"train": train_argv(s3_out, image_inputs[1], out),
            "embed": embed_argv(s3_out, checkpoint, out)}[command]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: {s3_out}: no Parquet shards here (write them with `oi-pipe download`)"
    ]
    assert not out.exists()


def test_a_store_that_refuses_us_is_one_line(
    image_inputs, s3_download, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    result = CliRunner().invoke(app, train_argv(s3_download, image_inputs[1], tmp_path / "run"))
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {s3_download}: cannot read"), lines
