"""Which hosts the fetch stage may reach, and how fast: admission, per host.

This module owns two gates in front of every request. The address gate: `checked_url` admits
http(s) URLs only and refuses IP literals that are private, loopback, link-local, multicast,
reserved or unspecified; `PublicOnlyResolver` refuses names that resolve to such addresses (the
connector's DNS cache then keeps only admitted answers). The pace gate: one `HostGate` per host
(`HostGates`) admits at most `limit` requests at a time and none while it is closed. A throttling
answer (429, or 503 with `Retry-After`, read by `parse_retry_after`) closes it until the time the
host asked for and halves its limit; successes grow the limit back, one slot per window of `limit`
successes, as TCP's congestion avoidance does, up to the ceiling. Clock and sleep are injectable,
so the pacing is tested without waiting. The fetch stage decides what counts as throttled.

Several fetch processes of one run share each host's closed time through `SharedDeadlines`
(shared memory), so a Retry-After that one of them hears holds all of them back; each process's
limit is its share of the run's (`download.fetch_processes` divides it).
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import socket
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

SCHEMES = frozenset({"http", "https"})
# Hosts map to this many shared deadline slots by CRC-32: a run reaches a few dozen hosts, so two
# sharing a slot (and one's Retry-After briefly holding the other back) is rare and harmless.
DEADLINE_SLOTS = 4096


def refused_address(host: str) -> bool:
    """True for an IP address a public URL list has no business reaching."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: the resolver checks what it resolves to
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_unspecified or ip.is_reserved)  # fmt: skip


def checked_url(url: str, allow_private: bool) -> URL | None:
    """`url` if it may be requested: http(s), a host, and no refused IP literal; else None."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return None
    if parsed.scheme not in SCHEMES or not parsed.host:
        return None
    if not allow_private and refused_address(parsed.host):
        return None
    return parsed


class RefusedAddressError(OSError):
    """A name resolved to a refused address; aiohttp wraps it in ClientConnectorDNSError."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves through `inner` and refuses a name if any of its addresses is refused (a name
    that resolves to both a public and a private address is the DNS-rebinding shape).
    aiohttp never asks a resolver about IP literals: `checked_url` covers those."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if any(refused_address(r["host"]) for r in results):
            raise RefusedAddressError(f"{host} resolves to a refused address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def parse_retry_after(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date; None if absent
    or unreadable (the caller then falls back to its own backoff). Never negative."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
        return None
    now = time.time() if now_epoch is None else now_epoch
    return max(0.0, when.timestamp() - now)


class SharedDeadlines:
    """Each host's closed-until time on the monotonic clock (system-wide on Linux, so the same in
    every process), in memory shared by the fetch processes of one run. Made in the parent from a
    multiprocessing context and handed to each process when it starts."""

    def __init__(self, context) -> None:
        self._until = context.RawArray("d", DEADLINE_SLOTS)  # 0.0: never closed
        self._lock = context.Lock()  # a closing writes max(old, new); reads need no lock

    @staticmethod
    def _slot(host: str) -> int:
        return zlib.crc32(host.encode()) % DEADLINE_SLOTS

    def until(self, host: str) -> float:
        return self._until[self._slot(host)]

    def close(self, host: str, until: float) -> None:
        slot = self._slot(host)
        with self._lock:
            self._until[slot] = max(self._until[slot], until)


class HostGate:
    """Admission to one host: a concurrency limit that shrinks on throttling, and a closed time
    (shared with the run's other fetch processes when `shared` is given)."""

    def __init__(
        self,
        ceiling: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        shared: tuple[SharedDeadlines, str] | None = None,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"a host's concurrency ceiling must be at least 1, got {ceiling}")
        self.ceiling = ceiling
        self._limit = float(ceiling)  # fractional so that growth can be one slot per window
        self._in_flight = 0
        self._closed_until = float("-inf")
        self._clock = clock
        self._sleep = sleep
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shared = shared

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wait_time(self) -> float:
        """Seconds until the gate opens again (here or in another fetch process); 0 when open."""
        closed = self._closed_until
        if self._shared is not None:
            deadlines, host = self._shared
            closed = max(closed, deadlines.until(host))
        return max(0.0, closed - self._clock())

    def throttle(self, delay: float) -> None:
        """The host said "slow down, come back in `delay` s": close the gate that long and halve
        the limit. Halve once per closed window: the other requests in flight when the host
        started refusing answer the same, and that is one signal, not many."""
        now = self._clock()
        if now >= self._closed_until:
            self._limit = max(1.0, float(int(self._limit) // 2))
        self._closed_until = max(self._closed_until, now + max(0.0, delay))
        if self._shared is not None:
            deadlines, host = self._shared
            deadlines.close(host, self._closed_until)

    def succeeded(self) -> None:
        """One request was served: grow by one slot per `limit` successes, up to the ceiling."""
        self._limit = min(float(self.ceiling), self._limit + 1.0 / int(self._limit))
        self._wake()

    async def acquire(self) -> None:
        """Wait until the gate is open and a slot is free, then take the slot."""
        while True:
            wait = self.wait_time()
            if wait > 0:
                await self._sleep(wait)
                continue
            if self._in_flight < self.limit:
                self._in_flight += 1
                self._wake()  # slots beyond ours may be free too, e.g. when the gate just opened
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: hand the wake-up to someone else
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def release(self) -> None:
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        """Wake as many waiters as there are free slots; each rechecks the gate itself."""
        free = self.limit - self._in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


class HostGates:
    """One gate per host key (host:port), made on first use; their closed times shared through
    `shared` if given."""

    def __init__(
        self,
        ceiling: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        shared: SharedDeadlines | None = None,
    ) -> None:
        self.ceiling = ceiling
        self._clock = clock
        self._sleep = sleep
        self._shared = shared
        self._gates: dict[str, HostGate] = {}

    def get(self, host: str) -> HostGate:
        gate = self._gates.get(host)
        if gate is None:
            shared = None if self._shared is None else (self._shared, host)
            gate = HostGate(self.ceiling, self._clock, self._sleep, shared)
            self._gates[host] = gate
        return gate

    def __len__(self) -> int:
        return len(self._gates)
