"""The image path: Parquet shards of `download` -> batches of cropped images on the device.

Owns reading shards, from a local download folder or its s3://BUCKET/PREFIX (through
`storage.locate`: the same layout and AWS_* variables as `download --out`). Hands on batches of
(images (B, 3, S, S) float in [0, 1] on the device, positions (B,)): each image's position in the
rows the stream was made for, from which the caller builds labels (a split's `LabelRows`, exactly
as for cached features).

- `ShardIndex`: every image of the shards once, read from the `image_id` column alone.
  `attach_split` attaches a split file to it with `data.attach`, as features are attached: images
  of the split that are not in the shards (lost to link rot) are dropped and counted.
- A stream reads *pieces*: at most PIECE_ROWS rows of one row group. Each epoch shuffles the
  pieces with (seed, epoch); consumer c of C (C = DDP processes x loader workers) takes pieces
  c, c + C, ...: every process and worker reads its own disjoint share of the shards, and together
  they read each image once per epoch. Training streams are endless, so no rank ever runs out of
  batches before the others; a finite (evaluation) stream reads every image once.
- Every process, loader workers included, opens shards through its own `Folder` (`open_shard`,
  cached per process id): a forked worker never shares the S3 connections of its parent. A shard
  that cannot be read, in a worker or not, is an InputError of one line naming it (`reading`,
  `worker_error`).
- Crops and decoding live in `crops`: CPU workers decode and crop; with CUDA, workers only read
  bytes and `crops.decode_on_device` decodes the whole batch on the GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from nlc_model import data
from nlc_model.data import Features, SplitSet
from nlc_model.images import crops
from openimages_pipe.download import storage
from openimages_pipe.errors import InputError

# Most rows one worker reads at once. A piece is a slice of a row group, which Parquet reads whole
# (up to 64 MB in our shards): slicing gives every consumer work in small worlds, at the price of
# re-reading a big row group up to rows/PIECE_ROWS times.
PIECE_ROWS = 1024
SHARD_COLUMNS = ("image", "image_id", "width", "height")
SAMPLE_COLUMNS = ["image", "width", "height"]  # what a stream reads of a row group
PREFETCH = 4  # batches in flight per worker: smooths out slow pieces (a row group read)


@dataclass(frozen=True)
class ShardIndex:
    """Every image of the shards: index row i is row `offset[i]` of row group `group[i]` of
    `files[file[i]]`, a key of the folder at `root` (a local path or an s3:// URL)."""

    root: str
    files: tuple[str, ...]
    image_ids: pa.Array  # (N,) large_string
    file: np.ndarray  # (N,) int64
    group: np.ndarray  # (N,) int64
    offset: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.image_ids)


_FOLDERS: dict[tuple[int, str], storage.Folder] = {}


def folder_of(root: str) -> storage.Folder:
    """This process's `Folder` for `root`: made once per process, so that a forked loader
    worker opens its own S3 connections."""
    key = (os.getpid(), root)
    if key not in _FOLDERS:
        _FOLDERS[key] = storage.locate(root)
    return _FOLDERS[key]


@contextlib.contextmanager
def reading(root: str, key: str) -> Iterator[None]:
    """A shard that cannot be read (gone, not Parquet, a store that fails) as one line naming it."""
    try:
        yield
    except (OSError, pa.ArrowException) as e:  # pyarrow's S3 and Parquet errors are both of these
        message = f"cannot read the shard: {str(e).splitlines()[0]}"
        raise InputError(message, folder_of(root).where(key)) from e


def open_shard(root: str, key: str) -> pq.ParquetFile:
    with reading(root, key):
        return pq.ParquetFile(folder_of(root).source(key))


def shard_files(shards: Path | str) -> tuple[str, list[str]]:
    """The shards of a download folder, or of a folder of shards: the folder (a local path or
    an s3:// URL, refused in one line if it is neither) and their keys in it."""
    root = str(storage.location(shards))
    folder = folder_of(root)
    files = folder.list("shards/*.parquet") or folder.list("*.parquet")
    if not files:
        message = "no Parquet shards here (write them with `oi-pipe download`)"
        raise InputError(message, folder.url)
    return root, files


