"""One `oi-pipe download` with several fetch processes (`--processes`), against a world server on
127.0.0.1: every image once, a SIGKILL mid-run resumed without duplicates, the per-host limit and a
host's Retry-After holding across the processes, SIGTERM's exit code, and no process left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from openimages_pipe.download import manifest, run_record
from openimages_pipe.world.faults import Fault
from openimages_pipe.world.layout import RouteKind
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_signals import (
    EXIT_WITHIN_S,
    STALLED,
    _stopped_by,
    alive,
    cli_args,
    descendants,
    wait_for,
)
from tests.fixtures.paths import REPO
from tests.fixtures.worlds import IMAGES, shard_ids

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
PROCESSES = 2
SLOW = "slow_first_byte=1,slow=0.3,transient=1000"  # every request answers after 0.3 s
# the rest: a first request answers after 0.3 s, so there is work for every process meanwhile
SLOW_REST = "slow_first_byte=0.97,slow=0.3,transient=1,retry_after=2"


def args_with(world: Path, out: Path, base: str, **options: str) -> list[str]:
    """cli_args with `--processes 2` and these options replaced (name=value, as --name value)."""
    args = cli_args(world, out, base, "--processes", str(PROCESSES))
    for name, value in {"workers": "2", **options}.items():
        args[args.index(f"--{name.replace('_', '-')}") + 1] = value
    return args


def assert_each_image_once(out: Path) -> None:
    rows = manifest.load_all(out)
    assert rows.height == rows["image_id"].n_unique() == IMAGES
    ok = set(rows.filter(rows["status"] == "ok")["image_id"].to_list())
    in_shards = shard_ids(out)
    assert Counter(in_shards).most_common(1)[0][1] == 1, "an image stored twice"
    assert set(in_shards) == ok


def test_several_processes_download_every_image_exactly_once(offline_world, tmp_path) -> None:
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=offline_world, faults="flickr")) as srv:
        args = args_with(offline_world, out, srv.base_url, per_host="4", concurrency="8")
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_each_image_once(out)
    record = run_record.latest_record(out)
    assert (record["outcome"], record["config"]["processes"]) == ("completed", PROCESSES)
    assert len(list((out / "runs").glob("*.json"))) == 1  # one run record for all processes


def test_the_per_host_limit_holds_across_the_processes(offline_world, tmp_path) -> None:
    """--per-host 4 with 2 processes: 2 each, never 4 each."""
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=offline_world, faults=SLOW)) as srv:
        args = args_with(offline_world, out, srv.base_url, per_host="4", concurrency="16")
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
        peak = dict(srv.state.peak_in_flight)
    assert done.returncode == 0, done.stderr
    assert_each_image_once(out)
    assert len(peak) == 1 and 1 <= max(peak.values()) <= 4, peak


def test_a_retry_after_from_one_host_holds_back_every_process(offline_world, tmp_path) -> None:
    """One image answers 429 (Retry-After: 2): the process fetching it is told, and no process
    asks the host again in those 2 s but for requests already under way. Without the shared
    deadline the other process goes on fetching its images meanwhile (checked by hand)."""
    out = tmp_path / "out"
    cfg = ServeConfig(world=offline_world, faults=f"429=0.03,{SLOW_REST}")
    with WorldServer(cfg) as srv:
        args = args_with(offline_world, out, srv.base_url, per_host="4", concurrency="8")
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=180)
        arrivals, state = list(srv.state.arrivals), srv.state
    assert done.returncode == 0, done.stderr
    assert_each_image_once(out)
    throttled = {
        path
        for path, route in state.routes.items()
        if route.kind is not RouteKind.MIRROR and state.fates[route.image_id] is Fault.HTTP_429
    }
    first = {}
    for when, path in arrivals:
        first.setdefault(path, when)
    refused = sorted(t for p, t in first.items() if p in throttled)  # each one's first is a 429
    assert len({state.routes[p].image_id for p in throttled}) == 1, "the premise: one image 429s"
    assert refused, "the world threw no 429"
    # 0.3 s: past the requests in flight when the 429 was sent; 1.7 s: before the gate opens
    early = [(t, w) for t in refused for w, _ in arrivals if t + 0.3 < w < t + 1.7]
    assert early == [], f"{len(early)} requests inside a Retry-After window"


def test_sigterm_ends_the_processes_with_143_and_leaves_none(offline_world, tmp_path) -> None:
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=offline_world, faults=STALLED)) as srv:
        args = args_with(offline_world, out, srv.base_url)
        proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, text=True)
        waiting = wait_for(lambda: sum(srv.state.requests.values()) >= PROCESSES, 60)
        below = descendants(proc.pid)
        returncode, seconds, stderr = _stopped_by(signal.SIGTERM, proc)
    assert waiting, stderr
    # the forkserver, the fetch processes and a decode worker under each (and their forkservers)
    assert len(below) >= 1 + 2 * PROCESSES, below
    assert returncode == 143 and seconds < EXIT_WITHIN_S, (returncode, seconds, stderr)
    assert "Traceback" not in stderr
    record = run_record.latest_record(out)
    assert (record["outcome"], record["signal"]) == ("stopped", "SIGTERM")
    assert wait_for(lambda: not any(alive(p) for p in below), 5), "a process outlived the run"


def test_sigkill_mid_run_then_a_rerun_completes_without_duplicates(offline_world, tmp_path):
    out = tmp_path / "out"
    with WorldServer(ServeConfig(world=offline_world, faults=SLOW)) as srv:
        args = args_with(offline_world, out, srv.base_url, per_host="2", concurrency="2")
        proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.DEVNULL)
        try:
            # some shards durable (3 images each), most images still to do
            assert wait_for(lambda: len(list(out.glob("shards/*.parquet"))) >= 2, 60)
            below = descendants(proc.pid)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        gone = wait_for(lambda: not any(alive(p) for p in below), 5)
        for pid in (p for p in below if alive(p)):  # a failed test must not leave them either
            os.kill(pid, signal.SIGKILL)
        assert gone, "orphaned fetch or decode processes"
        assert manifest.load_all(out).height < IMAGES  # killed with work left
        again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert_each_image_once(out)
    assert manifest.load_all(out)["status"].to_list() == ["ok"] * IMAGES


def kills_its_fetch_process(argv: list[str]) -> None:
    """The CLI, in a child, whose decode workers SIGKILL the fetch process above them at their
    first image (what the OOM killer does to a process that grew too large)."""
    from openimages_pipe.cli import main
    from openimages_pipe.download import pipeline

    pipeline.check_and_resize = kill_fetch_process
    sys.argv = ["oi-pipe", *argv]
    main()


def kill_fetch_process(*args: object) -> None:
    """A decode worker's parent is its fork server, whose parent is the fetch process."""
    server = os.getppid()
    stat = Path(f"/proc/{server}/stat").read_text()
    os.kill(int(stat.rsplit(")", 1)[1].split()[1]), signal.SIGKILL)
    time.sleep(60)  # the pool dies with the fetch process (it watches its parent)


def test_a_lost_fetch_process_ends_the_run_in_one_line_and_a_rerun_completes(
    offline_world, tmp_path
) -> None:
    out = tmp_path / "out"
    child = [sys.executable, "-c", f"import sys; from {__name__} import kills_its_fetch_process; "
             "kills_its_fetch_process(sys.argv[1:])"]  # fmt: skip
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        args = args_with(offline_world, out, srv.base_url)
        lost = subprocess.run(
            child + args[3:], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        failed = run_record.latest_record(out)
        again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    # Python's resource tracker may add its own warning about the killed process's semaphores
    lines = [line for line in lost.stderr.splitlines() if "resource_tracker" not in line]
    assert lost.returncode == 1 and len(lines) == 1 and "Traceback" not in lost.stderr, lines
    assert re.fullmatch(
        r"error: oi-pipe-fetch-\d ended unexpectedly \(killed by SIGKILL\): what finished is "
        r"kept, and the same command resumes the rest",
        lines[0],
    ), lines
    assert (failed["outcome"], failed["error"]) == ("failed", lines[0].removeprefix("error: "))
    assert again.returncode == 0, again.stderr
    assert_each_image_once(out)
