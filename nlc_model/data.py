"""Split files and the features table, read once and held as tensors on the training device.

Reads what `build-splits` writes (`classes.parquet`, `T.parquet`, `V_train.parquet`,
`V_eval.parquet`) and a features table (a Parquet file or a folder of them: `image_id`,
`embedding` fixed_size_list<float>[D], rows in any order). Hands on a `TrainData`: the feature
matrix (N, D) on the device, and for each split the feature row of every image and its label lists
in CSR form (`LabelRows`), from which batches of multi-hot vectors are built on the device.

Images of a split without a feature row are dropped and counted (`TrainData.dropped`); bad input
(a missing file or column, a class index out of range, embeddings of different widths, a duplicated
image) is an `InputError` naming the file and the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import Tensor

from openimages_pipe.errors import InputError

CLASS_COLUMNS = ("class_index", "label_name", "display_name", "t_count", "v_pos", "v_neg")
NOISY_COLUMNS = ("image_id", "labels")
VERIFIED_COLUMNS = (*NOISY_COLUMNS, "verified_pos", "verified_neg")
SPLIT_COLUMNS = {"T": NOISY_COLUMNS, "V_train": VERIFIED_COLUMNS, "V_eval": VERIFIED_COLUMNS}
READ_ROWS = 65_536  # feature rows per Parquet batch: bounds host memory while loading


def csr(lists: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A list<int> column as (offsets (n + 1,) int64 from 0, indices (nnz,) int32)."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    offsets = lists.offsets.to_numpy().astype(np.int64)
    indices = lists.flatten().to_numpy(zero_copy_only=False).astype(np.int32)
    return offsets - offsets[0], indices


@dataclass(frozen=True)
class LabelRows:
    """Label lists of n images in CSR form: row i holds indices[offsets[i]:offsets[i + 1]]."""

    offsets: Tensor  # (n + 1,) int64
    indices: Tensor  # (nnz,) int32 class indices

    @classmethod
    def from_arrow(cls, lists: pa.ChunkedArray | pa.Array) -> LabelRows:
        offsets, indices = csr(lists)
        return cls(torch.from_numpy(offsets), torch.from_numpy(indices))

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def to(self, device: torch.device) -> LabelRows:
        return LabelRows(self.offsets.to(device), self.indices.to(device))

    def dense(self, rows: Tensor, classes: int) -> Tensor:
        """Multi-hot float32 (B, d) of the given rows, built where the rows live (no host trip)."""
        starts = self.offsets[rows]  # (B,)
        lengths = self.offsets[rows + 1] - starts  # (B,)
        which = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), lengths)
        first = torch.cumsum(lengths, 0) - lengths  # (B,) where each row's labels start in `which`
        flat = starts[which] + torch.arange(which.numel(), device=rows.device) - first[which]
        out = torch.zeros(rows.numel(), classes, device=rows.device)
        out[which, self.indices[flat].long()] = 1.0
        return out


@dataclass(frozen=True)
class SplitSet:
    """One split's images that have features: their feature rows and label lists."""

    name: str
    image_ids: pa.Array  # (n,) on the host, for outputs
    feature_rows: Tensor  # (n,) int64 rows of `TrainData.features`
    noisy: LabelRows  # machine labels y
    pos: LabelRows | None = None  # verified positives (V only)
    neg: LabelRows | None = None  # verified negatives (V only)

    def __len__(self) -> int:
        return self.feature_rows.numel()

    def to(self, device: torch.device) -> SplitSet:
        pos, neg = (None if r is None else r.to(device) for r in (self.pos, self.neg))
        rows, noisy = self.feature_rows.to(device), self.noisy.to(device)
        return SplitSet(self.name, self.image_ids, rows, noisy, pos, neg)


@dataclass(frozen=True)
class ClassTable:
    """classes.parquet: d classes in class_index order."""

    label_name: list[str]
    display_name: list[str]
    t_count: np.ndarray  # (d,) machine labels in T: class frequency
    v_pos: np.ndarray  # (d,) verified positives in V
    v_neg: np.ndarray  # (d,) verified negatives in V

    def __len__(self) -> int:
        return len(self.label_name)

    @property
    def quality(self) -> np.ndarray:
        """Annotation quality per class: the share of its verified machine labels that are right."""
        total = self.v_pos + self.v_neg
        return np.divide(self.v_pos, total, out=np.full(len(self), np.nan), where=total > 0)


@dataclass(frozen=True)
class Features:
    table: Tensor  # (N, D), float32 on CPU, bfloat16 on GPU
    image_ids: pa.Array  # (N,)
    path: Path | str  # what messages name: a features file, or the shards' folder or s3:// URL

    @property
    def dim(self) -> int:
        return self.table.shape[1]


@dataclass(frozen=True)
class TrainData:
    classes: ClassTable
    features: Features
    splits: dict[str, SplitSet]
    dropped: dict[str, int]  # images per split without a feature row


def check_file(path: Path, columns: tuple[str, ...]) -> None:
    """Fail early, naming the file, when it is missing or lacks a column."""
    if not path.is_file():
        raise InputError("missing split file (write it with `oi-pipe build-splits`)", path=path)
    try:
        have = pq.read_schema(path).names
    except (OSError, pa.ArrowInvalid) as e:
        raise InputError(f"not a readable Parquet file: {e}", path=path) from None
    missing = [c for c in columns if c not in have]
    if missing:
        raise InputError(f"missing column(s) {missing}; found {have}", path=path)


