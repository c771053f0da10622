"""The fetch processes of one download, seen from the coordinating process: how many
(`--processes`), each one's share of the bounds, handing them ImageTasks and settling what they
send back.

The coordinating process reads the CSVs and alone writes shards, journal and run record; the N
fetch processes (`fetch_process`) fetch and decode. Tasks go to whichever process has room: each
may hold `IN_FLIGHT_FACTOR` x its concurrency tasks, and a task's credit returns only once its image
is settled (recorded, or queued for the writer), so memory stays bounded however slow the disk is.
The per-host limit and the concurrency are divided among the processes (each host then never gets
more than `--per-host` requests at a time in all), and each host's Retry-After is shared through
`SharedDeadlines`, so a throttling host is not asked N times as often.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection

from openimages_pipe.download import fetch_process
from openimages_pipe.download.fetch_loop import IN_FLIGHT_FACTOR, JudgeFn, LoopConfig
from openimages_pipe.download.host_gate import SharedDeadlines
from openimages_pipe.download.progress import DownloadProgress
from openimages_pipe.download.run_state import DownloadConfig, RunState, settle
from openimages_pipe.errors import InputError, ProcessLost

SEND_CHUNK = 32  # tasks per message when a process has that much room: fewer, larger writes
JOIN_S = 5.0  # after END, how long a process may take to exit before it is killed
EOF_MARK = object()  # the pipe closed: the process ended (or was killed)


def share(total: int, index: int, count: int) -> int:
    """Process `index`'s share of `total`, the remainder going to the first ones."""
    return total // count + (1 if index < total % count else 0)


def resolve(
    requested: int | None, usable: int, per_host: int, concurrency: int, workers: int | None
) -> int:
    """How many fetch processes: `requested`, or (None: auto) the usable CPUs, at most one per
    request slot of a host and one per decode worker (each process needs at least one of each)."""
    bounds = (per_host, concurrency) if workers is None else (per_host, concurrency, workers)
    if requested is None:
        return max(1, min(usable, *bounds))
    if requested > min(bounds):
        raise InputError(
            "each fetch process needs at least one request per host and one worker: give "
            "--per-host, --concurrency and --workers at least --processes, or fewer --processes",
            value=str(requested),
        )
    return requested


def loop_config(cfg: DownloadConfig, index: int) -> LoopConfig:
    n = cfg.processes
    fetch = replace(
        cfg.fetch,
        concurrency=share(cfg.fetch.concurrency, index, n),
        per_host=share(cfg.fetch.per_host, index, n),
    )
    return LoopConfig(fetch, cfg.resize, max(1, share(cfg.workers, index, n)))


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    credits: asyncio.Semaphore
    inbox: asyncio.Queue = field(default_factory=asyncio.Queue)
    bytes_received: int = 0
    stopped: bool = False

    def order(self, message: object) -> None:
        if not self.stopped:
            self.stopped = message == fetch_process.STOP
            self.conn.send(message)


