"""A thumbnail (or mirror copy) too small for the target falls through to the next source: the
first later one that gives a full-size image wins, else the small copy is kept, and the run's tally
counts both. Against the world server on 127.0.0.1, as tests/download/test_next_source.py."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openimages_pipe.download import manifest, run_record, spool, status
from openimages_pipe.download import pipeline as download
from openimages_pipe.download.fetch import FetchConfig, Fetcher, verify_here
from openimages_pipe.download.records import (
    Candidate,
    Fetched,
    ImageTask,
    Reason,
    ResizeMode,
    Source,
)
from openimages_pipe.download.resize import ResizeConfig
from openimages_pipe.download.spool import Body
from openimages_pipe.download.verify import Check, Verdict
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_duplicates import HEADER, config
from tests.fixtures.images import flat
from tests.fixtures.worlds import Served, write_world

A, B, C, D, E = (f"{n:016x}" for n in range(0xC1, 0xC6))
THUMBNAIL_FIRST = (Source.THUMBNAIL, Source.ORIGINAL, Source.MIRROR)
pytestmark = pytest.mark.usefixtures("no_errors_logged")  # tests/conftest.py


@dataclass(frozen=True)
class Done:
    """One download of a hand-made world: its manifest rows, stored images and server counts."""

    rows: dict[str, dict]  # image_id -> manifest row
    stored: dict[str, dict]  # image_id -> shard row (no image bytes)
    requests: dict[str, int]  # URL path -> requests the server answered
    summary: run_record.RunSummary
    spools: spool.Spools | None  # the run's memory files, if bodies were spooled


def photo(size: tuple[int, int], n: int) -> bytes:
    return flat(size, (40 * n, 90, 160), quality=90)


def download_world(
    root: Path, images: dict[str, dict[str, tuple[int, int]]], resize: ResizeConfig, spooled: bool
) -> Done:
    """Serve `images` (image_id -> {kind: size}; a kind left out 404s), download them
    thumbnail-first with `resize`, and return what came of it."""
    base = world_layout.base_url(port=world_layout.free_port())
    where = {"original": "/o/{}.jpg", "thumbnail": "/t/{}.jpg", "mirror": "/m/train/{}.jpg"}
    write_world(root / "world", base, [
        Served(where[kind].format(i), i, kind, root / "world" / "served" / kind / f"{i}.jpg",
               photo(size, n), "image/jpeg")
        for n, (i, kinds) in enumerate(images.items()) for kind, size in kinds.items()
    ])  # fmt: skip
    csv = root / "images.csv"
    csv.write_text(HEADER + "".join(
        f"{i},train,{base}/o/{i}.jpg,,,,,,,,{base}/t/{i}.jpg\n" for i in images
    ))  # fmt: skip
    cfg = config(root / "out", (csv,))
    mirror = f"{base}/m/{{subset}}/{{image_id}}.jpg"
    taken = replace(cfg.input, sources=THUMBNAIL_FIRST, mirror_template=mirror)
    cfg = replace(cfg, input=taken, resize=resize)
    probed: list[spool.Spools | None] = []
    probe = spool.probe

    def recorded(pool):
        probed.append(probe(pool) if spooled else None)
        return probed[-1]

    with pytest.MonkeyPatch.context() as mp, WorldServer(ServeConfig(world=root / "world")) as srv:
        mp.setattr(spool, "probe", recorded)
        summary = download.run(cfg)
        requests = dict(srv.state.requests)
    rows = {r["image_id"]: r for r in manifest.load_all(cfg.out).iter_rows(named=True)}
    columns = ["image_id", "width", "height", "original_width", "original_height", "source"]
    stored = {
        r["image_id"]: r
        for shard in sorted((root / "out" / "shards").glob("*.parquet"))
        for r in pq.read_table(shard, columns=columns).to_pylist()
    }
    return Done(rows, stored, requests, summary, probed[0])


@pytest.fixture(scope="module")
def keep_ratio(tmp_path_factory: pytest.TempPathFactory) -> Done:
    """keep-ratio 256, bodies spooled: A's and B's thumbnails are panoramas (shorter side 120),
    C's covers the target; B has no original, and a mirror copy smaller still."""
    images = {
        A: {"thumbnail": (400, 120), "original": (1600, 480)},
        B: {"thumbnail": (400, 120), "mirror": (320, 96)},
        C: {"thumbnail": (640, 480), "original": (1600, 1200)},
    }
    return download_world(tmp_path_factory.mktemp("keep-ratio"), images, ResizeConfig(), True)


