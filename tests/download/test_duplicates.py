"""One task per ImageID per run, however many rows and CSVs list it (near, far, across files)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import polars as pl
import pytest

from openimages_pipe.download import manifest, run_record, status
from openimages_pipe.download import pipeline as download
from openimages_pipe.download import tasks as download_input
from openimages_pipe.download.fetch import FetchConfig
from openimages_pipe.download.records import Md5Mode, Source
from openimages_pipe.download.tasks import InputConfig
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.images import flat
from tests.fixtures.worlds import Served, shard_ids, write_world

HEADER = (
    "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title,"
    "OriginalSize,OriginalMD5,Thumbnail300KURL\n"
)
A, B, C, D, E, F, G, H, J = (f"{n:016x}" for n in range(0xA1, 0xAA))
EMPTY = pl.DataFrame(schema=manifest.POLARS_SCHEMA)
RUN_SECONDS = 90  # a run of a few images takes seconds: past this it hangs


def write_csv(path: Path, rows: list[tuple[str, str]], thumbnails: bool = False) -> Path:
    """An images CSV in V1's released layout, all train, from (ImageID, OriginalURL) pairs."""
    thumb = "http://t/{}_z.jpg" if thumbnails else ""
    lines = [f"{i},train,{url},,,,,,,,{thumb.format(i)}\n" for i, url in rows]
    path.write_text(HEADER + "".join(lines))
    return path


def read_tasks(cfg: InputConfig) -> list:
    done = manifest.done_ids(EMPTY, retry_missing=False)
    return [t for b in download_input.iter_batches(cfg, done, EMPTY) for t in b.tasks]


def test_one_task_per_image_near_and_far_in_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download_input, "BATCH_ROWS", 3)  # B's rows are three batches apart
    rows = [(A, "http://o/a"), (B, "http://o/b1"), (A.upper(), "http://o/a")]
    rows += [(i, f"http://o/{i}") for i in (C, D, E, F, G, H)] + [
        (B, "http://o/b2"),
        (J, "http://o/i"),
    ]
    cfg = InputConfig(csvs=(write_csv(tmp_path / "images.csv", rows, thumbnails=True),))
    got = read_tasks(cfg)
    assert [t.image_id for t in got] == [A, B, C, D, E, F, G, H, J]  # first occurrences, in order
    b = got[1]
    assert [(c.source, c.url) for c in b.candidates] == [
        (Source.ORIGINAL, "http://o/b1"),
        (Source.ORIGINAL, "http://o/b2"),  # the far row's URL, before any thumbnail
        (Source.THUMBNAIL, f"http://t/{B}_z.jpg"),  # both rows name it: once
        (Source.MIRROR, cfg.mirror_template.format(subset="train", image_id=B)),
    ]
    assert [c.url for c in got[0].candidates if c.source is Source.ORIGINAL] == ["http://o/a"]
    assert download_input.read_plan(cfg).duplicates == 2


def test_one_task_per_image_across_files_and_the_same_file_twice(tmp_path: Path) -> None:
    first = write_csv(tmp_path / "a.csv", [(i, f"http://o/{i}") for i in (A, B, C)])
    second = write_csv(tmp_path / "b.csv", [(i, f"http://o/{i}") for i in (C, D, A)])
    both = InputConfig(csvs=(first, second))
    assert [t.image_id for t in read_tasks(both)] == [A, B, C, D]
    assert download_input.read_plan(both).duplicates == 2
    twice = InputConfig(csvs=(first, first))
    assert read_tasks(twice) == read_tasks(InputConfig(csvs=(first,)))
    assert download_input.read_plan(twice).duplicates == 3


def test_limit_and_progress_total_count_images_not_rows(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "images.csv", [(i, f"http://o/{i}") for i in (A, A, B, B, C, A)])
    done = EMPTY.select("image_id")
    assert [t.image_id for t in read_tasks(InputConfig(csvs=(csv,), limit=2))] == [A, B]
    assert download_input.count_rows(InputConfig(csvs=(csv,)), done, EMPTY) == 3
    assert download_input.count_rows(InputConfig(csvs=(csv,), limit=2), done, EMPTY) == 2


