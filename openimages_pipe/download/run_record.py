"""What one download run did: manifest rows, the run's tally, its record file, and its hygiene.

Owns turning a Fetched outcome into a manifest row (carrying first_seen, attempts and last_ok over
from earlier runs), counting what changed (recovered, newly missing), the one-process-per-share
lock, removing shards that a killed run wrote but never recorded, and `DIR/runs/*.json`, which says
how the run ended (completed, stopped, or failed and why).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import json
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from openimages_pipe.download import manifest, shard_writer, storage
from openimages_pipe.download.manifest import Share
from openimages_pipe.download.records import Fetched, Reason, Status
from openimages_pipe.download.storage import Folder
from openimages_pipe.errors import InputError, OutputError, ProcessLost

INVALID_EXAMPLES = 20


class Outcome(enum.StrEnum):
    """How a run ended, as its record and `status` say."""

    COMPLETED = "completed"  # every selected row was read and settled
    STOPPED = "stopped"  # SIGINT or SIGTERM (`signal` says which): what finished is kept
    FAILED = "failed"  # bad input (or a crash): `error` says why; what was recorded is kept


def new_run_id() -> str:
    return manifest.now().strftime("%Y%m%dT%H%M%SZ")


def manifest_row(
    fetched: Fetched,
    reason: Reason,
    shard: str | None,
    prior: dict | None,
) -> dict:
    """The manifest row of one outcome."""
    now = manifest.now()
    prior = prior or {}
    ok = reason is Reason.OK
    return {
        "image_id": fetched.image_id,
        "status": reason.status.value,
        "reason": reason.value,
        "http_status": fetched.http_status,
        "url": fetched.url,
        "source": fetched.source.value if fetched.source else None,
        "attempts": (prior.get("attempts") or 0) + fetched.attempts,
        "bytes": fetched.size,
        "shard": shard if ok else None,
        "md5": fetched.md5,
        "verified": fetched.verified if ok else False,
        "first_seen": prior.get("first_seen") or now,
        "last_attempt": now,
        "last_ok": now if ok else prior.get("last_ok"),
    }


@dataclasses.dataclass
class RunTally:
    """Counts of this run, updated as rows are recorded."""

    status: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    reason: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    source: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    bytes: int = 0
    recovered: int = 0
    newly_missing: int = 0
    invalid_ids: int = 0
    invalid_examples: list[str] = dataclasses.field(default_factory=list)
    duplicates: int = 0  # rows skipped: an earlier row (of any input CSV) lists their ImageID
    # ok images whose first copy (a thumbnail or mirror copy) was too small for the target and
    # was set aside for a later source; of them, those kept small because no later one did better
    undersized_fell_through: int = 0
    undersized_kept: int = 0

    def count(self, row: dict, prior: dict | None, fetched: Fetched) -> None:
        self.status[row["status"]] += 1
        self.reason[row["reason"]] += 1
        if row["status"] == Status.OK:
            self.source[row["source"]] += 1
            self.bytes += row["bytes"] or 0
            if fetched.fell_through:
                self.undersized_fell_through += 1
                self.undersized_kept += fetched.undersized
        before = (prior or {}).get("status")
        if row["status"] == Status.OK and before in (Status.MISSING, Status.FAILED):
            self.recovered += 1
        if row["status"] == Status.MISSING and before != Status.MISSING:
            self.newly_missing += 1

    def invalid(self, image_ids: list[str]) -> None:
        self.invalid_ids += len(image_ids)
        room = INVALID_EXAMPLES - len(self.invalid_examples)
        self.invalid_examples.extend(image_ids[: max(room, 0)])

    @property
    def done(self) -> int:
        return sum(self.status.values())


@dataclasses.dataclass(frozen=True)
class RunSummary:
    run_id: str
    record: str  # where the run record was written (a path, or an s3:// URL)
    tally: RunTally
    seconds: float
    stopped: bool
    totals: dict[str, int]  # the whole manifest by status, after this run
    outcome: Outcome = Outcome.COMPLETED
    error: str | None = None
    signal: str | None = None  # what stopped it: SIGINT or SIGTERM


def share_lock(out: Path | Folder, share: Share) -> AbstractContextManager[None]:
    """One process per share and output directory: two would write the same shards."""
    refusal = f"another download of share {share.name} is running here"
    return storage.locate(out).lock(f".lock-{share.name}", refusal)


def remove_orphans(out: Path | Folder, share: Share, prior: pl.DataFrame) -> list[str]:
    """Delete what a killed run wrote but never recorded: shards, their JPEGs, temporary files.

    A Parquet shard is kept when the manifest names it. In JPEG mode the manifest names each file,
    so a sidecar is kept when any of its images is ok, and the files of an orphan sidecar whose
    images are not ok go with it. Returns the keys it deleted.
    """
    folder = storage.locate(out)
    ok = prior.filter(pl.col("status") == Status.OK)
    referenced = set(ok["shard"].drop_nulls().to_list())
    ok_ids: set[str] | None = None
    removed: list[str] = []
    for key in folder.list(f"shards/{share.name}-*.parquet"):
        if key in referenced:
            continue
        if "path" in pq.read_schema(folder.source(key)).names:  # a JPEG sidecar
            ok_ids = set(ok["image_id"].to_list()) if ok_ids is None else ok_ids
            ids = shard_writer.shard_image_ids(folder.source(key))
            if any(i in ok_ids for i in ids):
                continue
            removed += _delete(folder, [shard_writer.jpeg_path(i) for i in ids])
        removed += _delete(folder, [key])
    for where in ("shards", f".journal/{share.name}", ".", "manifest", "runs"):
        removed += _delete(folder, folder.list(f"{where}/.*.tmp-*"))  # none in a bucket
    return removed


def _delete(folder: Folder, keys: Iterable[str]) -> list[str]:
    gone = []
    for key in keys:
        if folder.is_file(key):
            folder.delete(key)
            gone.append(key)
    return gone


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, Folder):
        return value.url
    if isinstance(value, Path | enum.Enum):
        return str(value.value if isinstance(value, enum.Enum) else value)
    return value


def describe(error: Exception) -> str:
    """The one line a run record gives for what ended a run: bad input or a write error as the CLI
    prints it."""
    if isinstance(error, InputError | OutputError | ProcessLost):
        return str(error)
    return f"{type(error).__name__}: {error}".splitlines()[0]


def finish(
    cfg: Any,
    folder: Folder,
    run_id: str,
    tally: RunTally,
    merged: pl.DataFrame,
    stopped: bool,
    error: Exception | None = None,
    selection: dict | None = None,
    signal: str | None = None,
) -> RunSummary:
    """Write `DIR/runs/<run>-<share>.json`: the resolved config, how it ended, the tally and the
    totals. `error`: what ended the run early (bad input, found at the start or mid-stream);
    `selection`: what `--classes` chose (select.json's classes and counts); `signal`: the one that
    stopped it (SIGINT, SIGTERM)."""
    outcome = Outcome.FAILED if error else Outcome.STOPPED if stopped else Outcome.COMPLETED
    message = describe(error) if error else None
    started = dt.datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    seconds = (manifest.now() - started).total_seconds()
    totals = dict(merged.group_by("status").len().iter_rows())
    record = {
        "run_id": run_id,
        "share": cfg.share.name,
        "finished": manifest.now().isoformat(),
        "seconds": seconds,
        "stopped_early": stopped or error is not None,
        "outcome": outcome.value,
        "error": message,
        "signal": signal,
        "config": jsonable(cfg),
        "this_run": {
            "images": tally.done,
            "status": dict(tally.status),
            "reason": dict(tally.reason),
            "source": dict(tally.source),
            "bytes": tally.bytes,
            "recovered": tally.recovered,
            "newly_missing": tally.newly_missing,
            "invalid_image_ids": tally.invalid_ids,
            "invalid_examples": tally.invalid_examples,
            "duplicates": tally.duplicates,
            "undersized_fell_through": tally.undersized_fell_through,
            "undersized_kept": tally.undersized_kept,
        },
        "manifest_totals": totals,
    }
    if selection is not None:
        record["selection"] = selection
    key = f"runs/{run_id}-{cfg.share.name}.json"
    text = json.dumps(record, indent=2, default=str).encode()
    folder.write(key, lambda f: f.write(text))
    return RunSummary(
        run_id, folder.where(key), tally, seconds, stopped, totals, outcome, message, signal
    )


def latest_record(out: Path | Folder) -> dict | None:
    """The record of the run that started last; of runs started in the same second (a run id
    names its second), the one that finished last."""
    folder = storage.locate(out)
    records = [key.removeprefix("runs/") for key in folder.list("runs/*.json")]
    if not records:
        return None
    second = records[-1][:16]
    same = [_read_json(folder, f"runs/{r}") for r in records if r[:16] == second]
    return max(same, key=lambda record: dt.datetime.fromisoformat(record["finished"]))


def _read_json(folder: Folder, key: str) -> dict:
    return json.loads((folder.read_bytes(key) or b"{}").decode("utf-8"))
