"""Fixed quotas for a world's rare cases, so that even a tiny world shows each of them.

Owns one rule, used by `make` (subsets, unknown rotations), `flickr` (dirty titles,
missing thumbnails) and `render` (file variants): a case of rate r among n images gets
exactly ceil(r * n) of them, so at least one wherever r > 0, rather than a random draw that a
small world can miss.
"""

from __future__ import annotations

import math
import random


def quota_size(rate: float, count: int) -> int:
    """ceil(rate * count), rounded first so that 0.07 * 100 gives 7, not 8."""
    return math.ceil(round(rate * count, 6))


def quota(count: int, rates: dict[str, float], rng: random.Random) -> list[str]:
    """`count` slots in random order: `quota_size` tagged per rate (so at least one where
    rate > 0, even in a tiny world), the rest ""."""
    slots: list[str] = []
    for tag, rate in rates.items():
        slots += [tag] * min(quota_size(rate, count), count - len(slots))
    slots += [""] * (count - len(slots))
    rng.shuffle(slots)
    return slots
