"""fetch over real HTTP on 127.0.0.1: every fault of the world server ends in the right Fetched.

The session's world (tests/conftest.py) is shared; each test serves it with the faults it needs
(all images share a fate when a fault's probability is 1). Edge cases the world does not serve
(status codes, redirect chains, a redirect to file://) come from a tiny aiohttp app on the test's
own loop.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from openimages_pipe.download.fetch import MIB, FetchConfig, FetchCounters, Fetcher
from openimages_pipe.download.records import (
    Candidate,
    Fetched,
    ImageTask,
    Md5Mode,
    Reason,
    Source,
    Status,
)
from openimages_pipe.download.response import CHUNK, reason_for_status
from openimages_pipe.download.verify import md5_b64
from openimages_pipe.world.faults import Fault, is_transient, parse_fault_spec
from openimages_pipe.world.layout import PLACEHOLDER_PATH, WorldPaths, mirror_template
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.images import flat
from tests.fixtures.worlds import image_csvs, served_bytes

# Tests run against 127.0.0.1, so private addresses are allowed except where the refusal is tested;
# backoff is short so that retries cost milliseconds.
FAST = FetchConfig(
    allow_private=True, backoff_base=0.01, backoff_max=0.05, connect_timeout=2.0,
    first_byte_timeout=2.0, total_timeout=20.0,
)  # fmt: skip
ALL_SOURCES = (Source.ORIGINAL, Source.THUMBNAIL, Source.MIRROR)
pytestmark = pytest.mark.usefixtures("no_errors_logged")  # tests/conftest.py


@dataclass(frozen=True)
class Row:
    """One image of the world's CSVs, with the mirror URL a downloader would build."""

    image_id: str
    original: str
    thumbnail: str  # "" where the CSV has none
    mirror: str  # 404s where the mirror holds no copy
    has_mirror: bool
    size: int
    md5: str

    def task(self, *sources: Source) -> ImageTask:
        urls = {Source.ORIGINAL: self.original, Source.THUMBNAIL: self.thumbnail,
                Source.MIRROR: self.mirror}  # fmt: skip
        candidates = tuple(Candidate(s, urls[s]) for s in sources or ALL_SOURCES if urls[s])
        return ImageTask(self.image_id, None, candidates, self.size, self.md5)


@dataclass(frozen=True)
class World:
    root: Path
    rows: tuple[Row, ...]

    def pick(self, n: int = 1, *, mirror: bool | None = None) -> list[Row]:
        """`n` rows with a thumbnail, with or without a mirror copy (None: either)."""
        rows = [r for r in self.rows if r.thumbnail and mirror in (None, r.has_mirror)]
        assert len(rows) >= n, "the test world is too small for this test"
        return rows[:n]

    def served(self, url: str) -> bytes:
        return served_bytes(self.root, path(url))

    @property
    def placeholder_md5(self) -> str:
        return md5_b64(WorldPaths(self.root).placeholder.read_bytes())


def single(url: str, source: Source = Source.ORIGINAL, image_id: str = "0" * 16) -> ImageTask:
    """A task with one candidate URL and no CSV promise about its bytes."""
    return ImageTask(image_id, None, (Candidate(source, url),))


def path(url: str) -> str:
    return URL(url).path


