"""Which side of V an image falls on: a hash of (seed, ImageID) that no library version can change.

The definition, for an ImageID of 16 hex digits (case does not matter) and an integer seed:

    x = the ImageID read as an unsigned 64-bit integer
    z = (x + (seed + 1) * 0x9E3779B97F4A7C15)   mod 2^64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9    mod 2^64
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB    mod 2^64
    h = z ^ (z >> 31)
    the image is in V_train  iff  h < floor(clean_fraction * 2^64), else in V_eval

That is splitmix64 (Steele, Lea and Flood, OOPSLA 2014; Java's SplittableRandom) evaluated at
x + (seed + 1) * gamma: a bijection of the 64 bits with full avalanche, so h is uniform whatever
the IDs look like. An image's side depends on its ID and the seed only: it never moves when other
images rot away or come back. It is not polars' `hash` (which may change between versions): it is
written here in numpy's unsigned 64-bit arithmetic, which wraps modulo 2^64 by definition, and
`side_of_one` is the same thing in plain Python integers for anyone to check it against (say, in
another language; ImageID 0000000000000000 with seed 0 gives 0xE220A8397B1DCDAF, splitmix64's
well-known first output from state 0). Vectorised, it takes about 0.1 s for 9M IDs.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
NAME = "splitmix64(ImageID + (seed + 1) * 0x9E3779B97F4A7C15) < floor(clean_fraction * 2^64)"
# splits.json names the reference function by its import path. It moved once, with the package
# layout (oi-pipe 0.1.0's flat `openimages_pipe.split_hash`); an old record still resolves.
REFERENCE = "openimages_pipe.splits.split_hash.side_of_one"
FORMER_REFERENCES = ("openimages_pipe.split_hash.side_of_one",)


def threshold(clean_fraction: float) -> int:
    """floor(clean_fraction * 2^64): exact, since scaling a float by 2^64 loses nothing."""
    if not 0.0 <= clean_fraction <= 1.0:
        raise ValueError(f"clean_fraction must lie in [0, 1], not {clean_fraction}")
    return int(clean_fraction * 2.0**64)


def hash_one(image_id: str, seed: int) -> int:
    """The reference definition, in plain Python integers."""
    z = (int(image_id, 16) + (seed + 1) * GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def side_of_one(image_id: str, seed: int, clean_fraction: float) -> bool:
    """True where the image goes to V_train (reference implementation)."""
    return hash_one(image_id, seed) < threshold(clean_fraction)


def hash_keys(keys: np.ndarray, seed: int) -> np.ndarray:
    """`hash_one` for an array of ImageIDs already read as uint64 (vectorised)."""
    z = np.asarray(keys, dtype=np.uint64) + np.uint64(((seed + 1) * GAMMA) & MASK64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def in_clean(keys: np.ndarray, seed: int, clean_fraction: float) -> np.ndarray:
    """Boolean array: which images go to V_train."""
    limit = threshold(clean_fraction)
    h = hash_keys(keys, seed)
    if limit > MASK64:  # clean_fraction == 1: every image
        return np.ones(h.shape, dtype=bool)
    return h < np.uint64(limit)


def reference(path: str):
    """The function a splits.json record names as its reference, by its current or former path."""
    if path == REFERENCE or path in FORMER_REFERENCES:
        return side_of_one
    raise ValueError(f"not a split hash this oi-pipe knows: {path}")
