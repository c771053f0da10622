"""`oi-pipe download` against img2dataset, in one run, on one corpus of photo-like JPEGs (issue 3).

What it does, in order (data made once under benchmarks/.data/, git-ignored; see download_corpus):

1. img2dataset (pinned, `download_corpus.IMG2DATASET_VERSION`) in its own venv,
   benchmarks/.data/venv-img2dataset, with scikit-image for its sample photos;
2. a corpus of --images photo-like JPEGs, 640x480 to 4000x3000 (3.6 MP on average), made from
   scikit-image's and scikit-learn's real photographs, served by oi-pipe's world server on
   127.0.0.1:--port; an Open Images images CSV for oi-pipe, a url CSV for img2dataset;
3. the ceiling: oi-pipe's `resize_image` (decode + resize + encode) over the whole corpus in this
   one process, images/s of CPU time (and of wall time) x 2 cores; and, for the breakdown, the
   CPU cost of img2dataset's own Resizer (full decode, INTER_AREA, encode) on every 4th image;
4. one warm-up run of each tool on the first --warmup images, then each tool twice on 1 image:
   the fixed cost of a run (start-up, set-up, shut-down), which the table also subtracts from the
   wall time of the timed runs, for the rate of each tool once it is running;
5. --repeat rounds: round 1 runs oi-pipe and img2dataset with each --threads value, later rounds
   oi-pipe and img2dataset with the best thread_count so far (first and last in turn); each run is
   timed by the wall clock of the whole command (start-up included), images that ended ok / s;
6. peak RSS of `oi-pipe download --limit N` on a --big-rows-row images CSV and on the N-row one:
   VmHWM of the oi-pipe process (its peak since exec), ru_maxrss of wait4 (as /usr/bin/time -v
   reports it; it also counts the forked child before exec, i.e. this script's own RSS, and the
   workers it reaped), and the whole process tree's RSS, sampled;
7. a table (and benchmarks/.data/results-*.json; the tools' logs in benchmarks/.data/logs/).

Every run also records the CPU seconds of the tool's whole process tree (sampled from /proc every
0.1 s) and of the world server: on a machine shared with other work, images/s by the wall clock
depends on the CPU share each run happened to get, while CPU ms per image does not.

Both tools: 2 worker processes, keep-ratio 256 (shorter side), JPEG quality 95, Parquet output,
from the same server. oi-pipe: --workers 2 --concurrency 64 --per-host 64 --sources original
--md5 strict. img2dataset: processes_count 2, the best of --threads, 250 images per shard (8 shards
for 2 processes: balanced), area downscaling (its default), md5 as its hash (oi-pipe computes MD5
too), EXIF extraction off (oi-pipe stores none), no retries, timeout 30 s.

Every URL is on 127.0.0.1, proxies are removed from the tools' environment (and albumentations'
update check is off), the server stops at the end, and every command has a timeout (--run-timeout).

    .venv/bin/python benchmarks/download_vs_img2dataset.py --images 2000
    .venv/bin/python benchmarks/download_vs_img2dataset.py --images 2000 --latency 0.2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import download_corpus as dc

ROOT = Path(__file__).resolve().parent.parent
OI_PIPE = Path(sys.executable).parent / "oi-pipe"
IMAGE_SIZE = 256
QUALITY = 95
WORKERS = 2
I2D_SHARD = 250
I2D_TIMEOUT = 30
OI_FLAGS = [
    "--workers", str(WORKERS), "--concurrency", "64", "--per-host", "64",
    "--allow-private-addresses", "--quiet", "--sources", "original", "--md5", "strict",
    "--image-size", str(IMAGE_SIZE), "--resize-mode", "keep-ratio", "--quality", str(QUALITY),
    "--format", "parquet",
]  # fmt: skip
I2D_RUNNER = """
import json, sys
from img2dataset import download
if __name__ == "__main__":
    download(**json.loads(sys.argv[1]))