def test_a_thumbnail_too_small_falls_through_to_the_original(keep_ratio: Done) -> None:
    row, stored = keep_ratio.rows[A], keep_ratio.stored[A]
    assert (row["status"], row["source"], row["url"].endswith(f"/o/{A}.jpg")) == (
        "ok",
        "original",
        True,
    )
    assert row["attempts"] == 2  # the thumbnail, then the original; the mirror never
    assert (stored["source"], stored["width"], stored["height"]) == ("original", 853, 256)
    assert (stored["original_width"], stored["original_height"]) == (1600, 480)
    assert keep_ratio.requests.get(f"/m/train/{A}.jpg", 0) == 0


def test_the_small_thumbnail_is_kept_when_no_later_source_gives_more(keep_ratio: Done) -> None:
    row, stored = keep_ratio.rows[B], keep_ratio.stored[B]
    assert (row["status"], row["reason"], row["source"]) == ("ok", "ok", "thumbnail")
    assert row["url"].endswith(f"/t/{B}.jpg") and row["http_status"] == 200  # not the last 404
    assert row["attempts"] == 3  # every source was asked
    # the first small copy, not the mirror's (judged after it, and undersized too)
    assert (stored["source"], stored["width"], stored["height"]) == ("thumbnail", 400, 120)
    assert keep_ratio.requests[f"/o/{B}.jpg"] == keep_ratio.requests[f"/m/train/{B}.jpg"] == 1


def test_a_thumbnail_that_covers_the_target_is_kept_and_the_original_never_asked(
    keep_ratio: Done,
) -> None:
    row, stored = keep_ratio.rows[C], keep_ratio.stored[C]
    assert (row["status"], row["source"], row["attempts"]) == ("ok", "thumbnail", 1)
    assert (stored["width"], stored["height"]) == (341, 256)
    assert keep_ratio.requests.get(f"/o/{C}.jpg", 0) == 0
    assert keep_ratio.requests[f"/t/{C}.jpg"] == 1


def test_the_run_counts_what_fell_through_and_what_was_kept_small(keep_ratio: Done) -> None:
    tally = keep_ratio.summary.tally
    assert (tally.undersized_fell_through, tally.undersized_kept) == (2, 1)  # A and B; B
    assert dict(tally.source) == {"original": 1, "thumbnail": 2}
    out = Path(keep_ratio.summary.record).parent.parent
    this_run = run_record.latest_record(out)["this_run"]
    assert (this_run["undersized_fell_through"], this_run["undersized_kept"]) == (2, 1)
    line = status.last_run_line(status.summarise(out)["last_run"])
    assert "2 images too small as a thumbnail or mirror copy tried the next source" in line
    assert "(1 kept small" in line


def test_a_set_aside_body_goes_back_to_its_spool_once(keep_ratio: Done) -> None:
    if not hasattr(os, "memfd_create"):
        pytest.skip("memfd is Linux-only: bodies travel as bytes")
    spools = keep_ratio.spools
    assert spools is not None
    assert spools._busy == {}  # none kept (a spool released twice would have failed the run)
    assert keep_ratio.summary.outcome is run_record.Outcome.COMPLETED


def test_longer_side_needs_only_the_longer_side_to_cover(tmp_path: Path) -> None:
    """longer-side 256, bodies as bytes: D's 640x200 panorama covers it; E's 200x150 does not."""
    images = {
        D: {"thumbnail": (640, 200), "original": (2560, 800)},
        E: {"thumbnail": (200, 150), "original": (800, 600)},
    }
    done = download_world(tmp_path, images, ResizeConfig(mode=ResizeMode.LONGER_SIDE), False)
    assert (done.rows[D]["source"], done.rows[D]["attempts"]) == ("thumbnail", 1)
    assert (done.stored[D]["width"], done.stored[D]["height"]) == (256, 80)
    assert done.requests.get(f"/o/{D}.jpg", 0) == 0
    assert (done.rows[E]["source"], done.stored[E]["width"], done.stored[E]["height"]) == (
        "original", 256, 192,
    )  # fmt: skip
    assert (done.summary.tally.undersized_fell_through, done.summary.tally.undersized_kept) == (
        1,
        0,
    )


