"""The one exception type for bad user input, and how the CLI reports it.

Every stage raises `InputError` for input it cannot accept; the CLI prints it in one line that
names the file, the line and the value, and exits with code 1. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class InputError(Exception):
    """Input that oi-pipe refuses, located as precisely as we know."""

    message: str
    path: Path | None = None
    line: int | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        shown = f" (value: {self.value!r})" if self.value is not None else ""
        return f"{where}{self.message}{shown}"