"""
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


@dataclass
class Run:
    tool: str  # oi-pipe | img2dataset | oi-pipe --limit
    label: str
    images: int  # asked for
    ok: int = 0
    wall_s: float = 0.0
    returncode: int | None = None
    timed_out: bool = False
    maxrss_mb: float = 0.0  # wait4's ru_maxrss: the largest process (waited-for ones, pre-exec too)
    tree_rss_peak_mb: float = 0.0  # sampled sum over the process tree
    main_hwm_mb: float = 0.0  # VmHWM of the top process at its last sample
    cpu_s: float = 0.0  # CPU seconds of the tool's whole process tree
    top_cpu_s: float = 0.0  # of its top process alone (oi-pipe: the event loop's process)
    server_cpu_s: float = 0.0  # of the world server meanwhile (this process)
    load_at_start: float = 0.0
    threads: int | None = None
    log: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.ok if self.ok else 0.0

    @property
    def server_ms(self) -> float:
        return 1000 * self.server_cpu_s / self.ok if self.ok else 0.0


# --- running a command, bounded and measured -----------------------------------------------------


def tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.update(
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        WANDB_MODE="disabled", WANDB_SILENT="true", PYTHONUNBUFFERED="1",
        NO_ALBUMENTATIONS_UPDATE="1",  # else albumentations asks PyPI for its version on import
    )  # fmt: skip
    return env


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    return kids


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    """utime + stime of one process (not of its children), in seconds; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def _kill_session(pgid: int) -> None:
    """SIGKILL what is left of the session this script started for one command, nothing else."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_command(cmd: list[str], log: Path, timeout: float) -> dict:
    """Run `cmd` in its own session: wall time, exit status, ru_maxrss (wait4), and, sampled
    every 0.1 s over the whole process tree, the peak summed RSS and the CPU seconds of every
    process (each one's last sample: a worker that outlives its parent's wait4, as a forkserver's
    children do, is counted too). This process's own CPU meanwhile is the server's (less the
    polling, measured on this thread)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        start = time.perf_counter()
        server0 = time.process_time() - time.thread_time()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=tool_env(), cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        tree_peak = main_hwm = 0
        cpu: dict[int, float] = {}
        timed_out = False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                tree = _tree(proc.pid)
                tree_peak = max(tree_peak, sum(_status_kb(p, "VmRSS:") for p in tree))
                main_hwm = max(main_hwm, _status_kb(proc.pid, "VmHWM:"))
                for p in tree:
                    used = _cpu_s(p)
                    if used is not None:
                        cpu[p] = used
                if time.perf_counter() - start > timeout:
                    timed_out = True
                    _kill_session(proc.pid)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.1)
        except BaseException:  # Ctrl-C, or any error here: leave nothing running behind
            _kill_session(proc.pid)
            raise
        _kill_session(proc.pid)  # stragglers of a finished command (none, normally)
        wall = time.perf_counter() - start
        server_cpu = time.process_time() - time.thread_time() - server0
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": wall,
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "maxrss_mb": usage.ru_maxrss / 1024,
        "tree_rss_peak_mb": tree_peak / 1024,
        "main_hwm_mb": main_hwm / 1024,
        "cpu_s": sum(cpu.values()),
        "top_cpu_s": cpu.get(proc.pid, 0.0),
        "server_cpu_s": server_cpu,
    }


# --- the two tools -------------------------------------------------------------------------------


def oi_pipe_ok(out: Path) -> tuple[int, dict]:
    from openimages_pipe.download import manifest

    frame = manifest.load_all(out)
    reasons = dict(frame.group_by("reason").len().iter_rows()) if frame.height else {}
    return int((frame["status"] == "ok").sum()) if frame.height else 0, reasons


def run_oi_pipe(csv: Path, n: int, work: Path, label: str, timeout: float, **kw) -> Run:
    out = work / f"oi-{label}"
    shutil.rmtree(out, ignore_errors=True)
    limit = ["--limit", str(kw["limit"])] if kw.get("limit") else []
    cmd = [str(OI_PIPE), "download", str(csv), "--out", str(out), *OI_FLAGS, *limit]
    log = work.parent / "logs" / f"oi-{label}.log"
    run = Run("oi-pipe", label, n, load_at_start=os.getloadavg()[0], log=str(log))
    for key, value in run_command(cmd, Path(run.log), timeout).items():
        setattr(run, key, value)
    run.ok, run.extra["reasons"] = oi_pipe_ok(out) if out.exists() else (0, {})
    shutil.rmtree(out, ignore_errors=True)
    return run


