"""`oi-pipe status DIR`: what a download holds, what died, and what the last run changed (or why
it failed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from openimages_pipe.download import manifest, run_record, storage
from openimages_pipe.errors import InputError


@dataclass(frozen=True)
class StatusConfig:
    out: Path | str  # a download folder, or its s3:// URL
    as_json: bool = False


def summarise(out: Path | str) -> dict:
    """Counts by status, reason and source, bytes, and the last run's changes, as plain data."""
    folder = storage.locate(out)
    if not manifest.all_manifest_files(folder):
        raise InputError("no download manifest here (run `oi-pipe download` first)", folder.url)
    rows = manifest.load_all(folder)
    ok = rows.filter(pl.col("status") == "ok")

    def counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
        grouped = frame.group_by(column).len().sort("len", descending=True)
        return {str(k): int(n) for k, n in grouped.iter_rows()}

    last = run_record.latest_record(folder)
    return {
        "images": rows.height,
        "status": counts(rows, "status"),
        "reason": counts(rows, "reason"),
        "source": counts(ok, "source"),
        "verified": int(ok["verified"].sum()),
        "bytes_ok": int(ok["bytes"].sum() or 0),
        "last_run": None if last is None else _last_run(last),
    }


def _last_run(record: dict) -> dict:
    this_run = record["this_run"]
    # records written before `outcome` existed: a run either stopped early or completed
    stopped = run_record.Outcome.STOPPED if record["stopped_early"] else None
    outcome = record.get("outcome") or stopped or run_record.Outcome.COMPLETED
    return {
        "run_id": record["run_id"],
        "finished": record["finished"],
        "stopped_early": record["stopped_early"],
        "outcome": str(outcome),
        "error": record.get("error"),
        **{k: this_run[k] for k in ("images", "recovered", "newly_missing")},
        "invalid_image_ids": this_run["invalid_image_ids"],
        # records written before these counts existed: none was counted
        **{
            k: this_run.get(k, 0)
            for k in ("duplicates", "undersized_fell_through", "undersized_kept")
        },
    }


def _table(title: str, counts: dict[str, int], total: int) -> Table:
    table = Table("value", "images", "share", title=title)
    for key, n in counts.items():
        table.add_row(key, f"{n:,}", f"{n / max(total, 1):.1%}")
    return table


def render(summary: dict) -> Group:
    total = summary["images"]
    parts = [
        _table("status", summary["status"], total),
        _table("reason", summary["reason"], total),
        _table("source of the ok images", summary["source"], total),
        f"{summary['verified']:,} ok images verified by size and MD5; "
        f"{summary['bytes_ok'] / 1e6:,.1f} MB fetched for them",
    ]
    if summary["last_run"]:
        parts.append(Text(last_run_line(summary["last_run"])))  # Text: a message is not markup
    return Group(*parts)


def last_run_line(last: dict) -> str:
    """`last run <id>: N images, ...`; a failed run leads with why: `last run: failed: <why>`."""
    counts = [
        f"{last['images']:,} images",
        f"{last['recovered']:,} recovered",
        f"{last['newly_missing']:,} newly missing",
    ]
    if last["invalid_image_ids"]:
        counts.append(f"{last['invalid_image_ids']:,} rows with an invalid ImageID skipped")
    if last["duplicates"]:
        counts.append(f"{last['duplicates']:,} rows repeating an ImageID merged into its first")
    if last["undersized_fell_through"]:
        counts.append(
            f"{last['undersized_fell_through']:,} images too small as a thumbnail or mirror copy "
            f"tried the next source ({last['undersized_kept']:,} kept small: none did better)"
        )
    if last["outcome"] == run_record.Outcome.FAILED:
        return f"last run: failed: {last['error']} (run {last['run_id']}: {', '.join(counts)})"
    stopped = ", stopped early" if last["outcome"] == run_record.Outcome.STOPPED else ""
    return f"last run {last['run_id']}: {', '.join(counts)}{stopped}"


def run(cfg: StatusConfig) -> dict:
    summary = summarise(cfg.out)
    if cfg.as_json:
        print(json.dumps(summary, indent=2))
    else:
        Console().print(render(summary))
    return summary
