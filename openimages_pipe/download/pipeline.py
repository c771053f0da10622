"""`oi-pipe download`: wires read -> fetch -> resize -> shard writer -> manifest, and nothing else.

With `--classes`, the class selection (`openimages_pipe.select`) runs first and chooses the rows.

The fetch loops (`fetch_loop`: aiohttp, and a process pool that verifies, decodes and resizes each
body in one call) run here with `--processes 1`, else one in each of N fetch processes
(`fetch_processes`) that hand back resized images; either way this process alone reads the CSVs,
writes shards, journal and run record, and shows progress. One writer coroutine adds resized images
to the shard writer; when a shard is durable on disk, its images' manifest rows go to the journal,
so a kill at any moment loses only work that the next run redoes. Failures go to the journal at
once: a dead link is a row.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

from openimages_pipe.download import fetch_processes, manifest, run_record, stopping, storage
from openimages_pipe.download import tasks as download_input
from openimages_pipe.download.fetch_loop import IN_FLIGHT_FACTOR, FetchLoop, LoopConfig
from openimages_pipe.download.progress import DownloadProgress
from openimages_pipe.download.records import ImageTask
from openimages_pipe.download.run_state import (
    DownloadConfig,
    RunState,
    cancel,
    flush_journal,
    settle,
    write_loop,
)
from openimages_pipe.download.tasks import ReadPlan
from openimages_pipe.download.worker import check_and_resize
from openimages_pipe.errors import InputError, Interrupted, OutputError
from openimages_pipe.select import outputs as select_outputs
from openimages_pipe.select import selection


async def _process(
    run: RunState, fetch_loop: FetchLoop, task: ImageTask, to_writer: asyncio.Queue
) -> None:
    await settle(run, to_writer, await fetch_loop.process(task))


async def _feed(
    run: RunState, batches, fetch_loop: FetchLoop, to_writer, progress: DownloadProgress
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
            for task in run.take(batch):
                await limit.acquire()
                if run.stop.is_set():
                    limit.release()
                    break
                t = asyncio.create_task(_process(run, fetch_loop, task, to_writer))
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


async def _in_this_process(run, batches, to_writer, progress, stops: stopping.Stopping) -> None:
    """`--processes 1`: the fetch loop runs here, on this event loop."""
    cfg = run.cfg
    fetch_loop = FetchLoop(LoopConfig(cfg.fetch, cfg.resize, cfg.workers), check_and_resize)
    with stops.loop_phase(asyncio.get_running_loop(), run.halt, fetch_loop.kill):
        async with fetch_loop:
            progress.bytes_source = fetch_loop.fetcher
            await _feed(run, batches, fetch_loop, to_writer, progress)


async def _in_child_processes(run, batches, to_writer, progress, stops) -> None:
    """`--processes N`: N fetch processes fetch and decode; this process reads, writes, records."""
    # read here, at run time, so that a test's or a benchmark's stand-in reaches the children
    children = fetch_processes.FetchProcesses(run.cfg, check_and_resize)
    with stops.loop_phase(asyncio.get_running_loop(), run.halt, children.kill), children:
        progress.bytes_source = children
        await children.run(run, batches, to_writer, progress)


async def _download(
    cfg: DownloadConfig,
    run: RunState,
    done,
    prior_frame,
    plan: ReadPlan,
    total: int,
    stops: stopping.Stopping,
) -> None:
    to_writer: asyncio.Queue = asyncio.Queue(maxsize=cfg.rows_per_shard)
    batches = download_input.iter_batches(cfg.input, done, prior_frame, plan)
    fetching = _in_this_process if cfg.processes == 1 else _in_child_processes
    with DownloadProgress(total, run.tally, quiet=cfg.quiet) as progress:
        writer = asyncio.create_task(write_loop(run, to_writer))
        try:
            await fetching(run, batches, to_writer, progress, stops)
        finally:
            await to_writer.put(None)
            await writer
            flush_journal(run)


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
