"""spool: bodies in reusable memory files, read back in this process and in a forkserver worker."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest

from openimages_pipe.download import spool
from openimages_pipe.download.spool import SpooledBody, Spools, read_body

pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd is Linux-only")


@pytest.fixture
def spools() -> Iterator[Spools]:
    s = Spools()
    yield s
    s.close()


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=context) as p:
        yield p


def written(spools: Spools, *chunks: bytes) -> spool.Spool:
    s = spools.acquire()
    for chunk in chunks:
        s.write(chunk)
    return s


def test_chunks_read_back_whole_here_and_in_a_worker(spools, pool) -> None:
    chunks = [os.urandom(n) for n in (1, 70_000, 3 * 1024 * 1024, 5)]  # grows past MIN_BYTES
    s = written(spools, *chunks)
    ref = s.ref()
    assert ref.size == sum(map(len, chunks))
    assert read_body(ref) == b"".join(chunks)
    assert pool.submit(read_body, ref).result(timeout=60) == b"".join(chunks)
    s.release()


def test_a_reused_spool_holds_only_the_new_body(spools) -> None:
    first = written(spools, b"a" * 100_000)
    first.release()
    second = written(spools, b"short")
    assert second is first  # the file and its pages are reused ...
    assert read_body(second.ref()) == b"short"  # ... but the old tail is not read
    second.release()


def test_a_held_body_is_not_rewritten_until_its_job_releases_it(spools) -> None:
    s = written(spools, b"job's body")
    ref = s.ref()
    spools.hold(ref)  # a job in a worker
    s.release()  # the writer is done
    other = spools.acquire()
    assert other is not s
    other.write(b"another body")
    assert read_body(ref) == b"job's body"
    spools.release(ref)  # the job ended
    other.release()
    assert {spools.acquire().name, spools.acquire().name} == {s.name, other.name}


def test_a_large_body_gives_its_pages_back(spools) -> None:
    s = written(spools, b"x" * (spool.KEEP_BYTES + 1))
    assert os.fstat(s.fd).st_size > spool.KEEP_BYTES
    s.release()
    assert os.fstat(s.fd).st_size == 0
    again = written(spools, b"small")  # and it still works afterwards
    assert again is s and read_body(again.ref()) == b"small"
    again.release()


def test_a_reference_to_another_file_is_refused(spools) -> None:
    s = written(spools, b"body")
    wrong = SpooledBody(os.getpid(), s.fd, "oi-pipe-not-this-one", 4)
    with pytest.raises(RuntimeError, match="not at"):
        read_body(wrong)
    s.release()


def test_bytes_pass_through_untouched(spools) -> None:
    assert read_body(b"plain") == b"plain"
    assert spools.hold(b"plain") == b"plain"
    spools.release(b"plain")  # nothing to release, and no error


def test_probe_spools_for_a_worker_that_can_read(pool) -> None:
    found = spool.probe(pool)
    assert isinstance(found, Spools)
    found.close()


def test_probe_falls_back_to_bytes_without_memfd(pool, monkeypatch) -> None:
    monkeypatch.delattr(os, "memfd_create")
    assert spool.probe(pool) is None


def test_probe_falls_back_to_bytes_when_workers_cannot_read(pool, monkeypatch) -> None:
    # as under a /proc the workers cannot see: a reference to a process that is not there
    no_such_pid = 2**22 + 7  # above Linux's largest pid_max
    ghost = lambda self: SpooledBody(no_such_pid, self.fd, self.name, self.size)  # noqa: E731
    monkeypatch.setattr(spool.Spool, "ref", ghost)
    assert spool.probe(pool) is None


def slow_read(body: spool.Body, delay: float) -> bytes:
    time.sleep(delay)
    return read_body(body)


def test_a_submitted_body_outlives_its_writer_until_the_job_ends(spools, pool) -> None:
    s = written(spools, b"the job's body")
    job = spool.submit(pool, spools, s.ref(), slow_read, s.ref(), 0.5)
    s.release()  # the writer (and a cancelled awaiter) let go while the worker sleeps
    other = spools.acquire()
    assert other is not s  # s is still held by the job: not handed out, not rewritten
    other.write(b"x" * 100)
    assert job.result(timeout=60) == b"the job's body"
    other.release()
    assert s.name in {spools.acquire().name, spools.acquire().name}  # free again after the job
