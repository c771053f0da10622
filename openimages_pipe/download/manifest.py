"""The download manifest: one row per ImageID saying what became of it, kept across reruns.

Owns the manifest's schema, its files and how they are merged. During a run, outcomes go to
journal parts (`DIR/.journal/<share>/<run>-<seq>.parquet`, each written atomically after the shard
that holds its images); at the end of a run, and at the start of the next one if a run was killed,
the manifest file and every journal part are merged (the row with the latest `last_attempt` wins)
into `DIR/manifest.parquet` (or `DIR/manifest/<share>.parquet` when downloads are split into
`--num-shards` shares), then the parts are deleted. Merging is idempotent, so a kill at any moment
leaves a state that the next merge completes. Every file is one whole write of a `storage.Folder`
(a rename on a disk, one PUT in a bucket): no step needs a rename of the store.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from openimages_pipe.download import atomic, storage
from openimages_pipe.download.records import Status
from openimages_pipe.download.storage import Folder
from openimages_pipe.errors import InputError

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("http_status", pa.int32()),
        ("url", pa.string()),
        ("source", pa.string()),
        ("attempts", pa.int32()),  # cumulative over all runs
        ("bytes", pa.int64()),  # bytes of the body that was fetched (before resizing)
        ("shard", pa.string()),  # the shard (or JPEG file) holding the image, relative to DIR
        ("md5", pa.string()),  # base64 MD5 of the fetched body
        ("verified", pa.bool_()),  # size and MD5 matched the CSV
        ("first_seen", pa.timestamp("us", tz="UTC")),
        ("last_attempt", pa.timestamp("us", tz="UTC")),
        ("last_ok", pa.timestamp("us", tz="UTC")),
    ]
)
POLARS_SCHEMA = pl.Schema(pl.from_arrow(SCHEMA.empty_table()).schema)
# The --num-shards of a folder's first run, which every later run must give too.
SHARES_FILE = ".num-shards"
READ_TRIES = 5  # listings of a folder whose journal a running download keeps merging
_SHARE_NAME = re.compile(r"/\d{5}-of-(\d{5})[-/.]")


@dataclass(frozen=True)
class Share:
    """Which share of a split download this process runs (index 0 of 1 when not split)."""

    index: int = 0
    count: int = 1

    @property
    def name(self) -> str:
        return f"{self.index:05d}-of-{self.count:05d}"


def manifest_key(share: Share) -> str:
    return "manifest.parquet" if share.count == 1 else f"manifest/{share.name}.parquet"


def journal_key(share: Share) -> str:
    return f".journal/{share.name}"


def manifest_path(out: Path, share: Share) -> Path:
    return out / manifest_key(share)


def journal_dir(out: Path, share: Share) -> Path:
    return out / journal_key(share)


def claim_share_count(out: Path | Folder, share: Share) -> None:
    """Refuse a run whose share count is not the folder's: shares of another count split the
    ImageIDs otherwise, under other names, so both runs would store some images.

    The folder's count is in DIR/.num-shards, which its first run writes (only if absent, so of
    two first runs that race the second is refused too: `Folder.create`); for a folder from
    before that file, the names of its manifests, journals and shards say it."""
    folder = storage.locate(out)
    counts = _share_counts(folder)
    marker = folder.read_bytes(SHARES_FILE)
    if marker is None and counts <= {share.count}:
        folder.create(SHARES_FILE, f"{share.count}\n".encode())
        marker = folder.read_bytes(SHARES_FILE)  # ours, or that of a first run that won the race
    counts |= {int(marker)} if marker is not None else set()
    if counts - {share.count}:
        held = " and ".join(f"--num-shards {n}" for n in sorted(counts))
        message = f"this folder holds a download made with {held}: give the same, or another --out"
        raise InputError(message, folder.url, value=f"--num-shards {share.count}")


def _share_counts(folder: Folder) -> set[int]:
    """The share counts that a folder's file names show (not its lock files: a refused run leaves
    one)."""
    named = [*folder.list("manifest/*.parquet"), *folder.list(".journal/*/*.parquet")]
    named += folder.list("shards/*.parquet")
    counts = {int(m[1]) for key in named if (m := _SHARE_NAME.search("/" + key))}
    return counts | ({1} if folder.is_file("manifest.parquet") else set())


def all_manifest_files(out: Path | Folder) -> list[str]:
    """Every merged manifest and journal part under DIR, from every share, as keys."""
    folder = storage.locate(out)
    files = ["manifest.parquet"] if folder.is_file("manifest.parquet") else []
    return files + folder.list("manifest/*.parquet") + folder.list(".journal/*/*.parquet")


def write_atomic(table: pa.Table, path: Path | str, folder: Folder | None = None) -> None:
    """Write Parquet so that `path` (a key of `folder` if given) is always absent, the old file or
    the complete new one; a write error is an OutputError naming it, and leaves no temporary
    file."""
    if folder is None:
        atomic.write_file(Path(path), _parquet(table))
    else:
        folder.write(str(path), _parquet(table))


def _parquet(table: pa.Table):
    return lambda f: pq.write_table(table, f, compression="zstd")


def rows_to_table(rows: Iterable[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def read_files(files: Sequence[Path | str], folder: Folder | None = None) -> pl.DataFrame:
    """All rows of these manifest files (keys of `folder` if given), in the manifest schema,
    duplicates kept."""
    frames = [read_file(f, folder).cast(POLARS_SCHEMA) for f in files]
    return pl.concat(frames) if frames else pl.DataFrame(schema=POLARS_SCHEMA)


def read_file(
    file: Path | str, folder: Folder | None = None, columns: Sequence[str] | None = None
) -> pl.DataFrame:
    """One manifest file (a key of `folder` if given), all columns or only `columns`. A file
    that is not a manifest is an InputError naming it; one that vanished (a merge deleted it),
    a FileNotFoundError or InputError that `read_listed` tells apart."""
    where = folder.where(str(file)) if folder else str(file)
    open_ = (lambda: folder.source(str(file))) if folder else (lambda: file)
    try:
        return pl.read_parquet(open_(), columns=list(columns) if columns else None)
    except pl.exceptions.ColumnNotFoundError:
        # only now is the schema read (a second open): to name every column it lacks
        missing = sorted(set(columns or ()) - set(pl.read_parquet_schema(open_())))
        raise InputError(f"download manifest lacks column {', '.join(missing)}", where) from None
    except (pl.exceptions.PolarsError, pa.ArrowException) as e:
        raise InputError(f"not a readable manifest: {str(e).splitlines()[0]}", where) from e


def latest_per_image(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per ImageID: the one attempted last (ties keep the later file's row)."""
    return (
        rows.with_row_index("_order")
        .sort("last_attempt", "_order", nulls_last=False)
        .unique("image_id", keep="last", maintain_order=True)
        .drop("_order")
        .sort("image_id")
    )


