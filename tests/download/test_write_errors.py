"""A full disk, or an output folder that cannot be written, ends a real download within seconds:
one line naming the path and the error, exit code 1, no temporary file left, a run record saying
why (where one can still be written), and what was recorded still true; a rerun completes it.

Each write site fails in a child process (`child`): os.fsync raises ENOSPC for that site's files
from its Nth write on, so the error rises where a full disk raises it, below every handler of the
download; the lock and the read-only folders fail at `open` and `mkdir`. Where the tests may mount
(root with mount namespaces: `unshare -m`), a real small tmpfs fills up and a read-only tmpfs
refuses; elsewhere those two are skipped and the simulated ones stand in.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openimages_pipe.download import manifest, run_record
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.download.test_signals import cli_args
from tests.fixtures.paths import REPO
from tests.fixtures.worlds import IMAGES, shard_ids

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")

LIMIT = "12"  # images per run: four shards of three
FAILS_WITHIN_S = 20.0  # the whole failing run, start-up included; a hang ends at the timeout
# site: (the files whose fsync fails, from which one on, what the error line names)
SITES = {
    "shard": (r"/shards/\.[^/]+\.parquet\.tmp-", 2, "/shards/"),
    "jpeg": (r"/images/.+\.jpg\.tmp-", 4, "/images/"),
    "journal": (r"/\.journal/.+\.parquet\.tmp-", 2, "/.journal/"),
    "manifest": (r"/\.manifest\.parquet\.tmp-", 2, "/manifest.parquet"),  # the end's merge
    "record": (r"/runs/", 1, "/runs/"),
}
NO_SPACE = os.strerror(errno.ENOSPC)


def child(argv: list[str]) -> None:
    """`oi-pipe download` in a child whose disk is full at `site` (argv[0]); argv[1:] the CLI's."""
    site, *rest = argv
    if site in SITES:
        _full_from(*SITES[site][:2])
    elif site == "lock":
        _refuse_open(lambda path: "/.lock-" in path, errno.ENOSPC)
    elif site == "readonly":
        root = os.environ["OI_PIPE_TEST_READONLY"]
        _refuse_open(lambda path: path.startswith(root), errno.EROFS)
    from openimages_pipe.cli import main

    sys.argv = ["oi-pipe", *rest]
    main()


def _full_from(pattern: str, nth: int) -> None:
    real, seen = os.fsync, 0

    def fsync(fd: int) -> None:
        nonlocal seen
        if re.search(pattern, os.readlink(f"/proc/self/fd/{fd}")):
            seen += 1
            if seen >= nth:  # and stays full
                raise OSError(errno.ENOSPC, NO_SPACE)
        real(fd)

    os.fsync = fsync


def _refuse_open(refused, code: int) -> None:
    real_open, real_mkdir = builtins.open, os.mkdir

    def opened(file, mode="r", *args, **kwargs):
        if any(m in mode for m in "wax+") and refused(os.fspath(file)):
            raise OSError(code, os.strerror(code), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    def made(path, *args, **kwargs):
        if refused(os.fspath(path)):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    builtins.open, os.mkdir = opened, made


def run_child(site: str, args: list[str], **env: str) -> tuple[int, float, list[str]]:
    code = f"import sys; from {__name__} import child; child(sys.argv[1:])"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code, site, *args[3:]], cwd=REPO, capture_output=True, text=True,
        timeout=60, env={**os.environ, **env},
    )  # fmt: skip
    return done.returncode, time.monotonic() - started, done.stderr.strip().splitlines()


def assert_one_line(lines: list[str], *parts: str) -> str:
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and all(p in lines[0] for p in parts), lines
    return lines[0].removeprefix("error: ")


def assert_consistent(out: Path) -> None:
    """Every ok row's image is in the shard the manifest names, once; no temporary file."""
    rows = manifest.load_all(out).filter(status="ok")
    stored = shard_ids(out)
    assert len(stored) == len(set(stored))
    for image_id, shard in rows.select("image_id", "shard").iter_rows():
        assert (out / shard).is_file() and image_id in stored
    assert not list(out.rglob(".*tmp*"))


def assert_rerun_completes(args: list[str], out: Path, images: int) -> None:
    subprocess.run(args, cwd=REPO, check=True, timeout=120, capture_output=True)
    rows = manifest.load_all(out)
    assert rows.height == images and set(rows["status"]) == {"ok"}
    assert sorted(shard_ids(out)) == sorted(rows["image_id"])  # each image stored once
    assert run_record.latest_record(out)["outcome"] == "completed"


