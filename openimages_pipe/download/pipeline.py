"""`oi-pipe download`: wires read -> fetch -> resize -> shard writer -> manifest, and nothing else.

The event loop only does I/O: aiohttp fetches, and handing bodies to a process pool that verifies
(MD5), decodes and resizes each in one call. One writer coroutine adds resized images to the shard
writer; when a shard is durable on disk, its images' manifest rows go to the journal, so a kill at
any moment loses only work that the next run redoes. Failures go to the journal at once: a dead
link is a row.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import signal
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from openimages_pipe.download import manifest, run_record, spool
from openimages_pipe.download import tasks as download_input
from openimages_pipe.download.fetch import FetchConfig, Fetcher
from openimages_pipe.download.manifest import Journal, Share
from openimages_pipe.download.progress import DownloadProgress
from openimages_pipe.download.records import Fetched, ImageTask, OutputFormat, Reason, Resized
from openimages_pipe.download.resize import ResizeConfig
from openimages_pipe.download.run_record import RunTally
from openimages_pipe.download.shard_writer import (
    JpegShardWriter,
    ParquetShardWriter,
    ShardRecord,
    jpeg_path,
)
from openimages_pipe.download.spool import Body
from openimages_pipe.download.tasks import InputConfig, ReadPlan
from openimages_pipe.download.verify import Check, Verdict
from openimages_pipe.download.worker import check_and_resize
from openimages_pipe.errors import InputError

# Rows buffered before a journal part is written: small enough that a kill loses seconds of
# failure records (which are simply retried), large enough that parts stay few.
JOURNAL_ROWS = 2_000
# Images started but not finished: bounds the bodies in memory to concurrency x this factor
# (a finished image keeps only its resized JPEG until its shard is written).
IN_FLIGHT_FACTOR = 2


@dataclass(frozen=True)
class DownloadConfig:
    out: Path
    input: InputConfig
    fetch: FetchConfig = field(default_factory=FetchConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    format: OutputFormat = OutputFormat.PARQUET
    rows_per_shard: int = 1000
    workers: int = 2
    retry_missing: bool = False
    quiet: bool = False

    @property
    def share(self) -> Share:
        return Share(self.input.share_index, self.input.share_count)


class _Run:
    """The mutable state of one run: writer, journal, tally, and the stop flag."""

    def __init__(self, cfg: DownloadConfig, prior: dict[str, dict], run_id: str) -> None:
        self.cfg = cfg
        self.prior = prior
        self.journal = Journal(cfg.out, cfg.share, run_id)
        self.tally = RunTally()
        self.stop = asyncio.Event()
        # image_id -> what was fetched, without its body: held until the image's shard is on
        # disk; without the body, so a 1,000-image shard costs no gigabyte
        self.pending_ok: dict[str, Fetched] = {}
        prefix = f"shards/{cfg.share.name}-{run_id}"
        writer = ParquetShardWriter if cfg.format is OutputFormat.PARQUET else JpegShardWriter
        # the resolved config travels in every shard's metadata, not only in the run record
        provenance = {"oi_pipe_download": json.dumps(run_record.jsonable(cfg), default=str)}
        self.writer = writer(
            cfg.out, prefix, rows_per_shard=cfg.rows_per_shard, metadata=provenance
        )

    def record(self, fetched: Fetched, reason: Reason, shard: str | None = None) -> None:
        prior = self.prior.get(fetched.image_id)
        row = run_record.manifest_row(fetched, reason, shard, prior)
        self.tally.count(row, self.prior.get(fetched.image_id))
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


async def _process(
    run: _Run,
    pool: ProcessPoolExecutor,
    fetcher: Fetcher,
    task: ImageTask,
    to_writer: asyncio.Queue,
) -> None:
    resized: Resized | None = None
    spools = fetcher.spools

    async def judge(body: Body, check: Check) -> Verdict:
        nonlocal resized  # the accepted body's resize; a rejected one (next source) has None
        job = spool.submit(
            pool, spools, body, check_and_resize, task.image_id, body, check, task.rotation,
            run.cfg.resize,
        )  # fmt: skip
        verdict, resized = await asyncio.wrap_future(job)
        return verdict

    fetched = await fetcher.fetch(task, judge)
    if fetched.reason is not Reason.OK or resized is None:
        run.record(fetched, fetched.reason)
        return
    if resized.reason is not Reason.OK:
        run.record(fetched, resized.reason)
        return
    # the body is let go here (if it was not spooled): only the resized JPEG waits for the writer
    await to_writer.put((replace(fetched, body=None), resized))


async def _write_loop(run: _Run, to_writer: asyncio.Queue) -> None:
    """The only place that touches the shard writer, so shards fill in order."""
    while (item := await to_writer.get()) is not None:
        fetched, resized = item
        run.pending_ok[fetched.image_id] = fetched
        flushed = await asyncio.to_thread(run.writer.add, _shard_record(fetched, resized))
        if flushed is not None:
            run.shard_written(flushed.name, flushed.image_ids)
    flushed = await asyncio.to_thread(run.writer.close)
    if flushed is not None:
        run.shard_written(flushed.name, flushed.image_ids)


def _shard_record(fetched: Fetched, resized: Resized) -> ShardRecord:
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


async def _feed(run: _Run, batches, pool, fetcher, to_writer, progress: DownloadProgress) -> None:
    """Start one task per image, at most `limit` at a time, until done or stopped.

    Bad input found mid-stream (an InputError from `batches`) ends the run like a stop, then
    propagates: what finished is recorded, and the fixed CSV's rerun does the rest."""
    limit = asyncio.Semaphore(run.cfg.fetch.concurrency * IN_FLIGHT_FACTOR)
    active: set[asyncio.Task] = set()

    def finished(t: asyncio.Task) -> None:
        active.discard(t)
        limit.release()
        progress.advance()

    try:
        for batch in batches:
            run.tally.invalid(batch.invalid_ids)
            run.prior.update(batch.prior)
            for task in batch.tasks:
                await limit.acquire()
                if run.stop.is_set():
                    limit.release()
                    break
                t = asyncio.create_task(_process(run, pool, fetcher, task, to_writer))
                active.add(t)
                t.add_done_callback(finished)
            if run.stop.is_set():
                break
            await asyncio.sleep(0)  # let the batch's tasks start before reading the next batch
    except InputError:
        _cancel(active)
        raise
    finally:
        if run.stop.is_set():
            _cancel(active)
        await asyncio.gather(*active, return_exceptions=True)


