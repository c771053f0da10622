"""`build-splits --verified-from all`: human verifications of training images form V too (V4+),
and input lists given as glob patterns."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from openimages_pipe.errors import InputError
from openimages_pipe.splits import build
from tests.fixtures.splits_data import A, B, C, D, basic, iid, read_sets, write


def _content():
    content = basic()
    content.human += [("t1", A, "1"), ("t2", C, "0")]  # V4+ verify training images too
    return content


def test_by_default_training_images_stay_in_t_and_their_verdicts_are_dropped(tmp_path: Path):
    cfg = write(tmp_path, _content(), "v6")
    build.run(cfg)
    sets = read_sets(cfg.out)
    t = set(sets["T"]["image_id"])
    assert {iid("t1"), iid("t2")} <= t
    v = set(sets["V_train"]["image_id"]) | set(sets["V_eval"]["image_id"])
    assert not {iid("t1"), iid("t2")} & v


def test_verified_from_all_moves_verified_training_images_from_t_to_v(tmp_path: Path):
    vocabulary = tmp_path / "classes.txt"  # fixed: the V1 rule would count T without t1, t2
    vocabulary.write_text("\n".join((A, B, C, D)) + "\n")
    cfg = write(tmp_path, _content(), "v6", verified_from="all", classes=vocabulary)
    summary = build.run(cfg)
    sets = read_sets(cfg.out)
    moved = {iid("t1"), iid("t2")}
    assert not moved & set(sets["T"]["image_id"])
    assert set(sets["T"]["image_id"]) == {iid("t3"), iid("t4")}
    v = {r["image_id"]: r for s in ("V_train", "V_eval") for r in sets[s].iter_rows(named=True)}
    assert moved <= set(v)
    classes = {r["label_name"]: r["class_index"] for r in sets["classes"].iter_rows(named=True)}
    assert v[iid("t1")]["verified_pos"] == [classes[A]]
    assert v[iid("t2")]["verified_neg"] == [classes[C]]
    assert summary.t_images == 2
    record = json.loads((cfg.out / "splits.json").read_text())
    assert record["config"]["verified_from"] == "all"
    assert record["counts"]["images"]["train_images_moved_to_v"] == 2


def test_an_unknown_verified_from_is_refused(tmp_path: Path):
    with pytest.raises(InputError, match="--verified-from must be one of validation, all"):
        build.run(write(tmp_path, basic(), "v6", verified_from="train"))


def test_inputs_may_be_glob_patterns(tmp_path: Path):
    cfg = write(tmp_path, basic(), "v6")
    folder = cfg.images[0].parent
    globbed = replace(
        cfg,
        images=(folder / "*-images.csv",),
        machine_labels=(folder / "*-machine.csv",),
        human_labels=(folder / "*-human.csv",),
    )
    build.run(globbed)
    record = json.loads((cfg.out / "splits.json").read_text())
    assert record["config"]["images"] == sorted(str(p) for p in cfg.images)
    with pytest.raises(InputError, match="--human-labels: no file matches this pattern"):
        build.run(replace(cfg, human_labels=(folder / "*-nothing.csv",)))
