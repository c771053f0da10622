"""`oi-pipe demo`: every stage that exists, run on an offline world, with what each produced.

Makes a world, serves it on 127.0.0.1 with seeded faults, probes its original URLs once each (no
retries: the downloader's job) to show what a user's links look like, and reads every CSV back
through the reader. Later stages join here as they land.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

from openimages_pipe import inspect_files, reader, world_layout, world_make, world_server

# The probe is a look, not a download: a few requests at a time, each cut short.
PROBE_CONCURRENCY = 16
PROBE_TIMEOUT_S = 2.0
PROBE_READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class DemoConfig:
    out: Path | None = None
    images: int = 400
    seed: int = 0
    faults: str = "flickr"


def free_port(host: str = world_layout.DEFAULT_HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def _probe_one(session: aiohttp.ClientSession, sem: asyncio.Semaphore, url: str) -> str:
    async with sem:
        try:
            async with session.get(url, max_redirects=5) as resp:
                await resp.content.read(PROBE_READ_BYTES)
                kind = resp.headers.get("Content-Type", "?").split(";")[0]
                return f"HTTP {resp.status} {kind}"
        except aiohttp.TooManyRedirects:
            return "redirect loop"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as e:
            return f"connection error ({type(e).__name__})"


async def probe(urls: list[str]) -> collections.Counter[str]:
    """One GET per URL, bounded in concurrency and time; what came back, counted."""
    sem = asyncio.Semaphore(PROBE_CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        outcomes = await asyncio.gather(*(_probe_one(session, sem, u) for u in urls))
    return collections.Counter(outcomes)


def _counter_table(title: str, counts: collections.Counter[str]) -> Table:
    table = Table("outcome", "count", title=title)
    for key, n in counts.most_common():
        table.add_row(key, str(n))
    return table


def run(cfg: DemoConfig) -> dict:
    console = Console()
    root = cfg.out or Path(tempfile.mkdtemp(prefix="oi-pipe-demo-"))
    base = world_layout.base_url(port=free_port())
    started = time.perf_counter()
    summary = world_make.run(
        world_make.MakeConfig(out=root, seed=cfg.seed, images=cfg.images, base_url=base)
    )
    console.rule(f"1. world make: {root} ({time.perf_counter() - started:.1f} s)")
    console.print(world_make.describe(summary))

    data = world_layout.WorldPaths(root).data
    csvs = sorted(data.rglob("*.csv"))
    image_csvs = [p for p in csvs if reader.inspect_csv(p).kind is reader.FileKind.IMAGES]
    urls = reader.scan(image_csvs, "images").collect()["original_url"].to_list()
    serve = world_server.ServeConfig(world=root, faults=cfg.faults)
    with world_server.WorldServer(serve) as server:
        console.rule(f"2. world serve: {server.base_url} with faults {cfg.faults!r}")
        fates = collections.Counter(str(f) for f in server.fates.values())
        console.print(_counter_table("fates the server drew (seeded by ImageID)", fates))
        outcomes = asyncio.run(probe(urls))
        console.print(_counter_table(f"one GET of each of {len(urls)} OriginalURLs", outcomes))

    console.rule("3. reader: every CSV of the world, recognised and validated")
    reports = inspect_files.inspect_files(inspect_files.InspectConfig(tuple(csvs)))
    console.print(inspect_files.report_table(reports, data))
    rows = {r.info.path.relative_to(root).as_posix(): r.rows for r in reports}
    console.print(f"done in {time.perf_counter() - started:.1f} s; the world is in {root}")
    return {"world": root, "fates": fates, "probe": outcomes, "rows": rows}
