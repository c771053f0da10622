"""`oi-pipe download`: wires read -> fetch -> resize -> shard writer -> manifest, and nothing else.

With `--classes`, the class selection (`openimages_pipe.select`) runs first and chooses the rows.

The event loop only does I/O: aiohttp fetches, and handing bodies to a process pool that verifies
(MD5), decodes and resizes each in one call. One writer coroutine adds resized images to the shard
writer; when a shard is durable on disk, its images' manifest rows go to the journal, so a kill at
any moment loses only work that the next run redoes. Failures go to the journal at once: a dead
link is a row.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from openimages_pipe.download import manifest, run_record, spool, stopping, storage
from openimages_pipe.download import tasks as download_input
from openimages_pipe.download.fetch import Fetcher
from openimages_pipe.download.progress import DownloadProgress
from openimages_pipe.download.records import ImageTask, Reason, Resized
from openimages_pipe.download.run_state import (
    DownloadConfig,
    RunState,
    cancel,
    flush_journal,
    write_loop,
)
from openimages_pipe.download.spool import Body
from openimages_pipe.download.tasks import ReadPlan
from openimages_pipe.download.verify import Check, Verdict
from openimages_pipe.download.worker import check_and_resize
from openimages_pipe.errors import InputError, Interrupted, OutputError
from openimages_pipe.select import outputs as select_outputs
from openimages_pipe.select import selection

# Images started but not finished: bounds the bodies in memory to concurrency x this factor
# (a finished image keeps only its resized JPEG until its shard is written).
IN_FLIGHT_FACTOR = 2


async def _process(
    run: RunState,
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
    try:
        if fetched.reason is not Reason.OK or resized is None:
            run.record(fetched, fetched.reason)
        elif resized.reason is not Reason.OK:
            run.record(fetched, resized.reason)
        else:  # the body is let go here (if not spooled): only the resized JPEG waits to be written
            await to_writer.put((replace(fetched, body=None), resized))
    except OutputError as e:  # the journal could not be written
        run.abort(e)


async def _feed(
    run: RunState, batches, pool, fetcher, to_writer, progress: DownloadProgress
) -> None:
    """Start one task per image, at most `limit` at a time, until done or stopped.

    Bad input found mid-stream (an InputError from `batches`) ends the run like a stop, then
    propagates: what finished is recorded, and the fixed CSV's rerun does the rest."""
    limit = asyncio.Semaphore(run.cfg.fetch.concurrency * IN_FLIGHT_FACTOR)
    active = run.active

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
        cancel(active)
        raise
    finally:
        if run.stop.is_set():
            cancel(active)
        await asyncio.gather(*active, return_exceptions=True)


async def _download(
    cfg: DownloadConfig,
    run: RunState,
    done,
    prior_frame,
    plan: ReadPlan,
    total: int,
    stops: stopping.Stopping,
) -> None:
    loop = asyncio.get_running_loop()
    to_writer: asyncio.Queue = asyncio.Queue(maxsize=cfg.rows_per_shard)
    batches = download_input.iter_batches(cfg.input, done, prior_frame, plan)
    spools = None
    try:
        with (
            # forkserver, not fork: a forked worker would inherit polars' and aiohttp's threads
            # mid-use and the share lock, which must die with this process even if a worker
            # outlives it.
            ProcessPoolExecutor(
                cfg.workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=stopping.watch_parent,
                initargs=(os.getpid(),),
            ) as pool,
            DownloadProgress(total, run.tally, quiet=cfg.quiet) as progress,
            stops.loop_phase(loop, run.halt, lambda: stopping.kill_workers(pool)),
        ):
            spools = await loop.run_in_executor(None, spool.probe, pool)
            writer = asyncio.create_task(write_loop(run, to_writer))
            try:
                async with Fetcher(cfg.fetch, spools) as fetcher:
                    progress.bytes_source = fetcher
                    await _feed(run, batches, pool, fetcher, to_writer, progress)
            finally:
                await to_writer.put(None)
                await writer
                flush_journal(run)
    finally:
        if spools is not None:
            spools.close()  # after the pool's shutdown: no job reads them any more


def run(cfg: DownloadConfig) -> run_record.RunSummary:
    """Download what is left to do, resumably; returns (and records) what happened.

    Whatever ends a run early still writes its record, then propagates for the command line to
    print: bad input (an InputError, at the start or mid-stream) and a write error (an
    OutputError, such as a full disk) as a failure, SIGINT or SIGTERM (`Interrupted`) as a stop."""
    folder = storage.locate(cfg.out)
    folder.make()
    run_id = run_record.new_run_id() + "-" + uuid.uuid4().hex[:6]
    stops = stopping.Stopping()
    with stops.installed(), run_record.share_lock(folder, cfg.share):
        manifest.claim_share_count(folder, cfg.share)
        prior_frame = manifest.compact(folder, cfg.share)  # merges what a killed run left
        run_record.remove_orphans(folder, cfg.share, prior_frame)
        done = manifest.done_ids(prior_frame, cfg.retry_missing)
        run = RunState(cfg, {}, run_id, folder)
        error: Exception | None = None
        chosen: dict | None = None
        try:
            cfg, chosen = select_classes(cfg)
            plan = download_input.read_plan(cfg.input)
            run.tally.duplicates = plan.duplicates
            total = download_input.count_rows(cfg.input, done, prior_frame, plan)
            asyncio.run(_download(cfg, run, done, prior_frame, plan, total, stops))
            if run.fatal is not None:
                raise run.fatal
        except Interrupted:
            pass  # a stop, recorded as one below
        except Exception as e:  # noqa: BLE001 (any: recorded as the failure, raised below)
            error = e
        stops.phase = stopping.Phase.FINISHING
        summary, error = _finish(cfg, folder, run, error, chosen, stops.signal_name)
    if error is not None:
        raise error
    stops.raise_if_stopped()
    return summary


def _finish(
    cfg: DownloadConfig,
    folder: storage.Folder,
    run: RunState,
    error: Exception | None,
    chosen: dict | None,
    signal: str | None,
) -> tuple[run_record.RunSummary, Exception | None]:
    """Merge the journal and write the run record; a merge that cannot be written fails the run
    (its journal parts stay, for the next run to merge)."""
    try:
        merged = manifest.compact(folder, cfg.share)
    except OutputError as e:
        error, merged = error or e, manifest.load(folder, cfg.share)
    stopped = run.stop.is_set() or signal is not None
    summary = run_record.finish(
        cfg, folder, run.journal.run_id, run.tally, merged, stopped, error, chosen, signal
    )
    return summary, error


def select_classes(cfg: DownloadConfig) -> tuple[DownloadConfig, dict | None]:
    """`--classes`: the selection runs first, of the images the CSVs list (in --subset), into its
    own folder; its ids.txt is then the run's --ids and its counts go in the run record."""
    chosen = cfg.input.selection
    if chosen is None:
        return cfg, None
    if cfg.input.ids_file is not None:
        raise InputError("give --classes or --ids, not both")
    summary = selection.run(replace(chosen, images=cfg.input.csvs, subsets=cfg.input.subsets))
    print(selection.describe(summary), flush=True)
    ids = summary.out / select_outputs.IDS_TXT
    record = select_outputs.read_record(summary.out)
    counted = {k: record[k] for k in ("classes", "counts", "per_class")}
    taken = replace(cfg.input, selection=summary.config, ids_file=ids)
    return replace(cfg, input=taken), {"folder": str(summary.out), **counted}