def run_img2dataset(
    python: Path, urls: Path, n: int, threads: int, work: Path, label: str, timeout: float
) -> Run:
    out = work / f"i2d-{label}"
    shutil.rmtree(out, ignore_errors=True)
    kwargs = {
        "url_list": str(urls), "input_format": "csv", "url_col": "url",
        "output_folder": str(out), "output_format": "parquet",
        "image_size": IMAGE_SIZE, "resize_mode": "keep_ratio", "resize_only_if_bigger": False,
        "encode_format": "jpg", "encode_quality": QUALITY, "disable_all_reencoding": False,
        "processes_count": WORKERS, "thread_count": threads,
        "number_sample_per_shard": I2D_SHARD, "distributor": "multiprocessing",
        "timeout": I2D_TIMEOUT, "retries": 0, "extract_exif": False, "compute_hash": "md5",
        "enable_wandb": False,  # (incremental_mode "overwrite" deletes its own _tmp: a fresh dir)
    }  # fmt: skip
    cmd = [str(python), "-c", I2D_RUNNER, json.dumps(kwargs)]
    run = Run("img2dataset", label, n, load_at_start=os.getloadavg()[0], threads=threads)
    run.log = str(work.parent / "logs" / f"i2d-t{threads}-{label}.log")
    for key, value in run_command(cmd, Path(run.log), timeout).items():
        setattr(run, key, value)
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")] if out.exists() else []
    run.ok = sum(s.get("successes", 0) for s in stats)
    errors: dict[str, int] = {}
    for s in stats:
        for message, count in (s.get("status_dict") or {}).items():
            errors[message] = errors.get(message, 0) + count
    run.extra["status"] = errors
    shutil.rmtree(out, ignore_errors=True)
    return run


# --- the ceiling ---------------------------------------------------------------------------------


def ceiling(files: list[Path], repeat: int) -> dict:
    """oi-pipe's resize_image on every corpus file in this process: images per CPU-second and per
    wall-second of one core (reading the file is outside the clocks)."""
    from openimages_pipe.download.records import Reason
    from openimages_pipe.download.resize import ResizeConfig, resize_image

    cfg = ResizeConfig(image_size=IMAGE_SIZE, quality=QUALITY)
    passes = []
    for _ in range(repeat):
        cpu = wall = 0.0
        for i, path in enumerate(files):
            body = path.read_bytes()
            w0, c0 = time.perf_counter(), time.process_time()
            result = resize_image(f"{i:016x}", body, None, cfg)
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            assert result.reason is Reason.OK, (path, result.reason)
        passes.append({"cpu_s": cpu, "wall_s": wall})
    best_cpu = min(p["cpu_s"] for p in passes)
    best_wall = min(p["wall_s"] for p in passes)
    return {
        "passes": passes,
        "ms_cpu_per_image": best_cpu / len(files) * 1000,
        "per_core_cpu": len(files) / best_cpu,
        "per_core_wall": len(files) / best_wall,
        "ceiling_cpu": WORKERS * len(files) / best_cpu,
        "ceiling_wall": WORKERS * len(files) / best_wall,
    }


I2D_RESIZE = """
import io, json, sys, time
from img2dataset.resizer import Resizer
size, quality, listing = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
resizer = Resizer(image_size=size, resize_mode="keep_ratio", resize_only_if_bigger=False,
                  encode_quality=quality, encode_format="jpg")
cpu = 0.0
files = open(listing).read().split()
for path in files:
    body = open(path, "rb").read()
    c0 = time.process_time()
    err = resizer(io.BytesIO(body))[-1]
    cpu += time.process_time() - c0
    assert err is None, (path, err)
print(json.dumps({"images": len(files), "cpu_s": cpu}))
"""


