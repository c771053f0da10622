"""The Open Images edge: what each published CSV is, and its rows read, normalised and checked.

Both jobs stand on it (the download reads images CSVs, build-splits reads labels). Modules, in the
order data flows through them:

- `releases`: the releases V1-V7 as the data files in `manifests/` describe them (files, columns,
  Source values); nothing about a release is written in code.
- `reader`: recognise a CSV from its header (or its absence), normalise Open Images' column names
  once, type and stream its rows.
- `checks`: the value checks (ImageID, Confidence, OriginalSize, ...) and locating a bad row by
  file and line.
- `inspect_files`: `oi-pipe inspect`, the reader's verdict on files a user names.

Imports nothing here: polars loads only with `reader`.
"""