@pytest.fixture(scope="module")
def world(offline_world: Path) -> World:
    """The session's world (tests/conftest.py) as rows, with the mirror URL of each."""
    paths = WorldPaths(offline_world)
    base = paths.read_world_json()["base_url"]
    with paths.routes.open(newline="") as f:
        mirrored = {r["image_id"] for r in csv.DictReader(f) if r["kind"] == "mirror"}
    rows = []
    for images_csv in image_csvs(offline_world):
        with images_csv.open(newline="", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                mirror = mirror_template(base).format(subset=r["Subset"], image_id=r["ImageID"])
                has_mirror, size = r["ImageID"] in mirrored, int(r["OriginalSize"])
                row = Row(r["ImageID"], r["OriginalURL"], r["Thumbnail300KURL"], mirror,
                          has_mirror, size, r["OriginalMD5"])  # fmt: skip
                rows.append(row)
    return World(offline_world, tuple(rows))


def serve(world: World, faults: str) -> WorldServer:
    return WorldServer(ServeConfig(world.root, port=None, faults=faults))  # the CSVs' port


@dataclass(frozen=True)
class Run:
    results: list[Fetched]
    counters: FetchCounters
    seconds: float


def fetch_all(cfg: FetchConfig, tasks: list[ImageTask]) -> Run:
    async def main() -> Run:
        async with Fetcher(cfg) as fetcher:
            start = time.monotonic()
            results = await asyncio.gather(*(fetcher.fetch(t) for t in tasks))
            assert fetcher.bytes_received == fetcher.counters.bytes_received  # for progress
            return Run(list(results), fetcher.counters, time.monotonic() - start)

    return asyncio.run(main())


def fetch_one(cfg: FetchConfig, task: ImageTask) -> Fetched:
    return fetch_all(cfg, [task]).results[0]


# --- a healthy world ----------------------------------------------------------------------------


def test_clean_world_every_image_ok_and_verified(world: World) -> None:
    with serve(world, "none") as srv:
        outcome = fetch_all(FAST, [row.task() for row in world.rows])
        thumbnail_requests = sum(srv.request_count(path(r.thumbnail)) for r in world.rows)
    assert len(outcome.results) == len(world.rows) == 40
    for row, result in zip(world.rows, outcome.results, strict=True):
        assert (result.image_id, result.reason) == (row.image_id, Reason.OK)
        assert result.source is Source.ORIGINAL
        assert (result.verified, result.md5, result.http_status) == (True, row.md5, 200)
        assert result.body is not None and len(result.body) == row.size
        assert (result.url, result.attempts) == (row.original, 1)
    assert thumbnail_requests == 0  # the first source served: no other was asked
    assert outcome.counters.requests == 40
    assert outcome.counters.bytes_received == sum(r.size for r in world.rows)


def test_candidates_are_tried_in_the_order_given(world: World) -> None:
    (row,) = world.pick(mirror=True)
    with serve(world, "none") as srv:
        mirror_first = fetch_one(FAST, row.task(Source.MIRROR, Source.ORIGINAL))
        thumbnail_first = fetch_one(FAST, row.task(Source.THUMBNAIL, Source.ORIGINAL))
        assert srv.request_count(path(row.original)) == 0
    assert (mirror_first.source, mirror_first.url) == (Source.MIRROR, row.mirror)
    assert not mirror_first.verified
    assert mirror_first.body == world.served(row.mirror)
    assert (thumbnail_first.source, thumbnail_first.verified) == (Source.THUMBNAIL, False)
    assert thumbnail_first.body == world.served(row.thumbnail)


# --- permanent faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "reason", "http_status", "requests"),
    [("404=1", Reason.HTTP_404, 404, 1), ("410=1", Reason.HTTP_410, 410, 1),
     ("403=1", Reason.HTTP_403, 403, 1), ("html=1", Reason.NOT_AN_IMAGE, 200, 1),
     ("placeholder=1", Reason.PLACEHOLDER, 302, 1),
     ("redirect_loop=1", Reason.REDIRECT_LOOP, 302, 2)],
)  # fmt: skip
def test_permanent_fault_is_missing_without_retries(
    world: World, faults: str, reason: Reason, http_status: int, requests: int
) -> None:
    rows = world.pick(2, mirror=False)  # so the mirror 404s too, and every source is dead
    with serve(world, faults) as srv:
        results = fetch_all(FAST, [r.task() for r in rows]).results
        for row, result in zip(rows, results, strict=True):
            # The first candidate's reason, whatever the later ones said (the mirror: 404).
            assert (result.reason, result.reason.status) == (reason, Status.MISSING)
            assert (result.source, result.url) == (Source.ORIGINAL, row.original)
            assert (result.http_status, result.body, result.verified) == (http_status, None, False)
            assert result.attempts == 3  # one per source: a permanent reason is not retried
            assert srv.request_count(path(row.original)) == requests  # a loop is seen at once
            assert srv.request_count(path(row.mirror)) == 1
        assert srv.request_count(PLACEHOLDER_PATH) == 0  # the placeholder is never downloaded


