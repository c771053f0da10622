"""Thumbnail first for small outputs: `oi-pipe download --image-size 256` with the default
`--sources original,thumbnail,mirror` against `--sources thumbnail,original,mirror`.

Both orders download the same world, served on 127.0.0.1, in the same run, alternating (ABBA:
default first in odd rounds, thumbnail-first first in even ones), --repeat times each, in one
scenario per --faults spec: `none` (throughput, bytes and CPU with nothing in the way) and
Flickr's link rot (what each order loses when links are dead or flaky). Before them each order
runs twice on 1 image (a warm-up, and the fixed cost of a run: start-up, set-up, shut-down, which
the table also subtracts for the rate once running). Per run:

- bytes fetched: the server's own counters (body bytes it sent, and requests, per route kind:
  original, thumbnail, mirror, placeholder), and the manifest's `bytes` of the images kept;
- images/s: images that ended ok / the wall time of the whole command (start-up included);
- CPU seconds per ok image of the whole command, children included: each command runs under a
  small wrapper (this script, `--measure`) that makes itself a child subreaper
  (PR_SET_CHILD_SUBREAPER), so the forkserver and the workers it forks are reparented to it and
  reaped by it even when they outlive oi-pipe's main process; its RUSAGE_CHILDREN is then the CPU
  of every process the command started. The server's CPU (its wait4 rusage, less the CPU of an
  idle start and stop) is given separately;
- what thumbnail-first loses: the manifest's rows by source and `verified` (a thumbnail cannot be
  checked: the CSV's OriginalSize and OriginalMD5 are the original's), images ok in one order and
  not in the other, images stored from another source than in the default run, and stored images
  whose shorter side is under --image-size (the fetched copy was too small: no upscaling);
- quality at 256 px: PSNR of each thumbnail-derived stored image against the original-derived one
  of the default run (`resize_quality.psnr`), and, on a sample of plain-RGB images, both against a
  reference (full decode of the original, Lanczos to the same size, no encode), also for a
  thumbnail re-derived at JPEG quality 80 (what a lower `_z` quality would give).

The world: `oi-pipe world make --images N` (V1 layout: its CSVs with dirty text, thumbnails
missing for 2 % of rows, mirror copies for all validation and 19 % of train images, seeded
Flickr-like faults), whose procedural originals (~55 KB: flat shapes, 0.4-2 MP) are then replaced
by photo-like JPEGs, as in `download_corpus.py`: crops of 3 real photographs shipped with the
venv's packages (scikit-learn's china and flower, matplotlib's grace_hopper), rescaled to a camera
size from 640x480 to 4000x3000 (`download_corpus.SIZE_MIX`: 3.6 MP on average, 30 % portrait),
with sensor grain, quality 85-95. Each image's `_z` thumbnail (640 px long side) and mirror
copy (1024 px, q85) are made from the new original as the world makes them (draft decode,
Lanczos), the thumbnail at --thumb-quality, 95 by default: at q80 this content gives ~58 KB,
1/20 of the original, since the upscaled photos have little detail at 640 px, and q95 restores
the ~1/10 of the real Thumbnail300KURL. What the default world (600 images) gives: originals of
1.21 MB and 3.66 MP on average (Flickr's: ~1.2 MB), 588 thumbnails of 119 KB (1/10.2), 259
mirror copies of 146 KB. Greyscale, CMYK and EXIF originals keep their kind; the world's PNG
originals (3 %) are left as drawn. OriginalSize and OriginalMD5 in the CSVs are rewritten. The
world is made once under benchmarks/.data/ (git-ignored) and reused (~0.25 s of CPU per image to
make: 1.5 min for 600 on 2 cores). Not modelled: Flickr's sharpening of its downsized copies.

The faulty scenario is `flickr,slow=1,stall=1,huge_mb=4`: the world server's Flickr preset
(~8 % dead, a few % transient), with stalls and slow first bytes of 1 s and a `huge` body of
4 MB, so that no run waits long or reads 512 MB. A fate applies to an image's original and
thumbnail alike (a deleted photo is gone in every size), so in this world the two orders end
with the same images ok and the thumbnail-first run differs only in which copy it keeps; what a
real thumbnail lacks beyond that (stale or cropped thumbnails, panoramas whose `_z` is under
256 px on its shorter side) is not modelled here.

Bounds: every URL is on 127.0.0.1 (the CSVs' URLs are checked, the mirror template is built on
it, proxies are removed from the environment, and the port must be free before the first
server); one server process per download (fresh transient-fault counters for every run),
stopped by its process id (SIGTERM, then SIGKILL); the server answers 404 once a run has made
--max-requests-per-image x N requests; every command has a timeout (--run-timeout, then its
session is killed by its process group id) and no new run starts after --budget-s.

    .venv/bin/python benchmarks/thumbnail_sources.py --prepare-only   # the world, once (1.5 min)
    .venv/bin/python benchmarks/thumbnail_sources.py --repeat 3       # ~3 min on 2 cores
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import ctypes
import datetime as dt
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / ".data"
OI_PIPE = Path(sys.executable).parent / "oi-pipe"
WORLD_VERSION = 1  # bump when the world recipe changes: a cached world of another one is remade
DEFAULT = "original,thumbnail,mirror"
THUMB_FIRST = "thumbnail,original,mirror"
ORDERS = {"default": DEFAULT, "thumbnail-first": THUMB_FIRST}
IMAGE_SIZE = 256
QUALITY = 95
FLAGS = [
    "--image-size", str(IMAGE_SIZE), "--resize-mode", "keep-ratio", "--quality", str(QUALITY),
    "--workers", "2", "--concurrency", "64", "--per-host", "64", "--md5", "strict",
    "--format", "parquet", "--allow-private-addresses", "--quiet",
]  # fmt: skip
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")
PR_SET_CHILD_SUBREAPER = 36
DRAIN_S = 20.0  # how long the wrapper waits for a command's leftover processes before SIGKILL
SERVER_STOP_S = 15.0
SAMPLE_PHOTOS = ("china", "flower", "grace_hopper")


# --- the world -----------------------------------------------------------------------------------


def tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    return env


def ensure_sources(data: Path) -> Path:
    """thumb-sources.npz: the 3 real photographs this venv ships (scikit-learn, matplotlib)."""
    path = data / "thumb-sources.npz"
    if path.is_file():
        return path
    import matplotlib
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = {}
    sample = load_sample_images()
    for name, image in zip(sample.filenames, sample.images, strict=True):
        photos[Path(name).stem] = image
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as img:
        photos["grace_hopper"] = np.asarray(img.convert("RGB"))
    assert sorted(photos) == sorted(SAMPLE_PHOTOS), sorted(photos)
    data.mkdir(parents=True, exist_ok=True)
    partial = data / "thumb-sources.partial.npz"
    np.savez(partial, **photos)
    partial.replace(path)
    return path


def _shrink(img, side: int):
    """`img` with its longest side at most `side` (Lanczos), as the world's copies are made."""
    from PIL import Image

    scale = side / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _jpeg(img, quality: int, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, **kw)
    return out.getvalue()


