"""Where a fetched body waits between the socket and the worker process that judges and decodes it.

On Linux a body is written, chunk by chunk as it arrives, into an anonymous memory file
(`memfd_create`), and the worker reads it through `/proc/<pid>/fd/<n>`. The body then crosses to
the worker as a 60-byte reference instead of being pickled through the pool's pipe (~1 ms on each
side for a 1.2 MB original, plus joining the chunks), and it never sits in the event loop's heap.
The files are reused and written through a memory map: a fresh file per body cost more than the
pipe (the kernel zeroes and frees every page: 1.4 ms per 1.2 MB), `pwrite` into a reused one still
0.66 ms (a page-cache lookup per 4 KiB); a copy into mapped pages is a plain memcpy.

Where that is not possible (no memfd, no /proc, or workers that cannot read the files: `probe`
finds out once per run), bodies stay plain `bytes`.

Lifetime: a spool returns to the free list when its writer and every job that `hold`s it are done
(the job's done-callback releases it, even if the task awaiting the job was cancelled), so a worker
never reads a file that is being rewritten. The worker checks the file's name, unique per spool.
"""

from __future__ import annotations

import itertools
import mmap
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import TypeVar

# A spool keeps its pages for the next body, unless it grew past this (a rare 30 MB original
# should not stay resident for the rest of the run).
KEEP_BYTES = 8 * 1024 * 1024
MIN_BYTES = 2 * 1024 * 1024  # the first size of a spool's file; it doubles as bodies need
PROBE = b"oi-pipe spool probe"
_names = itertools.count()
T = TypeVar("T")


@dataclass(frozen=True)
class SpooledBody:
    """A picklable reference to a body in a memory file of the event loop's process."""

    pid: int
    fd: int
    name: str
    size: int

    @property
    def path(self) -> str:
        return f"/proc/{self.pid}/fd/{self.fd}"


Body = bytes | SpooledBody


class Spool:
    """One reusable memory file: `write` a body's chunks, hand out `ref()`, then `release`."""

    def __init__(self, spools: Spools) -> None:
        self.spools = spools
        self.name = f"oi-pipe-{os.getpid()}-{next(_names)}"
        self.fd = os.memfd_create(self.name, os.MFD_CLOEXEC)
        self.map: mmap.mmap | None = None
        self.size = 0  # of the body being written; the file is at least as long
        self.users = 1  # the writer

    def write(self, chunk: bytes) -> None:
        end = self.size + len(chunk)
        if self.map is None or end > len(self.map):
            self._grow(end)
        self.map[self.size : end] = chunk
        self.size = end

    def _grow(self, needed: int) -> None:
        capacity = max(needed, MIN_BYTES, 2 * len(self.map) if self.map is not None else 0)
        self._unmap()
        os.ftruncate(self.fd, capacity)
        self.map = mmap.mmap(self.fd, capacity)

    def _unmap(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None

    def shrink(self) -> None:
        """Give the pages back if a large body grew the file past KEEP_BYTES."""
        if self.map is not None and len(self.map) > KEEP_BYTES:
            self._unmap()
            os.ftruncate(self.fd, 0)

    def close(self) -> None:
        self._unmap()
        os.close(self.fd)

    def ref(self) -> SpooledBody:
        return SpooledBody(os.getpid(), self.fd, self.name, self.size)

    def release(self) -> None:
        self.spools.release(self)


class Spools:
    """The run's memory files: the free ones, and the count of users of each busy one."""

    def __init__(self) -> None:
        self._free: list[Spool] = []
        self._busy: dict[str, Spool] = {}
        self._lock = threading.Lock()  # job done-callbacks release from the pool's thread

    def acquire(self) -> Spool:
        with self._lock:
            spool = self._free.pop() if self._free else None
            if spool is None:
                spool = Spool(self)
            spool.size, spool.users = 0, 1
            self._busy[spool.name] = spool
            return spool

    def hold(self, body: Body) -> Body:
        """Keep a spooled body's file for a job: `release(body)` when the job has ended."""
        if isinstance(body, SpooledBody):
            with self._lock:
                self._busy[body.name].users += 1
        return body

    def release(self, body: Body | Spool) -> None:
        if isinstance(body, bytes):
            return
        with self._lock:
            spool = self._busy[body.name]
            spool.users -= 1
            if spool.users:
                return
            del self._busy[spool.name]
            spool.shrink()
            self._free.append(spool)

    def close(self) -> None:
        """Close every file; bodies still held by jobs stay readable until those end."""
        with self._lock:
            for spool in self._free:
                spool.close()
            self._free.clear()


def submit(
    pool: Executor, spools: Spools | None, body: Body, fn: Callable[..., T], *args: object
) -> Future[T]:
    """`pool.submit(fn, *args)`, keeping `body`'s file until the job has ended: a task awaiting
    the job may be cancelled while the worker still reads."""
    if spools is None or isinstance(body, bytes):
        return pool.submit(fn, *args)
    spools.hold(body)
    try:
        job = pool.submit(fn, *args)
    except BaseException:  # a broken pool: no job will ever release it
        spools.release(body)
        raise
    job.add_done_callback(lambda _: spools.release(body))
    return job


def read_body(body: Body) -> bytes:
    """The body's bytes; in a worker, read from the event loop's memory file."""
    if isinstance(body, bytes):
        return body
    fd = os.open(body.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        # the name is unique per spool: a descriptor number reused by another file cannot pass
        if os.readlink(f"/proc/self/fd/{fd}") != f"/memfd:{body.name} (deleted)":
            raise RuntimeError(f"spooled body {body.name} is not at {body.path}")
        chunks, done = [], 0
        while done < body.size:
            chunk = os.pread(fd, body.size - done, done)
            if not chunk:
                raise RuntimeError(f"spooled body {body.name} ended {body.size - done} bytes early")
            chunks.append(chunk)
            done += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def probe(pool: Executor) -> Spools | None:
    """Spools whose bodies `pool`'s workers can read, or None (then bodies travel as bytes); asked
    once per run (it also starts the workers)."""
    if not hasattr(os, "memfd_create") or not os.path.isdir(f"/proc/{os.getpid()}/fd"):
        return None
    spools = Spools()
    spool = spools.acquire()
    try:
        spool.write(PROBE)
        readable = pool.submit(read_body, spool.ref()).result(timeout=60) == PROBE
    except (OSError, RuntimeError):  # /proc hidden, another pid namespace, a timeout
        readable = False
    finally:
        spool.release()
    if readable:
        return spools
    spools.close()
    return None
