"""What every `oi-pipe` command shares: bad input becomes one clear line and exit code 1."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from openimages_pipe.errors import InputError

T = TypeVar("T")


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body; bad input exits 1 with one clear line instead of a traceback."""
    try:
        return fn()
    except InputError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None