def copies(upright_body: bytes, gray: bool, thumb_quality: int) -> tuple[bytes, bytes]:
    """The mirror copy and the `_z` thumbnail of an upright JPEG, as `world make` derives them
    (the thumbnail from the mirror-sized picture), after a draft decode at >= the mirror's size."""
    from PIL import Image

    from openimages_pipe.world import render as wr

    with Image.open(io.BytesIO(upright_body)) as img:
        scale = wr.MIRROR_SIDE / max(img.size)
        img.draft("RGB", (round(img.width * scale), round(img.height * scale)))
        pic = img.convert("L" if gray else "RGB")
    mirror = _shrink(pic, wr.MIRROR_SIDE)
    thumb = _shrink(mirror, wr.THUMBNAIL_SIDE)
    return _jpeg(mirror, wr.MIRROR_QUALITY), _jpeg(thumb, thumb_quality)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _photoize(job: dict) -> dict:
    """Replace one world image's original (keeping its kind), thumbnail and mirror by a photo."""
    import download_corpus as dc
    from PIL import Image

    from openimages_pipe.world import render as wr

    body = dc.make_photo(job)  # upright RGB JPEG, job's width x height
    original = Path(job["original"])
    with Image.open(original) as old:
        mode, orientation = old.mode, old.getexif().get(0x0112, 1)
    variant = "plain"
    if mode in ("L", "CMYK") or orientation in wr.EXIF_TO_STORED:
        with Image.open(io.BytesIO(body)) as img:
            upright = img.convert("RGB")
        if mode == "L":
            variant, stored = "gray", _jpeg(upright.convert("L"), job["quality"])
        elif mode == "CMYK":
            variant, stored = "cmyk", _jpeg(upright.convert("CMYK"), job["quality"])
        else:
            exif = Image.Exif()
            exif[0x0112] = orientation
            turned = upright.transpose(wr.EXIF_TO_STORED[orientation])
            variant, stored = "exif", _jpeg(turned, job["quality"], exif=exif)
    else:
        stored = body
    _write(original, stored)
    mirror, thumb = copies(body, variant == "gray", job["thumb_quality"])
    if job["thumbnail"]:
        _write(Path(job["thumbnail"]), thumb)
    if job["mirror"]:
        _write(Path(job["mirror"]), mirror)
    return {
        "image_id": job["image_id"],
        "variant": variant,
        "width": job["width"],
        "height": job["height"],
        "bytes": len(stored),
        "md5_b64": base64.b64encode(hashlib.md5(stored).digest()).decode(),
        "thumb_bytes": len(thumb) if job["thumbnail"] else 0,
        "mirror_bytes": len(mirror) if job["mirror"] else 0,
    }


