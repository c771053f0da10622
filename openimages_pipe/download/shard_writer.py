"""The shard writer: resized images (ShardRecord) -> files under the output folder, atomically.

Two formats, one interface: `add(record)` buffers an image and returns a `FlushedShard` when that
add completed a shard; `close()` writes the partial last one. Only a flushed shard is on disk for
good, so the download command marks its `image_ids` done in the manifest, never earlier.

- `ParquetShardWriter` (default): `{prefix}-{seq:05d}.parquet`, `rows_per_shard` images each (or
  fewer, when `bytes_per_shard` is reached first). The `image` column has the Hugging Face
  `datasets` Image layout, struct<bytes: binary, path: string>, and the schema carries the
  `huggingface` metadata that `datasets.Features.arrow_schema` writes, so
  `load_dataset("parquet", ...)` decodes it as PIL images; polars and DuckDB read it as it is.
- `JpegShardWriter` (`--format jpeg`): each image at `images/{id[:3]}/{id}.jpg`, a path that
  depends on the ImageID alone, so a rerun overwrites instead of duplicating (16-hex IDs give 4,096
  folders of ~2,200 files for all 9M images); per `rows_per_shard` images a sidecar
  `{prefix}-{seq:05d}.parquet` holds the other columns and each file's `path`.

Every file is one whole write of a `storage.Folder`: on a disk to `.{name}.tmp-{pid}` in its
final folder, fsynced, then `os.replace`d (`atomic.write_file`); in a bucket one PUT. A reader (or
a rerun after SIGKILL) sees a whole file or none, and a write that fails (a full disk) raises
`OutputError` and leaves no temporary file. Nothing is written outside `out_dir`.
Sequence numbers continue after the shards already there, so a reused prefix never overwrites.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from openimages_pipe.download import storage
from openimages_pipe.download.storage import Folder

MiB = 1024 * 1024
# A shard is written whole from memory, so this bounds the writer's memory; it also keeps shards
# near the size the Hugging Face Hub aims for (datasets.config.MAX_SHARD_SIZE is 500 MB), and far
# below pa.binary()'s 2 GiB per array.
DEFAULT_BYTES_PER_SHARD = 256 * MiB
# Row groups are what a streaming reader fetches at once: datasets caps them at 100 MB.
ROW_GROUP_BYTES = 64 * MiB
# Open Images IDs are 16 hex digits and the reader refuses others; this is the JPEG writer's own
# guard, as there the ID becomes a file name.
SAFE_IMAGE_ID = re.compile(r"[0-9A-Za-z_-]{1,128}")

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
COMMON_FIELDS = [
    pa.field("image_id", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("original_width", pa.int32()),
    pa.field("original_height", pa.int32()),
    pa.field("source", pa.string()),
    pa.field("md5", pa.string()),  # base64 MD5 of the downloaded bytes; null if not computed
    pa.field("verified", pa.bool_()),
]


def _hf_metadata(fields: Sequence[pa.Field]) -> dict[str, str]:
    """What datasets.Features.arrow_schema puts in the schema metadata, for these columns."""
    features = {
        f.name: {"_type": "Image"}
        if f.type == IMAGE_TYPE
        else {"dtype": str(f.type), "_type": "Value"}
        for f in fields
    }
    return {"huggingface": json.dumps({"info": {"features": features}})}


_SHARD_FIELDS = [pa.field("image", IMAGE_TYPE), *COMMON_FIELDS]
SHARD_SCHEMA = pa.schema(_SHARD_FIELDS, metadata=_hf_metadata(_SHARD_FIELDS))
_SIDECAR_FIELDS = [COMMON_FIELDS[0], pa.field("path", pa.string()), *COMMON_FIELDS[1:]]
SIDECAR_SCHEMA = pa.schema(_SIDECAR_FIELDS, metadata=_hf_metadata(_SIDECAR_FIELDS))
# JPEG bytes are already entropy-coded: zstd spends CPU to save nothing (measured: +0.02 %), and
# min/max statistics of image bytes mean nothing. The other columns are small: zstd.
UNCOMPRESSED_COLUMNS = frozenset({"image.bytes"})


@dataclass(frozen=True)
class ShardRecord:
    """One image ready to be stored, with what the manifest and the shard say about it."""

    image_id: str
    jpeg: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    source: str
    md5: str | None
    verified: bool


@dataclass(frozen=True)
class FlushedShard:
    """A shard now complete on disk: its path relative to `out_dir`, and the images it holds."""

    name: str
    image_ids: tuple[str, ...]


class ParquetShardWriter:
    """Buffers records and writes them as `{prefix}-{seq:05d}.parquet` shards. Not thread-safe."""

    def __init__(
        self,
        out_dir: Path | Folder,
        prefix: str,
        rows_per_shard: int = 1000,
        bytes_per_shard: int = DEFAULT_BYTES_PER_SHARD,
        *,
        fsync: bool = True,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if rows_per_shard < 1 or bytes_per_shard < 1:
            raise ValueError(f"shards need >= 1 row and byte: {rows_per_shard}, {bytes_per_shard}")
        self._shards = _ShardNames(out_dir, prefix)
        self._rows_per_shard = rows_per_shard
        self._bytes_per_shard = bytes_per_shard
        self._fsync = fsync
        self._schema = SHARD_SCHEMA.with_metadata({**SHARD_SCHEMA.metadata, **(metadata or {})})
        self._records: list[ShardRecord] = []
        self._bytes = 0

    def add(self, record: ShardRecord) -> FlushedShard | None:
        self._records.append(record)
        self._bytes += len(record.jpeg)
        if len(self._records) >= self._rows_per_shard or self._bytes >= self._bytes_per_shard:
            return self._flush()
        return None

    def close(self) -> FlushedShard | None:
        return self._flush() if self._records else None

    def _flush(self) -> FlushedShard:
        records = self._records
        images = pa.StructArray.from_arrays(
            [
                pa.array([r.jpeg for r in records], pa.binary()),
                pa.array([f"{r.image_id}.jpg" for r in records]),
            ],
            fields=list(IMAGE_TYPE),
        )
        table = pa.Table.from_arrays([images, *_common_columns(records)], schema=self._schema)
        rows_per_group = max(1, ROW_GROUP_BYTES * len(records) // max(1, self._bytes))
        flushed = self._shards.write(table, rows_per_group, self._fsync)
        self._records, self._bytes = [], 0
        return flushed


class JpegShardWriter:
    """Writes each record as `{images_dir}/{id[:3]}/{id}.jpg`, and a sidecar Parquet per group."""

    def __init__(
        self,
        out_dir: Path | Folder,
        prefix: str,
        rows_per_shard: int = 1000,
        *,
        images_dir: str = "images",
        fsync: bool = True,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if rows_per_shard < 1:
            raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
        self._shards = _ShardNames(out_dir, prefix)
        self._folder = self._shards.folder
        self._images_dir = images_dir
        self._folder.check(images_dir)  # refuse a bad images_dir now, not at the first add
        self._rows_per_shard = rows_per_shard
        self._fsync = fsync
        self._schema = SIDECAR_SCHEMA.with_metadata({**SIDECAR_SCHEMA.metadata, **(metadata or {})})
        self._records: list[ShardRecord] = []  # without their bytes: those are on disk already

    def add(self, record: ShardRecord) -> FlushedShard | None:
        key = jpeg_path(record.image_id, self._images_dir)
        self._folder.check(key)
        self._folder.write(key, lambda f: f.write(record.jpeg), self._fsync)
        self._records.append(dataclasses.replace(record, jpeg=b""))
        return self._flush() if len(self._records) >= self._rows_per_shard else None

    def close(self) -> FlushedShard | None:
        return self._flush() if self._records else None

    def _flush(self) -> FlushedShard:
        records = self._records
        paths = pa.array([jpeg_path(r.image_id, self._images_dir) for r in records], pa.string())
        image_id, *rest = _common_columns(records)
        table = pa.Table.from_arrays([image_id, paths, *rest], schema=self._schema)
        flushed = self._shards.write(table, len(records), self._fsync)
        self._records = []
        return flushed


def jpeg_path(image_id: str, images_dir: str = "images") -> str:
    """Where `--format jpeg` stores an image, relative to the output folder."""
    if not SAFE_IMAGE_ID.fullmatch(image_id):
        raise ValueError(
            f"refusing to make a file name of image_id {image_id!r}: only [0-9A-Za-z_-]"
        )
    return f"{images_dir}/{image_id[:3]}/{image_id}.jpg"


def shard_image_ids(path: Path | object) -> tuple[str, ...]:
    """The image IDs in a shard or sidecar: what a rerun needs to recognise a finished shard."""
    return tuple(pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist())


def _common_columns(records: Sequence[ShardRecord]) -> list[pa.Array]:
    def column(name: str, kind: pa.DataType) -> pa.Array:
        return pa.array([getattr(r, name) for r in records], kind)

    return [column(f.name, f.type) for f in COMMON_FIELDS]


class _ShardNames:
    """Numbers and writes `{prefix}-{seq:05d}.parquet` in a folder, after any already there."""

    def __init__(self, out_dir: Path | Folder, prefix: str) -> None:
        self.folder = storage.locate(out_dir)
        self._prefix = prefix
        self.folder.check(f"{prefix}-00000.parquet")
        parent, _, name = prefix.rpartition("/")
        taken = re.compile(re.escape(name) + r"-(\d+)\.parquet")
        found = self.folder.list(f"{parent or '.'}/*.parquet")
        numbers = [int(m[1]) for key in found if (m := taken.fullmatch(key.rpartition("/")[2]))]
        self._seq = max(numbers, default=-1) + 1

    def write(self, table: pa.Table, rows_per_group: int, fsync: bool) -> FlushedShard:
        name = f"{self._prefix}-{self._seq:05d}.parquet"
        self.folder.check(name)
        self.folder.write(name, lambda f: _write_parquet(table, f, rows_per_group), fsync)
        self._seq += 1
        return FlushedShard(name, tuple(table.column("image_id").to_pylist()))


def _write_parquet(table: pa.Table, sink: BinaryIO, rows_per_group: int) -> None:
    leaves = _leaf_columns(table.schema)
    compressed = [c for c in leaves if c not in UNCOMPRESSED_COLUMNS]
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression={c: "zstd" if c in compressed else "none" for c in leaves},
        use_dictionary=["source"],  # the other strings are unique per row
        write_statistics=compressed,
    ) as writer:
        writer.write_table(table, row_group_size=rows_per_group)


def _leaf_columns(schema: pa.Schema) -> list[str]:
    leaves = []
    for field in schema:
        if pa.types.is_struct(field.type):
            leaves += [f"{field.name}.{child.name}" for child in field.type]
        else:
            leaves.append(field.name)
    return leaves
