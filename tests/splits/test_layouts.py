"""Every release layout gives the same splits; worlds of `world make` build end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from openimages_pipe.formats import releases
from openimages_pipe.splits import build as splits
from openimages_pipe.splits import stats
from openimages_pipe.world import layout as wl
from openimages_pipe.world import make as world_make
from tests.fixtures.splits_data import SETS, basic, read_sets, write

RELEASES = [r.id for r in releases.load_releases()]


@pytest.fixture(scope="module")
def v1_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    cfg = write(tmp_path_factory.mktemp("v1"), basic(), "v1")
    splits.run(cfg)
    return read_sets(cfg.out)


@pytest.mark.parametrize("release_id", RELEASES[1:])
def test_every_layout_gives_the_same_splits(
    tmp_path: Path, release_id: str, v1_sets: dict[str, pl.DataFrame]
) -> None:
    """V1's headers, dict.csv and Source `human` against each later release's headers (Rotation
    column), class-descriptions (with a header from V6) and Source values (`verification`,
    `crowdsource-verification`), and V2+'s test subset."""
    cfg = write(tmp_path, basic(), release_id)
    splits.run(cfg)
    sets = read_sets(cfg.out)
    for name in (*SETS, "classes"):
        assert_frame_equal(sets[name], v1_sets[name])


def _human_rows(world: Path) -> list[dict]:
    rows = []
    for path in sorted((world / "data").rglob("*.csv")):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames and "Source" in reader.fieldnames:
                rows += [r for r in reader if r["Source"] in releases.all_human_sources()]
    return rows


@pytest.mark.parametrize("layout", [wl.Layout.V1, wl.Layout.V7])
def test_a_world_builds_end_to_end(tmp_path: Path, layout: wl.Layout) -> None:
    world = tmp_path / "world"
    cfg = world_make.MakeConfig(out=world, images=60, seed=3, layout=layout, workers=1,
                                max_side=400)  # fmt: skip
    world_make.run(cfg)
    names = wl.WorldPaths(world).data / wl.data_file(layout, "class_descriptions")
    summary = splits.run(wl.splits_config(world, tmp_path / "splits", classes=names))
    assert summary.t_images > 0 and summary.v_train + summary.v_eval == summary.v_images > 0
    human = _human_rows(world)
    # every machine label of V was verified, and no MID is outside the vocabulary: all count
    assert summary.v_pos + summary.v_neg == len(human)
    assert summary.v_pos == sum(r["Confidence"] == "1" for r in human)
    measured = stats.compute(tmp_path / "splits")
    assert measured.tp + measured.fp == len(human)
    subsets = json.loads((tmp_path / "splits" / "splits.json").read_text())["counts"]["images"]
    assert set(subsets["by_subset"]) == set(wl.LAYOUT_SUBSETS[layout])
