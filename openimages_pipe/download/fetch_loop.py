"""One event loop's fetching: an aiohttp `Fetcher`, its process pool of decode workers and their
spools, and `process(task)`: an `ImageTask` in, a `Finished` out (no original body in it).

The download runs one of these in its own process (`--processes 1`) or one in each fetch process
(`fetch_process`); either way the pool's workers verify (MD5), decode and resize each body in one
call, and only the small resized JPEG comes back. Recording what it hands on is the caller's.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

from openimages_pipe.download import spool, stopping
from openimages_pipe.download.fetch import FetchConfig, Fetcher
from openimages_pipe.download.host_gate import SharedDeadlines
from openimages_pipe.download.records import Finished, ImageTask, Reason, Resized
from openimages_pipe.download.resize import ResizeConfig
from openimages_pipe.download.spool import Body
from openimages_pipe.download.verify import Check, Verdict

# Images started but not finished, per request slot: bounds the bodies in memory to concurrency x
# this factor (a finished image keeps only its resized JPEG until its shard is written).
IN_FLIGHT_FACTOR = 2
# What a worker runs on one body: worker.check_and_resize, or a benchmark's or a test's stand-in.
JudgeFn = Callable[..., tuple[Verdict, Resized | None]]


@dataclass(frozen=True)
class LoopConfig:
    """What one fetch loop needs: its share of the requests and of the decode workers."""

    fetch: FetchConfig
    resize: ResizeConfig
    workers: int


class FetchLoop:
    """`async with FetchLoop(cfg, judge_fn) as loop: finished = await loop.process(task)`.

    The pool exists from construction, so `kill` (from any thread) works at once; entering starts
    its workers (through the spool probe) and the fetcher; leaving waits for the workers' jobs."""

    def __init__(
        self, cfg: LoopConfig, judge_fn: JudgeFn, deadlines: SharedDeadlines | None = None
    ) -> None:
        self.cfg = cfg
        self._judge_fn = judge_fn
        self._deadlines = deadlines
        # forkserver, not fork: a forked worker would inherit polars' and aiohttp's threads
        # mid-use and the share lock, which must die with this process even if a worker
        # outlives it.
        self.pool = ProcessPoolExecutor(
            cfg.workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=stopping.watch_parent,
            initargs=(os.getpid(),),
        )
        self.spools: spool.Spools | None = None
        self.fetcher: Fetcher | None = None

    def kill(self) -> None:
        stopping.kill_workers(self.pool)

    async def __aenter__(self) -> FetchLoop:
        self.spools = await asyncio.get_running_loop().run_in_executor(None, spool.probe, self.pool)
        self.fetcher = await Fetcher(self.cfg.fetch, self.spools, self._deadlines).__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self.fetcher is not None:
                await self.fetcher.__aexit__(*exc_info)
        finally:
            self.pool.shutdown(wait=True)  # a stop's grace period ends a stuck job by `kill`
            if self.spools is not None:
                self.spools.close()  # after the pool's shutdown: no job reads them any more

    async def process(self, task: ImageTask) -> Finished:
        assert self.fetcher is not None, "use FetchLoop as an async context manager"
        # each judged candidate's resize, by URL (once per task): the one kept may be an
        # undersized copy judged before the candidates that fetch tried after it
        resized: dict[str | None, Resized | None] = {}
        cfg = self.cfg

        async def judge(body: Body, check: Check) -> Verdict:
            job = spool.submit(
                self.pool, self.spools, body, self._judge_fn, task.image_id, body, check,
                task.rotation, cfg.resize,
            )  # fmt: skip
            verdict, resized[check.url] = await asyncio.wrap_future(job)
            return verdict

        fetched = await self.fetcher.fetch(task, judge)
        # the body is let go here (if not spooled): only the resized JPEG goes on
        kept = resized.get(fetched.url) if fetched.reason is Reason.OK else None
        return Finished(replace(fetched, body=None), kept)