def test_dead_original_and_thumbnail_fall_back_to_the_mirror(world: World) -> None:
    (row,) = world.pick(mirror=True)
    with serve(world, "404=1") as srv:
        result = fetch_one(FAST, row.task())
        counts = [srv.request_count(path(u)) for u in (row.original, row.thumbnail, row.mirror)]
    assert (result.reason, result.source, result.url) == (Reason.OK, Source.MIRROR, row.mirror)
    assert (result.verified, result.attempts, counts) == (False, 3, [1, 1, 1])
    assert result.body == world.served(row.mirror)
    assert result.md5 == md5_b64(result.body)


def test_placeholder_by_known_hash(world: World) -> None:
    """Served with a 200 at a .png URL, only the hash list tells the placeholder from a photo."""
    with serve(world, "none") as srv:
        task = single(srv.base_url + PLACEHOLDER_PATH, Source.MIRROR)
        known = replace(FAST, placeholder_md5s=(world.placeholder_md5,))
        assert fetch_one(known, task).reason is Reason.PLACEHOLDER
        assert fetch_one(FAST, task).reason is Reason.OK


# --- MD5 policy ---------------------------------------------------------------------------------


def test_changed_original_is_rejected_under_strict(world: World) -> None:
    (row,) = world.pick(mirror=False)
    with serve(world, "changed=1") as srv:
        fallback = fetch_one(FAST, row.task())
        alone = fetch_one(FAST, row.task(Source.ORIGINAL))
        assert srv.request_count(path(row.original)) == 2  # once per fetch: not retried
    assert (fallback.reason, fallback.source) == (Reason.OK, Source.THUMBNAIL)
    assert (fallback.verified, fallback.attempts) == (False, 2)
    assert fallback.body is not None and md5_b64(fallback.body) != row.md5
    assert (alone.reason, alone.reason.status) == (Reason.MD5_MISMATCH, Status.MISSING)
    assert (alone.body, alone.md5, alone.verified) == (None, None, False)  # never stored


@pytest.mark.parametrize("mode", [Md5Mode.LENIENT, Md5Mode.OFF])
def test_changed_original_is_kept_unverified_unless_strict(world: World, mode: Md5Mode) -> None:
    (row,) = world.pick()
    with serve(world, "changed=1"):
        result = fetch_one(replace(FAST, md5=mode), row.task())
    assert (result.reason, result.source, result.verified) == (Reason.OK, Source.ORIGINAL, False)
    assert result.body is not None and len(result.body) != row.size
    assert result.md5 == md5_b64(result.body) != row.md5


# --- transient faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "reason", "http_status"),
    [("500=1", Reason.HTTP_5XX, 500), ("503=1", Reason.HTTP_5XX, 503),
     ("truncated=1", Reason.CONNECTION_ERROR, None),
     # aiohttp resends a GET once on a dropped connection: one attempt may use two resets.
     ("reset=1,transient=4", Reason.CONNECTION_ERROR, None),
     ("slow_first_byte=1,slow=0.5", Reason.TIMEOUT, None),
     ("stall_midway=1,stall=0.5", Reason.TIMEOUT, None)],
)  # fmt: skip
def test_transient_fault_fails_while_it_lasts_then_recovers(
    world: World, faults: str, reason: Reason, http_status: int | None
) -> None:
    hasty = replace(FAST, retries=1, first_byte_timeout=0.2)  # shorter than slow and stall
    patient = replace(hasty, retries=5)
    failures = parse_fault_spec(faults).transient_failures
    resends = 2 if faults.startswith("reset") else 1
    first, second = world.pick(2)
    with serve(world, faults) as srv:
        failed = fetch_one(hasty, first.task(Source.ORIGINAL))
        assert (failed.reason, failed.reason.status) == (reason, Status.FAILED)
        assert (failed.http_status, failed.attempts, failed.body) == (http_status, 2, None)
        assert 2 <= srv.request_count(path(first.original)) <= 2 * resends
        outcome = fetch_all(patient, [second.task()])
        assert srv.request_count(path(second.thumbnail)) == 0  # recovered on its own source
    ok = outcome.results[0]
    assert (ok.reason, ok.source) == (Reason.OK, Source.ORIGINAL)
    assert (ok.verified, ok.md5) == (True, second.md5)
    assert failures / resends + 1 <= ok.attempts <= failures + 1
    assert outcome.counters.retries == ok.attempts - 1
    assert outcome.counters.throttled == 0  # a 503 without Retry-After is not throttling


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> Awaitable[None]:
    async def poll() -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition never came true"
            await asyncio.sleep(0.01)

    return poll()


