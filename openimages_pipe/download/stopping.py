"""How a download ends on SIGINT or SIGTERM, whatever it is waiting on, and why its workers never
outlive it.

A run goes through three phases, and a signal means something different in each:

- reading (planning the rows, a class selection): nothing is written yet, so the signal raises
  `Interrupted` at once;
- the event loop: the signal asks for a graceful stop, handed to the loop thread-safely: images in
  flight are cancelled (they are not in the manifest, so the next run does them), what is queued
  for the writer is written, the journal flushed. A worker can be stuck inside one image for
  minutes (the pool's shutdown waits for it), so `GRACE_S` after the signal, or at a second
  signal, the workers are killed and the run ends all the same;
- finishing (the manifest merge, the run record): seconds of writes that keep the folder
  consistent; the signal is only noted.

The run then raises `Interrupted`, whose exit code (128 + the signal) tells `a && b` not to go on.

Workers: `watch_parent` is the pool's initializer. With the forkserver a worker's parent is the
fork server, not the download, so each worker watches the download's own process (a pidfd where
Linux has one, else polling) and exits the moment it is gone, SIGKILL included; on Linux
PR_SET_PDEATHSIG also ends it with the fork server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

from openimages_pipe.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
GRACE_S = 10.0  # from the signal to killing workers that are still busy with an image
PARENT_POLL_S = 0.5  # where there is no pidfd: how often a worker looks for its download
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Phase(enum.Enum):
    READING = "reading"
    LOOP = "loop"
    FINISHING = "finishing"


class Stopping:
    """The signal handlers of one run, and the signal that stopped it (None if none did)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.phase = Phase.READING
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_stop: Callable[[], None] | None = None
        self._kill: Callable[[], None] | None = None
        self._timer: threading.Timer | None = None

    @property
    def signal_name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    @contextlib.contextmanager
    def installed(self) -> Iterator[Stopping]:
        previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        try:
            yield self
        finally:
            self._cancel_timer()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def loop_phase(
        self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None], kill: Callable[[], None]
    ) -> Iterator[None]:
        """While `loop` runs: `stop` (called in the loop) begins a graceful stop, `kill` (called
        from any thread) ends what the graceful stop would wait for."""
        self._loop, self._loop_stop, self._kill, self.phase = loop, stop, kill, Phase.LOOP
        try:
            # a signal while reading raised Interrupted; should code that catches every
            # Exception have swallowed it, the stop is still owed
            if self.signum is not None:
                stop()
            yield
        finally:
            self.phase = Phase.FINISHING
            self._loop_stop = None

    def _handle(self, signum: int, frame: object) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self.phase is Phase.READING:
            raise Interrupted(signum)
        if self.phase is Phase.FINISHING:
            return
        if not first:  # a second signal: no more grace
            self._kill_now()
        elif self._loop_stop is not None and self._loop is not None:
            # Python runs the handler in the main thread between two bytecodes of whatever the
            # loop was doing; threadsafe, because it also wakes a loop blocked in select().
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
                self._loop.call_soon_threadsafe(self._loop_stop)
            self._timer = threading.Timer(GRACE_S, self._kill_now)
            self._timer.daemon = True
            self._timer.start()

    def _kill_now(self) -> None:
        if self._kill is not None:
            self._kill()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def raise_if_stopped(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL a pool's workers: the pool then breaks, its pending jobs fail, and its shutdown no
    longer waits for them."""
    # A broken pool sets an exception on every job it still holds, and CPython 3.11 fails on a
    # cancelled one (InvalidStateError, in its manager thread): the stop cancelled those jobs
    # already, so they are dropped first.
    pending = getattr(pool, "_pending_work_items", {})
    for key, item in list(pending.items()):
        if item.future.cancelled():
            pending.pop(key, None)
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError):  # already gone
            process.kill()


def watch_parent(pid: int) -> None:
    """Pool initializer: end this worker process as soon as process `pid` is gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    threading.Thread(target=_exit_with, args=(pid,), name="watch-parent", daemon=True).start()


def _exit_with(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [])  # readable once the process has ended
    else:
        while _exists(pid):
            time.sleep(PARENT_POLL_S)
    os._exit(1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