def read_table(path: Path, columns: tuple[str, ...]) -> pa.Table:
    check_file(path, columns)
    return pq.read_table(path, columns=list(columns))


def load_classes(splits: Path) -> ClassTable:
    path = splits / "classes.parquet"
    return class_table(read_table(path, CLASS_COLUMNS), path)


def class_table(t: pa.Table, path: Path) -> ClassTable:
    t = t.sort_by("class_index")
    index = t.column("class_index").to_numpy()
    if not np.array_equal(index, np.arange(len(index))):
        raise InputError("class_index must be 0..d-1, each once", path=path)
    num = lambda c: t.column(c).to_numpy().astype(np.int64)  # noqa: E731
    names = t.column("label_name").to_pylist(), t.column("display_name").to_pylist()
    return ClassTable(*names, num("t_count"), num("v_pos"), num("v_neg"))


def feature_files(path: Path) -> list[Path]:
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise InputError("no features: expected a Parquet file or a folder of them", path=path)
    return files


def feature_dim(file: Path) -> int:
    """D of a features file, checked to be `embedding` fixed_size_list<float>[D] with `image_id`."""
    schema = pq.read_schema(file)
    if "image_id" not in schema.names or "embedding" not in schema.names:
        raise InputError(
            f"features need columns image_id and embedding; found {schema.names}", file
        )
    kind = schema.field("embedding").type
    if not (pa.types.is_fixed_size_list(kind) and pa.types.is_floating(kind.value_type)):
        raise InputError("embedding must be fixed_size_list<float>[D]", file, value=str(kind))
    return kind.list_size


def load_features(path: Path, device: torch.device, dtype: torch.dtype) -> Features:
    """Every feature row, copied batch by batch into one (N, D) tensor on the device."""
    files = feature_files(path)
    dim = feature_dim(files[0])
    for f in files[1:]:
        if (other := feature_dim(f)) != dim:
            raise InputError(
                f"embedding width differs from {files[0]} ({dim})", f, value=str(other)
            )
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    table = torch.empty((n, dim), dtype=dtype, device=device)
    ids, row = [], 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(READ_ROWS, columns=["image_id", "embedding"]):
            emb = batch.column("embedding")
            if emb.null_count:
                raise InputError("null embedding", f, value=str(emb.null_count))
            flat = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            flat = np.require(flat, requirements="W")  # torch wants writable memory (Arrow's isn't)
            table[row : row + len(batch)].copy_(torch.from_numpy(flat.reshape(-1, dim)))
            ids.append(batch.column("image_id").cast(pa.large_string()))
            row += len(batch)
    image_ids = pa.concat_arrays(ids) if ids else pa.array([], pa.large_string())
    if pc.count_distinct(image_ids).as_py() != len(image_ids):
        counts = pc.value_counts(image_ids)
        twice = counts.filter(pc.greater(counts.field("counts"), 1))
        raise InputError("image_id appears more than once", path, value=twice[0]["values"].as_py())
    return Features(table, image_ids, path)


def check_classes(lists: pa.ChunkedArray, classes: int, path: Path, column: str) -> None:
    values = pc.list_flatten(lists)
    if len(values) and (pc.min(values).as_py() < 0 or pc.max(values).as_py() >= classes):
        bad = pc.filter(values, pc.or_(pc.less(values, 0), pc.greater_equal(values, classes)))
        raise InputError(f"{column}: class index outside 0..{classes - 1}", path, value=str(bad[0]))
    if lists.null_count:
        raise InputError(f"{column}: null label list", path, value=str(lists.null_count))


def attach(name: str, splits: Path, features: Features, classes: int) -> tuple[SplitSet, int]:
    """Read one split, keep its images that have features; return it and how many were dropped."""
    path = splits / f"{name}.parquet"
    return split_set(name, read_table(path, SPLIT_COLUMNS[name]), features, classes, path)


def split_set(
    name: str, table: pa.Table, features: Features, classes: int, path: Path
) -> tuple[SplitSet, int]:
    for column in SPLIT_COLUMNS[name][1:]:
        check_classes(table.column(column), classes, path, column)
    ids = table.column("image_id").cast(pa.large_string())
    where = pc.index_in(ids, value_set=features.image_ids)  # feature row per image, or null
    keep = pc.is_valid(where)
    table, where = table.filter(keep), where.filter(keep)
    rows = torch.from_numpy(where.to_numpy(zero_copy_only=False).astype(np.int64))
    lists = [LabelRows.from_arrow(table.column(c)) for c in SPLIT_COLUMNS[name][1:]]
    image_ids = table.column("image_id").combine_chunks()
    return SplitSet(name, image_ids, rows, *lists), len(ids) - len(rows)


def storage_dtype(device: torch.device) -> torch.dtype:
    # bf16 halves the table on a GPU (9M x 2048 is 37 GB) and feeds its matmuls at full speed;
    # CPUs multiply float32 faster than bf16, so the table stays float32 there.
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_train_data(
    splits: Path, features: Path, device: torch.device, names: tuple[str, ...]
) -> TrainData:
    """Classes, features and the named splits; everything but image ids lives on `device`."""
    classes = load_classes(splits)
    for name in names:  # fail on a missing split before the (long) feature read
        check_file(splits / f"{name}.parquet", SPLIT_COLUMNS[name])
    table = load_features(features, device, storage_dtype(device))
    sets, dropped = {}, {}
    for name in names:
        split, dropped[name] = attach(name, splits, table, len(classes))
        sets[name] = split.to(device)
    return TrainData(classes, table, sets, dropped)