def img2dataset_resize_cost(python: Path, files: list[Path], listing: Path) -> float:
    """img2dataset's own Resizer (cv2 full decode, INTER_AREA, encode) in one process: CPU ms
    per image, on `files` -- the same work as `ceiling` for oi-pipe, for the breakdown."""
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(map(str, files)) + "\n")
    done = subprocess.run(
        [str(python), "-c", I2D_RESIZE, str(IMAGE_SIZE), str(QUALITY), str(listing)],
        capture_output=True, text=True, timeout=900, env=tool_env(), check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return 1000 * result["cpu_s"] / result["images"]


# --- reporting -----------------------------------------------------------------------------------


def machine() -> dict:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, timeout=10).stdout.strip()
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": nproc,
        "cpu": model,
        "memory_gib": round(mem_gb, 1),
        "kernel": platform.release(),
    }


def versions(i2d_python: Path) -> dict:
    import PIL
    from PIL import features

    import openimages_pipe

    code = (
        "import importlib.metadata as m;"
        "print(m.version('img2dataset'), m.version('opencv-python-headless'))"
    )
    out = subprocess.run(
        [str(i2d_python), "-c", code], capture_output=True, text=True, timeout=120
    ).stdout.split()
    return {
        "python": platform.python_version(),
        "oi-pipe": openimages_pipe.__version__,
        "pillow": PIL.__version__,
        "libjpeg-turbo": features.version("libjpeg_turbo"),
        "img2dataset": out[0] if out else "?",
        "opencv": out[1] if len(out) > 1 else "?",
    }


def best_median(runs: list[Run]) -> tuple[float, float]:
    rates = [r.rate for r in runs]
    return (max(rates), statistics.median(rates)) if rates else (0.0, 0.0)


def median_of(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs) if runs else 0.0


def print_runs(runs: list[Run], header: bool = True) -> None:
    if header:
        print(
            f"\n{'run':<34} {'ok':>5} {'wall s':>7} {'img/s':>6} {'CPU ms/img':>10}"
            f" {'server':>6} {'RSS MB':>7} {'load':>5}  notes"
        )
    for r in runs:
        name = r.tool + (f" t={r.threads}" if r.threads else "") + f" [{r.label}]"
        notes = []
        if r.ok != r.images:
            notes.append(f"{r.images - r.ok} NOT OK: {r.extra}")
        if r.timed_out:
            notes.append("TIMED OUT")
        if r.returncode:
            notes.append(f"exit {r.returncode}, see {r.log}")
        if r.tool == "oi-pipe" or r.tool.startswith("oi-pipe "):
            notes.append(f"event-loop process {1000 * r.top_cpu_s / max(r.ok, 1):.1f} ms/img")
        print(
            f"{name:<34} {r.ok:>5} {r.wall_s:>7.1f} {r.rate:>6.1f} {r.cpu_ms:>10.1f}"
            f" {r.server_ms:>6.1f} {r.tree_rss_peak_mb:>7.0f} {r.load_at_start:>5.1f}  "
            + "; ".join(notes),
            flush=True,
        )