def index_file(root: str, key: str) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """One shard's image ids, and the row group and row within it of each."""
    file = open_shard(root, key)
    missing = [c for c in SHARD_COLUMNS if c not in file.schema_arrow.names]
    if missing:
        raise InputError(f"not an image shard: no column(s) {missing}", folder_of(root).where(key))
    sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
    group = np.repeat(np.arange(len(sizes)), sizes)
    offset = np.arange(sum(sizes)) - np.repeat(np.cumsum([0, *sizes[:-1]]), sizes)
    with reading(root, key):
        ids = file.read(columns=["image_id"]).column("image_id").cast(pa.large_string())
    return ids.combine_chunks(), group, offset


def read_index(shards: Path | str) -> ShardIndex:
    root, files = shard_files(shards)
    parts = [index_file(root, key) for key in files]
    ids = pa.concat_arrays([p[0] for p in parts]) if parts else pa.array([], pa.large_string())
    file = np.concatenate([np.full(len(p[0]), i, np.int64) for i, p in enumerate(parts)])
    group = np.concatenate([p[1] for p in parts]).astype(np.int64)
    offset = np.concatenate([p[2] for p in parts])
    return ShardIndex(root, tuple(files), ids, file, group, offset)


def attach_split(index: ShardIndex, splits: Path, name: str, classes: int) -> tuple[SplitSet, int]:
    """A split's images that are in the shards, and how many are not. Its `feature_rows` are
    rows of the index: `data.attach` matches image ids the same way for images and features."""
    as_features = Features(torch.empty(len(index), 0), index.image_ids, index.root)
    return data.attach(name, splits, as_features, classes)


@dataclass(frozen=True)
class Piece:
    """Slice `slot` of one row group, and the stream's images in it."""

    file: int
    group: int
    slot: int
    positions: np.ndarray  # (k,) positions in the stream's rows
    rows: np.ndarray  # (k,) their rows within the row group


def plan_pieces(index: ShardIndex, rows: np.ndarray, consumers: int = 1) -> list[Piece]:
    """The pieces that hold `rows` (index rows), each with the rows it holds. Slices of at most
    len(rows) // consumers rows make at least `consumers` pieces: nobody is left without work."""
    if not len(rows):
        return []
    slot = index.offset[rows] // max(1, min(PIECE_ROWS, len(rows) // consumers))
    key = np.stack([index.file[rows], index.group[rows], slot], 1)
    keys, which = np.unique(key.reshape(-1, 3), axis=0, return_inverse=True)
    order = np.argsort(which.ravel(), kind="stable")
    cuts = np.cumsum(np.bincount(which.ravel(), minlength=len(keys)))[:-1]
    groups = zip(keys.tolist(), np.split(order, cuts), strict=True)
    return [Piece(f, g, s, at, index.offset[rows[at]]) for (f, g, s), at in groups]


@dataclass(frozen=True)
class StreamSpec:
    """What a stream delivers, and how."""

    size: int  # S
    train: bool  # random crops and flips, endless; else centre crops, each image once
    min_scale: float = 0.08  # RandomResizedCrop's smallest area (torchvision's default)
    on_device: bool = False  # hand over JPEG bytes for `crops.decode_on_device`
    seed: int = 0


