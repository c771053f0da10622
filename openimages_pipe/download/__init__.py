"""`oi-pipe download`: images CSVs in; verified, resized images in shards and a manifest out.

One module per stage, in the order an image goes through them, then the wiring:

- `records`: the small typed records the stages pass and their closed vocabularies (status,
  reason, source, resize mode).
- `tasks`: the read stage, images CSVs -> the `ImageTask`s still to do (resume, retry, shares),
  one per ImageID however many rows list it.
- `host_gate`: which hosts may be reached, and how fast (admission, per-host limits, Retry-After).
- `fetch`: an `ImageTask` in, a `Fetched` out, over one aiohttp session; sources tried in order.
- `response`: one attempt's HTTP response read into a `Reply`: status -> reason, the body up to
  the byte cap.
- `spool`: where a body waits between the socket and the worker process that judges it.
- `verify`: pure checks of a body (size, MD5, Flickr's placeholders).
- `worker`: what a worker process does with one body: `verify`, then `resize`.
- `resize`: Pillow, synchronous, in worker processes: bytes -> an upright, resized JPEG.
- `fetch_loop`: one event loop's fetching: a `Fetcher` and its pool of decode workers, an
  `ImageTask` in, a `Finished` (no original body) out.
- `fetch_process`: what one fetch process does: tasks in, `Finished` images out, over one pipe.
- `fetch_processes`: the run's fetch processes seen from the coordinating process (`--processes`):
  their shares of the bounds, handing out tasks, settling what comes back.
- `colour`: decoded pixels of any mode -> 8-bit RGB on white, and what converting them costs.
- `shard_writer`: resized images -> Parquet shards or JPEG files, atomically.
- `manifest`: one row per ImageID saying what became of it; the journal of the run under way.
- `storage`: where the download folder lives (a local path or `s3://bucket/prefix`; other URL
  schemes refused) and its few operations, each whole or not at all on either medium.
- `atomic`: a local file written whole or not at all; a write error as one `OutputError`.
- `s3`: the conditional S3 requests pyarrow cannot send, signed here (SigV4).
- `lease`: the share lock in object storage: a lease object, conditional PUTs, renewed.
- `run_record`: what one run did: its tally and its record file.
- `run_state`: the state of the run under way (journal, writer, images in flight) and the one
  coroutine that writes its shards.
- `stopping`: SIGINT and SIGTERM in each phase of a run, the grace period for a stuck worker, and
  workers that end with the main process.
- `progress`: the live display (images/s, MB/s, ETA) or quiet log lines.
- `pipeline`: `run(DownloadConfig)`, wiring the stages and nothing else.
- `status`: `oi-pipe status`, what a download folder holds.

`resize` and `worker` never import aiohttp; nothing here imports torch, nlc_model or the world.
"""