def _download(cfg: download.DownloadConfig, batch_rows: int) -> None:
    download_input.BATCH_ROWS = batch_rows
    download.run(cfg)


def run_bounded(cfg: download.DownloadConfig, batch_rows: int = download_input.BATCH_ROWS) -> int:
    """`download.run(cfg)` in a process of its own (its signal handlers need a main thread), with
    the read batches this small: its exit code, or a failure if it is still running after
    RUN_SECONDS."""
    proc = multiprocessing.get_context("spawn").Process(target=_download, args=(cfg, batch_rows))
    proc.start()
    proc.join(RUN_SECONDS)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"the download hung: still running after {RUN_SECONDS} s")
    return proc.exitcode


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, str]:
    """A world serving an original of each of A..J at /o/<id>.jpg (and nothing at /dead/)."""
    root, base = tmp_path / "world", world_layout.base_url(port=world_layout.free_port())
    originals = root / "served" / "original"
    write_world(root, base, [
        Served(f"/o/{i}.jpg", i, "original", originals / f"{i}.jpg",
               flat((40 + n, 30), (n * 25, 90, 160)), "image/jpeg")
        for n, i in enumerate((A, B, C, D, E, F, G, H, J))
    ])  # fmt: skip
    return root, base


def config(out: Path, csvs: tuple[Path, ...]) -> download.DownloadConfig:
    return download.DownloadConfig(
        out=out,
        input=InputConfig(csvs=csvs, sources=(Source.ORIGINAL,)),
        fetch=FetchConfig(allow_private=True, retries=0, md5=Md5Mode.OFF, concurrency=2),
        rows_per_shard=2,
        workers=1,
        quiet=True,
    )


def assert_one_row_per_image(out: Path, expected: set[str], duplicates: int) -> None:
    rows = manifest.load_all(out)
    assert sorted(rows["image_id"]) == sorted(expected) and set(rows["status"]) == {"ok"}
    assert sorted(shard_ids(out)) == sorted(expected)  # each image stored once
    record = run_record.latest_record(out)
    assert record["outcome"] == "completed"
    assert record["this_run"]["images"] == rows.height == record["manifest_totals"]["ok"]
    assert record["this_run"]["duplicates"] == duplicates
    last = status.summarise(out)["last_run"]
    assert last["duplicates"] == duplicates
    assert f"{duplicates:,} rows repeating an ImageID" in status.last_run_line(last)


def test_download_with_duplicates_near_far_and_across_files_finishes_once_each(
    world: tuple[Path, str], tmp_path: Path
) -> None:
    root, base = world
    rows = [(A, f"{base}/o/{A}.jpg"), (B, f"{base}/dead/{B}.jpg"), (A, f"{base}/o/{A}.jpg")]
    rows += [(i, f"{base}/o/{i}.jpg") for i in (C, D, E, F)]
    rows += [(B, f"{base}/o/{B}.jpg"), (G, f"{base}/o/{G}.jpg")]  # far: B's live URL
    first = write_csv(tmp_path / "a.csv", rows)
    second = write_csv(tmp_path / "b.csv", [(i, f"{base}/o/{i}.jpg") for i in (G, H, A, J)])
    with WorldServer(ServeConfig(world=root)) as srv:
        assert run_bounded(config(tmp_path / "both", (first, second)), batch_rows=2) == 0
        assert_one_row_per_image(tmp_path / "both", {A, B, C, D, E, F, G, H, J}, duplicates=4)
        assert srv.request_count(f"/dead/{B}.jpg") == 1  # B: its first row's URL, then the far one
        assert srv.request_count(f"/o/{A}.jpg") == 1  # listed three times, fetched once
        assert run_bounded(config(tmp_path / "twice", (first, first)), batch_rows=2) == 0
        assert_one_row_per_image(tmp_path / "twice", {A, B, C, D, E, F, G}, duplicates=11)
    by_id = {r["image_id"]: r for r in manifest.load_all(tmp_path / "both").iter_rows(named=True)}
    assert by_id[B]["url"] == f"{base}/o/{B}.jpg"
