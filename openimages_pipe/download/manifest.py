"""The download manifest: one row per ImageID saying what became of it, kept across reruns.

Owns the manifest's schema, its files and how they are merged. During a run, outcomes go to
journal parts (`DIR/.journal/<share>/<run>-<seq>.parquet`, each written atomically after the shard
that holds its images); at the end of a run, and at the start of the next one if a run was killed,
the manifest file and every journal part are merged (the row with the latest `last_attempt` wins)
into `DIR/manifest.parquet` (or `DIR/manifest/<share>.parquet` when downloads are split into
`--num-shards` shares), then the parts are deleted. Merging is idempotent, so a kill at any moment
leaves a state that the next merge completes.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from openimages_pipe.download import atomic
from openimages_pipe.download.records import Status
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
_SHARE_NAME = re.compile(r"/\d{5}-of-(\d{5})[-/.]")


@dataclass(frozen=True)
class Share:
    """Which share of a split download this process runs (index 0 of 1 when not split)."""

    index: int = 0
    count: int = 1

    @property
    def name(self) -> str:
        return f"{self.index:05d}-of-{self.count:05d}"


def manifest_path(out: Path, share: Share) -> Path:
    if share.count == 1:
        return out / "manifest.parquet"
    return out / "manifest" / f"{share.name}.parquet"


def journal_dir(out: Path, share: Share) -> Path:
    return out / ".journal" / share.name


def claim_share_count(out: Path, share: Share) -> None:
    """Refuse a run whose share count is not the folder's: shares of another count split the
    ImageIDs otherwise, under other names, so both runs would store some images.

    The folder's count is in DIR/.num-shards, which its first run writes (only if absent, and
    atomically, so of two first runs that race the second is refused too); for a folder from
    before that file, the names of its manifests, journals and shards say it."""
    marker = out / SHARES_FILE
    counts = _share_counts(out)
    if not marker.is_file() and counts <= {share.count}:
        _claim(marker, share.count)
    counts |= {int(marker.read_text())} if marker.is_file() else set()
    if counts - {share.count}:
        held = " and ".join(f"--num-shards {n}" for n in sorted(counts))
        message = f"this folder holds a download made with {held}: give the same, or another --out"
        raise InputError(message, out, value=f"--num-shards {share.count}")


def _share_counts(out: Path) -> set[int]:
    """The share counts that a folder's file names show (not its lock files: a refused run leaves
    one)."""
    named = [*(out / "manifest").glob("*.parquet"), *(out / ".journal").glob("*/*.parquet")]
    named += (out / "shards").glob("*.parquet")
    counts = {int(m[1]) for p in named if (m := _SHARE_NAME.search(p.as_posix()))}
    return counts | ({1} if (out / "manifest.parquet").is_file() else set())


def _claim(marker: Path, count: int) -> None:
    """Write DIR/.num-shards unless it exists: a link, unlike a rename, fails on a taken name."""
    temporary = marker.with_name(f"{marker.name}.tmp-{os.getpid()}")
    with atomic.writing(marker):
        try:
            temporary.write_text(f"{count}\n", encoding="utf-8")
            os.link(temporary, marker)
        except FileExistsError:
            pass  # another first run claimed it: its count is read back and compared
        finally:
            temporary.unlink(missing_ok=True)


def all_manifest_files(out: Path) -> list[Path]:
    """Every merged manifest and journal part under DIR, from every share."""
    files = [out / "manifest.parquet"] if (out / "manifest.parquet").is_file() else []
    files += sorted((out / "manifest").glob("*.parquet"))
    return files + sorted((out / ".journal").glob("*/*.parquet"))


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet so that `path` is always absent, the old file or the complete new one; a
    write error is an OutputError naming `path`, and leaves no temporary file."""
    atomic.write_file(path, lambda f: pq.write_table(table, f, compression="zstd"))


def rows_to_table(rows: Iterable[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def read_files(files: list[Path]) -> pl.DataFrame:
    """All rows of these manifest files, in the manifest schema, duplicates kept."""
    frames = [pl.read_parquet(f).cast(POLARS_SCHEMA) for f in files]  # type: ignore[arg-type]
    return pl.concat(frames) if frames else pl.DataFrame(schema=POLARS_SCHEMA)


def latest_per_image(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per ImageID: the one attempted last (ties keep the later file's row)."""
    return (
        rows.with_row_index("_order")
        .sort("last_attempt", "_order", nulls_last=False)
        .unique("image_id", keep="last", maintain_order=True)
        .drop("_order")
        .sort("image_id")
    )


def load(out: Path, share: Share) -> pl.DataFrame:
    """This share's manifest with any journal left by a killed run merged in."""
    path = manifest_path(out, share)
    files = ([path] if path.is_file() else []) + sorted(journal_dir(out, share).glob("*.parquet"))
    return latest_per_image(read_files(files))


def compact(out: Path, share: Share) -> pl.DataFrame:
    """Merge the journal into the manifest file, then delete the merged parts."""
    parts = sorted(journal_dir(out, share).glob("*.parquet"))
    merged = load(out, share)
    if parts or not manifest_path(out, share).is_file():
        write_atomic(merged.to_arrow().cast(SCHEMA), manifest_path(out, share))
    for part in parts:
        part.unlink()
    return merged


def load_all(out: Path) -> pl.DataFrame:
    """Every share's rows under DIR, one per ImageID (what `status` and `build-splits` see)."""
    return latest_per_image(read_files(all_manifest_files(out)))


class Journal:
    """Buffers outcome rows and writes them as atomic journal parts."""

    def __init__(self, out: Path, share: Share, run_id: str) -> None:
        self.dir = journal_dir(out, share)
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
        path = self.dir / f"{self.run_id}-{self._seq:06d}.parquet"
        write_atomic(rows_to_table(self._rows), path)
        self._rows.clear()
        self._seq += 1


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def done_ids(prior: pl.DataFrame, retry_missing: bool) -> pl.DataFrame:
    """ImageIDs a rerun skips: ok ones always, missing ones unless asked to retry them."""
    skip = [Status.OK.value] + ([] if retry_missing else [Status.MISSING.value])
    return prior.filter(pl.col("status").is_in(skip)).select("image_id")
