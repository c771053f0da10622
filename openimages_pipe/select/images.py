"""Which images a selection may take: those the images CSVs list, those a download holds.

Owns the two image-level restrictions that come from other files than the labels: `--images`
(with `--subset`: only the rows of those subsets) and `--downloaded` (only images whose manifest
status is ok). Each hands on the allowed images as their 64-bit keys (`splits.inputs.image_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from openimages_pipe.errors import InputError
from openimages_pipe.formats import reader
from openimages_pipe.splits import inputs as split_inputs


def listed(paths: Sequence[Path], subsets: Sequence[str]) -> pl.Series:
    """The keys of the images these CSVs list (in one of `subsets`, if any are given)."""
    frames = []
    for path in paths:
        info = reader.inspect_csv(path)
        if subsets and "Subset" not in info.columns:
            raise InputError(
                f"--subset {','.join(subsets)} needs a Subset column and this file has none: "
                "pass only the images files of that subset, without --subset",
                path,
            )
        lf = reader.scan(path, reader.FileKind.IMAGES, validate=False)
        if subsets:
            lf = lf.filter(pl.col("subset").is_in(list(subsets)))
        frames.append(lf.select(key=split_inputs.image_key()))
    keys = pl.concat(frames).drop_nulls().unique().collect(engine="streaming")
    return keys.get_column("key")


def downloaded(directory: Path) -> pl.Series:
    """The keys of the images a download folder's manifest says are ok."""
    manifest = split_inputs.load_manifest(directory)
    return manifest.filter(pl.col("status") == "ok").get_column("key")