def _cancel(active: set[asyncio.Task]) -> None:
    for t in list(active):
        t.cancel()  # unfinished images are not in the manifest: the next run does them


async def _download(
    cfg: DownloadConfig, run: _Run, done, prior_frame, plan: ReadPlan, total: int
) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, run.stop.set)
    to_writer: asyncio.Queue = asyncio.Queue(maxsize=cfg.rows_per_shard)
    batches = download_input.iter_batches(cfg.input, done, prior_frame, plan)
    spools = None
    try:
        with (
            # forkserver, not fork: a forked worker would inherit polars' and aiohttp's threads
            # mid-use and the share lock, which must die with this process even if a worker
            # outlives it.
            ProcessPoolExecutor(
                cfg.workers, mp_context=multiprocessing.get_context("forkserver")
            ) as pool,
            DownloadProgress(total, run.tally, quiet=cfg.quiet) as progress,
        ):
            spools = await loop.run_in_executor(None, spool.probe, pool)
            writer = asyncio.create_task(_write_loop(run, to_writer))
            try:
                async with Fetcher(cfg.fetch, spools) as fetcher:
                    progress.bytes_source = fetcher
                    await _feed(run, batches, pool, fetcher, to_writer, progress)
            finally:
                await to_writer.put(None)
                await writer
                run.journal.flush()
    finally:
        if spools is not None:
            spools.close()  # after the pool's shutdown: no job reads them any more
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(cfg: DownloadConfig) -> run_record.RunSummary:
    """Download what is left to do, resumably; returns (and records) what happened.

    Bad input (an InputError at the start or mid-stream) still writes the run record, saying the
    run failed and why, then propagates for the command line to print."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    run_id = run_record.new_run_id() + "-" + uuid.uuid4().hex[:6]
    with run_record.share_lock(cfg.out, cfg.share):
        prior_frame = manifest.compact(cfg.out, cfg.share)  # merges what a killed run left
        run_record.remove_orphans(cfg.out, cfg.share, prior_frame)
        done = manifest.done_ids(prior_frame, cfg.retry_missing)
        run = _Run(cfg, {}, run_id)
        error: Exception | None = None
        try:
            plan = download_input.read_plan(cfg.input)
            run.tally.duplicates = plan.duplicates
            total = download_input.count_rows(cfg.input, done, prior_frame, plan)
            asyncio.run(_download(cfg, run, done, prior_frame, plan, total))
        except KeyboardInterrupt:  # outside the loop's signal handlers: a stop, not a failure
            run.stop.set()
            raise
        except Exception as e:  # any: recorded as the run's failure, then re-raised
            error = e
            raise
        finally:
            merged = manifest.compact(cfg.out, cfg.share)
            stopped = run.stop.is_set()
            summary = run_record.finish(cfg, run_id, run.tally, merged, stopped, error)
    return summary
