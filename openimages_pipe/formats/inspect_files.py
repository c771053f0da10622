"""`oi-pipe inspect`: what each Open Images CSV is, which releases wrote it, and how many rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from openimages_pipe.formats import reader


@dataclass(frozen=True)
class InspectConfig:
    files: tuple[Path, ...]
    validate: bool = True


@dataclass(frozen=True)
class FileReport:
    info: reader.CsvInfo
    rows: int | None


def inspect_files(cfg: InspectConfig) -> list[FileReport]:
    reports = []
    for path in cfg.files:
        info = reader.inspect_csv(path)
        rows = None
        if cfg.validate:
            lf = reader.scan(path, info.kind)
            rows = lf.select(pl.len()).collect(engine="streaming").item()
        reports.append(FileReport(info, rows))
    return reports


def report_table(reports: list[FileReport], root: Path | None = None) -> Table:
    """One row per file; paths shown relative to `root` when given."""
    table = Table("file", "kind", "header", "releases", "rows")
    for r in reports:
        table.add_row(
            str(r.info.path.relative_to(root) if root else r.info.path),
            r.info.kind.value,
            "yes" if r.info.has_header else "no",
            ", ".join(r.info.releases) or "none matches exactly",
            "" if r.rows is None else f"{r.rows:,}",
        )
    return table


def run(cfg: InspectConfig) -> list[FileReport]:
    reports = inspect_files(cfg)
    Console().print(report_table(reports))
    return reports
