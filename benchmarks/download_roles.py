"""Where one `oi-pipe download` spends its CPU, process by process (issue 15).

The download of `download_vs_img2dataset.py` (its corpus of 2,000 photo-like JPEGs, 1.2 MB on
average, its flags: 2 decode workers, keep-ratio 256, q95, MD5 strict), optionally with --latency
seconds before every response's first byte, run --repeat times. Every process of the command's
tree is sampled from /proc every 0.1 s: its CPU (utime + stime, its last sample) and its depth
below the command. The tree, with the default `--processes auto`:

    depth 0  the coordinating process (plan, records, shards, manifest)
    depth 1  the fetch processes' forkserver and multiprocessing's resource tracker
    depth 2  the fetch processes (event loop, aiohttp, spooling bodies)
    depth 3  each fetch process's decode pool forkserver
    depth 4  the decode workers (MD5, decode, resize, encode)

With `--processes 1` the event loop runs in the coordinating process and the workers sit higher.
The world server runs in this process; its CPU (and the sampling's) is shown apart.

    .venv/bin/python benchmarks/download_roles.py --latency 0.2 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import download_corpus as dc  # noqa: E402
import download_vs_img2dataset as bench  # noqa: E402


def _depths(top: int) -> dict[int, int]:
    depth, todo = {top: 0}, [top]
    while todo:
        p = todo.pop()
        for child in bench._children(p):
            depth[child] = depth[p] + 1
            todo.append(child)
    return depth


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def sampled_run(cmd: list[str], timeout: float) -> tuple[float, int, dict[int, tuple]]:
    """Wall s, exit code, and pid -> (depth, CPU s, command line) for every process seen."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=bench.tool_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    seen: dict[int, tuple] = {}
    try:
        while proc.poll() is None:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{cmd[1]} ran past {timeout} s")
            for pid, depth in _depths(proc.pid).items():
                cpu = bench._cpu_s(pid)
                if cpu is not None:
                    line = seen[pid][2] if pid in seen else _cmdline(pid)
                    seen[pid] = (depth, cpu, line)
            time.sleep(0.1)
    finally:
        bench._kill_session(proc.pid)
        proc.wait()
    return time.perf_counter() - start, proc.returncode, seen


def report(n: int, wall: float, server_s: float, seen: dict[int, tuple]) -> None:
    print(f"  wall {wall:.1f} s, {n / wall:.1f} img/s; server + sampling {server_s / n * 1e3:.2f}"
          " ms/img")  # fmt: skip
    total = 0.0
    for depth in sorted({d for d, _, _ in seen.values()}):
        rows = [(cpu, line) for d, cpu, line in seen.values() if d == depth]
        cpu = sum(c for c, _ in rows)
        total += cpu
        tracker = sum(1 for _, line in rows if "resource_tracker" in line)
        note = f" (resource tracker among them: {tracker})" if tracker else ""
        print(f"  depth {depth}: {len(rows)} processes, {cpu / n * 1e3:6.2f} ms/img{note}")
    print(f"  tree: {total / n * 1e3:.2f} ms/img")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--port", type=int, default=18642)
    parser.add_argument("--data", type=Path, default=dc.DATA)
    parser.add_argument("extra", nargs="*", help="more `oi-pipe download` flags (after --)")
    args = parser.parse_args()
    from openimages_pipe.world.server import ServeConfig, WorldServer

    i2d_python, _ = dc.ensure_img2dataset_venv(args.data / "venv-img2dataset")
    corpus = dc.ensure_corpus(args.data, 2000, dc.ensure_sources(args.data, i2d_python))
    base_url = f"http://127.0.0.1:{args.port}"
    dc.write_world_json(corpus.world, base_url)
    csv = dc.write_images_csv(corpus, base_url, 2000, args.data / "csv" / "images-2000.csv")
    dc.read_all(corpus.files)
    out = args.data / "runs" / "roles"
    lat = args.latency
    faults = f"slow_first_byte=1,slow={lat},transient=1000000" if lat else "none"
    print(f"load average {os.getloadavg()[0]:.2f}; latency {lat} s; extra flags {args.extra}")
    with WorldServer(ServeConfig(world=corpus.world, port=args.port, faults=faults)):
        for r in range(args.repeat):
            shutil.rmtree(out, ignore_errors=True)
            cmd = [str(bench.OI_PIPE), "download", str(csv), "--out", str(out), *bench.OI_FLAGS,
                   *args.extra]  # fmt: skip
            server0 = time.process_time()
            wall, code, seen = sampled_run(cmd, timeout=600)
            ok, _ = bench.oi_pipe_ok(out)
            print(f"run {r + 1}: exit {code}, {ok} ok")
            report(max(ok, 1), wall, time.process_time() - server0, seen)
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