def _share_files(folder: Folder, share: Share) -> tuple[list[str], list[str]]:
    """This share's manifest (if there is one) and its journal parts, as keys."""
    path = manifest_key(share)
    return [path] if folder.is_file(path) else [], folder.list(f"{journal_key(share)}/*.parquet")


def load(out: Path | Folder, share: Share) -> pl.DataFrame:
    """This share's manifest with any journal left by a killed run merged in."""
    folder = storage.locate(out)
    merged, parts = _share_files(folder, share)
    return latest_per_image(read_files(merged + parts, folder))


def compact(out: Path | Folder, share: Share) -> pl.DataFrame:
    """Merge the journal into the manifest file, then delete the merged parts."""
    folder = storage.locate(out)
    merged, parts = _share_files(folder, share)
    rows = latest_per_image(read_files(merged + parts, folder))
    if parts or not merged:
        write_atomic(rows.to_arrow().cast(SCHEMA), manifest_key(share), folder)
    for part in parts:
        folder.delete(part)
    return rows


def load_all(out: Path | Folder) -> pl.DataFrame:
    """Every share's rows under DIR, one per ImageID (what `status` and `build-splits` see)."""
    folder = storage.locate(out)
    return latest_per_image(read_listed(folder, all_manifest_files, read_files))


def read_listed(folder: Folder, listing: Callable[[Folder], list[str]], read: Callable) -> Any:
    """`read(files, folder)` of what `listing` finds, while a running download may merge its
    journal: a merge writes the manifest, then deletes the parts it merged, so a part listed
    here can be gone when it is read. Then the files are listed and read again; what one pass
    reads is always whole (an older manifest with its parts, or a newer one, duplicates at
    worst, which the readers resolve)."""
    for attempt in range(1, READ_TRIES + 1):
        files = listing(folder)
        try:
            return read(files, folder)
        except (OSError, InputError):
            if attempt == READ_TRIES or all(folder.is_file(f) for f in files):
                raise  # not a merge's doing: a file that is there and cannot be read
    raise AssertionError("unreachable: the last attempt returns or raises")


class Journal:
    """Buffers outcome rows and writes them as atomic journal parts."""

    def __init__(self, out: Path | Folder, share: Share, run_id: str) -> None:
        self.folder = storage.locate(out)
        self.dir = journal_key(share)
        self.run_id = run_id
        self._rows: list[dict] = []
        self._seq = 0

    def add(self, row: dict) -> None:
        self._rows.append(row)

    def __len__(self) -> int:
        return len(self._rows)

    def flush(self) -> None:
        if not self._rows:
            return
        key = f"{self.dir}/{self.run_id}-{self._seq:06d}.parquet"
        write_atomic(rows_to_table(self._rows), key, self.folder)
        self._rows.clear()
        self._seq += 1


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def done_ids(prior: pl.DataFrame, retry_missing: bool) -> pl.DataFrame:
    """ImageIDs a rerun skips: ok ones always, missing ones unless asked to retry them."""
    skip = [Status.OK.value] + ([] if retry_missing else [Status.MISSING.value])
    return prior.filter(pl.col("status").is_in(skip)).select("image_id")