@pytest.mark.parametrize("site", [*SITES, "lock"])
def test_a_full_disk_at_each_write_site_stops_the_run_with_one_line(
    offline_world: Path, tmp_path: Path, site: str
) -> None:
    out = tmp_path / "out"
    extra = ["--limit", LIMIT, *(["--format", "jpeg"] if site == "jpeg" else [])]
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        args = cli_args(offline_world, out, srv.base_url, *extra)
        code, seconds, lines = run_child(site, args)
        named = SITES[site][2] if site in SITES else "/.lock-"
        line = assert_one_line(lines, str(out), named, NO_SPACE)
        assert code == 1 and seconds < FAILS_WITHIN_S, (code, seconds)
        if site not in ("record", "lock"):  # the record is written where it still can be
            record = run_record.latest_record(out)
            assert (record["outcome"], record["error"]) == ("failed", line)
        if site == "lock":
            assert not (out / "runs").exists() and not (out / "manifest.parquet").exists()
        if site != "jpeg":
            assert_consistent(out)
            assert_rerun_completes(args, out, int(LIMIT))
        else:
            assert not list(out.rglob(".*tmp*"))


@pytest.mark.parametrize("where", ["existing", "new"])
def test_a_read_only_out_is_one_line_simulated(tmp_path: Path, where: str) -> None:
    """EROFS from the first write (the lock of an existing folder; mkdir of a new one)."""
    root = tmp_path / "ro"
    root.mkdir()
    out = root if where == "existing" else root / "new" / "out"
    args = cli_args(_no_world(tmp_path), out, "http://127.0.0.1:9")
    code, _, lines = run_child("readonly", args, OI_PIPE_TEST_READONLY=str(root))
    assert code == 1
    assert_one_line(lines, str(out), os.strerror(errno.EROFS))
    assert list(root.iterdir()) == []


def _no_world(tmp_path: Path) -> Path:
    """A world folder with one images CSV (nothing is fetched: the run stops before)."""
    csv = tmp_path / "w" / "data" / "images" / "train" / "images.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("ImageID,Subset,OriginalURL\n00000000000000a1,train,http://127.0.0.1:9/a.jpg\n")
    return tmp_path / "w"


def _can_mount(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir()
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs '{probe}'"],
            capture_output=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_real_full_tmpfs_stops_the_run_and_a_rerun_with_space_completes(
    offline_world: Path, tmp_path: Path
) -> None:
    if not _can_mount(tmp_path):
        pytest.skip("cannot mount a tmpfs here (needs root and mount namespaces)")
    out, copy = tmp_path / "out", tmp_path / "copy"
    out.mkdir()
    with WorldServer(ServeConfig(world=offline_world)) as srv:
        args = " ".join(f"'{a}'" for a in cli_args(offline_world, out, srv.base_url))
        script = (
            f"mount -t tmpfs -o size=160k tmpfs '{out}' || exit 99\n"
            f"start=$(date +%s.%N); {args} 2>'{tmp_path}/err'; echo $? >'{tmp_path}/rc'\n"
            f"echo $start $(date +%s.%N) >'{tmp_path}/times'\n"
            f"mount -o remount,size=64m '{out}' && {args} 2>'{tmp_path}/err2'\n"
            f"echo $? >'{tmp_path}/rc2'; cp -a '{out}/.' '{copy}'\n"
        )
        subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, timeout=240, check=True)
    lines = (tmp_path / "err").read_text().strip().splitlines()
    assert (tmp_path / "rc").read_text().split() == ["1"], lines
    assert_one_line(lines, str(out), NO_SPACE)
    started, ended = map(float, (tmp_path / "times").read_text().split())
    assert ended - started < FAILS_WITHIN_S
    assert (tmp_path / "rc2").read_text().split() == ["0"], (tmp_path / "err2").read_text()
    rows = manifest.load_all(copy)
    assert rows.height == IMAGES and set(rows["status"]) == {"ok"}
    assert sorted(shard_ids(copy)) == sorted(rows["image_id"])
    assert not list(copy.rglob(".*tmp*"))


@pytest.mark.parametrize("where", ["existing", "new"])
def test_a_real_read_only_out_is_one_line(tmp_path: Path, where: str) -> None:
    if not _can_mount(tmp_path):
        pytest.skip("cannot mount a tmpfs here (needs root and mount namespaces)")
    root = tmp_path / "ro"
    root.mkdir()
    out = root if where == "existing" else root / "new"
    args = " ".join(f"'{a}'" for a in cli_args(_no_world(tmp_path), out, "http://127.0.0.1:9"))
    script = f"mount -t tmpfs -o ro,size=64k tmpfs '{root}' || exit 99\nexec {args}"
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert_one_line(done.stderr.strip().splitlines(), str(out), os.strerror(errno.EROFS))
