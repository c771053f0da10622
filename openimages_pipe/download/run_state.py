"""The config and the state of one download run, and the one coroutine that writes its shards.

`RunState` holds what a run accumulates (the journal, the shard writer, the tally, the images in
flight and those written but not yet durable) and how it stops: `halt` for a signal, `abort` for a
write error (or a fetch process lost), after which nothing more can be recorded. `settle` takes
each `Finished` image from whichever fetch loop made it; `write_loop` is the only code that touches
the shard writer, so shards fill in order; an image becomes `ok` in the journal only once its
shard is durable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from openimages_pipe.download import run_record
from openimages_pipe.download.fetch import FetchConfig
from openimages_pipe.download.manifest import Journal, Share
from openimages_pipe.download.records import (
    Fetched,
    Finished,
    ImageTask,
    OutputFormat,
    Reason,
    Resized,
)
from openimages_pipe.download.resize import ResizeConfig
from openimages_pipe.download.run_record import RunTally
from openimages_pipe.download.shard_writer import (
    JpegShardWriter,
    ParquetShardWriter,
    ShardRecord,
    jpeg_path,
)
from openimages_pipe.download.storage import Folder
from openimages_pipe.download.tasks import Batch, InputConfig
from openimages_pipe.errors import OutputError

# Rows buffered before a journal part is written: small enough that a kill loses seconds of
# failure records (which are simply retried), large enough that parts stay few.
JOURNAL_ROWS = 2_000


@dataclass(frozen=True)
class DownloadConfig:
    out: Path | str  # a local folder, or an s3:// URL (`storage.location` checks it)
    input: InputConfig
    fetch: FetchConfig = field(default_factory=FetchConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    format: OutputFormat = OutputFormat.PARQUET
    rows_per_shard: int = 1000
    workers: int = 2  # decode processes in all, divided among the fetch processes
    processes: int = 1  # fetch loops; 1: in this process, more: child processes (fetch_processes)
    retry_missing: bool = False
    quiet: bool = False

    @property
    def share(self) -> Share:
        return Share(self.input.share_index, self.input.share_count)


class RunState:
    """The mutable state of one run: writer, journal, tally, the images in flight, and the stop
    flag with what set it (a signal, or `fatal`: a write error, which ends the run as a stop)."""

    def __init__(
        self, cfg: DownloadConfig, prior: dict[str, dict], run_id: str, folder: Folder
    ) -> None:
        self.cfg = cfg
        self.prior = prior
        self.journal = Journal(folder, cfg.share, run_id)
        self.tally = RunTally()
        self.stop = asyncio.Event()
        self.active: set[asyncio.Task] = set()
        self.stoppers: list[Callable[[], None]] = []  # what `halt` tells, e.g. fetch processes
        self.fatal: Exception | None = None
        # image_id -> what was fetched, without its body: held until the image's shard is on
        # disk; without the body, so a 1,000-image shard costs no gigabyte
        self.pending_ok: dict[str, Fetched] = {}
        prefix = f"shards/{cfg.share.name}-{run_id}"
        writer = ParquetShardWriter if cfg.format is OutputFormat.PARQUET else JpegShardWriter
        # the resolved config travels in every shard's metadata, not only in the run record
        provenance = {"oi_pipe_download": json.dumps(run_record.jsonable(cfg), default=str)}
        self.writer = writer(folder, prefix, rows_per_shard=cfg.rows_per_shard, metadata=provenance)

    def halt(self) -> None:
        """Stop starting images and cancel those in flight: none of them is in the manifest yet,
        so the next run does them. Waking whatever waits on them is what makes a stop prompt."""
        self.stop.set()
        cancel(self.active)
        for stop in self.stoppers:
            stop()

    def abort(self, error: Exception) -> None:
        """A write failed (a full disk) or a fetch process was lost: the run stops."""
        self.fatal = self.fatal or error
        self.halt()

    def take(self, batch: Batch) -> list[ImageTask]:
        """A read batch's bookkeeping (its invalid rows counted, its manifest rows kept for the
        tally), then its tasks: the one place every fetch path reads batches through."""
        self.tally.invalid(batch.invalid_ids)
        self.prior.update(batch.prior)
        return batch.tasks

    def record(self, fetched: Fetched, reason: Reason, shard: str | None = None) -> None:
        prior = self.prior.get(fetched.image_id)
        row = run_record.manifest_row(fetched, reason, shard, prior)
        self.tally.count(row, prior, fetched)
        self.journal.add(row)
        if len(self.journal) >= JOURNAL_ROWS:
            self.journal.flush()

    def shard_written(self, name: str, image_ids: tuple[str, ...]) -> None:
        for image_id in image_ids:
            fetched = self.pending_ok.pop(image_id)
            # In JPEG mode `name` is the group's sidecar; the manifest names the image's own file.
            where = name if self.cfg.format is OutputFormat.PARQUET else jpeg_path(image_id)
            self.record(fetched, Reason.OK, where)
        self.journal.flush()  # the shard is durable: make its rows durable too


async def settle(run: RunState, to_writer: asyncio.Queue, finished: Finished) -> None:
    """A failure goes to the journal at once; a resized image waits for its shard."""
    fetched, resized = finished.fetched, finished.resized
    try:
        if fetched.reason is not Reason.OK or resized is None:
            run.record(fetched, fetched.reason)
        elif resized.reason is not Reason.OK:
            run.record(fetched, resized.reason)
        else:
            await to_writer.put((fetched, resized))
    except OutputError as e:  # the journal could not be written
        run.abort(e)


async def write_loop(run: RunState, to_writer: asyncio.Queue) -> None:
    """The only place that touches the shard writer, so shards fill in order. After a write
    error it only drains the queue, so that nothing waits on it forever."""
    while (item := await to_writer.get()) is not None:
        if run.fatal is not None:
            continue
        fetched, resized = item
        run.pending_ok[fetched.image_id] = fetched
        try:
            flushed = await asyncio.to_thread(run.writer.add, shard_record(fetched, resized))
            if flushed is not None:
                run.shard_written(flushed.name, flushed.image_ids)
        except OutputError as e:
            run.abort(e)
    try:
        flushed = await asyncio.to_thread(run.writer.close) if run.fatal is None else None
        if flushed is not None:
            run.shard_written(flushed.name, flushed.image_ids)
    except OutputError as e:
        run.abort(e)


def shard_record(fetched: Fetched, resized: Resized) -> ShardRecord:
    return ShardRecord(
        image_id=fetched.image_id,
        jpeg=resized.jpeg or b"",
        width=resized.width,
        height=resized.height,
        original_width=resized.original_width,
        original_height=resized.original_height,
        source=str(fetched.source),
        md5=fetched.md5,
        verified=fetched.verified,
    )


def cancel(active: set[asyncio.Task]) -> None:
    for t in list(active):
        t.cancel()  # unfinished images are not in the manifest: the next run does them


def flush_journal(run: RunState) -> None:
    try:
        run.journal.flush()
    except OutputError as e:
        run.abort(e)
