"""`oi-pipe download --processes N`: what the coordinating process costs per image, and how
images/s grows with the fetch processes (issue 15, "One command, all cores").

A world of `--images` routes that all serve one 1.2 MB JPEG (a noise photo, so that it is the size
of an Open Images original) from the world server on 127.0.0.1, in this process. Two models:

- scale: the decode workers return a fixed small JPEG at once (as in download_architecture.py),
  so the fetch loops and the coordinating process are all there is; images/s by --processes.
  With `--body-kb 30` the served file is small enough that neither the server nor copying bodies
  takes the cores the loops need: images/s then shows the loops' own scaling on a small machine.
- real: the real workers (MD5, decode, resize to 256) with the default settings and with
  `--processes 1`, the design before fetch processes (`--real-processes`).
- pinned (`--pin 1,4,8,16`): real runs pinned to the first N cores with the default settings
  (so N fetch processes and N decode workers), the server moved to the cores left over; images/s
  against N x the 1-core run is the scaling of issue 15 (goal >= 85 % of linear at 16).

Each run is `oi-pipe download` in a child process, timed by the wall clock, the CPU of its whole
process tree and of its top (coordinating) process sampled from /proc as in
download_vs_img2dataset.py. The fixed cost of a run (start-up, set-up, shut-down) is measured with
a 1-image run of each kind and subtracted for the per-image figures "once running".

    .venv/bin/python benchmarks/download_processes.py --images 2000 --processes 1,2,4
    .venv/bin/python benchmarks/download_processes.py --images 10000 --processes 1,2,3,4 \
        --body-kb 30 --no-real
    python3 benchmarks/download_processes.py --images 8000 --processes 1,16 --real-processes auto \
        --pin 1,4,8,16      # a 16-core machine: benchmarks/device_check.sh
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # this checkout's oi-pipe, not the venv's
import download_vs_img2dataset as bench  # noqa: E402

DATA = Path(__file__).parent / ".data" / "processes"
FLAGS = ["--allow-private-addresses", "--quiet", "--sources", "original", "--per-host", "64"]


def child(argv: list[str]) -> None:
    """The CLI, with the decode workers replaced by instant ones if asked (`instant`), pinned to
    the first N cores if asked (`real@N`: then `auto` resolves to N fetch processes and N decode
    workers, and everything the command starts inherits the pinning)."""
    from openimages_pipe import cli
    from openimages_pipe.download import pipeline

    kind, _, cores = argv[0].partition("@")
    if cores:
        os.sched_setaffinity(0, range(int(cores)))
    if kind == "instant":
        from download_architecture import instant

        pipeline.check_and_resize = instant  # read at run time, and handed to every process
    sys.argv = ["oi-pipe", *argv[1:]]
    cli.main()


def make_world(root: Path, images: int, port: int, body_kb: int = 1200) -> tuple[Path, Path]:
    """routes.csv with `images` routes on one served file of about `body_kb` KB, world.json, and
    the images CSV."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    served = root / "served" / "photo.jpg"
    served.parent.mkdir(parents=True, exist_ok=True)
    side = max(16, round(1500 * (body_kb / 1200) ** 0.5))  # q92 noise: ~0.73 bytes per pixel
    buf = io.BytesIO()
    Image.effect_noise((side, side * 11 // 15), 40).convert("RGB").save(buf, "JPEG", quality=92)
    served.write_bytes(buf.getvalue())
    data = served.read_bytes()
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    base = f"http://127.0.0.1:{port}"
    (root / "world.json").write_text(f'{{"seed": 0, "base_url": "{base}", "layout": "v1"}}')
    csv_path = root / f"images-{images}.csv"
    with (root / "served" / "routes.csv").open("w", newline="") as r, csv_path.open("w") as c:
        routes, rows = csv.writer(r), csv.writer(c)
        routes.writerow(["path", "image_id", "kind", "file", "content_type"])
        rows.writerow(["ImageID", "Subset", "OriginalURL", "OriginalSize", "OriginalMD5"])
        for n in range(images):
            image_id = f"{n * 2654435761 % 2**64:016x}"
            path = f"/farm1.staticflickr.com/1/{image_id}_o.jpg"
            routes.writerow([path, image_id, "original", "photo.jpg", "image/jpeg"])
            rows.writerow([image_id, "train", base + path, len(data), md5])
    return root, csv_path


def one_run(kind: str, csv_path: Path, work: Path, label: str, extra: list[str]) -> bench.Run:
    out = work / label
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", kind, "download", str(csv_path), "--out", str(out),
           *FLAGS, *extra]  # fmt: skip
    run = bench.Run("oi-pipe", label, 0)
    for key, value in bench.run_command(cmd, work / f"{label}.log", timeout=900).items():
        setattr(run, key, value)
    run.ok, _ = bench.oi_pipe_ok(out)
    shutil.rmtree(out, ignore_errors=True)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--port", type=int, default=18643)
    parser.add_argument(
        "--body-kb", type=int, default=1200,
        help="size of the served JPEG (1200: an Open Images original; small: the loops' own cost)",
    )  # fmt: skip
    parser.add_argument("--real", action=argparse.BooleanOptionalAction, default=True,
                        help="also the runs with real decode workers")  # fmt: skip
    parser.add_argument(
        "--real-processes",
        default="auto,1",
        help="the real runs' --processes values (auto: the default settings)",
    )
    parser.add_argument(
        "--pin", default="",
        help="core counts, e.g. 1,4,8,16: real runs pinned to the first N cores with the default "
        "settings (N fetch processes, N decode workers), and images/s against N x the 1-core run",
    )  # fmt: skip
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    from openimages_pipe.world.server import ServeConfig, WorldServer

    root, big = make_world(DATA / "world", args.images, args.port, args.body_kb)
    _, small = make_world(DATA / "world", 1, args.port, args.body_kb)
    make_world(DATA / "world", args.images, args.port, args.body_kb)  # the big run's routes.csv
    print(f"served: {(root / 'served' / 'photo.jpg').stat().st_size / 1e3:.0f} KB per image")
    work = DATA / "runs"
    work.mkdir(parents=True, exist_ok=True)
    plan = [("instant", f"scale, --processes {p}", ["--processes", p])
            for p in args.processes.split(",")]  # fmt: skip
    if args.real:
        plan += [("real", "real, default (auto)", []) if p == "auto" else
                 ("real", f"real, --processes {p}", ["--processes", p])
                 for p in args.real_processes.split(",")]  # fmt: skip
    pinned = [int(n) for n in args.pin.split(",") if n]
    plan += [(f"real@{n}", f"real, pinned to {n} cores", []) for n in pinned]
    rates: dict[str, float] = {}
    print(f"{'run':28} {'ok':>5} {'wall s':>7} {'img/s':>7} {'running':>8} {'tree ms':>8}"
          f" {'top ms':>7} {'top ms running':>14}")  # fmt: skip
    with WorldServer(ServeConfig(world=root, port=args.port)):
        everywhere = os.sched_getaffinity(0)
        for kind, label, extra in plan:
            _, _, cores = kind.partition("@")
            # the server (a thread of this process) on the cores the pinned command leaves free
            os.sched_setaffinity(0, everywhere - set(range(int(cores or 0))) or everywhere)
            fixed = one_run(kind, small, work, label.replace(" ", "_") + "-1", extra)
            run = one_run(kind, big, work, label.replace(" ", "_"), extra)
            os.sched_setaffinity(0, everywhere)
            n = max(run.ok, 1)
            running = n / max(run.wall_s - fixed.wall_s, 1e-9)
            top_running = 1000 * (run.top_cpu_s - fixed.top_cpu_s) / n
            print(f"{label:28} {run.ok:5d} {run.wall_s:7.1f} {n / run.wall_s:7.1f} {running:8.1f}"
                  f" {1000 * run.cpu_s / n:8.2f} {1000 * run.top_cpu_s / n:7.2f}"
                  f" {top_running:14.2f}", flush=True)  # fmt: skip
            rates[kind] = running
    if pinned:
        one = rates.get("real@1")
        print("\npinned, once running: images/s, and against N x the 1-core run (linear = 100 %)")
        for n in pinned:
            share = f"{rates[f'real@{n}'] / (n * one):6.1%}" if one else "(no 1-core run)"
            print(f"  {n:3d} cores  {rates[f'real@{n}']:8.1f}  {share}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
