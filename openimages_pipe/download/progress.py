"""The live display of a download: images/s, MB/s, ok/missing/failed and ETA (or quiet log lines).

Reads the run's tally and the fetcher's byte counter; it never changes them.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from openimages_pipe.download.run_record import RunTally

QUIET_LOG_EVERY_S = 30.0


class _Bytes(Protocol):
    bytes_received: int


class DownloadProgress:
    def __init__(self, total: int, tally: RunTally, quiet: bool = False) -> None:
        self.total = total
        self.tally = tally
        self.quiet = quiet
        self.bytes_source: _Bytes | None = None
        self.processed = 0  # images finished here; ok ones reach the tally only with their shard
        self._started = time.monotonic()
        self._last_log = self._started
        self._progress = Progress(
            TextColumn("[bold]download"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rates]}"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=quiet,
        )
        self._task = self._progress.add_task("download", total=total, rates="", counts="")

    def __enter__(self) -> DownloadProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._refresh()
        self._progress.stop()

    def line(self) -> tuple[str, str]:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        received = self.bytes_source.bytes_received if self.bytes_source else 0
        rates = f"{self.processed / elapsed:,.1f} img/s {received / elapsed / 1e6:,.1f} MB/s"
        s = self.tally.status
        ok = self.processed - s["missing"] - s["failed"]
        counts = f"ok {ok:,} missing {s['missing']:,} failed {s['failed']:,}"
        return rates, counts

    def _refresh(self) -> None:
        rates, counts = self.line()
        self._progress.update(self._task, completed=self.processed, rates=rates, counts=counts)

    def advance(self) -> None:
        self.processed += 1
        self._refresh()
        now = time.monotonic()
        if self.quiet and now - self._last_log >= QUIET_LOG_EVERY_S:
            self._last_log = now
            rates, counts = self.line()
            print(f"download: {self.processed:,}/{self.total:,} {rates} {counts}", file=sys.stderr)
