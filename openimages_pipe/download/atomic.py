"""Writing a download's files: whole or not at all, and a write error as one `OutputError`.

Every file of a download folder (shards, JPEG files, journal parts, the manifest, run records) is
written to `.{name}.tmp-{pid}` in its final folder, fsynced, then `os.replace`d, so a reader or a
rerun after SIGKILL sees the whole file or none, and a failed write leaves no temporary file.
`writing(path)` turns the errors that only the user can fix (a full disk, a read-only folder, no
permission, a quota: `errors.WRITE_ERRNOS`) into an `OutputError` naming `path`; others stay what
they are.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from openimages_pipe.errors import WRITE_ERRNOS, OutputError


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Report a write error inside the block as an OutputError naming `path`."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise OutputError.of(path, e) from e


def write_file(path: Path, write: Callable[[BinaryIO], object], fsync: bool = True) -> None:
    """Write `path` (and its folder) through a temporary name: readers see all of it or nothing."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(temporary, "wb") as f:
                write(f)
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
            os.replace(temporary, path)
        except BaseException:
            _discard(temporary)
            raise
    if fsync:
        _fsync_folder(path.parent)


def _discard(temporary: Path) -> None:
    # Best effort: the write's own error is the one to report, and a temporary file that cannot
    # be removed now (a folder gone read-only) is removed by the next run (`remove_orphans`).
    with contextlib.suppress(OSError):
        temporary.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable too. Best effort: some filesystems refuse to fsync a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
