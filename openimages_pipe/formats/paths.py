"""Input file lists as users write them: paths and glob patterns, expanded once, in sorted order.

A quoted `'images_2016_08/*/images.csv'` reaches oi-pipe unexpanded (polars, DuckDB and every
shell user expect it to work), and an unquoted one reaches it expanded by the shell: both end as
the same sorted list. A pattern that matches nothing is an error naming it, never an empty input.
Standard library only.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from openimages_pipe.errors import InputError

_MAGIC = ("*", "?", "[")


def expand(entries: Iterable[str | Path], option: str) -> tuple[Path, ...]:
    """Each entry as itself, or, if it is a pattern and no file of that name exists, the files it
    matches (sorted; `**` spans folders). Missing plain paths are left for the reader to name."""
    found: list[Path] = []
    for entry in entries:
        text = str(entry)
        if not any(c in text for c in _MAGIC) or Path(text).exists():
            found.append(Path(text))
            continue
        matches = sorted(p for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not matches:
            raise InputError(f"{option}: no file matches this pattern", value=text)
        found.extend(Path(p) for p in matches)
    return tuple(found)
