"""The class hierarchy of an offline world and what each class looks like.

Owns the ~20 classes a generated world draws from: each is a real Open Images V1 MID and display
name (from `manifests/dict.csv`), a parent or a child of one parent, and a visual signature that
a small CNN can learn. The parent fixes the shape family (circle, square, ...); a child is that
shape in its own colour and texture, and a parent-only object is the shape in neutral grey. Hands
on the `Hierarchy` (ancestors, siblings, confusers) to the renderer and the label-noise model, and
`sample_scene`, which draws the objects of one image.
"""

from __future__ import annotations

import csv
import enum
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path


class Shape(enum.StrEnum):
    """The shape family a parent class draws; all its children share it."""

    CIRCLE = "circle"
    SQUARE = "square"
    TRIANGLE = "triangle"
    STAR = "star"
    CROSS = "cross"
    RING = "ring"


class Texture(enum.StrEnum):
    """How an object's shape is filled; siblings differ in texture as well as colour, so that
    grayscale images still tell them apart."""

    SOLID = "solid"
    STRIPES = "stripes"
    DOTS = "dots"
    CHECKS = "checks"


PALETTE: dict[str, tuple[int, int, int]] = {
    "grey": (150, 150, 150),
    "red": (205, 35, 35),
    "blue": (35, 75, 210),
    "green": (30, 155, 55),
    "yellow": (240, 200, 30),
    "purple": (135, 45, 175),
}
NEUTRAL = "grey"
# A child object is drawn 85% of the time, a parent-only object ("some vehicle") 15%.
PARENT_ONLY_PROBABILITY = 0.15
OBJECTS_PER_IMAGE = (1, 2, 3, 4)
OBJECTS_WEIGHTS = (0.35, 0.35, 0.2, 0.1)

# (MID, V1 display name, shape, confusable parent MID, children as (MID, name, colour, texture)).
# Confusable parents have look-alike shapes (circle/ring, square/cross, triangle/star): that is
# where a classifier's false positives for a parent class come from.
# fmt: off
_TREE = (
    ("/m/07yv9", "vehicle", Shape.SQUARE, "/m/0c_jw", (
        ("/m/0k4j", "automobile", "red", Texture.SOLID),
        ("/m/01bjv", "bus", "yellow", Texture.STRIPES),
        ("/m/07r04", "truck", "blue", Texture.DOTS))),
    ("/m/0c_jw", "furniture", Shape.CROSS, "/m/07yv9", (
        ("/m/01mzpv", "chair", "green", Texture.SOLID),
        ("/m/04bcr3", "table", "purple", Texture.STRIPES),
        ("/m/02crq1", "couch", "red", Texture.DOTS))),
    ("/m/0jbk", "animal", Shape.CIRCLE, "/m/0c9ph5", (
        ("/m/0bt9lr", "dog", "blue", Texture.SOLID),
        ("/m/01yrx", "cat", "red", Texture.STRIPES),
        ("/m/015p6", "bird", "green", Texture.DOTS),
        ("/m/03k3r", "horse", "yellow", Texture.CHECKS))),
    ("/m/0c9ph5", "flower", Shape.RING, "/m/0jbk", (
        ("/m/06m11", "rose", "red", Texture.SOLID),
        ("/m/0ftb8", "sunflower", "yellow", Texture.STRIPES))),
    ("/m/02xwb", "fruit", Shape.TRIANGLE, "/m/04szw", (
        ("/m/014j1m", "apple", "green", Texture.SOLID),
        ("/m/09qck", "banana", "yellow", Texture.STRIPES),
        ("/m/09k_b", "lemon", "purple", Texture.DOTS))),
    ("/m/04szw", "musical instrument", Shape.STAR, "/m/02xwb", (
        ("/m/0342h", "guitar", "purple", Texture.SOLID),
        ("/m/026t6", "drum", "blue", Texture.STRIPES))),
)
# fmt: on


@dataclass(frozen=True)
class WorldClass:
    """One class of the world: a real MID, its V1 name and how its objects are drawn."""

    mid: str
    name: str
    parent: str | None
    shape: Shape
    colour: tuple[int, int, int]
    texture: Texture


@dataclass(frozen=True)
class Hierarchy:
    """Parents and children; a child implies its parent."""

    classes: tuple[WorldClass, ...]
    confusable: tuple[tuple[str, str], ...]

    @cached_property
    def by_mid(self) -> dict[str, WorldClass]:
        return {c.mid: c for c in self.classes}

    @property
    def mids(self) -> tuple[str, ...]:
        return tuple(c.mid for c in self.classes)

    def parents(self) -> tuple[str, ...]:
        return tuple(c.mid for c in self.classes if c.parent is None)

    def children(self, mid: str) -> tuple[str, ...]:
        return tuple(c.mid for c in self.classes if c.parent == mid)

    def ancestors(self, mid: str) -> tuple[str, ...]:
        chain, parent = [], self.by_mid[mid].parent
        while parent is not None:
            chain.append(parent)
            parent = self.by_mid[parent].parent
        return tuple(chain)

    def siblings(self, mid: str) -> tuple[str, ...]:
        parent = self.by_mid[mid].parent
        if parent is None:
            return ()
        return tuple(m for m in self.children(parent) if m != mid)

    def confusers(self, mid: str) -> frozenset[str]:
        """Classes whose presence makes a false `mid` label plausible: a child's parent (so any
        sibling or parent-only object), a parent's look-alike parent."""
        parent = self.by_mid[mid].parent
        if parent is not None:
            return frozenset({parent})
        return frozenset(b for a, b in self.confusable if a == mid)

    def closure(self, mids: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
        """The true labels of an image holding objects of `mids`: them and their ancestors."""
        return frozenset(m for mid in mids for m in (mid, *self.ancestors(mid)))


def build_hierarchy() -> Hierarchy:
    classes: list[WorldClass] = []
    confusable: list[tuple[str, str]] = []
    for mid, name, shape, look_alike, children in _TREE:
        classes.append(WorldClass(mid, name, None, shape, PALETTE[NEUTRAL], Texture.SOLID))
        confusable.append((mid, look_alike))
        for child_mid, child_name, colour, texture in children:
            classes.append(WorldClass(child_mid, child_name, mid, shape, PALETTE[colour], texture))
    return Hierarchy(tuple(classes), tuple(confusable))


def sample_scene(rng: random.Random, hierarchy: Hierarchy) -> tuple[str, ...]:
    """The classes of the 1-4 objects of one image (a class may appear twice)."""
    count = rng.choices(OBJECTS_PER_IMAGE, OBJECTS_WEIGHTS)[0]
    objects = []
    for _ in range(count):
        parent = rng.choice(hierarchy.parents())
        if rng.random() < PARENT_ONLY_PROBABILITY:
            objects.append(parent)
        else:
            objects.append(rng.choice(hierarchy.children(parent)))
    return tuple(objects)


def read_dict(path: Path) -> dict[str, str]:
    """MID -> display name from a V1 `dict.csv` (no header, both fields quoted)."""
    with path.open(encoding="utf-8", newline="") as f:
        return {row[0]: row[1] for row in csv.reader(f) if row}