def test_429_waits_for_retry_after_and_holds_back_its_host(world: World) -> None:
    with serve(world, "429=0.5,transient=1,retry_after=1") as srv:
        fates = srv.fates
        limited = next(r for r in world.rows if fates[r.image_id] is Fault.HTTP_429)
        clean = next(r for r in world.rows if fates[r.image_id] is Fault.NONE)

        async def main() -> tuple[Fetched, Fetched, float]:
            async with Fetcher(FAST) as fetcher:
                start = time.monotonic()
                first = asyncio.create_task(fetcher.fetch(limited.task(Source.ORIGINAL)))
                await wait_until(lambda: fetcher.counters.throttled == 1)
                second = asyncio.create_task(fetcher.fetch(clean.task(Source.ORIGINAL)))
                await asyncio.sleep(0.5)  # inside the Retry-After: nobody may ask the host
                assert srv.request_count(path(limited.original)) == 1
                assert srv.request_count(path(clean.original)) == 0
                done = await asyncio.gather(first, second)
                return done[0], done[1], time.monotonic() - start

        retried, held, seconds = asyncio.run(main())
        assert srv.request_count(path(limited.original)) == 2
    assert (retried.reason, retried.attempts, retried.verified) == (Reason.OK, 2, True)
    assert (held.reason, held.attempts) == (Reason.OK, 1)  # waiting at the gate is no attempt
    assert 1.0 <= seconds < 3.0


def test_429_forever_is_failed_rate_limited_never_missing(world: World) -> None:
    (row,) = world.pick(mirror=False)
    with serve(world, "429=1,transient=1000,retry_after=0") as srv:
        outcome = fetch_all(replace(FAST, retries=2), [row.task()])
        assert srv.request_count(path(row.original)) == 3
    result = outcome.results[0]
    # The mirror's 404 is permanent, but a source that may come back makes the image "failed".
    assert (result.reason, result.reason.status) == (Reason.RATE_LIMITED, Status.FAILED)
    assert (result.source, result.http_status, result.body) == (Source.ORIGINAL, 429, None)
    assert result.attempts == 3 + 3 + 1
    assert outcome.counters.throttled == 6


# --- size cap and address policy ----------------------------------------------------------------


def test_endless_body_stops_at_the_byte_cap_quickly(world: World) -> None:
    (row,) = world.pick(mirror=True)
    with serve(world, "huge=1") as srv:  # 512 MiB, chunked, no Content-Length
        outcome = fetch_all(replace(FAST, max_bytes=MIB), [row.task(Source.ORIGINAL)])
        assert fetch_one(FAST, row.task(Source.MIRROR)).reason is Reason.OK  # server still fine
        assert srv.request_count(path(row.original)) == 1
    result = outcome.results[0]
    assert (result.reason, result.reason.status) == (Reason.TOO_LARGE, Status.MISSING)
    assert result.body is None
    assert MIB < outcome.counters.bytes_received <= MIB + CHUNK
    assert outcome.seconds < 5.0


def test_declared_length_over_the_cap_reads_nothing(world: World) -> None:
    (row,) = world.pick()
    with serve(world, "none"):
        outcome = fetch_all(replace(FAST, max_bytes=100), [row.task(Source.ORIGINAL)])
    assert (outcome.results[0].reason, outcome.results[0].http_status) == (Reason.TOO_LARGE, 200)
    assert outcome.counters.bytes_received == 0


@pytest.mark.parametrize(
    "url",
    ["", "file:///etc/passwd", "ftp://example.com/a.jpg", "http://", "not a url",
     "http://10.1.2.3/a.jpg", "http://169.254.169.254/latest/meta-data/", "http://[::1]/a.jpg",
     "http://0.0.0.0/a.jpg", "http://224.0.0.1/a.jpg", "http://[::ffff:127.0.0.1]/a.jpg"],
)  # fmt: skip
def test_bad_urls_are_refused_before_any_request(url: str) -> None:
    outcome = fetch_all(FetchConfig(), [single(url)])
    result = outcome.results[0]
    assert (result.reason, result.reason.status) == (Reason.BAD_URL, Status.MISSING)
    assert result.attempts == 0
    assert outcome.counters.requests == 0