class FetchProcesses:
    """`with FetchProcesses(cfg, judge_fn) as p: await p.run(run, batches, to_writer, progress)`.

    Entering starts the processes; leaving reaps them (killing any that lingers). `kill` (from
    any thread: a stop's grace period) SIGKILLs them, and their decode workers follow."""

    def __init__(self, cfg: DownloadConfig, judge_fn: JudgeFn) -> None:
        self.cfg = cfg
        self._judge_fn = judge_fn
        self._context = multiprocessing.get_context("forkserver")
        self._deadlines = SharedDeadlines(self._context)
        self._children: list[_Child] = []

    @property
    def bytes_received(self) -> int:
        return sum(c.bytes_received for c in self._children)

    def __enter__(self) -> FetchProcesses:
        loop = asyncio.get_running_loop()
        for index in range(self.cfg.processes):
            mine, theirs = self._context.Pipe(duplex=True)
            lc = loop_config(self.cfg, index)
            process = self._context.Process(
                target=fetch_process.main,
                args=(theirs, os.getpid(), lc, self._judge_fn, self._deadlines),
                name=f"oi-pipe-fetch-{index}",
            )
            process.start()
            theirs.close()
            room = asyncio.Semaphore(lc.fetch.concurrency * IN_FLIGHT_FACTOR)
            child = _Child(process, mine, room)
            loop.add_reader(mine.fileno(), _read_reports, child)
            self._children.append(child)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for child in self._children:
            loop.remove_reader(child.conn.fileno())
            child.process.join(JOIN_S)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            child.conn.close()

    def stop(self) -> None:
        for child in self._children:
            with contextlib.suppress(OSError):  # already gone
                child.order(fetch_process.STOP)

    def kill(self) -> None:
        for child in self._children:
            if child.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGKILL)

    async def run(
        self, run: RunState, batches, to_writer: asyncio.Queue, progress: DownloadProgress
    ) -> None:
        """Hand out the tasks of `batches` until done or stopped, settling every report."""
        run.stoppers.append(self.stop)
        if run.stop.is_set():  # a signal came before the processes were started
            self.stop()
        work: asyncio.Queue = asyncio.Queue(maxsize=SEND_CHUNK * len(self._children))
        receivers = [
            asyncio.create_task(_receive(c, run, to_writer, progress)) for c in self._children
        ]
        senders = [asyncio.create_task(_send(c, work)) for c in self._children]
        reader = asyncio.create_task(_read_tasks(run, batches, work, len(self._children)))
        run.active.update([reader, *senders])  # a stop cancels these; receivers drain to END
        try:
            await reader
        except (InputError, asyncio.CancelledError) as e:
            run.halt()
            if isinstance(e, InputError):
                raise
        finally:
            await asyncio.gather(*senders, return_exceptions=True)
            await asyncio.gather(*receivers)


async def _read_tasks(run: RunState, batches, work: asyncio.Queue, processes: int) -> None:
    for batch in batches:
        if run.stop.is_set():
            return
        for task in run.take(batch):
            await work.put(task)
        if run.stop.is_set():
            return
        await asyncio.sleep(0)
    for _ in range(processes):
        await work.put(None)  # one FINISH for each sender


async def _send(child: _Child, work: asyncio.Queue) -> None:
    """Send tasks as the child has room, up to SEND_CHUNK a message; FINISH at the end."""
    while True:
        await child.credits.acquire()
        chunk = [await work.get()]
        while chunk[-1] is not None and len(chunk) < SEND_CHUNK and not work.empty():
            if child.credits.locked():
                break
            await child.credits.acquire()  # free: returns at once
            chunk.append(work.get_nowait())
        tasks = [t for t in chunk if t is not None]
        if tasks:
            child.order(tasks)
        if chunk[-1] is None:
            child.order(fetch_process.FINISH)
            return


async def _receive(
    child: _Child, run: RunState, to_writer: asyncio.Queue, progress: DownloadProgress
) -> int | None:
    """Settle the child's reports until END; its exit code if the pipe closed before END."""
    while isinstance(report := await child.inbox.get(), fetch_process.Report):
        child.bytes_received = report.bytes_received
        for finished in report.finished:
            if finished is not None:
                await settle(run, to_writer, finished)
            child.credits.release()
            progress.advance()
    if report is EOF_MARK:
        child.process.join(JOIN_S)
        code = child.process.exitcode if child.process.exitcode is not None else -1
        if not run.stop.is_set():
            # its tasks will never report: stopping now also frees the sender that waits on them
            run.abort(ProcessLost(child.process.name, code))
        return code
    return None


def _read_reports(child: _Child) -> None:
    try:
        while child.conn.poll():
            child.inbox.put_nowait(child.conn.recv())
    except (EOFError, OSError):
        asyncio.get_running_loop().remove_reader(child.conn.fileno())
        child.inbox.put_nowait(EOF_MARK)
