"""The shard reader: every image indexed once, splits attached by image id, disjoint shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nlc_model.images import shards
from openimages_pipe.errors import InputError
from tests.fixtures.nlc_images import (
    image_ids,
    real_download,
    shard_ids,
    write_shards,
    write_splits,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("shards")
    ids = image_ids(40)
    write_shards(root / "download", ids[:36], rows_per_shard=10)  # 4 images were never fetched
    return root / "download", write_splits(root / "splits", ids), ids


def test_index_holds_every_image_of_real_downloaded_shards(tmp_path_factory) -> None:
    download = real_download(tmp_path_factory)
    index = shards.read_index(download)
    assert index.image_ids.to_pylist() == shard_ids(download)
    assert len(index.files) > 2 and set(index.file) == set(range(len(index.files)))


def test_rows_are_located_in_their_row_group(tmp_path: Path) -> None:
    ids = image_ids(10)
    write_shards(tmp_path / "a", ids, rows_per_shard=10)
    table = pq.read_table(next((tmp_path / "a" / "shards").glob("*.parquet")))
    pq.write_table(table, tmp_path / "b.parquet", row_group_size=4)  # groups of 4, 4, 2
    (tmp_path / "a" / "shards" / "part-00000.parquet").unlink()
    index = shards.read_index(tmp_path)
    assert index.group.tolist() == [0] * 4 + [1] * 4 + [2] * 2
    assert index.offset.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_split_keeps_images_in_the_shards_and_counts_the_rest(made) -> None:
    download, splits, ids = made
    index = shards.read_index(download)
    total, dropped = 0, 0
    for name in ("T", "V_train", "V_eval"):
        split, lost = shards.attach_split(index, splits, name, 4)
        kept = index.image_ids.take(split.feature_rows.numpy()).to_pylist()
        assert kept == split.image_ids.to_pylist()
        assert set(kept) <= set(ids[:36])
        total, dropped = total + len(split), dropped + lost
    assert (total, dropped) == (36, 4)


def epoch_positions(stream: shards.ShardStream) -> list[int]:
    return sorted(int(p) for _, p in stream)


def test_evaluation_stream_reads_every_image_once_over_workers(made) -> None:
    download, splits, _ = made
    index = shards.read_index(download)
    split, _ = shards.attach_split(index, splits, "T", 4)
    spec = shards.StreamSpec(24, train=False)
    stream = shards.ShardStream(index, split.feature_rows.numpy(), spec, workers=2)
    seen = [p for _, batch in shards.loader(stream, 4, pin=False) for p in batch.tolist()]
    assert sorted(seen) == list(range(len(split)))
    images, positions = shards.to_device(next(iter(shards.loader(stream, 4, False))), spec, CPU)
    assert images.shape == (4, 3, 24, 24) and images.dtype == torch.float32 and images.max() <= 1


@pytest.mark.parametrize(("world", "workers"), [(2, 1), (2, 2), (3, 2)])
def test_each_process_and_worker_reads_a_disjoint_share(made, world: int, workers: int) -> None:
    download, _, _ = made
    index = shards.read_index(download)
    rows = np.arange(len(index))
    spec = shards.StreamSpec(16, train=True, seed=7)
    for epoch in (0, 1):
        parts = [
            shards.ShardStream(index, rows, spec, rank, world, workers).rank_positions(epoch)
            for rank in range(world)
        ]
        assert all(len(p) for p in parts), "every process has work"
        together = np.concatenate(parts)
        assert sorted(together.tolist()) == list(range(len(index)))  # disjoint, none left out


def test_training_stream_is_endless_and_a_pure_function_of_seed(made) -> None:
    download, _, _ = made
    index = shards.read_index(download)
    rows = np.arange(len(index))
    spec = shards.StreamSpec(16, train=True, min_scale=0.5, seed=3)
    first, again = (iter(shards.ShardStream(index, rows, spec)) for _ in range(2))
    a = [next(first) for _ in range(2 * len(index) + 3)]  # into a third epoch
    b = [next(again) for _ in range(len(a))]
    assert [p for _, p in a] == [p for _, p in b]
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))
    assert sorted(p for _, p in a[: len(index)]) == list(range(len(index)))
    assert [p for _, p in a[: len(index)]] != [p for _, p in a[len(index) : 2 * len(index)]]


def test_too_few_images_for_the_workers_is_refused(made) -> None:
    download, _, _ = made
    index = shards.read_index(download)
    with pytest.raises(InputError, match="cannot feed 8"):
        shards.ShardStream(index, np.arange(5), shards.StreamSpec(16, True), 0, 2, workers=4)


def test_folder_without_shards_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no Parquet shards") as e:
        shards.read_index(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_parquet_that_is_not_an_image_shard_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"image_id": ["a", "b"]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"no column\(s\) \['image'"):
        shards.read_index(tmp_path)
