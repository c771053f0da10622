"""Two questions behind `oi-pipe download`'s design, on the download benchmark's corpus:

1. event-loop: what does the event-loop process cost per image when it has a core to itself?
   `oi-pipe download` runs as usual, but its workers return a fixed small JPEG at once (neither
   MD5 nor decode): the CPU of that process is what HTTP, spooling bodies, the pool's messages,
   the shard writer and the manifest cost. Its inverse is the most images/s one process can feed,
   however many workers it has.
2. worker-fetch: would workers that fetch their own bodies be faster? A throwaway prototype: 2
   processes, each with its own event loop and aiohttp session and one Pillow thread running
   oi-pipe's `check_and_resize`; the parent only counts the results (no shards, no manifest, no
   host gates or retries: an upper bound for that design).
3. the real `oi-pipe download`, for reference, in the same run.

Each runs as a child process (timed by the wall clock, CPU of its whole process tree sampled as in
download_vs_img2dataset.py) against the world server in this process, on 127.0.0.1. Needs the
corpus: `download_vs_img2dataset.py --prepare-only`.

    .venv/bin/python benchmarks/download_architecture.py --repeat 2
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import multiprocessing
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import download_corpus as dc
import download_vs_img2dataset as bench

JPEG = b"\xff\xd8\xff" + bytes(30_000)  # the size of a 256-px q95 photo; never decoded


def instant(image_id, body, check, rotation, cfg):
    """A worker that does nothing: verdict ok, a fixed 'resized' JPEG."""
    from openimages_pipe.download.records import Reason, Resized
    from openimages_pipe.download.verify import Verdict

    return Verdict(Reason.OK, True, check.expected_md5), Resized(
        image_id, Reason.OK, JPEG, 341, 256, 4000, 3000
    )


def child_event_loop(csv_path: str, out: str) -> None:
    from openimages_pipe import cli
    from openimages_pipe.download import pipeline as download

    download.check_and_resize = instant  # the workers import this module to find `instant`
    sys.argv = ["oi-pipe", "download", csv_path, "--out", out, *bench.OI_FLAGS]
    cli.main()


def _fetching_worker(rows: list[dict], results, concurrency: int) -> None:
    import aiohttp

    from openimages_pipe.download.records import Md5Mode, Source
    from openimages_pipe.download.resize import ResizeConfig
    from openimages_pipe.download.verify import Check
    from openimages_pipe.download.worker import check_and_resize

    pillow = ThreadPoolExecutor(1)
    cfg = ResizeConfig(image_size=bench.IMAGE_SIZE, quality=bench.QUALITY)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=concurrency)
        headers = {"Accept-Encoding": "identity"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def one(row: dict) -> None:
                url = row["OriginalURL"]
                async with slots, session.get(url, allow_redirects=False) as resp:
                    body = b"".join([c async for c, _ in resp.content.iter_chunks()])
                check = Check(
                    Source.ORIGINAL, url, Md5Mode.STRICT, int(row["OriginalSize"]),
                    row["OriginalMD5"],
                )  # fmt: skip
                verdict, resized = await loop.run_in_executor(
                    pillow, check_and_resize, row["ImageID"], body, check, None, cfg
                )
                results.put(verdict.reason.value if resized is None else resized.reason.value)

            await asyncio.gather(*(one(r) for r in rows))

    asyncio.run(main())
    results.put(None)


def child_worker_fetch(csv_path: str, out: str) -> None:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    context = multiprocessing.get_context("forkserver")
    results = context.Queue()
    n = bench.WORKERS
    procs = [
        context.Process(target=_fetching_worker, args=(rows[i::n], results, 64 // n))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    finished, ok = 0, 0
    while finished < n:
        item = results.get()
        finished += item is None
        ok += item == "ok"
    for p in procs:
        p.join()
    Path(out, "ok.txt").write_text(str(ok))


def run_child(mode: str, csv_path: Path, work: Path, n: int) -> bench.Run:
    out = work / mode
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, __file__, "--child", mode, str(csv_path), str(out)]
    log = work / f"{mode}.log"
    run = bench.Run(mode, mode, n)
    for key, value in bench.run_command(cmd, log, timeout=600).items():
        setattr(run, key, value)
    if mode == "worker-fetch":
        run.ok = int((out / "ok.txt").read_text()) if (out / "ok.txt").exists() else 0
    else:
        run.ok, _ = bench.oi_pipe_ok(out)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CSV", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=18642)
    parser.add_argument("--data", type=Path, default=dc.DATA)
    args = parser.parse_args()
    if args.child:
        mode, csv_path, out = args.child
        {"event-loop": child_event_loop, "worker-fetch": child_worker_fetch}[mode](csv_path, out)
        return 0

    from openimages_pipe.world.server import ServeConfig, WorldServer

    python = dc.venv_python(args.data / "venv-img2dataset")
    corpus = dc.ensure_corpus(args.data, 2000, dc.ensure_sources(args.data, python))
    base = f"http://127.0.0.1:{args.port}"
    dc.write_world_json(corpus.world, base)
    csv_path = dc.write_images_csv(corpus, base, 2000, args.data / "csv" / "images-2000.csv")
    work = args.data / "architecture"
    runs = []
    with WorldServer(ServeConfig(world=corpus.world, port=args.port)):
        for _ in range(args.repeat):
            for mode in ("event-loop", "worker-fetch"):
                runs.append(run_child(mode, csv_path, work, 2000))
            oi = bench.run_oi_pipe(csv_path, 2000, work, "download", 600)
            oi.label = "oi-pipe download"
            runs.append(oi)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{'run':28} {'ok':>5} {'wall s':>7} {'img/s':>7} {'CPU ms/img':>10} {'top ms/img':>10}")
    for r in runs:
        top = 1000 * r.top_cpu_s / r.ok if r.ok else 0.0
        print(f"{r.label:28} {r.ok:5d} {r.wall_s:7.1f} {r.rate:7.1f} {r.cpu_ms:10.1f} {top:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
