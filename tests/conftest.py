"""Fixtures shared across the test packages.

- `offline_world`: one `world make` world per session, which the fetch and download tests serve
  with the faults each needs (read-only: what a test writes goes to its own tmp_path).
- `no_errors_logged`: for tests that serve over HTTP, that nothing logged an error (an unclosed
  session, a handler's traceback) or left a world server's thread running.
- `dict_csv`: the packaged dict.csv, copied from the shared data where the checkout lacks it.

Helpers that are not fixtures live in tests/fixtures/ (`from tests.fixtures.<name> import ...`).
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.paths import SHARED_DATA


@pytest.fixture(scope="session")
def offline_world(tmp_path_factory: pytest.TempPathFactory, dict_csv: Path) -> Path:
    """A world of 40 small images (tests.fixtures.worlds), its URLs on a free port of 127.0.0.1;
    `world make` copies dict.csv into it."""
    # Imported here: Pillow and pyarrow only for a session that needs the world.
    from tests.fixtures.worlds import MAX_SIDE, make_world

    return make_world(tmp_path_factory.mktemp("offline-world"), max_side=MAX_SIDE)


@pytest.fixture
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Faults are the server's job, not its errors: nothing may log one or leak a server thread."""
    caplog.set_level(logging.WARNING)
    yield
    assert [t.name for t in threading.enumerate() if t.name == "world-server"] == []
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []


@pytest.fixture(scope="session")
def dict_csv() -> Path:
    """The repository's dict.csv, copied from the shared data if the manifests copy is missing."""
    from openimages_pipe import packaged

    path = packaged.dict_csv()
    shared = SHARED_DATA / "openimages-repo" / "dict.csv"
    if not path.exists() and shared.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared, path)
    return path
