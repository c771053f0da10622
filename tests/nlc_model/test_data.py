"""Split files and features: rows in any order, missing features counted, bad input named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nlc_model.data import load_train_data
from nlc_model.synthetic import WorldConfig, make_world, write_world
from openimages_pipe.errors import InputError

TINY = WorldConfig(
    classes=10, families=3, features=6, t_images=200, v_images=120, missing_features=0.05, seed=1
)
CPU = torch.device("cpu")
NAMES = ("T", "V_train", "V_eval")


@pytest.fixture(scope="module")
def world():
    return make_world(TINY)


@pytest.fixture
def files(world, tmp_path: Path) -> tuple[Path, Path]:
    write_world(world, tmp_path / "splits", tmp_path / "features", files=3)
    return tmp_path / "splits", tmp_path / "features"


def test_features_in_any_order_over_files_are_matched_by_image_id(world, files) -> None:
    splits, features = files
    data = load_train_data(splits, features, CPU, NAMES)
    emb = world.features.column("embedding").combine_chunks().flatten().to_numpy()
    by_id = dict(
        zip(world.features.column("image_id").to_pylist(), emb.reshape(-1, 6), strict=True)
    )
    split = data.splits["V_eval"]
    for i in (0, len(split) // 2, len(split) - 1):
        got = data.features.table[split.feature_rows[i]].numpy()
        assert np.array_equal(got, by_id[split.image_ids[i].as_py()])


def test_images_without_features_are_dropped_and_counted(world, files) -> None:
    data = load_train_data(*files, CPU, NAMES)
    have = set(world.features.column("image_id").to_pylist())
    for name in NAMES:
        ids = world.splits[name].column("image_id").to_pylist()
        missing = sum(i not in have for i in ids)
        assert data.dropped[name] == missing
        assert len(data.splits[name]) == len(ids) - missing
    assert sum(data.dropped.values()) > 0  # the world really leaves some out


def test_labels_survive_the_drop(world, files) -> None:
    data = load_train_data(*files, CPU, NAMES)
    split = data.splits["T"]
    labels = dict(
        zip(
            world.splits["T"].column("image_id").to_pylist(),
            world.splits["T"].column("labels").to_pylist(),
            strict=True,
        )
    )
    y = split.noisy.dense(torch.arange(len(split)), TINY.classes)
    for i in range(0, len(split), 17):
        assert torch.nonzero(y[i]).flatten().tolist() == labels[split.image_ids[i].as_py()]


def test_missing_split_file_is_named(files) -> None:
    splits, features = files
    (splits / "V_train.parquet").unlink()
    with pytest.raises(InputError) as e:
        load_train_data(splits, features, CPU, NAMES)
    assert "V_train.parquet" in str(e.value) and "build-splits" in str(e.value)


def test_missing_column_is_named(files) -> None:
    splits, features = files
    t = pq.read_table(splits / "V_eval.parquet").drop_columns(["verified_neg"])
    pq.write_table(t, splits / "V_eval.parquet")
    with pytest.raises(InputError, match=r"V_eval.parquet: missing column\(s\) \['verified_neg'\]"):
        load_train_data(splits, features, CPU, NAMES)


def test_embeddings_of_another_width_are_named(files) -> None:
    splits, features = files
    odd = pa.table(
        {
            "image_id": ["ffffffffffffffff"],
            "embedding": pa.array([[0.0] * 5], pa.list_(pa.float32(), 5)),
        }
    )
    pq.write_table(odd, features / "part-99999.parquet")
    with pytest.raises(InputError) as e:
        load_train_data(splits, features, CPU, NAMES)
    assert "part-99999.parquet" in str(e.value) and "(value: '5')" in str(e.value)


def test_variable_length_embeddings_are_refused(files, tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"image_id": ["a"], "embedding": [[1.0, 2.0]]}), bad)
    with pytest.raises(InputError, match="fixed_size_list"):
        load_train_data(files[0], bad, CPU, NAMES)


def test_duplicated_image_in_features_is_named(world, files) -> None:
    splits, features = files
    shutil.copy(features / "part-00000.parquet", features / "part-00003.parquet")
    with pytest.raises(InputError, match="more than once"):
        load_train_data(splits, features, CPU, NAMES)


def test_class_index_out_of_range_is_named(files) -> None:
    splits, features = files
    t = pq.read_table(splits / "T.parquet")
    labels = pa.array([[TINY.classes]] + t.column("labels").to_pylist()[1:], pa.list_(pa.int32()))
    pq.write_table(t.set_column(1, "labels", labels), splits / "T.parquet")
    with pytest.raises(InputError) as e:
        load_train_data(splits, features, CPU, NAMES)
    assert "T.parquet" in str(e.value) and f"(value: '{TINY.classes}')" in str(e.value)


def _large(field: pa.Field) -> pa.Field:
    kind = pa.large_string() if field.name == "image_id" else pa.large_list(field.type.value_type)
    return pa.field(field.name, kind)


def test_large_list_columns_as_polars_writes_them(world, files) -> None:
    splits, features = files
    t = pq.read_table(splits / "V_eval.parquet")
    pq.write_table(t.cast(pa.schema([_large(f) for f in t.schema])), splits / "V_eval.parquet")
    data = load_train_data(splits, features, CPU, NAMES)
    split = data.splits["V_eval"]
    assert len(split) + data.dropped["V_eval"] == t.num_rows
    pos = dict(
        zip(t.column("image_id").to_pylist(), t.column("verified_pos").to_pylist(), strict=True)
    )
    dense = split.pos.dense(torch.arange(len(split)), TINY.classes)
    for i in range(0, len(split), 7):
        assert torch.nonzero(dense[i]).flatten().tolist() == pos[split.image_ids[i].as_py()]
