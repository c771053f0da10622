"""What every `oi-pipe` command shares: bad input, an output that cannot be written and an
interruption each become one clear line and their exit code (errors.py says which)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from openimages_pipe.errors import InputError, Interrupted, OutputError, ProcessLost

T = TypeVar("T")


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body; bad input or an unwritable output exits 1, an interrupted run 128 + its
    signal, each with one clear line instead of a traceback."""
    try:
        return fn()
    except (InputError, OutputError, ProcessLost) as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None
    except Interrupted as e:
        typer.secho(str(e), fg="yellow", err=True)
        raise typer.Exit(e.exit_code) from None
