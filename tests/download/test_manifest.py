"""The manifest: journal parts merge into one row per ImageID, latest wins, idempotently."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from openimages_pipe.download import manifest, storage
from openimages_pipe.download.manifest import Journal, Share, read_files
from openimages_pipe.errors import InputError

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def row(image_id: str, status: str, minutes: int, shard: str | None = None) -> dict:
    when = T0 + dt.timedelta(minutes=minutes)
    return {
        "image_id": image_id,
        "status": status,
        "reason": {"ok": "ok", "missing": "http_404", "failed": "timeout"}[status],
        "http_status": 200 if status == "ok" else None,
        "url": f"http://h/{image_id}",
        "source": "original",
        "attempts": 1,
        "bytes": 10,
        "shard": shard,
        "md5": None,
        "verified": status == "ok",
        "first_seen": T0,
        "last_attempt": when,
        "last_ok": when if status == "ok" else None,
    }


def test_latest_attempt_wins_and_compaction_is_idempotent(tmp_path: Path) -> None:
    share = Share()
    first = Journal(tmp_path, share, "run1")
    first.add(row("a" * 16, "failed", 1))
    first.add(row("b" * 16, "missing", 1))
    first.flush()
    second = Journal(tmp_path, share, "run2")
    second.add(row("a" * 16, "ok", 5, shard="shards/x.parquet"))
    second.flush()

    merged = manifest.compact(tmp_path, share)
    assert merged["image_id"].to_list() == ["a" * 16, "b" * 16]
    assert merged["status"].to_list() == ["ok", "missing"]
    assert not list(manifest.journal_dir(tmp_path, share).glob("*.parquet"))
    on_disk = pl.read_parquet(manifest.manifest_path(tmp_path, share))
    assert on_disk.equals(merged)
    # a kill between writing the manifest and deleting the parts: the next merge is the same
    again = Journal(tmp_path, share, "run1")
    again.add(row("a" * 16, "failed", 1))
    again.flush()
    assert manifest.compact(tmp_path, share)["status"].to_list() == ["ok", "missing"]


def test_shares_have_their_own_files_and_load_all_sees_them(tmp_path: Path) -> None:
    for index, image_id in enumerate(["c" * 16, "d" * 16]):
        share = Share(index, 2)
        j = Journal(tmp_path, share, "r")
        j.add(row(image_id, "ok", index, shard=f"shards/{share.name}.parquet"))
        j.flush()
        manifest.compact(tmp_path, share)
        assert manifest.manifest_path(tmp_path, share).name == f"{share.name}.parquet"
    assert sorted(manifest.load_all(tmp_path)["image_id"]) == ["c" * 16, "d" * 16]


def test_done_ids_skip_missing_unless_retried(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        [row("a" * 16, "ok", 1), row("b" * 16, "missing", 1), row("c" * 16, "failed", 1)],
        schema=manifest.POLARS_SCHEMA,
    )
    assert sorted(manifest.done_ids(frame, retry_missing=False)["image_id"]) == ["a" * 16, "b" * 16]
    assert manifest.done_ids(frame, retry_missing=True)["image_id"].to_list() == ["a" * 16]


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "m" / "manifest.parquet"
    manifest.write_atomic(manifest.rows_to_table([row("e" * 16, "ok", 0)]), path)
    assert [p.name for p in path.parent.iterdir()] == ["manifest.parquet"]


def _merged_between_listing_and_reading(tmp_path: Path, read) -> pl.DataFrame:
    """A download's merge (the real `compact`) runs right after the reader listed the files."""
    share = Share()
    first = Journal(tmp_path, share, "run1")
    first.add(row("a" * 16, "failed", 1))
    first.flush()
    manifest.compact(tmp_path, share)  # a manifest, as after a first run
    second = Journal(tmp_path, share, "run2")
    second.add(row("a" * 16, "ok", 5, shard="shards/x.parquet"))
    second.add(row("b" * 16, "ok", 5, shard="shards/x.parquet"))
    second.flush()
    listings = []

    def listing(folder):
        listings.append(manifest.all_manifest_files(folder))
        if len(listings) == 1:
            manifest.compact(folder, share)  # the journal part just listed is gone now
        return listings[-1]

    rows = manifest.read_listed(storage.locate(tmp_path), listing, read)
    assert len(listings) == 2 and len(listings[0]) == 2 and listings[1] == ["manifest.parquet"]
    return rows


def test_a_merge_while_status_reads_is_read_again_whole(tmp_path: Path) -> None:
    rows = manifest.latest_per_image(_merged_between_listing_and_reading(tmp_path, read_files))
    assert dict(zip(rows["image_id"], rows["status"], strict=True)) == {
        "a" * 16: "ok", "b" * 16: "ok",
    }  # fmt: skip


def test_a_merge_while_build_splits_reads_is_read_again_whole(tmp_path: Path) -> None:
    from openimages_pipe.splits import inputs

    rows = _merged_between_listing_and_reading(tmp_path, inputs._read_statuses)
    assert rows.height == 2 and set(rows["status"].cast(pl.String)) == {"ok"}


def test_a_manifest_that_is_there_but_unreadable_is_one_line_not_retried(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openimages_pipe.cli import app

    (tmp_path / "manifest.parquet").write_bytes(b"not parquet")
    calls = []

    def listing(folder):
        calls.append(1)
        return manifest.all_manifest_files(folder)

    with pytest.raises(InputError, match="not a readable manifest") as error:
        manifest.read_listed(storage.locate(tmp_path), listing, read_files)
    assert len(calls) == 1 and str(tmp_path / "manifest.parquet") in str(error.value)
    result = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"error: {error.value}"]
