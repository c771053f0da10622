"""`select --max-per-class`: deterministic, by a documented hash, and growing only adds images."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from openimages_pipe.errors import InputError
from openimages_pipe.select import outputs, rules
from openimages_pipe.select import selection as select
from openimages_pipe.splits import split_hash
from tests.fixtures.splits_data import A, B, write_csv

HEADER = ("ImageID", "Source", "LabelName", "Confidence")


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 images of A, 40 of B, 15 of them showing both, in random ID order."""
    rng = random.Random(7)
    ids = [f"{rng.getrandbits(64):016x}" for _ in range(85)]
    rows = [[i, "machine", A, "0.9"] for i in ids[:60]] + [
        [i, "machine", B, "0.8"] for i in ids[45:]
    ]
    rng.shuffle(rows)
    return write_csv(tmp_path_factory.mktemp("max") / "labels.csv", HEADER, rows)


def run(labels: Path, out: Path, n: int | None, seed: int = 0) -> tuple[list[str], dict]:
    cfg = select.SelectConfig(labels=(labels,), classes=(A, B), out=out, max_per_class=n, seed=seed)
    select.run(cfg)
    record = json.loads((out / outputs.SELECT_JSON).read_text())
    return outputs.read_ids(out), {r["label_name"]: r for r in record["per_class"]}


def lowest(labels: Path, mid: str, n: int, seed: int) -> set[str]:
    """The reference: a class's n images of lowest splitmix64 at seed + 2^32, in plain Python."""
    rows = [line.split(",") for line in labels.read_text().splitlines()[1:]]
    mine = [r[0] for r in rows if r[2] == mid]
    return set(
        sorted(mine, key=lambda i: split_hash.hash_one(i, seed + rules.RANK_SEED_OFFSET))[:n]
    )


def test_each_class_brings_in_its_n_images_of_lowest_rank(labels: Path, tmp_path: Path) -> None:
    ids, counts = run(labels, tmp_path / "a", 10)
    assert set(ids) == lowest(labels, A, 10, 0) | lowest(labels, B, 10, 0)
    assert counts[A]["eligible"] == 60 and counts[A]["over_max_per_class"] == 50
    # an image A brought in that also shows B counts for B too: B may end above 10
    assert counts[B]["selected"] == len(set(ids) & (lowest(labels, B, 40, 0)))
    assert run(labels, tmp_path / "again", 10)[0] == ids  # the same on every run
    assert set(run(labels, tmp_path / "seed", 10, seed=1)[0]) != set(ids)


def test_growing_n_only_adds_images(labels: Path, tmp_path: Path) -> None:
    previous: set[str] = set()
    for n in (1, 2, 5, 13, 39, 40, 60):
        ids = set(run(labels, tmp_path / str(n), n)[0])
        assert previous <= ids and len(ids) > len(previous)
        previous = ids
    assert previous == set(run(labels, tmp_path / "all", None)[0])  # all 85


def test_the_rank_is_not_the_split_hash(labels: Path, tmp_path: Path) -> None:
    """Ranked by the split's own hash and seed, a class's first images would be V_train's."""
    rows = [line.split(",") for line in labels.read_text().splitlines()[1:]]
    a_images = [r[0] for r in rows if r[2] == A]
    by_split_hash = sorted(a_images, key=lambda i: split_hash.hash_one(i, 0))[:5]
    assert all(split_hash.side_of_one(i, 0, 0.25) for i in by_split_hash)
    ids, _ = run(labels, tmp_path / "a", 5)
    assert not all(split_hash.side_of_one(i, 0, 0.25) for i in set(ids) & set(a_images))


def test_n_must_be_positive(labels: Path, tmp_path: Path) -> None:
    cfg = select.SelectConfig(labels=(labels,), classes=(A,), out=tmp_path, max_per_class=0)
    with pytest.raises(InputError, match="--max-per-class must be at least 1"):
        select.run(cfg)