# --- the benchmark -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="corpus size (>= 2000)")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each tool")
    parser.add_argument(
        "--threads", default="16,32,64",
        help="img2dataset thread_counts: all tried in round 1, the best one in later rounds",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=200, help="images in the warm-up runs")
    parser.add_argument("--big-rows", type=int, default=9_000_000, help="rows of the RSS CSV")
    parser.add_argument("--port", type=int, default=18642)
    parser.add_argument("--run-timeout", type=float, default=600.0, help="seconds per command")
    parser.add_argument(
        "--resize-stride", type=int, default=4,
        help="img2dataset's resize path is timed on every k-th corpus image",
    )  # fmt: skip
    parser.add_argument(
        "--latency", type=float, default=0.0,
        help="seconds the server waits before every response's first byte (0: none)",
    )  # fmt: skip
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--prepare-only", action="store_true", help="make the data, then stop")
    parser.add_argument("--data", type=Path, default=dc.DATA)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    started = time.perf_counter()
    load_start = os.getloadavg()
    info = {"date": dt.date.today().isoformat(), "machine": machine(), "load_start": load_start}
    print(f"{info['date']}  {info['machine']}")
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")

    data = args.data
    data.mkdir(parents=True, exist_ok=True)
    i2d_python, _ = dc.ensure_img2dataset_venv(data / "venv-img2dataset")
    info["versions"] = versions(i2d_python)
    print("versions:", info["versions"], flush=True)
    sources = dc.ensure_sources(data, i2d_python)
    corpus = dc.ensure_corpus(data, args.images, sources)
    info["corpus"] = corpus.stats()
    c = info["corpus"]
    print(
        f"corpus: {c['images']} JPEGs, {c['mean_megapixels']} MP and {c['mean_bytes'] / 1e6:.2f} MB"
        f" on average ({c['bytes_per_pixel']} B/px), {c['total_mb']:.0f} MB in all",
        flush=True,
    )
    base_url = f"http://127.0.0.1:{args.port}"
    dc.write_world_json(corpus.world, base_url)
    csv_dir = data / "csv"
    n, warm_n = args.images, min(args.warmup, args.images)
    images_csv = dc.write_images_csv(corpus, base_url, n, csv_dir / f"images-{n}.csv")
    warm_csv = dc.write_images_csv(corpus, base_url, warm_n, csv_dir / f"images-warm-{warm_n}.csv")
    urls_csv = dc.write_url_list(corpus, base_url, n, csv_dir / f"urls-{n}.csv")
    warm_urls = dc.write_url_list(corpus, base_url, warm_n, csv_dir / f"urls-warm-{warm_n}.csv")
    one_csv = dc.write_images_csv(corpus, base_url, 1, csv_dir / "images-1.csv")
    one_urls = dc.write_url_list(corpus, base_url, 1, csv_dir / "urls-1.csv")
    big_csv = None
    if not args.skip_rss:
        if dc.disk_free_gb(data) < 6:
            print("less than 6 GB free: skipping the long-CSV RSS check")
        else:
            big_csv = dc.ensure_big_csv(corpus, base_url, args.big_rows, csv_dir)
    if args.prepare_only:
        return 0

    shutil.rmtree(data / "logs", ignore_errors=True)
    print("\nceiling: resize_image over the corpus, one process ...", flush=True)
    dc.read_all(corpus.files)  # and, for the runs, into the page cache
    if big_csv is not None:
        dc.read_all([big_csv])
    ceil = ceiling(corpus.files, args.repeat)
    info["ceiling"] = ceil
    print(
        f"  {ceil['ms_cpu_per_image']:.1f} ms CPU per image: {ceil['per_core_cpu']:.1f} img/s per"
        f" core (CPU time), {ceil['per_core_wall']:.1f} (wall); x{WORKERS}:"
        f" {ceil['ceiling_cpu']:.1f} / {ceil['ceiling_wall']:.1f} img/s",
        flush=True,
    )

    subset = corpus.files[:: args.resize_stride]
    i2d_resize_ms = img2dataset_resize_cost(i2d_python, subset, data / "logs" / "resize-files.txt")
    info["img2dataset_resize_ms"] = i2d_resize_ms
    print(
        f"  img2dataset's Resizer: {i2d_resize_ms:.1f} ms CPU per image"
        f" (every {args.resize_stride}th image)",
        flush=True,
    )

    from openimages_pipe.world.server import ServeConfig, WorldServer

    work = data / "runs"
    shutil.rmtree(work, ignore_errors=True)
    runs: list[Run] = []
    rss: list[Run] = []
    fixed: list[Run] = []
    t = args.run_timeout
    # every image's every request waits --latency before its first byte (the world's
    # slow_first_byte fault on all images, for longer than any run lasts)
    faults = f"slow_first_byte=1,slow={args.latency},transient=1000000" if args.latency else "none"
    info["latency_s"] = args.latency
    with WorldServer(ServeConfig(world=corpus.world, port=args.port, faults=faults)) as server:
        assert server.base_url == base_url, (server.base_url, base_url)
        print(f"\nserving {n} images at {base_url}; warming up both tools ...", flush=True)
        warm = [run_oi_pipe(warm_csv, warm_n, work, "warm-up", t)]
        print_runs(warm[-1:])
        warm.append(run_img2dataset(i2d_python, warm_urls, warm_n, threads[-1], work, "warm-up", t))
        print_runs(warm[-1:], header=False)
        for _ in range(2):  # what a run costs besides its images: start-up, set-up, shut-down
            fixed.append(run_oi_pipe(one_csv, 1, work, "1 image", t))
            print_runs(fixed[-1:], header=False)
            fixed.append(run_img2dataset(i2d_python, one_urls, 1, threads[-1], work, "1 image", t))
            print_runs(fixed[-1:], header=False)
        for r in range(args.repeat):
            if r == 0:
                contenders = [("oi-pipe", None)] + [("img2dataset", tc) for tc in threads]
            else:  # the best thread_count so far, and oi-pipe first and last in turn
                best = max(threads, key=lambda tc: max(x.rate for x in runs if x.threads == tc))
                contenders = [("img2dataset", best), ("oi-pipe", None)][:: 1 if r % 2 else -1]
            for tool, tc in contenders:
                label = f"round {r + 1}"
                if tool == "oi-pipe":
                    run = run_oi_pipe(images_csv, n, work, label, t)
                else:
                    run = run_img2dataset(i2d_python, urls_csv, n, tc, work, label, t)
                runs.append(run)
                print_runs([run], header=False)
        if big_csv is not None:
            print(f"\npeak RSS: oi-pipe download --limit {n} on {args.big_rows:,} rows vs {n}")
            for csv, label in ((images_csv, f"{n} rows"), (big_csv, f"{args.big_rows:,} rows")):
                run = run_oi_pipe(csv, n, work, label, t, limit=n)
                run.tool = "oi-pipe --limit"
                rss.append(run)
                print_runs([run], header=False)
        info["server_requests"] = sum(server.state.requests.values())
    shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    info["load_end"] = load_end

    # --- the table ---
    oi = [r for r in runs if r.tool == "oi-pipe"]
    by_threads = {tc: [r for r in runs if r.threads == tc] for tc in threads}
    best_tc = max(threads, key=lambda tc: best_median(by_threads[tc])[0])
    i2d = by_threads[best_tc]
    oi_best, oi_med = best_median(oi)
    i2d_best, i2d_med = best_median(i2d)
    print_runs(warm + fixed + runs + rss)
    print(f"\nload average at end: {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print(
        f"total time {time.perf_counter() - started:.0f} s;"
        f" the server answered {info['server_requests']} requests\n"
    )
    oi_cpu, i2d_cpu = median_of(oi, "cpu_ms"), median_of(i2d, "cpu_ms")
    oi_srv, i2d_srv = median_of(oi, "server_ms"), median_of(i2d, "server_ms")
    ver = info["versions"]["img2dataset"]
    oi_fixed = statistics.median(r.wall_s for r in fixed if r.tool == "oi-pipe")
    i2d_fixed = statistics.median(r.wall_s for r in fixed if r.tool == "img2dataset")
    oi_steady = n / (statistics.median(r.wall_s for r in oi) - oi_fixed)
    i2d_steady = n / (statistics.median(r.wall_s for r in i2d) - i2d_fixed)
    rows = [
        (f"oi-pipe img/s (best / median of {len(oi)})", f"{oi_best:.1f} / {oi_med:.1f}"),
        (
            f"img2dataset {ver} img/s, thread_count={best_tc} (best / median of {len(i2d)})",
            f"{i2d_best:.1f} / {i2d_med:.1f}",
        ),
    ]
    for tc in threads:
        b, m = best_median(by_threads[tc])
        rows.append(
            (f"  img2dataset thread_count={tc} (best / median of {len(by_threads[tc])})",
             f"{b:.1f} / {m:.1f}")
        )  # fmt: skip
    rows += [
        (
            "ratio oi-pipe / img2dataset (best / median)",
            f"{oi_best / i2d_best:.2f}x / {oi_med / i2d_med:.2f}x" if i2d_best else "n/a",
        ),
        (
            f"ceiling: resize_image x {WORKERS} cores, img/s (CPU time / wall)",
            f"{ceil['ceiling_cpu']:.1f} / {ceil['ceiling_wall']:.1f}"
            f" ({ceil['ms_cpu_per_image']:.1f} ms CPU per image)",
        ),
        (
            "oi-pipe best, % of ceiling (CPU time / wall)",
            f"{100 * oi_best / ceil['ceiling_cpu']:.0f} % / "
            f"{100 * oi_best / ceil['ceiling_wall']:.0f} %",
        ),
        (
            "CPU ms per image, whole tool (oi-pipe / img2dataset, median)",
            f"{oi_cpu:.1f} / {i2d_cpu:.1f}: ratio {i2d_cpu / oi_cpu:.2f}x" if oi_cpu else "n/a",
        ),
        (
            "  decode+resize+encode alone, CPU ms per image (oi-pipe / img2dataset)",
            f"{ceil['ms_cpu_per_image']:.1f} / {i2d_resize_ms:.1f}:"
            f" ratio {i2d_resize_ms / ceil['ms_cpu_per_image']:.2f}x",
        ),
        (
            "  the rest (HTTP, hashing, IPC, writing), CPU ms per image",
            f"{oi_cpu - ceil['ms_cpu_per_image']:.1f} / {i2d_cpu - i2d_resize_ms:.1f}",
        ),
        (
            "  of which in oi-pipe's event-loop process (median)",
            f"{median_of(oi, 'top_cpu_s') * 1000 / n:.1f}",
        ),
        ("  server CPU ms per image (oi-pipe / img2dataset runs)", f"{oi_srv:.1f} / {i2d_srv:.1f}"),
        (
            "wall s of a 1-image run: fixed cost (oi-pipe / img2dataset, median)",
            f"{oi_fixed:.1f} / {i2d_fixed:.1f}",
        ),
        (
            "  img/s with that subtracted (oi-pipe / img2dataset, median): ratio",
            f"{oi_steady:.1f} / {i2d_steady:.1f}: {oi_steady / i2d_steady:.2f}x",
        ),
        (
            f"  CPU-bound img/s on {WORKERS} idle cores: {WORKERS} s / (tool + server CPU)",
            f"{WORKERS * 1000 / (oi_cpu + oi_srv):.1f} / {WORKERS * 1000 / (i2d_cpu + i2d_srv):.1f}"
            if oi_cpu and i2d_cpu
            else "n/a",
        ),
    ]
    if len(rss) == 2:
        small, big = rss
        rows += [
            (
                f"peak RSS, --limit {n}: {args.big_rows:,}-row vs {n}-row CSV (VmHWM; ru_maxrss)",
                f"{big.main_hwm_mb:.0f} MB vs {small.main_hwm_mb:.0f} MB;"
                f" {big.maxrss_mb:.0f} MB vs {small.maxrss_mb:.0f} MB",
            ),
            (
                "  whole process tree, sampled sum",
                f"{big.tree_rss_peak_mb:.0f} MB vs {small.tree_rss_peak_mb:.0f} MB",
            ),
            ("  wall time of those runs", f"{big.wall_s:.1f} s vs {small.wall_s:.1f} s"),
        ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k:<{width}} | {v} |")
    every = warm + fixed + runs + rss
    failed = [r for r in every if r.ok != r.images or r.returncode or r.timed_out]
    results = {
        **info,
        "args": vars(args) | {"data": str(args.data)},
        "runs": [asdict(r) | {"rate": r.rate} for r in every],
        "table": dict(rows),
    }
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = data / f"results-{stamp}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nall figures: {path}; logs: {data / 'logs'}")
    if failed:
        print(f"WARNING: {len(failed)} runs did not end with every image ok (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
