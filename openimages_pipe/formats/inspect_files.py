"""`oi-pipe inspect`: what each Open Images CSV is, which releases wrote it, and how many rows.

Every file named gets its row in the report, a failing one with its error in place (the same one
line the CLI would print), so that one bad file among twenty hides nothing about the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader


@dataclass(frozen=True)
class InspectConfig:
    files: tuple[Path, ...]
    validate: bool = True
    as_json: bool = False


@dataclass(frozen=True)
class FileReport:
    path: Path
    info: reader.CsvInfo | None  # None: not even the header could be read
    rows: int | None
    error: str | None = None  # the one line the CLI prints: path:line: message (value: ...)
    brief: str = ""  # the same without the path, for the report's row of that path

    def as_dict(self) -> dict:
        info = self.info
        return {
            "path": str(self.path),
            "kind": None if info is None else info.kind.value,
            "header": None if info is None else info.has_header,
            "releases": [] if info is None else list(info.releases),
            "rows": self.rows,
            "error": self.error,
        }


def inspect_one(path: Path, validate: bool) -> FileReport:
    info = None
    try:
        info = reader.inspect_csv(path)
        rows = None
        if validate:
            lf = reader.scan(path, info.kind)
            rows = lf.select(pl.len()).collect(engine="streaming").item()
        return FileReport(path, info, rows)
    except InputError as e:
        line = f"line {e.line}: " if e.line is not None and e.path == path else ""
        brief = line + str(InputError(e.message, value=e.value))
        return FileReport(path, info, None, str(e), brief)


def inspect_files(cfg: InspectConfig) -> list[FileReport]:
    return [inspect_one(Path(p), cfg.validate) for p in cfg.files]


def report_table(reports: list[FileReport], root: Path | None = None) -> Table:
    """One row per file; paths shown relative to `root` when given."""
    table = Table("file", "kind", "header", "releases", "rows")
    for r in reports:
        info = r.info
        releases = "" if info is None else ", ".join(info.releases) or "none matches exactly"
        rows = f"[red]{escape(r.brief)}[/]" if r.error else "" if r.rows is None else f"{r.rows:,}"
        table.add_row(
            str(r.path.relative_to(root) if root else r.path),
            "?" if info is None else info.kind.value,
            "" if info is None else "yes" if info.has_header else "no",
            releases,
            rows,
        )
    return table


def run(cfg: InspectConfig) -> list[FileReport]:
    """The report (a table, or JSON on stdout), then one `error:` line on stderr per failed file,
    unwrapped, as every command writes bad input."""
    reports = inspect_files(cfg)
    if cfg.as_json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        Console().print(report_table(reports))
    errors = Console(stderr=True, soft_wrap=True, highlight=False)
    for r in reports:
        if r.error:
            errors.print(f"[red]error: {escape(r.error)}[/]")
    return reports
