"""The shard writers: sizes, names, schema, readers (pyarrow, polars, datasets), crashes, paths."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from openimages_pipe.download import shard_writer
from openimages_pipe.download.shard_writer import (
    FlushedShard,
    JpegShardWriter,
    ParquetShardWriter,
    ShardRecord,
    jpeg_path,
    shard_image_ids,
)
from openimages_pipe.errors import OutputError
from tests.fixtures.images import flat

PREFIX = "shards/00000-20261128T101500"


def record(
    i: int, size: tuple[int, int] = (32, 24), md5: str | None = "ZJaXgdaLRYDO5F4ZbOZw7w=="
) -> ShardRecord:
    return ShardRecord(
        image_id=f"{i:016x}",
        jpeg=flat(size, "red"),
        width=size[0],
        height=size[1],
        original_width=size[0] * 10,
        original_height=size[1] * 10,
        source="original" if i % 2 else "thumbnail",
        md5=md5,
        verified=bool(i % 2),
    )


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def write_parquet(out: Path, n: int, **kwargs) -> list[FlushedShard | None]:
    writer = ParquetShardWriter(out, PREFIX, **kwargs)
    results = [writer.add(record(i)) for i in range(n)]
    return [*results, writer.close()]


# --- Parquet: shards and names -------------------------------------------------------------------


def test_rows_per_shard_names_and_the_tail(tmp_path):
    results = write_parquet(tmp_path, 7, rows_per_shard=3)
    flushed = [r for r in results if r is not None]
    assert [i for i, r in enumerate(results) if r is not None] == [2, 5, 7]  # 3rd, 6th add; close
    assert [f.name for f in flushed] == [f"{PREFIX}-0000{i}.parquet" for i in range(3)]
    assert [len(f.image_ids) for f in flushed] == [3, 3, 1]
    assert sum((f.image_ids for f in flushed), ()) == tuple(f"{i:016x}" for i in range(7))
    assert all_files(tmp_path) == [f.name for f in flushed]  # and no temporary file left
    for f in flushed:
        assert shard_image_ids(tmp_path / f.name) == f.image_ids


def test_close_with_nothing_buffered_writes_nothing(tmp_path):
    writer = ParquetShardWriter(tmp_path, PREFIX, rows_per_shard=2)
    assert writer.add(record(0)) is None
    assert writer.add(record(1)) is not None
    assert writer.close() is None
    assert writer.close() is None
    assert len(all_files(tmp_path)) == 1


def test_bytes_per_shard_flushes_early(tmp_path):
    size = len(record(0).jpeg)
    results = write_parquet(tmp_path, 5, rows_per_shard=1000, bytes_per_shard=2 * size + 1)
    assert [len(r.image_ids) for r in results if r is not None] == [3, 2]


def test_numbering_continues_after_existing_shards(tmp_path):
    write_parquet(tmp_path, 2, rows_per_shard=1)
    writer = ParquetShardWriter(tmp_path, PREFIX, rows_per_shard=1)
    assert writer.add(record(9)).name == f"{PREFIX}-00002.parquet"
    # another prefix in the same folder has its own numbers
    other = ParquetShardWriter(tmp_path, "shards/00001-20261128T101500", rows_per_shard=1)
    assert other.add(record(9)).name == "shards/00001-20261128T101500-00000.parquet"


# --- Parquet: what is inside ---------------------------------------------------------------------

EXPECTED_FIELDS = [
    ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("image_id", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("original_width", pa.int32()),
    ("original_height", pa.int32()),
    ("source", pa.string()),
    ("md5", pa.string()),
    ("verified", pa.bool_()),
]


@pytest.fixture
def shard(tmp_path) -> Path:
    writer = ParquetShardWriter(tmp_path, PREFIX, metadata={"oi_pipe": '{"image_size": 256}'})
    for i in range(4):
        writer.add(record(i, size=(32 + i, 24), md5=None if i == 3 else "bWQ1"))
    return tmp_path / writer.close().name


def test_pyarrow_reads_the_exact_schema(shard):
    table = pq.read_table(shard)
    assert [(f.name, f.type) for f in table.schema] == EXPECTED_FIELDS
    assert table.schema.metadata[b"oi_pipe"] == b'{"image_size": 256}'
    row = table.slice(1, 1).to_pylist()[0]
    assert row["image"]["path"] == f"{1:016x}.jpg"
    assert Image.open(io.BytesIO(row["image"]["bytes"])).size == (33, 24)
    assert row | {"image": None} == {
        "image": None,
        "image_id": f"{1:016x}",
        "width": 33,
        "height": 24,
        "original_width": 330,
        "original_height": 240,
        "source": "original",
        "md5": "bWQ1",
        "verified": True,
    }
    assert table.column("md5").to_pylist()[3] is None


def test_polars_reads_it(shard):
    frame = pl.read_parquet(shard)
    assert frame.schema == pl.Schema(
        {
            "image": pl.Struct({"bytes": pl.Binary, "path": pl.String}),
            "image_id": pl.String,
            "width": pl.Int32,
            "height": pl.Int32,
            "original_width": pl.Int32,
            "original_height": pl.Int32,
            "source": pl.String,
            "md5": pl.String,
            "verified": pl.Boolean,
        }
    )
    assert frame.height == 4
    first = frame.row(0, named=True)
    assert Image.open(io.BytesIO(first["image"]["bytes"])).size == (32, 24)


def test_jpeg_bytes_are_stored_uncompressed_and_the_rest_with_zstd(shard):
    column_chunks = pq.ParquetFile(shard).metadata.row_group(0)
    compression = {
        column_chunks.column(i).path_in_schema: column_chunks.column(i).compression
        for i in range(column_chunks.num_columns)
    }
    assert compression.pop("image.bytes") == "UNCOMPRESSED"
    assert set(compression.values()) == {"ZSTD"}


def test_row_groups_are_bounded_in_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(shard_writer, "ROW_GROUP_BYTES", 3 * len(record(0).jpeg))
    (flushed,) = [r for r in write_parquet(tmp_path, 10, rows_per_shard=10) if r is not None]
    metadata = pq.ParquetFile(tmp_path / flushed.name).metadata
    assert metadata.num_rows == 10
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [3, 3, 3, 1]


def test_hugging_face_metadata_is_what_datasets_writes(shard):
    schema = pq.read_schema(shard)
    features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["width"] == {"dtype": "int32", "_type": "Value"}
    assert features["verified"] == {"dtype": "bool", "_type": "Value"}
    datasets = pytest.importorskip(
        "datasets", reason="datasets is a test dependency: pip install datasets"
    )
    expected = datasets.Features(
        {
            "image": datasets.Image(),
            **{name: datasets.Value(str(kind)) for name, kind in EXPECTED_FIELDS[1:]},
        }
    )
    assert json.loads(expected.arrow_schema.metadata[b"huggingface"]) == {
        "info": {"features": features}
    }
    assert expected.arrow_schema.remove_metadata() == schema.remove_metadata()


def test_datasets_loads_the_shard_as_images(shard, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    datasets = pytest.importorskip(
        "datasets", reason="datasets is a test dependency: pip install datasets"
    )
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(shard)], split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert len(loaded) == 4
    first = loaded[0]
    assert isinstance(first["image"], Image.Image)
    assert first["image"].size == (32, 24)
    assert (first["image_id"], first["width"], first["verified"]) == (f"{0:016x}", 32, False)


# --- Parquet: atomicity --------------------------------------------------------------------------


def test_a_crash_mid_write_leaves_no_shard_under_its_final_name(tmp_path, monkeypatch):
    real_write_table = pq.ParquetWriter.write_table

    def crash(self, table, row_group_size=None):
        real_write_table(self, table.slice(0, 1), row_group_size=1)  # some bytes reach the disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", crash)
    writer = ParquetShardWriter(tmp_path, PREFIX, rows_per_shard=2)
    assert writer.add(record(0)) is None
    with pytest.raises(OutputError, match=r"shards/.+-00000\.parquet: cannot write: No space"):
        writer.add(record(1))
    assert all_files(tmp_path) == []  # neither the shard nor its temporary file

    monkeypatch.undo()  # the disk has room again: nothing was lost from the buffer
    flushed = writer.close()
    assert flushed == FlushedShard(f"{PREFIX}-00000.parquet", (f"{0:016x}", f"{1:016x}"))
    assert all_files(tmp_path) == [flushed.name]


def test_the_temporary_file_is_in_the_final_folder_and_hidden(tmp_path, monkeypatch):
    seen: list[str] = []
    real_replace = os.replace

    def spy(source, destination):
        seen.append(Path(source).name)
        assert Path(source).parent == Path(destination).parent  # same filesystem: atomic rename
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", spy)
    write_parquet(tmp_path, 1)
    assert seen == [f".{Path(PREFIX).name}-00000.parquet.tmp-{os.getpid()}"]


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/escape", "shards/../../escape"])
def test_a_prefix_outside_the_output_folder_is_refused(tmp_path, prefix):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="outside"):
        ParquetShardWriter(out, prefix)
    with pytest.raises(ValueError, match="outside"):
        JpegShardWriter(out, prefix)


def test_a_symlink_out_of_the_output_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "shards").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        ParquetShardWriter(out, "shards/run")


# --- JPEG files ----------------------------------------------------------------------------------


def test_jpeg_writer_writes_files_and_sidecars(tmp_path):
    writer = JpegShardWriter(tmp_path, PREFIX, rows_per_shard=2)
    results = [writer.add(record(i, size=(40 + i, 30))) for i in range(3)] + [writer.close()]
    flushed = [r for r in results if r is not None]
    assert [f.name for f in flushed] == [f"{PREFIX}-00000.parquet", f"{PREFIX}-00001.parquet"]
    images = [f"images/000/{i:016x}.jpg" for i in range(3)]
    assert all_files(tmp_path) == sorted(images + [f.name for f in flushed])
    for i, path in enumerate(images):
        assert Image.open(tmp_path / path).size == (40 + i, 30)

    sidecar = pl.read_parquet(tmp_path / flushed[0].name)
    assert sidecar.columns == [
        "image_id",
        "path",
        "width",
        "height",
        "original_width",
        "original_height",
        "source",
        "md5",
        "verified",
    ]
    assert sidecar["path"].to_list() == images[:2]
    assert sidecar["width"].to_list() == [40, 41]
    assert shard_image_ids(tmp_path / flushed[1].name) == (f"{2:016x}",)


def test_jpeg_paths_are_deterministic_so_a_rerun_overwrites(tmp_path):
    first = JpegShardWriter(tmp_path, "shards/run1", rows_per_shard=10)
    first.add(record(5, size=(40, 30)))
    first.close()
    again = JpegShardWriter(tmp_path, "shards/run2", rows_per_shard=10)
    again.add(record(5, size=(50, 30)))
    again.close()
    jpgs = [p for p in all_files(tmp_path) if p.endswith(".jpg")]
    assert jpgs == [jpeg_path(f"{5:016x}")] == [f"images/000/{5:016x}.jpg"]
    assert Image.open(tmp_path / jpgs[0]).size == (50, 30)


def test_jpeg_folders_spread_by_the_id_prefix():
    assert jpeg_path("fe1a2b3c4d5e6f70") == "images/fe1/fe1a2b3c4d5e6f70.jpg"
    assert jpeg_path("0123456789abcdef", "jpeg") == "jpeg/012/0123456789abcdef.jpg"


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "..", "a/b", "/abs", "", "a.b", "x\x00"])
def test_an_unsafe_image_id_is_never_a_file_name(tmp_path, image_id):
    out = tmp_path / "out"
    writer = JpegShardWriter(out, PREFIX)
    bad = ShardRecord(image_id, flat((32, 24), "red"), 32, 24, 32, 24, "original", None, False)
    with pytest.raises(ValueError, match="image_id"):
        writer.add(bad)
    assert all_files(tmp_path) == []
