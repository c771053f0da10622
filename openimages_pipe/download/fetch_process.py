"""What one fetch process of a download does: ImageTasks in from the coordinating process,
`Finished` images out, through one duplex pipe.

A fetch process runs one `FetchLoop` (its own event loop, aiohttp session and share of the decode
workers) on the tasks it is sent, and sends back what each came to in `Report`s: the Fetched record
and the resized JPEG, never the original body. It writes nothing to the output folder; the
coordinating process records everything. Orders: a list of tasks (more work), `FINISH` (no more:
finish what is in flight) or `STOP` (cancel what is in flight: it is not recorded, so the next run
does it); the process answers with `END` once its loop is closed. It ignores SIGINT and SIGTERM
(the coordinating process decides how a run stops, and a terminal's Ctrl-C reaches the whole
process group) and ends with the coordinating process, SIGKILL included (`stopping.watch_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection

from openimages_pipe.download import stopping
from openimages_pipe.download.fetch_loop import FetchLoop, JudgeFn, LoopConfig
from openimages_pipe.download.host_gate import SharedDeadlines
from openimages_pipe.download.records import Finished

FINISH = "finish"
STOP = "stop"
END = "end"


@dataclass(frozen=True)
class Report:
    """Images finished since the last report; None for one that ended without an outcome (a
    cancelled or crashed job: not recorded, so the next run does it). `bytes_received`: this
    process's running total, for the live display's MB/s."""

    finished: list[Finished | None]
    bytes_received: int


def main(
    conn: Connection,
    parent: int,
    cfg: LoopConfig,
    judge_fn: JudgeFn,
    deadlines: SharedDeadlines,
) -> None:
    """The fetch process's entry point (a multiprocessing target)."""
    for sig in stopping.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # inherited by this process's decode workers too
    stopping.watch_parent(parent)
    try:
        asyncio.run(_serve(conn, cfg, judge_fn, deadlines))
    finally:
        conn.close()


def _read_orders(conn: Connection, orders: asyncio.Queue) -> None:
    try:
        while conn.poll():
            orders.put_nowait(conn.recv())
    except (EOFError, OSError):  # the coordinating process is gone: stop
        asyncio.get_running_loop().remove_reader(conn.fileno())
        orders.put_nowait(STOP)


async def _serve(
    conn: Connection, cfg: LoopConfig, judge_fn: JudgeFn, deadlines: SharedDeadlines
) -> None:
    loop = asyncio.get_running_loop()
    orders: asyncio.Queue = asyncio.Queue()
    loop.add_reader(conn.fileno(), _read_orders, conn, orders)
    outbox: list[Finished | None] = []
    active: set[asyncio.Task] = set()
    async with FetchLoop(cfg, judge_fn, deadlines) as fetch_loop:

        def send() -> None:
            if outbox:
                conn.send(Report(outbox.copy(), fetch_loop.fetcher.bytes_received))
                outbox.clear()

        def finished(t: asyncio.Task) -> None:
            active.discard(t)
            failed = t.cancelled() or t.exception() is not None
            outbox.append(None if failed else t.result())
            if len(outbox) == 1:  # one report for all that finish in this turn of the loop
                loop.call_soon(send)

        while isinstance(order := await orders.get(), list):
            for task in order:
                t = asyncio.create_task(fetch_loop.process(task))
                active.add(t)
                t.add_done_callback(finished)
        if order == STOP:
            for t in active:
                t.cancel()
        await asyncio.gather(*active, return_exceptions=True)
        await asyncio.sleep(0)  # the last `send` scheduled by `finished`
        send()
    with contextlib.suppress(OSError):  # the coordinating process may be gone
        conn.send(END)
