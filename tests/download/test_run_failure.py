"""A run that ends on bad input says so: a failed run record naming why, and `status` showing it;
the InputError still reaches the command line (one line, exit 1); nothing recorded is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.download import manifest, run_record, status
from openimages_pipe.download import pipeline as download
from openimages_pipe.download import tasks as download_input
from openimages_pipe.download.fetch import FetchConfig
from openimages_pipe.download.records import Md5Mode, Source
from openimages_pipe.download.tasks import InputConfig
from openimages_pipe.errors import InputError
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.images import flat
from tests.fixtures.worlds import Served, shard_ids, write_world

HEADER = (
    "ImageID,Subset,OriginalURL,OriginalLandingURL,License,AuthorProfileURL,Author,Title,"
    "OriginalSize,OriginalMD5,Thumbnail300KURL\n"
)
IDS = [f"{n:016x}" for n in range(0x100, 0x10C)]
WIDE = {"COLUMNS": "400"}  # status on one line, whatever the terminal


def write_csv(path: Path, base: str, ids: list[str], bad_after: int | None = None) -> Path:
    """Rows for `ids`; with `bad_after`, a row of 13 fields (the header has 11) after that many."""
    lines = [f"{i},train,{base}/o/{i}.jpg,,,,,,,,\n" for i in ids]
    if bad_after is not None:
        lines.insert(bad_after, f"{'f' * 16},train,{base}/o/x.jpg,,,,,,,,,one,too many\n")
    path.write_text(HEADER + "".join(lines))
    return path


def serve(root: Path, ids: list[str]) -> str:
    base = world_layout.base_url(port=world_layout.free_port())
    write_world(root, base, [
        Served(f"/o/{i}.jpg", i, "original", root / "served" / "original" / f"{i}.jpg",
               flat((40, 30), (n * 20, 80, 120)), "image/jpeg")
        for n, i in enumerate(ids)
    ])  # fmt: skip
    return base


def config(out: Path, csv: Path) -> download.DownloadConfig:
    return download.DownloadConfig(
        out=out,
        input=InputConfig(csvs=(csv,), sources=(Source.ORIGINAL,)),
        fetch=FetchConfig(allow_private=True, retries=0, md5=Md5Mode.OFF, concurrency=1),
        rows_per_shard=2,
        workers=1,
        quiet=True,
    )


def assert_failed(out: Path, message: str) -> None:
    record = run_record.latest_record(out)
    assert (record["outcome"], record["error"], record["stopped_early"]) == (
        "failed",
        message,
        True,
    )
    result = CliRunner().invoke(app, ["status", str(out)], env=WIDE)
    assert result.exit_code == 0 and f"last run: failed: {message}" in result.output
    result = CliRunner().invoke(app, ["status", str(out), "--json"])
    last = json.loads(result.output)["last_run"]
    assert (last["outcome"], last["error"]) == ("failed", message)


def test_bad_input_at_the_start_is_a_failed_run_in_the_record_and_in_status(
    tmp_path: Path,
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("ImageID,Source,LabelName,Confidence\n000002b66c9c498e,machine,/m/01,0.7\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["download", str(labels), "--out", str(out), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and str(labels) in line
    assert_failed(out, line.removeprefix("error: "))
    assert run_record.latest_record(out)["this_run"]["images"] == 0


def test_bad_row_past_the_first_batch_fails_the_run_and_keeps_what_was_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download_input, "BATCH_ROWS", 4)
    base = serve(tmp_path / "world", IDS)
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=tmp_path / "world")):
        download.run(config(out, write_csv(tmp_path / "first.csv", base, IDS[:3])))
        bad = write_csv(tmp_path / "images.csv", base, IDS, bad_after=10)  # line 12: third batch
        with pytest.raises(InputError) as caught:
            download.run(config(out, bad))
    assert (caught.value.path, caught.value.line) == (bad, 12)
    assert_failed(out, str(caught.value))
    rows = manifest.load_all(out)  # the first run's images are all still there
    assert sorted(rows["image_id"]) == IDS[:3] == sorted(shard_ids(out))
    assert not list(out.rglob(".*tmp*"))


def test_bad_input_mid_stream_keeps_the_images_that_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polars may report a bad row only when the stream reaches it, after earlier batches went."""
    monkeypatch.setattr(download_input, "BATCH_ROWS", 6)
    real = download_input.iter_batches
    late = InputError("malformed CSV: 13 fields where the header has 11", tmp_path, 99)

    def breaks_after_one_batch(*args, **kwargs):
        batches = real(*args, **kwargs)
        yield next(batches)
        raise late

    base = serve(tmp_path / "world", IDS)
    csv, out = write_csv(tmp_path / "images.csv", base, IDS), tmp_path / "out"
    with WorldServer(ServeConfig(world=tmp_path / "world")):
        monkeypatch.setattr(download_input, "iter_batches", breaks_after_one_batch)
        with pytest.raises(InputError):
            download.run(config(out, csv))
        assert_failed(out, str(late))
        ok = sorted(manifest.load_all(out).filter(status="ok")["image_id"])
        assert len(ok) >= 4 and set(ok) <= set(IDS[:6])  # two at a time: four had finished
        assert sorted(shard_ids(out)) == ok
        monkeypatch.setattr(download_input, "iter_batches", real)
        download.run(config(out, csv))  # the rerun does the rest, each image once
    assert sorted(shard_ids(out)) == sorted(manifest.load_all(out)["image_id"]) == IDS
    assert status.summarise(out)["last_run"]["outcome"] == "completed"
