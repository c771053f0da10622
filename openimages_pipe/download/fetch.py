"""The fetch stage: an `ImageTask` in, a `Fetched` out, over one aiohttp session.

This module owns HTTP for downloads: the bounds (`FetchConfig`), which URLs may be requested at all
(http/https only; no private, loopback or link-local address unless allowed, checked on every
redirect hop), the manual redirect walk, retries with backoff, and the fallback from one source to
the next (also past a reduced copy that the judge finds too small for the target). Per-host pacing
is `host_gate`'s; what an attempt's last response comes to (its status's `Reason`, its body up to
the byte cap) is `response`'s; judging the bytes is `verify`'s. A bad URL or response is a
`Fetched` with a reason, never an exception; only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from openimages_pipe import __version__
from openimages_pipe.download.host_gate import (
    HostGate,
    HostGates,
    PublicOnlyResolver,
    SharedDeadlines,
    checked_url,
)
from openimages_pipe.download.records import (
    TRANSIENT_REASONS,
    Candidate,
    Fetched,
    ImageTask,
    Md5Mode,
    Reason,
)
from openimages_pipe.download.response import Reply, read_reply, reason_for_error
from openimages_pipe.download.spool import Body, Spool, Spools, read_body
from openimages_pipe.download.verify import (
    Check,
    Verdict,
    is_placeholder_url,
    known_placeholder_md5s,
)

MIB = 1024 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchConfig:
    """Every bound of the fetch stage, each with the reason it exists."""

    concurrency: int = 64  # requests in flight overall: the one semaphore and the pool's size
    per_host: int = 16  # ceiling per host; a throttling host gets half, then earns it back
    connect_timeout: float = 10.0  # a dead host must not hold a slot for the OS's minutes
    first_byte_timeout: float = 20.0  # sock_read: also ends a body that stalls midway
    total_timeout: float = 120.0  # one request, body included: a trickling body ends too
    retries: int = 3  # per source, transient reasons only; the rest wait for the next run
    backoff_base: float = 0.5  # seconds; doubled per retry, with full jitter
    backoff_max: float = 30.0
    retry_after_max: float = 300.0  # a host's Retry-After is honoured up to this, not for days
    max_bytes: int = 64 * MIB  # Open Images originals stay far below; an endless body stops here
    max_redirects: int = 5
    user_agent: str = f"oi-pipe/{__version__}"
    allow_private: bool = False  # a URL list is untrusted: no intranet or metadata services
    md5: Md5Mode = Md5Mode.STRICT
    dns_cache_ttl: int = 300  # seconds; Flickr's few farm hosts are looked up once, not per image
    placeholder_md5s: tuple[str, ...] = ()  # besides manifests/placeholders.toml

    def __post_init__(self) -> None:
        for name in ("concurrency", "per_host", "max_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.retries < 0 or self.max_redirects < 0:
            raise ValueError("retries and max_redirects must not be negative")


@dataclass
class FetchCounters:
    """Running totals for a progress display; mutated only on the event loop."""

    requests: int = 0  # HTTP requests sent, redirect hops included
    bytes_received: int = 0
    retries: int = 0
    throttled: int = 0  # 429s and 503s with Retry-After
    redirects: int = 0


# Judges a body that arrived: `verify` here by default; the download command runs it in a worker
# process with the decode, so that MD5 (~2 ms for a 1.2 MB original) stays off the event loop.
# A spooled body is valid until the judge returns (see `spool.hold` to keep it longer).
Judge = Callable[[Body, Check], Awaitable[Verdict]]


async def verify_here(body: Body, check: Check) -> Verdict:
    return check(read_body(body))


class Fetcher:
    """Fetches images with one session: `async with Fetcher(cfg) as f: fetched = await f.fetch(t)`.

    The session, its connector (with the DNS cache), the global semaphore and the host gates live
    as long as the `async with`; `counters` may be read at any time for a progress display.
    With `spools`, bodies go to memory files (see `spool`) and an accepted `Fetched` carries only
    their `size`; else its `body` too. With `deadlines`, each host's Retry-After is shared with the
    run's other fetch processes.
    """

    def __init__(
        self,
        cfg: FetchConfig | None = None,
        spools: Spools | None = None,
        deadlines: SharedDeadlines | None = None,
    ) -> None:
        self.cfg = cfg or FetchConfig()
        self.counters = FetchCounters()
        self.spools = spools
        self._deadlines = deadlines

    async def __aenter__(self) -> Fetcher:
        cfg = self.cfg
        self._resolver: AbstractResolver = aiohttp.DefaultResolver()
        if not cfg.allow_private:
            self._resolver = PublicOnlyResolver(self._resolver)
        connector = aiohttp.TCPConnector(
            limit=cfg.concurrency, limit_per_host=cfg.per_host, ttl_dns_cache=cfg.dns_cache_ttl,
            resolver=self._resolver,
        )  # fmt: skip
        # The one timeout object: connect, first byte (and every later read), whole request.
        timeout = aiohttp.ClientTimeout(
            total=cfg.total_timeout, sock_connect=cfg.connect_timeout,
            sock_read=cfg.first_byte_timeout,
        )  # fmt: skip
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(),
            # identity: the bytes counted and capped are the bytes sent, and MD5 is of the file
            headers={"User-Agent": cfg.user_agent, "Accept-Encoding": "identity"},
        )  # fmt: skip
        self._slots = asyncio.Semaphore(cfg.concurrency)
        self._gates = HostGates(cfg.per_host, shared=self._deadlines)
        self._placeholders = known_placeholder_md5s() | frozenset(cfg.placeholder_md5s)
        self._rng = random.Random()
        return self

    @property
    def bytes_received(self) -> int:
        """Body bytes read so far: what a progress display's MB/s is made of."""
        return self.counters.bytes_received

    def _received(self, size: int) -> None:
        self.counters.bytes_received += size

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.close()
        await self._resolver.close()

    async def fetch(self, task: ImageTask, judge: Judge = verify_here) -> Fetched:
        """Try the candidates in order; the first body that `judge` accepts wins. If none
        does: the first transient failure (retried next run), else the first candidate's reason.

        An accepted reduced copy (thumbnail, mirror) that is `undersized` while later candidates
        remain is set aside: the first later one accepted at full size, or an original (small
        or not), wins, else that first copy is kept (`fell_through` either way), so no image is
        lost to a smaller one."""
        failures: list[Fetched] = []
        small: Fetched | None = None  # the first undersized copy set aside
        attempts = 0
        for n, candidate in enumerate(task.candidates, 1):
            result = await self._fetch_source(task, candidate, judge)
            attempts += result.attempts
            if result.reason is not Reason.OK:
                failures.append(result)
            elif not result.undersized or not candidate.source.reduced:
                # full size; or an original, small itself: no copy of it is bigger, and it is
                # the one that can be verified
                return replace(result, attempts=attempts, fell_through=small is not None)
            elif small is None and n == len(task.candidates):
                return replace(result, attempts=attempts)  # nothing bigger to try: kept small
            else:
                # it holds no spool (`_judge` gave that back); a bytes body it keeps as its own
                small = small or result
        if small is not None:
            return replace(small, attempts=attempts, fell_through=True)
        if not failures:
            return Fetched(task.image_id, Reason.BAD_URL)  # no candidate URL at all
        transient = [f for f in failures if f.reason in TRANSIENT_REASONS]
        return replace((transient or failures)[0], attempts=attempts)

    async def _fetch_source(self, task: ImageTask, candidate: Candidate, judge: Judge) -> Fetched:
        """One source: up to 1 + retries attempts while the reason is transient."""
        url = checked_url(candidate.url, self.cfg.allow_private)
        if url is None:
            return Fetched(task.image_id, Reason.BAD_URL, candidate.source, candidate.url)
        gate = self._gates.get(f"{url.host}:{url.port}")
        for n in range(1 + self.cfg.retries):
            reply = await self._attempt(gate, url)
            result = await self._judge(task, candidate, reply, n + 1, judge)
            if reply.throttled:
                self.counters.throttled += 1
                wait = reply.retry_after
                if wait is None:  # no Retry-After: back off by the un-jittered schedule
                    wait = min(self.cfg.backoff_max, self.cfg.backoff_base * 2**n)
                gate.throttle(min(wait, self.cfg.retry_after_max))  # the retry waits at the gate
            elif reply.http_status is not None and reply.http_status < 300:
                gate.succeeded()
            if result.reason not in TRANSIENT_REASONS or n == self.cfg.retries:
                break
            self.counters.retries += 1
            if not reply.throttled:
                await asyncio.sleep(self._backoff(n))
        return result

    def _backoff(self, n: int) -> float:
        """Full jitter: uniform in [0, base * 2^n], capped, so retries of a burst spread out."""
        return self._rng.uniform(0, min(self.cfg.backoff_max, self.cfg.backoff_base * 2**n))

    async def _judge(
        self, task: ImageTask, candidate: Candidate, reply: Reply, attempts: int, judge: Judge
    ) -> Fetched:
        """The attempt's outcome for this source; a body is kept only if verification passes."""
        result = Fetched(
            task.image_id, reply.reason, candidate.source, candidate.url, reply.http_status,
            attempts,
        )  # fmt: skip
        if reply.reason is not Reason.OK or reply.body is None:
            return result
        check = Check(
            candidate.source, candidate.url, self.cfg.md5, task.original_size, task.original_md5,
            self._placeholders,
        )  # fmt: skip
        if isinstance(reply.body, Spool):
            try:
                verdict = await judge(reply.body.ref(), check)
            finally:
                reply.body.release()
            body, size = None, reply.body.size
        else:
            verdict = await judge(reply.body, check)
            body, size = reply.body, len(reply.body)
        if verdict.reason is not Reason.OK:
            return replace(result, reason=verdict.reason)  # rejected: no body, so no md5
        return replace(
            result, body=body, size=size, verified=verdict.verified, md5=verdict.md5,
            undersized=verdict.undersized,
        )  # fmt: skip

    async def _attempt(self, gate: HostGate, url: URL) -> Reply:
        """One attempt: wait for the host's gate and a global slot, then request (hops included)."""
        await gate.acquire()
        try:
            async with self._slots:
                return await self._request(url)
        except TimeoutError:  # before OSError: asyncio's and aiohttp's timeouts are TimeoutErrors
            return Reply(Reason.TIMEOUT)
        except (aiohttp.ClientError, OSError) as exc:  # payload cut, reset, refused, DNS, bad URL
            return Reply(reason_for_error(exc))
        finally:
            gate.release()

    async def _request(self, url: URL) -> Reply:
        """Follow redirects by hand so that every hop is checked like the first URL."""
        seen = {url}
        for hop in range(self.cfg.max_redirects + 1):
            self.counters.requests += 1
            async with self._session.get(url, allow_redirects=False) as resp:
                status, location = resp.status, resp.headers.get("Location")
                if status not in REDIRECTS or location is None:
                    return await read_reply(resp, self.cfg.max_bytes, self.spools, self._received)
            target = self._hop(url, location)
            if target is None:
                return Reply(Reason.BAD_URL, status)
            if is_placeholder_url(str(target)):
                return Reply(Reason.PLACEHOLDER, status)  # never download the placeholder
            if target in seen or hop == self.cfg.max_redirects:
                return Reply(Reason.REDIRECT_LOOP, status)  # a cycle, or one hop too many
            seen.add(target)
            self.counters.redirects += 1
            url = target
        raise AssertionError("unreachable: the last hop returns")

    def _hop(self, url: URL, location: str) -> URL | None:
        try:
            target = url.join(URL(location))
        except (TypeError, ValueError):
            return None
        return checked_url(str(target), self.cfg.allow_private)
