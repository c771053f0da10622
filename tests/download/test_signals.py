"""SIGINT and SIGTERM end a real `oi-pipe download` within seconds, whatever it waits on, with an
exit code that says so (130, 143) and a run record naming the signal.

Each run is a child process against a world server on 127.0.0.1 whose every request stalls, so the
run is caught waiting on the network; one child has its worker stuck in one image instead. The
helpers here (`cli_args`, `wait_for`, `descendants`) serve the other process tests too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openimages_pipe.download import manifest, run_record
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.paths import REPO
from tests.fixtures.worlds import image_csvs

# Every request waits this long for its first byte: far longer than any test waits.
STALLED = "slow_first_byte=1,slow=60,transient=1000"
EXIT_WITHIN_S = 10.0  # "within seconds": the time from the signal to the process's exit


def cli_args(world: Path, out: Path, base: str, *extra: str) -> list[str]:
    """`oi-pipe download` of the world's CSVs into `out`, small and patient."""
    return [
        sys.executable, "-m", "openimages_pipe.cli", "download", *map(str, image_csvs(world)),
        "--out", str(out), "--allow-private-addresses", "--quiet", "--workers", "1",
        "--rows-per-shard", "3", "--concurrency", "2", "--per-host", "2", "--retries", "0",
        "--first-byte-timeout", "120", "--mirror-url", world_layout.mirror_template(base), *extra,
    ]  # fmt: skip


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, theirs, ...), from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:  # the task ended while we looked
                continue
            new = {int(c) for c in children} - found
            found |= new
            todo += new
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped (an orphan's reaper is slow in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stopped_by(sig: signal.Signals, proc: subprocess.Popen) -> tuple[int, float, str]:
    os.kill(proc.pid, sig)
    started = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"{sig.name} did not end the run within 30 s")
    return proc.returncode, time.monotonic() - started, stderr


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_ends_a_run_waiting_on_the_network_with_its_exit_code(
    offline_world: Path, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=offline_world, faults=STALLED)) as srv:
        args = cli_args(offline_world, out, srv.base_url)
        proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, text=True)
        waiting = wait_for(lambda: sum(srv.state.requests.values()) >= 2, 60)
        returncode, seconds, stderr = _stopped_by(sig, proc)
    assert waiting, stderr
    assert (returncode, stderr.strip().splitlines()[-1:]) == (
        code,
        [f"interrupted by {sig.name}: what finished is kept; the same command resumes the rest"],
    )
    assert seconds < EXIT_WITHIN_S, f"{seconds:.1f} s after {sig.name}"
    record = run_record.latest_record(out)
    assert (record["outcome"], record["signal"], record["error"]) == ("stopped", sig.name, None)
    assert manifest.load_all(out).height == 0  # nothing finished: nothing recorded as done
    assert not list(out.rglob(".*tmp*"))


def stuck_worker(argv: list[str]) -> None:
    """The CLI, in a child, with every image's worker job stuck and a short grace period."""
    from openimages_pipe.cli import main
    from openimages_pipe.download import pipeline, stopping

    stopping.GRACE_S = 1.5
    pipeline.check_and_resize = stuck_job
    sys.argv = ["oi-pipe", *argv]
    main()


def stuck_job(*args: object) -> None:
    """What a worker never finishes (an image that decodes for minutes)."""
    Path(os.environ["OI_PIPE_TEST_STUCK"]).touch()
    time.sleep(120)


def test_a_signal_ends_a_run_whose_worker_is_stuck_within_the_grace_period(
    offline_world: Path, tmp_path: Path
) -> None:
    """The graceful stop waits for the pool; past `stopping.GRACE_S` the run exits at once, with
    the same code and a record, and the stuck worker does not outlive it."""
    out, flag = tmp_path / "out", tmp_path / "stuck"
    child = [sys.executable, "-c", f"import sys; from {__name__} import stuck_worker; "
             "stuck_worker(sys.argv[1:])"]  # fmt: skip
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        args = child + cli_args(offline_world, out, srv.base_url)[3:]
        env = {**os.environ, "OI_PIPE_TEST_STUCK": str(flag)}
        proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, text=True, env=env)
        stuck = wait_for(flag.exists, 60)
        below = descendants(proc.pid)
        returncode, seconds, stderr = _stopped_by(signal.SIGTERM, proc)
    assert stuck, stderr
    assert returncode == 143 and 1.5 <= seconds < 1.5 + EXIT_WITHIN_S, (seconds, stderr)
    assert "SIGTERM" in stderr and "Traceback" not in stderr
    record = run_record.latest_record(out)
    assert (record["outcome"], record["signal"]) == ("stopped", "SIGTERM")
    assert wait_for(lambda: not any(alive(p) for p in below), 5), "a worker outlived the run"