class ShardStream(IterableDataset):
    """Samples of `rows` (index rows): (image, position), or (jpeg, box, flip, position)."""

    def __init__(self, index: ShardIndex, rows: np.ndarray, spec: StreamSpec, rank: int = 0,
                 world: int = 1, workers: int = 0, start_epoch: int = 0) -> None:  # fmt: skip
        super().__init__()
        consumers = world * max(1, workers)
        if spec.train and len(rows) < consumers:
            msg = f"{len(rows)} images cannot feed {consumers} processes x loader workers"
            raise InputError(f"{msg}: use fewer --workers or processes", value=str(len(rows)))
        self.root, self.files, self.spec = index.root, index.files, spec
        self.pieces = plan_pieces(index, rows, consumers)
        self.rank, self.world, self.workers, self.start_epoch = rank, world, workers, start_epoch

    def share(self, epoch: int, consumer: int, consumers: int) -> list[Piece]:
        """The pieces one consumer reads in one epoch: disjoint from every other consumer's."""
        n = len(self.pieces)
        rng = np.random.default_rng([self.spec.seed, epoch])
        order = rng.permutation(n) if self.spec.train else np.arange(n)
        return [self.pieces[k] for k in order[consumer::consumers]]

    def rank_positions(self, epoch: int) -> np.ndarray:
        """Positions this process's workers read in one epoch (together, in no order)."""
        workers = max(1, self.workers)
        share = lambda w: self.share(epoch, self.rank * workers + w, self.world * workers)  # noqa: E731
        return np.concatenate([p.positions for w in range(workers) for p in share(w)] or [[]])

    def __iter__(self) -> Iterator[tuple]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        consumer, consumers = self.rank * workers + worker, self.world * workers
        epoch = self.start_epoch
        while True:
            for piece in self.share(epoch, consumer, consumers):
                yield from self.samples(piece, epoch)
            if not self.spec.train:
                return
            epoch += 1

    def samples(self, piece: Piece, epoch: int) -> Iterator[tuple]:
        spec = self.spec
        rng = np.random.default_rng([spec.seed, epoch, piece.file, piece.group, piece.slot])
        order = rng.permutation(len(piece.positions)) if spec.train else range(len(piece.positions))
        key = self.files[piece.file]
        file = open_shard(self.root, key)
        with reading(self.root, key):
            table = file.read_row_group(piece.group, columns=SAMPLE_COLUMNS)
        jpegs = table.column("image").combine_chunks().field("bytes")
        widths, heights = table.column("width"), table.column("height")
        for i in order:
            r = int(piece.rows[i])
            w, h = widths[r].as_py(), heights[r].as_py()
            box = crops.train_box(w, h, rng, spec.min_scale) if spec.train else crops.eval_box(w, h)
            flip = spec.train and bool(rng.random() < 0.5)
            position = int(piece.positions[i])
            if spec.on_device:
                yield jpegs[r].as_py(), box, flip, position
            else:
                yield crops.decode_crop(jpegs[r].as_py(), box, spec.size, flip), position


def loader(stream: ShardStream, batch_size: int, pin: bool) -> Iterator:
    """Batches of a stream: (uint8 images (B, 3, S, S), positions) or an `EncodedBatch`. A shard
    that a worker cannot read ends the iteration with that worker's one-line InputError."""
    batches = DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=stream.workers,
        collate_fn=crops.collate_encoded if stream.spec.on_device else None,
        pin_memory=pin,
        prefetch_factor=PREFETCH if stream.workers else None,
    )
    try:
        yield from batches
    except InputError as e:
        said = worker_error(e)
        if said is e:
            raise
        raise said from None  # the worker's traceback is in its message: leave it there


def worker_error(e: InputError) -> InputError:
    """A loader worker's InputError as the line it said. Only text crosses from a worker: the
    DataLoader raises the same type again with the worker's whole traceback as its message, whose
    last line is `openimages_pipe.errors.InputError: <that line>`."""
    if not e.message.startswith(f"Caught {type(e).__name__} in DataLoader worker"):
        return e
    return InputError(e.message.rstrip().splitlines()[-1].partition(": ")[2])


def cpu_threads(workers: int, processes: int = 1) -> int:
    """Compute threads for a CPU process: its share of the cores, less one per loader worker.
    Oversubscribed, OpenMP threads wait on each other (measured 4-8x slower steps on 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // processes - workers)


def to_device(batch, spec: StreamSpec, device: torch.device) -> tuple[Tensor, Tensor]:
    """A loader batch -> (images (B, 3, S, S) float in [0, 1], positions (B,)) on `device`."""
    if spec.on_device:
        return crops.decode_on_device(batch, spec.size, device), batch.positions.to(device)
    images, positions = batch
    images = images.to(device, non_blocking=True).float().div_(255.0)
    return images, positions.to(device, non_blocking=True)
