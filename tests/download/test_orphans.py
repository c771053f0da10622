"""No orphans: the worker processes of a download end when its main process dies, SIGKILL
included (PR_SET_PDEATHSIG on Linux, else the workers watch their parent)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_signals import STALLED, alive, cli_args, descendants, wait_for
from tests.fixtures.paths import REPO

WORKERS = 2


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_workers_end_when_the_main_process_is_killed(offline_world: Path, tmp_path: Path) -> None:
    with WorldServer(ServeConfig(world=offline_world, faults=STALLED)) as srv:
        args = cli_args(offline_world, tmp_path / "out", srv.base_url)
        args[args.index("--workers") + 1] = str(WORKERS)
        proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            # the pool is up once the spool probe went through it and the first fetches began
            assert wait_for(lambda: sum(srv.state.requests.values()) >= 2, 60)
            below = descendants(proc.pid)
            # the forkserver, its WORKERS workers (and the resource tracker, if one started)
            assert len(below) >= 1 + WORKERS, below
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        gone = wait_for(lambda: not any(alive(p) for p in below), 5)
        left = {p for p in below if alive(p)}
        for pid in left:  # a failed test must not leave them either
            os.kill(pid, signal.SIGKILL)
    assert gone, f"orphaned: {left}"
