"""The exceptions the CLI reports in one line, without a traceback, and what each exit code means.

- `InputError`: input that a stage cannot accept; the line names the file, the line and the value.
  Exit code 1.
- `OutputError`: an output that cannot be written (a full disk, a read-only folder, no permission,
  a quota); the line names the path and the error. What was recorded is kept, and a rerun once the
  cause is fixed completes it. Exit code 1.
- `ProcessLost`: a process of a run ended without being asked to (the OOM killer, a crash); what
  finished is kept and a rerun resumes. Exit code 1.
- `Interrupted`: a run ended by SIGINT or SIGTERM; what finished is kept. Exit code 128 + the
  signal (130, 143), as a shell reports a process the signal killed, so `a && b` does not go on.

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass
from pathlib import Path

# The OSErrors that mean "this output cannot be written here", which only the user can fix.
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)


@dataclass
class InputError(Exception):
    """Input that oi-pipe refuses, located as precisely as we know."""

    message: str
    path: Path | str | None = None  # a file, or an object's s3:// URL
    line: int | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        shown = f" (value: {self.value!r})" if self.value is not None else ""
        return f"{where}{self.message}{shown}"


@dataclass
class OutputError(Exception):
    """A file or folder that cannot be written, and the error the system gave."""

    path: Path | str  # a file, or an object's s3:// URL
    reason: str  # the system's words and the errno's name: "No space left on device (ENOSPC)"

    @classmethod
    def of(cls, path: Path | str, error: OSError) -> OutputError:
        name = errno.errorcode.get(error.errno or 0, "?")
        return cls(path, f"{error.strerror or error} ({name})")

    def __str__(self) -> str:
        return (
            f"{self.path}: cannot write: {self.reason}; what was recorded is kept, "
            "and the same command completes it once that is fixed"
        )


@dataclass
class Interrupted(Exception):
    """A run that SIGINT or SIGTERM ended."""

    signum: int

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return f"interrupted by {name}: what finished is kept; the same command resumes the rest"


@dataclass
class ProcessLost(Exception):
    """A process that a run started ended on its own: killed (the OOM killer) or crashed."""

    name: str
    exit_code: int  # -N: killed by signal N

    def __str__(self) -> str:
        code = self.exit_code
        signals = {s.value: s.name for s in signal.Signals}
        how = f"killed by {signals[-code]}" if -code in signals else f"exit code {code}"
        return (
            f"{self.name} ended unexpectedly ({how}): what finished is kept, and the same "
            "command resumes the rest"
        )
