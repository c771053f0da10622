"""The closed sets of `select`, importable without polars (the CLI offers them as choices)."""

from __future__ import annotations

import enum


class LabelSource(enum.StrEnum):
    """Which labels may select an image."""

    ANY = "any"  # a human-verified positive, or a machine label that no human contradicts
    HUMAN = "human"  # human-verified positives (Confidence 1) only
    MACHINE = "machine"  # machine labels at or above --min-confidence only
