"""The split hash (its definition never changes) and the cheap ImageID check (the reader's rule)."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from openimages_pipe.formats import reader
from openimages_pipe.splits import split_hash
from openimages_pipe.splits.inputs import bad_image_id, image_key


def test_golden_values_never_change() -> None:
    """Pinned: if these change, every published split moves. Never update them to pass."""
    # ImageID 0 with seed 0 is splitmix64's first output from state 0, as published with it
    assert split_hash.hash_one("0000000000000000", 0) == 0xE220A8397B1DCDAF
    assert split_hash.hash_one("000002b66c9c498e", 0) == 14429888210884537054
    assert split_hash.hash_one("000002B66C9C498E", 0) == 14429888210884537054  # case-blind
    assert split_hash.hash_one("000002b66c9c498e", 1) != 14429888210884537054


def test_vectorised_hash_equals_the_reference() -> None:
    rng = random.Random(0)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(2000)] + ["0" * 16, "f" * 16]
    keys = np.array([int(i, 16) for i in ids], dtype=np.uint64)
    for seed in (0, 1, 7, 2**40, -3):
        assert split_hash.hash_keys(keys, seed).tolist() == [
            split_hash.hash_one(i, seed) for i in ids
        ]
        sides = split_hash.in_clean(keys, seed, 0.25).tolist()
        assert sides == [split_hash.side_of_one(i, seed, 0.25) for i in ids]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_the_clean_share_is_the_fraction(fraction: float) -> None:
    keys = np.random.default_rng(1).integers(0, 2**63, 100_000, dtype=np.int64).astype(np.uint64)
    share = split_hash.in_clean(keys, 0, fraction).mean()
    assert share == pytest.approx(fraction, abs=0.01)
    assert split_hash.threshold(fraction) == int(fraction * 2**64)


def test_a_fraction_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        split_hash.threshold(1.5)


EDGE_IDS = [
    "000002b66c9c498e", "000002B66C9C498E", "ffffffffffffffff", "+00002b66c9c498e",
    "-00002b66c9c498e", " 00002b66c9c498e", "00002b66c9c498e ", "0x0002b66c9c498e",
    "0000_2b66c9c498e", "00002b66c9c498é", "000002b66c9c498", "0000002b66c9c498e", "",
    "٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠", "0000000000000g00", None,
]  # fmt: skip


def test_the_cheap_image_id_check_is_the_readers_pattern() -> None:
    frame = pl.DataFrame({"image_id": EDGE_IDS}, schema={"image_id": pl.String})
    got = frame.select(bad_image_id()).to_series().to_list()
    want = [not (v is not None and reader.is_image_id(v)) for v in EDGE_IDS]
    assert got == want
    assert frame.select(image_key()).item(0, 0) == int("000002b66c9c498e", 16)
    assert reader.IMAGE_ID_PATTERN == r"^[0-9a-fA-F]{16}$"  # what bad_image_id mirrors
