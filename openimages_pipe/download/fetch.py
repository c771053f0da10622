"""The fetch stage: an `ImageTask` in, a `Fetched` out, over one aiohttp session.

This module owns HTTP for downloads: the bounds (`FetchConfig`), which URLs may be requested at all
(http/https only; no private, loopback or link-local address unless allowed, checked on every
redirect hop), the manual redirect walk, the byte cap, retries with backoff, the mapping of every
status and error to a `Reason`, and the fallback from one source to the next. Per-host pacing is
`host_gate`'s; judging the bytes is `verify`'s. A bad URL or response is a `Fetched` with a
reason, never an exception; only cancellation propagates.
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
    RefusedAddressError,
    checked_url,
    parse_retry_after,
)
from openimages_pipe.download.records import (
    TRANSIENT_REASONS,
    Candidate,
    Fetched,
    ImageTask,
    Md5Mode,
    Reason,
)
from openimages_pipe.download.spool import Body, Spool, Spools, read_body
from openimages_pipe.download.verify import (
    Check,
    Verdict,
    is_placeholder_url,
    known_placeholder_md5s,
)

MIB = 1024 * 1024
# The most one read of the body can return, so the most the byte cap is overshot by: asyncio reads
# 256 KiB from the socket at a time, and aiohttp buffers up to 128 KiB before it pauses reading.
CHUNK = 384 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})
STATUS_REASONS = {
    401: Reason.HTTP_403, 403: Reason.HTTP_403, 451: Reason.HTTP_403, 410: Reason.HTTP_410,
    408: Reason.TIMEOUT, 429: Reason.RATE_LIMITED,
}  # fmt: skip


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


def reason_for_status(status: int) -> Reason | None:
    """The reason an HTTP status ends an attempt with; None for 2xx. Any other 4xx, and a 3xx
    that is not a followable redirect, says "not here": http_404."""
    if 200 <= status < 300:
        return None
    if status >= 500:
        return Reason.HTTP_5XX
    return STATUS_REASONS.get(status, Reason.HTTP_404)


@dataclass(frozen=True)
class _Reply:
    """One attempt's end: a body to verify (reason OK) or why there is none."""

    reason: Reason
    http_status: int | None = None
    body: bytes | Spool | None = None
    throttled: bool = False  # 429, or 503 with Retry-After: the host asked us to slow down
    retry_after: float | None = None


def _reason_for_error(exc: BaseException) -> Reason:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        refused = isinstance(exc.os_error, RefusedAddressError)
        return Reason.BAD_URL if refused else Reason.CONNECTION_ERROR
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return Reason.BAD_URL
    return Reason.CONNECTION_ERROR


class Fetcher:
    """Fetches images with one session: `async with Fetcher(cfg) as f: fetched = await f.fetch(t)`.

    The session, its connector (with the DNS cache), the global semaphore and the host gates live
    as long as the `async with`; `counters` may be read at any time for a progress display.
    With `spools`, bodies go to memory files (see `spool`) and an accepted `Fetched` carries only
    their `size`; else its `body` too.
    """

    def __init__(self, cfg: FetchConfig | None = None, spools: Spools | None = None) -> None:
        self.cfg = cfg or FetchConfig()
        self.counters = FetchCounters()
        self.spools = spools

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
        self._gates = HostGates(cfg.per_host)
        self._placeholders = known_placeholder_md5s() | frozenset(cfg.placeholder_md5s)
        self._rng = random.Random()
        return self

    @property
    def bytes_received(self) -> int:
        """Body bytes read so far: what a progress display's MB/s is made of."""
        return self.counters.bytes_received

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.close()
        await self._resolver.close()

    async def fetch(self, task: ImageTask, judge: Judge = verify_here) -> Fetched:
        """Try the candidates in order; the first body that `judge` accepts wins. If none
        does: the first transient failure (retried next run), else the first candidate's reason."""
        failures: list[Fetched] = []
        attempts = 0
        for candidate in task.candidates:
            result = await self._fetch_source(task, candidate, judge)
            attempts += result.attempts
            if result.reason is Reason.OK:
                return replace(result, attempts=attempts)
            failures.append(result)
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
        self, task: ImageTask, candidate: Candidate, reply: _Reply, attempts: int, judge: Judge
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
        return replace(result, body=body, size=size, verified=verdict.verified, md5=verdict.md5)

    async def _attempt(self, gate: HostGate, url: URL) -> _Reply:
        """One attempt: wait for the host's gate and a global slot, then request (hops included)."""
        await gate.acquire()
        try:
            async with self._slots:
                return await self._request(url)
        except TimeoutError:  # before OSError: asyncio's and aiohttp's timeouts are TimeoutErrors
            return _Reply(Reason.TIMEOUT)
        except (aiohttp.ClientError, OSError) as exc:  # payload cut, reset, refused, DNS, bad URL
            return _Reply(_reason_for_error(exc))
        finally:
            gate.release()

    async def _request(self, url: URL) -> _Reply:
        """Follow redirects by hand so that every hop is checked like the first URL."""
        seen = {url}
        for hop in range(self.cfg.max_redirects + 1):
            self.counters.requests += 1
            async with self._session.get(url, allow_redirects=False) as resp:
                status, location = resp.status, resp.headers.get("Location")
                if status not in REDIRECTS or location is None:
                    return await self._read(resp)
            target = self._hop(url, location)
            if target is None:
                return _Reply(Reason.BAD_URL, status)
            if is_placeholder_url(str(target)):
                return _Reply(Reason.PLACEHOLDER, status)  # never download the placeholder
            if target in seen or hop == self.cfg.max_redirects:
                return _Reply(Reason.REDIRECT_LOOP, status)  # a cycle, or one hop too many
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

    async def _read(self, resp: aiohttp.ClientResponse) -> _Reply:
        """The final response: its status's reason, or its body up to the byte cap."""
        reason = reason_for_status(resp.status)
        if reason is not None:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            throttled = resp.status == 429 or (resp.status == 503 and retry_after is not None)
            return _Reply(reason, resp.status, throttled=throttled, retry_after=retry_after)
        if resp.content_length is not None and resp.content_length > self.cfg.max_bytes:
            return _Reply(Reason.TOO_LARGE, resp.status)  # not a byte read
        # Chunks as the socket delivered them (iter_chunks: not even joined by aiohttp), into a
        # spool or joined once: re-cutting them into fixed sizes and growing a bytearray cost more
        # CPU than aiohttp's whole request (1.7 against 0.7 ms per 1.2 MB body).
        spool = self.spools.acquire() if self.spools else None
        chunks: list[bytes] = []
        size, complete = 0, False
        try:
            async for chunk, _ in resp.content.iter_chunks():
                self.counters.bytes_received += len(chunk)
                size += len(chunk)
                if size > self.cfg.max_bytes:
                    resp.close()  # hang up: the rest of an endless body is never read
                    return _Reply(Reason.TOO_LARGE, resp.status)
                if spool is None:
                    chunks.append(chunk)
                else:
                    spool.write(chunk)
            complete = True
        finally:
            if spool is not None and not complete:
                spool.release()  # cut off, capped or cancelled: _judge will never see it
        return _Reply(Reason.OK, resp.status, spool or b"".join(chunks))