def read_routes(world: Path) -> dict[str, dict[str, Path]]:
    """image_id -> {kind: served file} from served/routes.csv."""
    served = world / "served"
    out: dict[str, dict[str, Path]] = {}
    with (served / "routes.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["image_id"], {})[row["kind"]] = served / row["file"]
    return out


def images_csvs(world: Path) -> list[Path]:
    from openimages_pipe.world import layout as wl

    return [
        world / "data" / wl.data_file(wl.Layout.V1, "images", s) for s in ("train", "validation")
    ]


def rewrite_csvs(world: Path, made: dict[str, dict]) -> None:
    """OriginalSize and OriginalMD5 of the photo-ized originals; every other cell as it was."""
    for path in images_csvs(world):
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        header = rows[0]
        iid, size, md5 = (header.index(c) for c in ("ImageID", "OriginalSize", "OriginalMD5"))
        for row in rows[1:]:
            if row[iid] in made:
                row[size], row[md5] = str(made[row[iid]]["bytes"]), made[row[iid]]["md5_b64"]
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows(rows)
        tmp.replace(path)


def ensure_world(data: Path, n: int, seed: int, port: int, thumb_quality: int) -> Path:
    """The photo-ized world (see the module docstring): made once per (n, seed, port, quality)."""
    world = data / f"thumb-world-{n}-s{seed}-p{port}-q{thumb_quality}"
    meta_path = world / "photos.json"
    if meta_path.is_file() and json.loads(meta_path.read_text()).get("version") == WORLD_VERSION:
        return world
    import multiprocessing

    import download_corpus as dc

    shutil.rmtree(world, ignore_errors=True)
    world.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"making a {n}-image world in {world} (once) ...", flush=True)
    make = [str(OI_PIPE), "world", "make", str(world), "--images", str(n), "--seed", str(seed),
            "--port", str(port), "--workers", "2"]  # fmt: skip
    subprocess.run(make, check=True, timeout=900, env=tool_env(), stdout=subprocess.DEVNULL)
    sources = ensure_sources(data)
    routes = read_routes(world)
    ids = sorted(i for i, r in routes.items() if "original" in r and r["original"].suffix == ".jpg")
    plans = dc._plan(len(ids), seed)
    jobs = []
    for image_id, plan in zip(ids, plans, strict=True):
        r = routes[image_id]
        jobs.append(
            {**plan, "image_id": image_id, "original": str(r["original"]),
             "thumbnail": str(r.get("thumbnail") or ""), "mirror": str(r.get("mirror") or ""),
             "thumb_quality": thumb_quality}
        )  # fmt: skip
    made: dict[str, dict] = {}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2, initializer=dc._init_worker, initargs=(str(sources),)) as pool:
        for row in pool.imap_unordered(_photoize, jobs, 8):
            made[row["image_id"]] = row
            if len(made) % 200 == 0:
                print(
                    f"  {len(made)}/{len(jobs)} ({time.perf_counter() - start:.0f} s)", flush=True
                )
    rewrite_csvs(world, made)
    with (world / "photos.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(next(iter(made.values()))), lineterminator="\n")
        writer.writeheader()
        writer.writerows(made[i] for i in sorted(made))
    originals = [r["original"].stat().st_size for r in routes.values() if "original" in r]
    thumbs = [r["thumbnail"].stat().st_size for r in routes.values() if "thumbnail" in r]
    mirrors = [r["mirror"].stat().st_size for r in routes.values() if "mirror" in r]
    variants: dict[str, int] = {}
    for row in made.values():
        variants[row["variant"]] = variants.get(row["variant"], 0) + 1
    pixels = [row["width"] * row["height"] for row in made.values()]
    meta = {
        "version": WORLD_VERSION,
        "images": n,
        "seed": seed,
        "port": port,
        "thumb_quality": thumb_quality,
        "photoized": len(made),
        "variants": variants,
        "left_as_drawn": len(routes) - len(made),
        "mean_megapixels": round(statistics.mean(pixels) / 1e6, 2),
        "mean_original_bytes": round(statistics.mean(originals)),
        "mean_thumbnail_bytes": round(statistics.mean(thumbs)),
        "mean_mirror_bytes": round(statistics.mean(mirrors)) if mirrors else 0,
        "originals": len(originals),
        "thumbnails": len(thumbs),
        "mirrors": len(mirrors),
        "seconds_to_make": round(time.perf_counter() - start),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return world


# --- the server: one process per run, counting what it sends ------------------------------------


def serve_child(world: str, port: int, faults: str, counts_path: str, max_requests: int) -> int:
    """`world serve` with a counting middleware; on SIGTERM it writes its counts and stops."""
    import asyncio

    from aiohttp import web

    from openimages_pipe.world.layout import PLACEHOLDER_PATH
    from openimages_pipe.world.server import SHUTDOWN_TIMEOUT_S, ServeConfig, build_app, world_state

    state = world_state(ServeConfig(world=Path(world), port=port, faults=faults))
    counts: dict = {"requests": 0, "over_budget": 0, "by_kind": {}}

    @web.middleware
    async def counting(request: web.Request, handler):
        counts["requests"] += 1
        route = state.routes.get(request.path)
        kind = str(route.kind) if route else "other"
        kind = "placeholder" if request.path == PLACEHOLDER_PATH else kind
        tally = counts["by_kind"].setdefault(kind, {"requests": 0, "bytes": 0})
        tally["requests"] += 1
        if counts["requests"] > max_requests:
            counts["over_budget"] += 1
            return web.Response(status=404)  # permanent: the client stops asking
        resp = await handler(request)  # a redirect or a 404 raises: no body to count
        if isinstance(resp, web.Response) and isinstance(resp.body, bytes | bytearray):
            tally["bytes"] += len(resp.body)
        else:  # a streamed fault (half body, endless body): what went out, headers included
            tally["bytes"] += getattr(getattr(resp, "_payload_writer", None), "buffer_size", 0)
        return resp

    async def main() -> None:
        app = build_app(state)
        app.middlewares.append(counting)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"serving {world} on 127.0.0.1:{port}, faults {faults}", flush=True)
        await stop.wait()
        tmp = Path(counts_path + ".tmp")
        tmp.write_text(json.dumps(counts) + "\n")
        tmp.replace(counts_path)
        await runner.cleanup()

    asyncio.run(main())
    return 0


def rusage_cpu(usage) -> float:
    return usage.ru_utime + usage.ru_stime


class Server:
    """The counting server in its own process (this script, --serve), stopped by its pid."""

    def __init__(self, world: Path, port: int, faults: str, max_requests: int, work: Path):
        self.port = port
        self.counts_path = work / f"counts-{time.monotonic_ns()}.json"
        self.log = work / "server.log"
        self.cmd = [sys.executable, __file__, "--serve", str(world), str(port), faults,
                    str(self.counts_path), str(max_requests)]  # fmt: skip
        self.cpu_s = 0.0
        self.counts: dict = {}

    def __enter__(self) -> Server:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=tool_env(), cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the world server exited ({self.proc.returncode}): {self.log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return self
            if time.monotonic() > deadline:
                self._stop()
                raise RuntimeError(f"the world server did not listen in 30 s: {self.log}")
            time.sleep(0.05)

    def _stop(self) -> None:
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + SERVER_STOP_S
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                break
            time.sleep(0.02)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_s = rusage_cpu(usage)

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self.counts_path.is_file():
            self.counts = json.loads(self.counts_path.read_text())
            self.counts_path.unlink()


# --- one command, measured -----------------------------------------------------------------------


def measure_child(out_json: str, log: str, cmd: list[str]) -> int:
    """Run `cmd` as a child subreaper: every process it starts is reaped here, so this process's
    RUSAGE_CHILDREN is the CPU of the whole command, workers and forkserver included."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, main_usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stragglers = killed = 0
    deadline = time.monotonic() + DRAIN_S
    while True:
        try:
            pid, _, _ = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            stragglers += 1
            continue
        if time.monotonic() > deadline:
            for kid in _children(os.getpid()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(kid, signal.SIGKILL)
                    killed += 1
            deadline = time.monotonic() + DRAIN_S
        time.sleep(0.02)
    total = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "wall_s": wall,
        "drain_s": time.perf_counter() - start - wall,
        "returncode": proc.returncode,
        "cpu_s": rusage_cpu(total),
        "main_cpu_s": rusage_cpu(main_usage),  # oi-pipe's process and the children it reaped
        "max_rss_mb": total.ru_maxrss / 1024,
        "stragglers": stragglers,
        "killed": killed,
    }
    Path(out_json).write_text(json.dumps(result) + "\n")
    return 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    return kids


def run_measured(cmd: list[str], work: Path, name: str, timeout: float) -> dict:
    """`cmd` under the wrapper, in its own session; on timeout the session is killed by its id."""
    result_path, log = work / f"{name}.json", work / f"{name}.log"
    result_path.unlink(missing_ok=True)
    wrapper = [sys.executable, __file__, "--measure", str(result_path), str(log), "--", *cmd]
    proc = subprocess.Popen(wrapper, env=tool_env(), cwd=ROOT, start_new_session=True)
    timed_out = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:  # a timeout, Ctrl-C or any error: nothing of this command is left running
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if not result_path.is_file():
        return {"wall_s": timeout, "returncode": None, "cpu_s": 0.0, "timed_out": timed_out,
                "log": str(log)}  # fmt: skip
    return json.loads(result_path.read_text()) | {"timed_out": timed_out, "log": str(log)}


# --- a download run ------------------------------------------------------------------------------


def manifest_figures(out: Path) -> tuple[dict, dict[str, tuple]]:
    """Counts of the run's manifest and, per ImageID, (status, source, verified, reason)."""
    from openimages_pipe.download import manifest

    frame = manifest.load_all(out) if out.exists() else None
    if frame is None or frame.height == 0:
        return {"ok": 0, "rows": 0}, {}
    rows = {
        r["image_id"]: (r["status"], r["source"], bool(r["verified"]), r["reason"])
        for r in frame.select("image_id", "status", "source", "verified", "reason").iter_rows(
            named=True
        )
    }
    ok = frame.filter(frame["status"] == "ok")
    by_source = {
        f"{s}{'' if v else ' (unverified)'}": c
        for s, v, c in ok.group_by("source", "verified").len().sort("source", "verified").rows()
    }
    not_ok = frame.filter(frame["status"] != "ok")
    figures = {
        "rows": frame.height,
        "ok": ok.height,
        "verified": int(ok["verified"].sum()),
        "by_source": by_source,
        "not_ok": dict(not_ok.group_by("reason").len().sort("reason").rows()),
        "kept_bytes": int(ok["bytes"].sum()),
    }
    return figures, rows


def stored_images(out: Path) -> dict[str, tuple[bytes, int, int]]:
    """image_id -> (stored JPEG, width, height) from the run's Parquet shards."""
    import polars as pl

    files = sorted(p for p in (out / "shards").rglob("*.parquet")) if out.exists() else []
    stored = {}
    for path in files:
        frame = pl.read_parquet(path, columns=["image_id", "image", "width", "height"])
        for iid, image, w, h in frame.iter_rows():
            stored[iid] = (image["bytes"], w, h)
    return stored


def download(
    args, world: Path, order: str, label: str, work: Path, limit: int | None, faults: str
) -> dict:
    from openimages_pipe.world import layout as wl

    label = f"{order} {label}"
    out = work / f"out-{label.replace(' ', '-')}"
    shutil.rmtree(out, ignore_errors=True)
    base = f"http://127.0.0.1:{args.port}"
    extra = ["--limit", str(limit)] if limit else []
    cmd = [str(OI_PIPE), "download", *map(str, images_csvs(world)), "--out", str(out),
           "--sources", ORDERS[order], "--mirror-url", wl.mirror_template(base), *FLAGS,
           *extra]  # fmt: skip
    n = limit or args.images
    load = os.getloadavg()[0]
    with Server(world, args.port, faults, args.max_requests_per_image * n, work) as server:
        measured = run_measured(cmd, work, label.replace(" ", "-"), args.run_timeout)
    figures, rows = manifest_figures(out)
    run = {"order": order, "label": label, "images": n, "load_at_start": load, **measured,
           **figures, "server_cpu_s": server.cpu_s, "server": server.counts,
           "server_exit": server.proc.returncode}  # fmt: skip
    run["sent_bytes"] = sum(k["bytes"] for k in server.counts.get("by_kind", {}).values())
    run["requests"] = server.counts.get("requests", 0)
    return {"run": run, "rows": rows, "out": out}


# --- quality at 256 px ---------------------------------------------------------------------------


def quality(world: Path, default_out: Path, thumb_out: Path, rows_d: dict, rows_t: dict,
            sample: int, thumb_quality: int) -> dict:  # fmt: skip
    """PSNR of the thumbnail-derived stored images against the original-derived ones; on a
    sample of plain images, both (and a q80 thumbnail) against a full-decode Lanczos reference."""
    from PIL import Image, ImageOps
    from resize_quality import psnr

    from openimages_pipe.download.resize import ResizeConfig, resize_image, target_size

    cfg = ResizeConfig(image_size=IMAGE_SIZE, quality=QUALITY)
    pairs = sorted(
        i
        for i, (st, src, ver, _) in rows_d.items()
        if (st, src, ver) == ("ok", "original", True)
        and rows_t.get(i, ("", ""))[:2] == ("ok", "thumbnail")
    )
    stored_d, stored_t = stored_images(default_out), stored_images(thumb_out)
    small = {
        name: sum(min(w, h) < IMAGE_SIZE for _, w, h in stored.values())
        for name, stored in (("default", stored_d), ("thumbnail-first", stored_t))
    }
    with (world / "photos.csv").open(newline="") as f:
        photos = {r["image_id"]: r for r in csv.DictReader(f)}
    routes = read_routes(world)

    def decoded(jpeg: bytes):
        with Image.open(io.BytesIO(jpeg)) as img:
            return img.convert("RGB")

    def same_size(img, size):
        return img if img.size == size else img.resize(size, Image.Resampling.BICUBIC)

    plain = [i for i in pairs if photos.get(i, {}).get("variant") == "plain"]
    vs_default, vs_default_plain, resized = [], [], 0
    for i in pairs:
        a, b = decoded(stored_d[i][0]), decoded(stored_t[i][0])
        resized += a.size != b.size
        vs_default.append(psnr(same_size(b, a.size), a))
        if photos.get(i, {}).get("variant") == "plain":
            vs_default_plain.append(vs_default[-1])
    step = max(1, len(plain) // max(1, sample))
    ref_d, ref_t, ref_80, q80_vs_default, q80_bytes = [], [], [], [], []
    for i in plain[::step][:sample]:
        body = routes[i]["original"].read_bytes()
        with Image.open(io.BytesIO(body)) as img:
            full = ImageOps.exif_transpose(img).convert("RGB")
        ref = full.resize(target_size(full.size, cfg), Image.Resampling.LANCZOS)
        a, b = decoded(stored_d[i][0]), decoded(stored_t[i][0])
        ref_d.append(psnr(same_size(a, ref.size), ref))
        ref_t.append(psnr(same_size(b, ref.size), ref))
        _, thumb80 = copies(body, False, 80)
        q80_bytes.append(len(thumb80))
        c = decoded(resize_image(i, thumb80, None, cfg).jpeg or b"")
        ref_80.append(psnr(same_size(c, ref.size), ref))
        q80_vs_default.append(psnr(same_size(c, a.size), a))

    def summary(values: list[float]) -> dict:
        if not values:
            return {"n": 0}
        ordered = sorted(values)
        return {
            "n": len(values),
            "median": round(statistics.median(ordered), 2),
            "p10": round(ordered[len(ordered) // 10], 2),
            "min": round(ordered[0], 2),
        }

    return {
        "pairs": len(pairs),
        "resized_to_match": resized,
        "stored_short_side_under_size": small,
        "thumbnail-derived vs original-derived (all pairs)": summary(vs_default),
        "  of which plain RGB originals": summary(vs_default_plain),
        "sample: original-derived vs reference": summary(ref_d),
        f"sample: thumbnail-derived (q{thumb_quality} `_z`) vs reference": summary(ref_t),
        "sample: derived from a q80 `_z` vs reference": summary(ref_80),
        "sample: derived from a q80 `_z` vs original-derived": summary(q80_vs_default),
        "sample_q80_thumb_mean_bytes": round(statistics.mean(q80_bytes)) if q80_bytes else 0,
    }


# --- the report ----------------------------------------------------------------------------------


def compare(rows_d: dict, rows_t: dict) -> dict:
    ok_d = {i for i, r in rows_d.items() if r[0] == "ok"}
    ok_t = {i for i, r in rows_t.items() if r[0] == "ok"}
    both = ok_d & ok_t
    moved: dict[str, int] = {}
    for i in both:
        if rows_d[i][1] != rows_t[i][1]:
            key = f"{rows_d[i][1]} -> {rows_t[i][1]}"
            moved[key] = moved.get(key, 0) + 1
    return {
        "ok_default": len(ok_d),
        "ok_thumbnail_first": len(ok_t),
        "lost": len(ok_d - ok_t),
        "lost_ids": sorted(ok_d - ok_t)[:20],
        "gained": len(ok_t - ok_d),
        "other_source": sum(moved.values()),
        "moves": dict(sorted(moved.items())),
        "verified_default": sum(rows_d[i][2] for i in ok_d),
        "verified_thumbnail_first": sum(rows_t[i][2] for i in ok_t),
        "unverified_default_not_thumbnail_first": sum(
            1 for i in both if rows_d[i][2] and not rows_t[i][2]
        ),
    }


def differing(a: dict, b: dict) -> int:
    """ImageIDs whose (status, source, verified) differs between two runs of one order."""
    return sum(a.get(i, ())[:3] != b.get(i, ())[:3] for i in set(a) | set(b))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def print_runs(runs: list[dict], header: bool = False) -> None:
    if header:
        print(
            f"\n| run | ok | wall s | img/s | CPU s | CPU ms/img | server ms/img | MB sent "
            f"| KB sent/img | requests | load |\n|{'---|' * 11}"
        )
    for r in runs:
        ok = max(r.get("ok", 0), 1)
        notes = []
        if r.get("timed_out"):
            notes.append("TIMED OUT")
        if r.get("returncode"):
            notes.append(f"exit {r['returncode']} ({r['log']})")
        if r.get("server", {}).get("over_budget"):
            notes.append(f"{r['server']['over_budget']} requests over budget")
        print(
            f"| {r['label']} | {r.get('ok', 0)} | {r['wall_s']:.1f} "
            f"| {r.get('ok', 0) / r['wall_s']:.1f} | {r['cpu_s']:.1f} "
            f"| {1000 * r['cpu_s'] / ok:.1f} | {1000 * r['server_net_cpu_s'] / ok:.2f} "
            f"| {r['sent_bytes'] / 1e6:.1f} | {r['sent_bytes'] / 1e3 / ok:.0f} | {r['requests']} "
            f"| {r['load_at_start']:.2f} |" + (" " + "; ".join(notes) if notes else ""),
            flush=True,
        )


Scenario = tuple[list[dict], dict[str, list[dict]], dict[str, Path]]


def run_scenario(
    args, world: Path, faults: str, tag: str, work: Path, idle_cpu: float, started: float
) -> Scenario:
    """--repeat rounds of both orders against `faults`, ABBA; the first output of each kept."""
    runs: list[dict] = []
    rows: dict[str, list[dict]] = {order: [] for order in ORDERS}
    keep: dict[str, Path] = {}
    print(f"\n{tag}: --faults {faults}", flush=True)
    for r in range(args.repeat):
        for order in list(ORDERS)[:: 1 if r % 2 == 0 else -1]:
            if time.perf_counter() - started > args.budget_s:
                print(f"budget of {args.budget_s:.0f} s spent: no more runs", flush=True)
                return runs, rows, keep
            done = download(args, world, order, f"{tag} {r + 1}", work, None, faults)
            run = done["run"]
            run["server_net_cpu_s"] = max(0.0, run["server_cpu_s"] - idle_cpu)
            run["scenario"] = tag
            runs.append(run)
            rows[order].append(done["rows"])
            if order in keep:
                shutil.rmtree(done["out"], ignore_errors=True)
            else:
                keep[order] = done["out"]
            print_runs([run], header=len(runs) == 1)
    return runs, rows, keep


def summary(runs: list[dict], fixed: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(measure, default, thumbnail-first, ratio): medians over each order's runs."""
    by = {order: [r for r in runs if r["order"] == order] for order in ORDERS}

    def kind(r: dict, kind: str, what: str) -> float:
        return r["server"].get("by_kind", {}).get(kind, {}).get(what, 0)

    measures = [
        ("images/s (ok / wall s of the command)", lambda r: r["ok"] / r["wall_s"], "{:.1f}"),
        ("  once running (the 1-image run's wall s subtracted)",
         lambda r: r["ok"] / max(r["wall_s"] - fixed[r["order"]]["wall_s"], 1e-9), "{:.1f}"),
        ("wall s", lambda r: r["wall_s"], "{:.1f}"),
        ("CPU ms per ok image, whole command (children included)",
         lambda r: 1000 * r["cpu_s"] / r["ok"], "{:.1f}"),
        ("  beyond the 1-image run's CPU",
         lambda r: 1000 * (r["cpu_s"] - fixed[r["order"]]["cpu_s"]) / r["ok"], "{:.1f}"),
        ("  of which oi-pipe's main process (and what it reaped)",
         lambda r: 1000 * r["main_cpu_s"] / r["ok"], "{:.1f}"),
        ("server CPU ms per ok image (idle start/stop subtracted)",
         lambda r: 1000 * r["server_net_cpu_s"] / r["ok"], "{:.2f}"),
        ("MB sent by the server (bodies)", lambda r: r["sent_bytes"] / 1e6, "{:.1f}"),
        ("  of originals", lambda r: kind(r, "original", "bytes") / 1e6, "{:.1f}"),
        ("  of thumbnails", lambda r: kind(r, "thumbnail", "bytes") / 1e6, "{:.1f}"),
        ("  of the mirror", lambda r: kind(r, "mirror", "bytes") / 1e6, "{:.1f}"),
        ("KB sent per ok image", lambda r: r["sent_bytes"] / 1e3 / r["ok"], "{:.0f}"),
        ("MB kept (manifest `bytes` of the ok images)", lambda r: r["kept_bytes"] / 1e6, "{:.1f}"),
        ("requests", lambda r: r["requests"], "{:.0f}"),
        ("  to originals", lambda r: kind(r, "original", "requests"), "{:.0f}"),
        ("  to thumbnails", lambda r: kind(r, "thumbnail", "requests"), "{:.0f}"),
        ("  to the mirror", lambda r: kind(r, "mirror", "requests"), "{:.0f}"),
        ("ok images", lambda r: r["ok"], "{:.0f}"),
        ("peak RSS MB, largest process (ru_maxrss)", lambda r: r["max_rss_mb"], "{:.0f}"),
    ]  # fmt: skip
    table = []
    for name, key, fmt in measures:
        values = {o: [key(r) for r in by[o] if r.get("ok")] for o in ORDERS}
        d, t = median(values["default"]), median(values["thumbnail-first"])
        spread = {
            o: f" ({min(v):.1f}-{max(v):.1f})" if len(v) > 1 and name.startswith("images/s") else ""
            for o, v in values.items()
        }
        table.append(
            (name, fmt.format(d) + spread["default"], fmt.format(t) + spread["thumbnail-first"],
             f"{t / d:.2f}x" if d else "n/a")
        )  # fmt: skip
    return table


def print_table(title: str, table: list[tuple[str, str, str, str]]) -> None:
    print(f"\n{title}\n")
    print("| measure | default | thumbnail-first | thumbnail-first / default |")
    print("|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")


def print_losses(results: list[tuple[str, list[dict], dict, dict]]) -> None:
    """What each order kept and lost, per scenario (first run of each order)."""
    print("\nwhat each order kept (first run of each) and what thumbnail-first loses:\n")
    heads = " | ".join(f"{tag}: default | {tag}: thumbnail-first" for tag, *_ in results)
    print(f"| | {heads} |\n|---|{'---|---|' * len(results)}")
    lines: dict[str, list[str]] = {}

    def add(name: str, d: object, t: object) -> None:
        lines.setdefault(name, []).extend([str(d), str(t)])

    keys = sorted({k for _, runs, *_ in results for r in runs for k in r["by_source"]})
    for _, runs, cmp, short in results:
        first = {o: next(r for r in runs if r["order"] == o) for o in ORDERS}
        for key in keys:
            add(f"ok from {key}", *(first[o]["by_source"].get(key, 0) for o in ORDERS))
        nd, nt = cmp["ok_default"], cmp["ok_thumbnail_first"]
        add("ok in all", nd, nt)
        vd, vt = cmp["verified_default"], cmp["verified_thumbnail_first"]
        add("verified (size + MD5 of the original)", f"{vd} ({100 * vd / max(nd, 1):.1f} %)",
            f"{vt} ({100 * vt / max(nt, 1):.1f} %)")  # fmt: skip
        add("not ok, by reason", *(first[o]["not_ok"] or "-" for o in ORDERS))
        add(f"stored with shorter side < {IMAGE_SIZE} px", short["default"],
            short["thumbnail-first"])  # fmt: skip
        add("ok in default, lost by thumbnail-first", "", cmp["lost"])
        add("ok only in thumbnail-first", "", cmp["gained"])
        add("kept from another source than in default", "",
            f"{cmp['other_source']} {cmp['moves']}")  # fmt: skip
        add("verified in default, unverified in thumbnail-first", "",
            cmp["unverified_default_not_thumbnail_first"])  # fmt: skip
        add("images whose fate differs between repeats", cmp["unstable_default"],
            cmp["unstable_thumbnail_first"])  # fmt: skip
    for name, cells in lines.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600, help="images in the world")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each order")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=18650)
    parser.add_argument(
        "--faults", nargs="+", default=["none", "flickr,slow=1,stall=1,huge_mb=4"],
        help="one scenario per --faults spec of the world server (default: none, then Flickr's"
        " link rot with bounded stalls and bodies); PSNR comes from the first",
    )  # fmt: skip
    parser.add_argument("--thumb-quality", type=int, default=95, help="JPEG quality of `_z`")
    parser.add_argument("--psnr-images", type=int, default=120, help="reference PSNR sample")
    parser.add_argument("--run-timeout", type=float, default=180.0, help="seconds per command")
    parser.add_argument("--budget-s", type=float, default=480.0, help="no run starts after this")
    parser.add_argument("--max-requests-per-image", type=int, default=12)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--prepare-only", action="store_true", help="make the world, then stop")
    parser.add_argument("--serve", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        world, port, faults, counts, cap = args.serve
        return serve_child(world, int(port), faults, counts, int(cap))
    if args.measure:
        return measure_child(*args.measure, args.cmd)

    started = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()
    print(f"{stamp}; {os.cpu_count()} CPUs; python {platform.python_version()}")
    print("load average at start: " + " ".join(f"{x:.2f}" for x in load_start), flush=True)
    with socket.socket() as probe:  # a server already there would answer in ours' stead
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as exc:
            print(f"port {args.port} is in use ({exc.strerror}): choose another with --port")
            return 1
    world = ensure_world(args.data, args.images, args.seed, args.port, args.thumb_quality)
    meta = json.loads((world / "photos.json").read_text())
    print(
        f"world {world.name}: {meta['originals']} originals,"
        f" {meta['mean_original_bytes'] / 1e6:.2f} MB and {meta['mean_megapixels']} MP on average"
        f" ({meta['photoized']} photo-like: {meta['variants']}; {meta['left_as_drawn']} PNG left"
        f" as drawn); {meta['thumbnails']} thumbnails, {meta['mean_thumbnail_bytes'] / 1e3:.0f} KB"
        f" (1/{meta['mean_original_bytes'] / meta['mean_thumbnail_bytes']:.1f});"
        f" {meta['mirrors']} mirror copies, {meta['mean_mirror_bytes'] / 1e3:.0f} KB",
        flush=True,
    )
    if args.prepare_only:
        return 0
    base = f"http://127.0.0.1:{args.port}"
    for path in images_csvs(world):  # every URL the downloads will ask for is on 127.0.0.1
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                for url in (row["OriginalURL"], row["Thumbnail300KURL"]):
                    assert not url or url.startswith(base + "/"), url
    import download_corpus as dc

    dc.read_all(sorted((world / "served").rglob("*.jpg")))  # into the page cache
    work = args.data / "thumbnail-sources"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    # the server's own start and stop, with no request: subtracted from each run's server CPU
    idle = []
    for _ in range(2):
        with Server(world, args.port, "none", 1, work) as server:
            pass
        idle.append(server.cpu_s)
    idle_cpu = min(idle)
    print(f"idle server start + stop: {idle_cpu:.2f} s CPU", flush=True)

    # 1-image runs, twice per order: a warm-up, and what a run costs besides its images
    fixed_runs = []
    for i in range(2):
        for order in ORDERS:
            w = download(args, world, order, f"1 image {i + 1}", work, 1, "none")
            shutil.rmtree(w["out"], ignore_errors=True)
            w["run"]["server_net_cpu_s"] = max(0.0, w["run"]["server_cpu_s"] - idle_cpu)
            fixed_runs.append(w["run"])
            print_runs([w["run"]], header=len(fixed_runs) == 1)
    fixed = {
        o: {k: min(r[k] for r in fixed_runs if r["order"] == o) for k in ("wall_s", "cpu_s")}
        for o in ORDERS
    }

    scenarios = []
    psnr = None
    for k, faults in enumerate(args.faults):
        tag = (
            "no faults" if faults == "none" else f"faults {k}" if len(args.faults) > 2 else "faults"
        )
        runs, rows, keep = run_scenario(args, world, faults, tag, work, idle_cpu, started)
        if not all(rows.values()):
            print("not every order ran: no comparison")
            break
        rows_d, rows_t = rows["default"][0], rows["thumbnail-first"][0]
        cmp = compare(rows_d, rows_t)
        cmp["unstable_default"] = sum(differing(rows_d, x) for x in rows["default"][1:])
        cmp["unstable_thumbnail_first"] = sum(
            differing(rows_t, x) for x in rows["thumbnail-first"][1:]
        )
        if psnr is None:
            print(f"PSNR at {IMAGE_SIZE} px ...", flush=True)
            psnr = quality(world, keep["default"], keep["thumbnail-first"], rows_d, rows_t,
                           args.psnr_images, args.thumb_quality)  # fmt: skip
            short = psnr["stored_short_side_under_size"]
        else:
            short = {
                o: sum(min(w, h) < IMAGE_SIZE for _, w, h in stored_images(keep[o]).values())
                for o in ORDERS
            }
        for out in keep.values():
            shutil.rmtree(out, ignore_errors=True)
        scenarios.append(
            {"tag": tag, "faults": faults, "runs": runs, "compare": cmp, "short": short,
             "table": summary(runs, fixed)}
        )  # fmt: skip
    load_end = os.getloadavg()

    print("\n\n=== results ===")
    print(
        f"\n{stamp}; load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}"
        f" (1 min); {args.images} images, --repeat {args.repeat}"
    )
    print(
        "1-image runs (wall s / CPU s): "
        + ", ".join(f"{o} {fixed[o]['wall_s']:.1f} / {fixed[o]['cpu_s']:.1f}" for o in ORDERS)
        + f"; idle server start + stop {idle_cpu:.2f} s CPU"
    )
    for s in scenarios:
        n = {o: sum(r["order"] == o for r in s["runs"]) for o in ORDERS}
        print_table(
            f"{s['tag']} (--faults {s['faults']}): medians of {n['default']} default and"
            f" {n['thumbnail-first']} thumbnail-first runs (images/s: median (min-max))",
            s["table"],
        )
    print_losses([(s["tag"], s["runs"], s["compare"], s["short"]) for s in scenarios])
    if psnr:
        print(f"\nquality at {IMAGE_SIZE} px (PSNR in dB over RGB):\n")
        print("| comparison | n | median | p10 | min |\n|---|---|---|---|---|")
        for name, st in psnr.items():
            if isinstance(st, dict) and "n" in st:
                cells = f"{st['median']} | {st['p10']} | {st['min']}" if st["n"] else " | | "
                print(f"| {name} | {st['n']} | {cells} |")
        print(
            f"\n{psnr['pairs']} pairs (original-derived in default, thumbnail-derived in"
            f" thumbnail-first); {psnr['resized_to_match']} differed by a pixel in size and were"
            f" resized (bicubic) to match; a q80 `_z` of this content weighs"
            f" {psnr['sample_q80_thumb_mean_bytes'] / 1e3:.0f} KB (the served ones:"
            f" {meta['mean_thumbnail_bytes'] / 1e3:.0f} KB)"
        )
    all_runs = fixed_runs + [r for s in scenarios for r in s["runs"]]
    print("\nevery run, in the order it ran:")
    print_runs(all_runs, header=True)
    print(f"total time {time.perf_counter() - started:.0f} s")
    results = {
        "date": stamp, "load_start": load_start, "load_end": load_end, "world": meta,
        "args": {k: str(v) for k, v in vars(args).items()}, "idle_server_cpu_s": idle_cpu,
        "fixed": fixed, "fixed_runs": fixed_runs, "scenarios": scenarios, "quality": psnr,
    }  # fmt: skip
    path = args.data / f"thumbnail-sources-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"all figures: {path}")
    bad = [r for r in all_runs if r.get("timed_out") or r.get("returncode")]
    bad += [r for r in all_runs if r.get("server", {}).get("over_budget")]
    if bad:
        print(f"WARNING: {len(bad)} runs timed out, failed or ran over the request budget")
    return 1 if bad or len(scenarios) < len(args.faults) else 0


if __name__ == "__main__":
    sys.exit(main())