def test_private_hosts_are_refused_unless_allowed(world: World) -> None:
    (row,) = world.pick()
    by_name = row.original.replace("127.0.0.1", "localhost")  # resolves to a loopback address
    refusing = replace(FAST, allow_private=False)
    with serve(world, "none") as srv:
        literal = fetch_one(refusing, row.task(Source.ORIGINAL))
        named = fetch_one(refusing, single(by_name))
        assert srv.request_count(path(row.original)) == 0
        allowed = fetch_one(FAST, single(by_name))
        assert srv.request_count(path(row.original)) == 1
    assert literal.reason is named.reason is Reason.BAD_URL
    assert allowed.reason is Reason.OK


def test_no_candidate_is_a_bad_url() -> None:
    result = fetch_one(FAST, ImageTask("0" * 16, None, ()))
    assert (result.reason, result.attempts) == (Reason.BAD_URL, 0)


# --- every fault at once ------------------------------------------------------------------------

EXPECTED_PERMANENT = {
    Fault.HTTP_404: Reason.HTTP_404, Fault.HTTP_410: Reason.HTTP_410,
    Fault.HTTP_403: Reason.HTTP_403, Fault.PLACEHOLDER: Reason.PLACEHOLDER,
    Fault.HTML: Reason.NOT_AN_IMAGE, Fault.REDIRECT_LOOP: Reason.REDIRECT_LOOP,
    Fault.HUGE: Reason.TOO_LARGE, Fault.CHANGED: Reason.MD5_MISMATCH,
}  # fmt: skip


def expected(row: Row, fault: Fault) -> tuple[Reason, Source]:
    if fault is Fault.NONE or is_transient(fault):
        return Reason.OK, Source.ORIGINAL
    if fault is Fault.CHANGED and row.thumbnail:
        return Reason.OK, Source.THUMBNAIL  # a re-encode cannot be checked, so it is kept
    if row.has_mirror:
        return Reason.OK, Source.MIRROR  # the mirror ignores Flickr's fates
    return EXPECTED_PERMANENT[fault], Source.ORIGINAL


def test_mixed_world_each_image_ends_as_its_fate_says(world: World) -> None:
    faults = "all,transient=2,slow=0.5,stall=0.5,retry_after=1,huge_mb=16"
    cfg = replace(FAST, retries=4, first_byte_timeout=0.25, max_bytes=4 * MIB)
    with serve(world, faults) as srv:
        fates = srv.fates
        outcome = fetch_all(cfg, [r.task() for r in world.rows])
        assert srv.request_count(PLACEHOLDER_PATH) == 0
    assert len(set(fates.values())) >= 12  # the seed gives this world most faults
    for row, result in zip(world.rows, outcome.results, strict=True):
        fault = fates[row.image_id]
        assert (result.reason, result.source) == expected(row, fault), fault
        if result.reason is Reason.OK:
            assert result.body is not None and result.md5 == md5_b64(result.body)
            assert result.md5 != world.placeholder_md5
            assert result.verified is (result.source is Source.ORIGINAL)
            assert result.verified is (result.md5 == row.md5)
        else:
            assert result.body is None and result.reason.status is Status.MISSING
    assert outcome.seconds < 15.0


# --- edge cases from a tiny app: statuses, redirects, concurrency -------------------------------


@dataclass
class AppState:
    requests: Counter[str]
    in_flight: int = 0
    max_in_flight: int = 0


