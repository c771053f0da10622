"""host_gate: the address policy, Retry-After, and each host's pace, on a fake clock."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
from email.utils import formatdate

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from openimages_pipe.download.host_gate import (
    HostGate,
    HostGates,
    PublicOnlyResolver,
    RefusedAddressError,
    SharedDeadlines,
    checked_url,
    parse_retry_after,
    refused_address,
)


class FakeClock:
    """A monotonic clock that only `sleep` advances, so waiting costs no real time."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def gate(ceiling: int = 16) -> tuple[HostGate, FakeClock]:
    clock = FakeClock()
    return HostGate(ceiling, clock, clock.sleep), clock


# --- the address gate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "0.0.0.0",
     "224.0.0.1", "::1", "fe80::1", "fc00::1", "::", "::ffff:127.0.0.1", "240.0.0.1"],
)  # fmt: skip
def test_non_public_addresses_are_refused(host: str) -> None:
    assert refused_address(host)


@pytest.mark.parametrize("host", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "example.com"])
def test_public_addresses_and_names_pass(host: str) -> None:
    assert not refused_address(host)  # a name is the resolver's to check


@pytest.mark.parametrize(
    "url",
    ["", "file:///etc/passwd", "ftp://example.com/a.jpg", "http://", "//example.com/a.jpg",
     "not a url", "javascript:alert(1)", "http://10.0.0.1/a.jpg", "https://[::1]:8443/a.jpg"],
)  # fmt: skip
def test_checked_url_refuses(url: str) -> None:
    assert checked_url(url, allow_private=False) is None


def test_checked_url_admits_http_and_https_and_private_only_when_allowed() -> None:
    assert checked_url("https://farm3.staticflickr.com/1/2_3_o.jpg", False) is not None
    assert checked_url("http://example.com/a.jpg", False) is not None
    assert checked_url("http://127.0.0.1:8642/a.jpg", False) is None
    assert checked_url("http://127.0.0.1:8642/a.jpg", True) is not None
    assert checked_url("file:///etc/passwd", True) is None  # the scheme rule has no opt-out


class StaticResolver(AbstractResolver):
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


def test_resolver_passes_public_names_and_refuses_any_private_answer() -> None:
    async def main() -> None:
        public = PublicOnlyResolver(StaticResolver(["93.184.216.34", "2606:2800::1"]))
        assert [r["host"] for r in await public.resolve("example.com", 80)] == [
            "93.184.216.34",
            "2606:2800::1",
        ]
        # One private answer among public ones is the DNS-rebinding shape: refuse the name.
        for answers in (["127.0.0.1"], ["93.184.216.34", "10.0.0.7"]):
            with pytest.raises(RefusedAddressError):
                await PublicOnlyResolver(StaticResolver(answers)).resolve("evil.example", 80)
        inner = StaticResolver([])
        await PublicOnlyResolver(inner).close()
        assert inner.closed

    asyncio.run(main())


# --- Retry-After --------------------------------------------------------------------------------


def test_retry_after_seconds_and_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("5", now) == 5.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == pytest.approx(90.0)
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0  # in the past
    for unreadable in (None, "", "soon", "-3", "1.5e3"):
        assert parse_retry_after(unreadable, now) is None


# --- the pace gate ------------------------------------------------------------------------------


def test_throttle_halves_once_per_closed_window_down_to_one() -> None:
    g, clock = gate(16)
    g.throttle(2.0)
    assert g.limit == 8
    g.throttle(2.0)  # another request of the same burst: the same signal
    assert g.limit == 8
    limits = []
    for _ in range(5):
        clock.now += 3.0  # the window has passed: a new 429 is new news
        g.throttle(2.0)
        limits.append(g.limit)
    assert limits == [4, 2, 1, 1, 1]