# --- the fetch stage's policy, with a stand-in judge ----------------------------------------------


def small_from(*sources: Source):
    """A judge that verifies as usual and calls every body of `sources` undersized."""

    async def judge(body: Body, check: Check) -> Verdict:
        verdict = await verify_here(body, check)
        return replace(verdict, undersized=check.source in sources)

    return judge


def fetch(task: ImageTask, judge) -> Fetched:
    async def main() -> Fetched:
        async with Fetcher(FetchConfig(allow_private=True, retries=0)) as fetcher:
            return await fetcher.fetch(task, judge)

    return asyncio.run(main())


@pytest.fixture
def served(tmp_path: Path):
    """An original, a thumbnail and a mirror copy of A, each a different body."""
    base = world_layout.base_url(port=world_layout.free_port())
    kinds = {"original": f"/o/{A}.jpg", "thumbnail": f"/t/{A}.jpg", "mirror": f"/m/{A}.jpg"}
    bodies = {kind: photo((32 + n, 24), n) for n, kind in enumerate(kinds)}
    write_world(tmp_path, base, [
        Served(p, A, kind, tmp_path / "served" / f"{kind}.jpg", bodies[kind], "image/jpeg")
        for kind, p in kinds.items()
    ])  # fmt: skip
    urls = {Source(kind): base + p for kind, p in kinds.items()}
    with WorldServer(ServeConfig(world=tmp_path)) as srv:
        yield urls, bodies, srv


def task(urls: dict[Source, str], *order: Source) -> ImageTask:
    return ImageTask(A, None, tuple(Candidate(s, urls[s]) for s in order))


def test_an_undersized_original_never_falls_through(served) -> None:
    urls, bodies, srv = served
    got = fetch(task(urls, Source.ORIGINAL, Source.MIRROR), small_from(Source.ORIGINAL))
    assert (got.source, got.undersized, got.fell_through, got.attempts) == (
        Source.ORIGINAL, True, False, 1,
    )  # fmt: skip
    assert srv.request_count(f"/m/{A}.jpg") == 0


def test_of_several_undersized_copies_the_first_is_kept_with_its_body(served) -> None:
    urls, bodies, srv = served
    small = small_from(Source.THUMBNAIL, Source.MIRROR)
    got = fetch(task(urls, Source.THUMBNAIL, Source.MIRROR), small)
    assert (got.reason, got.source, got.url, got.attempts) == (
        Reason.OK, Source.THUMBNAIL, urls[Source.THUMBNAIL], 2,
    )  # fmt: skip
    assert (got.undersized, got.fell_through, got.body) == (True, True, bodies["thumbnail"])
    # an undersized copy that is the last candidate is kept at once: nothing to fall through to
    last = fetch(task(urls, Source.MIRROR), small)
    assert (last.source, last.undersized, last.fell_through) == (Source.MIRROR, True, False)
    # a full-size later source wins over the copy set aside
    won = fetch(task(urls, Source.THUMBNAIL, Source.ORIGINAL), small)
    assert (won.source, won.undersized, won.fell_through, won.body) == (
        Source.ORIGINAL, False, True, bodies["original"],
    )  # fmt: skip


def test_a_small_original_wins_over_the_smaller_copy_set_aside(served) -> None:
    """A small image: its thumbnail is smaller still, and only the original can be verified."""
    urls, bodies, srv = served
    small = small_from(Source.THUMBNAIL, Source.ORIGINAL, Source.MIRROR)
    got = fetch(task(urls, Source.THUMBNAIL, Source.ORIGINAL, Source.MIRROR), small)
    assert (got.source, got.undersized, got.fell_through, got.body, got.attempts) == (
        Source.ORIGINAL, True, True, bodies["original"], 2,
    )  # fmt: skip
    assert srv.request_count(f"/m/{A}.jpg") == 0