def tiny_app(state: AppState) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        state.requests[request.path] += 1
        parts = request.path.strip("/").split("/")
        match parts:
            case ["status", code]:
                headers = {"Retry-After": request.query["ra"]} if "ra" in request.query else {}
                return web.Response(status=int(code), headers=headers)
            case ["hops", n] if int(n) > 0:
                raise web.HTTPFound(f"/hops/{int(n) - 1}")
            case ["chain", n]:
                raise web.HTTPFound(f"/chain/{int(n) + 1}")  # never repeats a URL
            case ["to", "file"]:
                raise web.HTTPFound("file:///etc/passwd")
            case ["to", "placeholder"]:
                raise web.HTTPFound(PLACEHOLDER_PATH)
            case ["no-location"]:
                return web.Response(status=302)
            case ["png.jpg"]:
                return web.Response(body=flat(fmt="PNG"), content_type="image/jpeg")
            case ["slow", _]:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                await asyncio.sleep(0.05)
                state.in_flight -= 1
        return web.Response(body=flat(), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def with_app(cfg: FetchConfig, urls: list[str]) -> tuple[Run, AppState]:
    """Fetch one task per path (as a thumbnail: no CSV promise) from a tiny app on this loop."""
    state = AppState(Counter())

    async def main() -> Run:
        runner = web.AppRunner(tiny_app(state), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            tasks = [single(base + u, Source.THUMBNAIL, f"{n:016x}") for n, u in enumerate(urls)]
            async with Fetcher(cfg) as fetcher:
                start = time.monotonic()
                results = await asyncio.gather(*(fetcher.fetch(t) for t in tasks))
                return Run(list(results), fetcher.counters, time.monotonic() - start)
        finally:
            await runner.cleanup()

    return asyncio.run(main()), state


STATUS_TABLE = [
    (400, Reason.HTTP_404), (401, Reason.HTTP_403), (403, Reason.HTTP_403),
    (404, Reason.HTTP_404), (405, Reason.HTTP_404), (408, Reason.TIMEOUT),
    (410, Reason.HTTP_410), (418, Reason.HTTP_404), (429, Reason.RATE_LIMITED),
    (451, Reason.HTTP_403), (500, Reason.HTTP_5XX), (502, Reason.HTTP_5XX),
    (503, Reason.HTTP_5XX), (504, Reason.HTTP_5XX),
]  # fmt: skip


def test_every_status_maps_to_its_reason_over_http() -> None:
    urls = [f"/status/{code}" for code, _ in STATUS_TABLE]
    outcome, state = with_app(replace(FAST, retries=1), urls)
    for (code, reason), result in zip(STATUS_TABLE, outcome.results, strict=True):
        assert (result.reason, result.http_status) == (reason, code)
        tries = 2 if reason.status is Status.FAILED else 1
        assert result.attempts == state.requests[f"/status/{code}"] == tries, code
    assert reason_for_status(200) is reason_for_status(204) is None
    assert reason_for_status(304) is Reason.HTTP_404  # not a redirect we can follow


def test_503_with_retry_after_throttles_and_without_does_not() -> None:
    outcome, _ = with_app(replace(FAST, retries=0), ["/status/503?ra=0", "/status/503"])
    assert [r.reason for r in outcome.results] == [Reason.HTTP_5XX] * 2
    assert outcome.counters.throttled == 1


def test_redirects_are_followed_by_hand_and_every_hop_checked() -> None:
    cfg = replace(FAST, max_redirects=3)
    urls = ["/hops/2", "/chain/0", "/to/file", "/to/placeholder", "/no-location", "/png.jpg"]
    outcome, state = with_app(cfg, urls)
    hops, chain, to_file, to_placeholder, no_location, png_as_jpg = outcome.results
    assert (hops.reason, hops.attempts, hops.http_status) == (Reason.OK, 1, 200)  # hops: no attempt
    assert hops.body == flat()
    assert (chain.reason, chain.http_status) == (Reason.REDIRECT_LOOP, 302)
    assert sum(n for p, n in state.requests.items() if p.startswith("/chain/")) == 3 + 1
    assert (to_file.reason, to_placeholder.reason) == (Reason.BAD_URL, Reason.PLACEHOLDER)
    assert state.requests[PLACEHOLDER_PATH] == 0
    assert (no_location.reason, no_location.http_status) == (Reason.HTTP_404, 302)
    assert png_as_jpg.reason is Reason.PLACEHOLDER
    assert outcome.counters.redirects == 2 + 3  # followed hops only


@pytest.mark.parametrize(("concurrency", "per_host", "bound"), [(3, 16, 3), (16, 2, 2)])
def test_in_flight_requests_stay_within_the_bounds(
    concurrency: int, per_host: int, bound: int
) -> None:
    cfg = replace(FAST, concurrency=concurrency, per_host=per_host)
    outcome, state = with_app(cfg, [f"/slow/{n}" for n in range(12)])
    assert all(r.reason is Reason.OK for r in outcome.results)
    assert state.max_in_flight == bound  # reached, never passed
