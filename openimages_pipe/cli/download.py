"""The `download` and `status` commands: typer options in, a frozen DownloadConfig out.

Registered on the app by `cli.py`. Heavy modules (aiohttp, polars, Pillow) are imported only
when a command runs, so `oi-pipe download --help` starts fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe.cli.common import guarded
from openimages_pipe.cli.select import MACHINE_MIN_CONFIDENCE, download_selection, option
from openimages_pipe.download.records import Md5Mode, OutputFormat, ResizeMode, Source
from openimages_pipe.errors import InputError
from openimages_pipe.select.records import LabelSource

MIRROR_DEFAULT = "https://open-images-dataset.s3.amazonaws.com/{subset}/{image_id}.jpg"
# `download --help` groups the options: what to read, which classes, how to fetch, how to resize,
# what to write, and how the rows are split (machines, and the fetch processes of this one).
INPUT, NETWORK, RESIZE, OUTPUT, SHARDING = "Input", "Network", "Resize", "Output", "Sharding"
CLASSES = "Classes"


def usable_cpus() -> int:
    """The CPUs this process may run on (Slurm's and taskset's limits included)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, usable or 1)


def parse_processes(text: str) -> int | None:
    """`--processes`: a count, or `auto` (None: resolved against the CPUs and --per-host)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError("--processes takes a count of at least 1, or auto", value=text)
    return value


def parse_sources(text: str) -> tuple[Source, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    valid = ", ".join(s.value for s in Source)
    bad = [n for n in names if n not in {s.value for s in Source}]
    if bad or not names or len(set(names)) != len(names):
        shown = bad[0] if bad else text
        raise InputError(f"--sources takes a comma-separated order of: {valid}", value=shown)
    return tuple(Source(n) for n in names)


def download_cmd(
    csvs: Annotated[
        list[Path],
        typer.Argument(
            help="Open Images images CSVs, or quoted glob patterns ('images_2016_08/*/images.csv')."
        ),
    ],
    *,  # keyword-only: grouped by panel, so --out (required) stands among the Output options
    subset: Annotated[
        list[str] | None,
        typer.Option(help="Only rows of this subset (repeatable).", rich_help_panel=INPUT),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Only the first N images (an ImageID listed twice counts once).",
            rich_help_panel=INPUT,
        ),
    ] = None,
    ids: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Only these ImageIDs (a file, one per line).",
            rich_help_panel=INPUT,
        ),
    ] = None,
    sources: Annotated[
        str,
        typer.Option(
            help="Sources to try, in order. The default checks each original's size and MD5. "
            "For small outputs, thumbnail,original,mirror fetches ~1/9 of the bytes at under half "
            "the CPU per image, at the same quality up to the thumbnail's size (640 px on its "
            "longer side: with keep-ratio a shorter side of at most ~480 px at 4:3), but stores "
            "Flickr's thumbnails unverified (benchmarks/RESULTS.md). Not the default for that "
            "reason. A thumbnail (or mirror copy) smaller than the target falls through to the "
            "next source, and is kept only if none gives a full-size image.",
            rich_help_panel=INPUT,
        ),
    ] = "original,thumbnail,mirror",
    mirror_url: Annotated[
        str,
        typer.Option(
            help="Mirror URL template with {subset} and {image_id}.", rich_help_panel=INPUT
        ),
    ] = MIRROR_DEFAULT,
    retry_missing: Annotated[
        bool,
        typer.Option(
            help="Also retry images that were permanently missing.", rich_help_panel=INPUT
        ),
    ] = False,
    classes: Annotated[list[str] | None, option("classes", CLASSES)] = None,
    labels: Annotated[list[Path] | None, option("labels", CLASSES)] = None,
    class_names: Annotated[Path | None, option("class_names", CLASSES, dir_okay=False)] = None,
    label_source: Annotated[LabelSource, option("source", CLASSES)] = LabelSource.ANY,
    min_confidence: Annotated[
        float, option("min_confidence", CLASSES, min=0.0, max=1.0)
    ] = MACHINE_MIN_CONFIDENCE,
    exclusive: Annotated[bool, option("exclusive", CLASSES)] = False,
    max_per_class: Annotated[int | None, option("max_per_class", CLASSES, min=1)] = None,
    seed: Annotated[int, option("seed", CLASSES)] = 0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Requests in flight, in all.", rich_help_panel=NETWORK)
    ] = 64,
    per_host: Annotated[
        int, typer.Option(min=1, help="Requests in flight per host.", rich_help_panel=NETWORK)
    ] = 16,
    retries: Annotated[
        int,
        typer.Option(min=0, help="Retries per source, transient only.", rich_help_panel=NETWORK),
    ] = 3,
    timeout: Annotated[
        float, typer.Option(help="Seconds for one request, in all.", rich_help_panel=NETWORK)
    ] = 120.0,
    first_byte_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for data.", rich_help_panel=NETWORK)
    ] = 20.0,
    max_mb: Annotated[
        float, typer.Option(help="Largest response body accepted, in MB.", rich_help_panel=NETWORK)
    ] = 64.0,
    md5: Annotated[
        Md5Mode,
        typer.Option(
            help="strict: a size/MD5 mismatch rejects the original; lenient: keep it "
            "unverified; off: no check.",
            rich_help_panel=NETWORK,
        ),
    ] = Md5Mode.STRICT,
    allow_private_addresses: Annotated[
        bool,
        typer.Option(
            help="Allow URLs on private/loopback addresses (for local servers).",
            rich_help_panel=NETWORK,
        ),
    ] = False,
    user_agent: Annotated[
        str | None, typer.Option(help="User-Agent header.", rich_help_panel=NETWORK)
    ] = None,
    image_size: Annotated[
        int, typer.Option(min=8, help="Target size in pixels.", rich_help_panel=RESIZE)
    ] = 256,
    resize_mode: Annotated[
        ResizeMode,
        typer.Option(
            help="keep-ratio: shorter side to --image-size; longer-side; center-crop; none.",
            rich_help_panel=RESIZE,
        ),
    ] = ResizeMode.KEEP_RATIO,
    quality: Annotated[
        int, typer.Option(min=1, max=100, help="JPEG quality of output.", rich_help_panel=RESIZE)
    ] = 95,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Verify/decode/resize processes in all, divided among the fetch processes. "
            "Default: the CPUs this process may use (at least one per fetch process).",
            rich_help_panel=RESIZE,
        ),
    ] = None,
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="Output folder (shards, manifest), or s3://BUCKET/PREFIX: the same layout in "
            "object storage, reached with the AWS_* environment variables (AWS_ENDPOINT_URL for "
            "any S3-compatible store). Other URL schemes are refused.",
            rich_help_panel=OUTPUT,
        ),
    ],
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", help="Parquet shards or JPEG files.", rich_help_panel=OUTPUT),
    ] = OutputFormat.PARQUET,
    rows_per_shard: Annotated[
        int, typer.Option(min=1, help="Images per Parquet shard.", rich_help_panel=OUTPUT)
    ] = 1000,
    quiet: Annotated[
        bool, typer.Option(help="Log lines instead of a live display.", rich_help_panel=OUTPUT)
    ] = False,
    processes: Annotated[
        str,
        typer.Option(
            help="Fetch processes on this machine, each with its own event loop, connections and "
            "share of --workers, under one display, manifest and run record; --per-host and "
            "Retry-After hold per host across them. auto: the CPUs this process may use, at most "
            "--per-host. 1: fetch in the main process.",
            rich_help_panel=SHARDING,
        ),
    ] = "auto",
    shard_index: Annotated[
        int, typer.Option(min=0, help="This process's share (0-based).", rich_help_panel=SHARDING)
    ] = 0,
    num_shards: Annotated[
        int,
        typer.Option(
            min=1,
            help="Number of shares: int(ImageID, 16) % N picks the share.",
            rich_help_panel=SHARDING,
        ),
    ] = 1,
) -> None:
    """Download Open Images from its CSVs: verified, resized, sharded, resumable.

    Tries OriginalURL, then Thumbnail300KURL, then the mirror by ImageID; checks OriginalSize and
    OriginalMD5, detects Flickr's placeholder, and records every image's fate in
    DIR/manifest.parquet. A rerun skips what is done, retries what may recover (and, with
    --retry-missing, what was missing). Ctrl-C or SIGTERM stops within seconds, keeps what
    finished and exits 130 or 143; a full disk or an unwritable DIR stops it with one line and
    exit code 1. Every run into DIR must give the same --num-shards.

    With --classes and --labels, only the images of those classes: the run first makes the
    selection `oi-pipe select` makes (of the images these CSVs list, in --subset) into DIR/select/,
    prints its counts per class, downloads exactly its ids.txt and records it in the run record.
    """
    from openimages_pipe.download import fetch_processes, status, storage
    from openimages_pipe.download import pipeline as download
    from openimages_pipe.download.fetch import FetchConfig
    from openimages_pipe.download.resize import ResizeConfig
    from openimages_pipe.download.tasks import InputConfig
    from openimages_pipe.formats import paths

    def build_and_run() -> None:
        if shard_index >= num_shards:
            raise InputError("--shard-index must be below --num-shards", value=str(shard_index))
        where = storage.location(out)  # a URL of another scheme is refused here, before anything
        fetch = FetchConfig(
            concurrency=concurrency,
            per_host=per_host,
            retries=retries,
            total_timeout=timeout,
            first_byte_timeout=first_byte_timeout,
            max_bytes=int(max_mb * 2**20),
            md5=md5,
            allow_private=allow_private_addresses,
            **({"user_agent": user_agent} if user_agent else {}),
        )
        cpus = usable_cpus()
        loops = fetch_processes.resolve(
            parse_processes(processes), cpus, per_host, concurrency, workers
        )
        selection = download_selection(
            where, ids, classes=classes, labels=labels, class_names=class_names,
            source=label_source, min_confidence=min_confidence, exclusive=exclusive,
            max_per_class=max_per_class, seed=seed,
        )  # fmt: skip
        cfg = download.DownloadConfig(
            out=where,
            input=InputConfig(
                csvs=paths.expand(csvs, "download"),
                subsets=tuple(subset or ()),
                ids_file=ids,
                limit=limit,
                share_index=shard_index,
                share_count=num_shards,
                sources=parse_sources(sources),
                mirror_template=mirror_url,
                selection=selection,
            ),
            fetch=fetch,
            resize=ResizeConfig(mode=resize_mode, image_size=image_size, quality=quality),
            format=output_format,
            rows_per_shard=rows_per_shard,
            workers=workers or max(cpus, loops),
            processes=loops,
            retry_missing=retry_missing,
            quiet=quiet,
        )
        download.run(cfg)
        status.run(status.StatusConfig(where))

    guarded(build_and_run)


def status_cmd(
    out: Annotated[str, typer.Argument(help="A download directory, or its s3://BUCKET/PREFIX.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """What a download directory holds: counts by status, reason and source, and what the last
    run changed (recovered, newly missing)."""
    from openimages_pipe.download import status

    guarded(lambda: status.run(status.StatusConfig(out, as_json)))