def test_successes_grow_the_limit_back_slowly_up_to_the_ceiling() -> None:
    g, _ = gate(16)
    g.throttle(0.0)
    assert g.limit == 8
    seen = []
    for _ in range(7):
        g.succeeded()
        seen.append(g.limit)
    assert seen == [8] * 7  # one slot per window of `limit` successes, not one per success
    g.succeeded()
    assert g.limit == 9
    for _ in range(500):
        g.succeeded()
    assert g.limit == 16  # never above the ceiling


def test_wait_time_follows_retry_after_and_is_never_shortened() -> None:
    g, clock = gate()
    assert g.wait_time() == 0.0
    g.throttle(5.0)
    assert g.wait_time() == 5.0
    clock.now += 3.0
    assert g.wait_time() == 2.0
    g.throttle(1.0)  # a shorter Retry-After from a request sent earlier
    assert g.wait_time() == 2.0
    clock.now += 2.0
    assert g.wait_time() == 0.0


def test_acquire_waits_out_a_closed_gate() -> None:
    g, clock = gate()
    g.throttle(30.0)

    async def main() -> None:
        await g.acquire()

    asyncio.run(main())
    assert clock.sleeps == [30.0]
    assert clock.now == 130.0
    assert g.in_flight == 1


def test_acquire_blocks_at_the_limit_and_release_admits_the_next() -> None:
    async def main() -> None:
        g, _ = gate(2)
        await g.acquire()
        await g.acquire()
        third = asyncio.create_task(g.acquire())
        await asyncio.sleep(0.01)
        assert not third.done()
        assert g.in_flight == 2
        g.release()
        await asyncio.wait_for(third, 1.0)
        assert g.in_flight == 2

    asyncio.run(main())


def test_a_halved_limit_holds_back_new_requests_until_enough_finish() -> None:
    async def main() -> None:
        g, clock = gate(4)
        for _ in range(4):
            await g.acquire()
        g.throttle(0.0)  # limit 2, four still in flight
        waiter = asyncio.create_task(g.acquire())
        g.release()
        g.release()
        await asyncio.sleep(0.01)
        assert not waiter.done()  # 2 in flight = the new limit
        g.release()
        await asyncio.wait_for(waiter, 1.0)
        assert (g.limit, g.in_flight) == (2, 2)

    asyncio.run(main())


def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    async def main() -> None:
        g, _ = gate(1)
        await g.acquire()
        first = asyncio.create_task(g.acquire())
        second = asyncio.create_task(g.acquire())
        await asyncio.sleep(0.01)
        g.release()  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(first, return_exceptions=True)
        await asyncio.wait_for(second, 1.0)
        assert g.in_flight == 1

    asyncio.run(main())


def test_gates_are_per_host() -> None:
    gates = HostGates(4)
    a, b = gates.get("a.example:443"), gates.get("b.example:443")
    a.throttle(10.0)
    assert a.limit == 2 and b.limit == 4
    assert gates.get("a.example:443") is a
    assert len(gates) == 2
    with pytest.raises(ValueError, match="at least 1"):
        HostGate(0)


def _throttle_in_another_process(deadlines: SharedDeadlines, host: str, now: float) -> None:
    HostGates(4, clock=lambda: now, shared=deadlines).get(host).throttle(60.0)


def test_a_retry_after_heard_in_one_process_closes_the_host_in_the_others() -> None:
    """Fetch processes share each host's closed time: process B waits for what A was told."""
    context = multiprocessing.get_context("forkserver")
    deadlines = SharedDeadlines(context)
    child = context.Process(
        target=_throttle_in_another_process, args=(deadlines, "farm1:443", 100.0)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    clock = FakeClock(now=100.0)
    gates = HostGates(4, clock=clock, sleep=clock.sleep, shared=deadlines)
    assert gates.get("farm1:443").wait_time() == 60.0
    assert gates.get("farm2:443").wait_time() == 0.0  # another host is not held back
    asyncio.run(gates.get("farm1:443").acquire())
    assert clock.sleeps == [60.0]  # the acquire waited the whole Retry-After, then got in
