"""The world's class hierarchy: real V1 MIDs, a child implies its parent, learnable signatures."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from openimages_pipe.world.classes import (
    OBJECTS_PER_IMAGE,
    build_hierarchy,
    read_dict,
    sample_scene,
)


def test_every_class_is_a_real_v1_mid_with_its_v1_name(dict_csv: Path) -> None:
    vocabulary = read_dict(dict_csv)
    assert len(vocabulary) == 7881
    for cls in build_hierarchy().classes:
        assert vocabulary.get(cls.mid) == cls.name, cls


def test_read_dict_keeps_names_with_commas_and_non_ascii(dict_csv: Path) -> None:
    vocabulary = read_dict(dict_csv)
    assert vocabulary["/m/01c_0l"] == "ducks, geese and swans"
    assert vocabulary["/m/0132x9"] == "kakigōri"


def test_hierarchy_shape_parents_with_two_to_four_children() -> None:
    h = build_hierarchy()
    parents = h.parents()
    assert 5 <= len(parents) <= 6
    assert 18 <= len(h.classes) <= 26
    assert len(set(h.mids)) == len(h.mids)
    for parent in parents:
        assert 2 <= len(h.children(parent)) <= 4
        for child in h.children(parent):
            assert h.ancestors(child) == (parent,)
            assert h.children(child) == ()


def test_closure_adds_every_ancestor_and_nothing_else() -> None:
    h = build_hierarchy()
    bus, dog = h.by_mid["/m/01bjv"], h.by_mid["/m/0bt9lr"]
    assert h.closure((bus.mid, dog.mid)) == {bus.mid, bus.parent, dog.mid, dog.parent}
    assert h.closure((bus.parent,)) == {bus.parent}


def test_signatures_tell_every_class_apart() -> None:
    """Parents differ in shape; siblings differ in colour and in texture (for grayscale)."""
    h = build_hierarchy()
    assert len({h.by_mid[p].shape for p in h.parents()}) == len(h.parents())
    for parent in h.parents():
        kids = [h.by_mid[c] for c in h.children(parent)]
        assert len({k.colour for k in kids}) == len(kids)
        assert len({k.texture for k in kids}) == len(kids)
        assert all(k.shape == h.by_mid[parent].shape for k in kids)
        assert h.by_mid[parent].colour not in {k.colour for k in kids}


def test_confusers_are_the_parent_for_a_child_and_a_look_alike_for_a_parent() -> None:
    h = build_hierarchy()
    assert h.confusers("/m/07r04") == {"/m/07yv9"}  # truck: any vehicle
    look_alike = h.confusers("/m/07yv9")
    assert len(look_alike) == 1 and next(iter(look_alike)) in h.parents()
    assert "/m/07yv9" not in look_alike


def test_sample_scene_draws_one_to_four_known_objects_mostly_children() -> None:
    h, rng = build_hierarchy(), random.Random(5)
    scenes = [sample_scene(rng, h) for _ in range(2000)]
    assert Counter(len(s) for s in scenes).keys() == set(OBJECTS_PER_IMAGE)
    objects = [m for s in scenes for m in s]
    assert set(objects) == set(h.mids)
    parent_only = sum(h.by_mid[m].parent is None for m in objects) / len(objects)
    assert 0.08 < parent_only < 0.25
