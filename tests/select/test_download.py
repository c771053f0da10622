"""A selection downloaded: select's ids.txt as `download --ids`, and `download --classes`, both
against the offline world served on 127.0.0.1."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.download import manifest
from openimages_pipe.download import pipeline as download
from openimages_pipe.download.fetch import FetchConfig
from openimages_pipe.download.tasks import InputConfig
from openimages_pipe.select import outputs
from openimages_pipe.select import selection as select
from openimages_pipe.world import layout as world_layout
from openimages_pipe.world.server import ServeConfig, WorldServer
from tests.fixtures.worlds import image_csvs, shard_ids

runner = CliRunner()


@pytest.fixture(scope="module")
def world(offline_world: Path) -> Path:
    return offline_world  # the session's (tests/conftest.py): 40 images, read-only


def label_files(world: Path) -> tuple[Path, ...]:
    cfg = world_layout.splits_config(world, world / "unused")
    return cfg.machine_labels + cfg.human_labels


def two_classes(world: Path) -> dict[str, str]:
    """The world's two most frequent machine-labelled classes whose name no other MID shares:
    MID -> display name (the world's dict.csv is V1's)."""
    names: dict[str, list[str]] = {}
    with (world / "data" / "dict.csv").open(newline="") as f:
        for mid, name in csv.reader(f):
            names.setdefault(name, []).append(mid)
    unique = {mids[0]: name for name, mids in names.items() if len(mids) == 1}
    counts: dict[str, int] = {}
    for path in label_files(world):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["Source"] == "machine" and row["LabelName"] in unique:
                    counts[row["LabelName"]] = counts.get(row["LabelName"], 0) + 1
    top = sorted(counts, key=lambda m: (-counts[m], m))[:2]
    return {mid: unique[mid] for mid in top}


def expected(world: Path, mids: set[str]) -> set[str]:
    """The rule, written out plainly: a human yes, or a machine label >= 0.5 and no human no."""
    machine: dict[tuple[str, str], float] = {}
    human: dict[tuple[str, str], float] = {}
    for path in label_files(world):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                pair, conf = (row["ImageID"], row["LabelName"]), float(row["Confidence"])
                seen = machine if row["Source"] == "machine" else human
                seen[pair] = max(conf, seen.get(pair, 0.0))
    positive = {p for p, c in human.items() if c == 1}
    positive |= {p for p, c in machine.items() if c >= 0.5 and human.get(p) != 0}
    return {image for image, mid in positive if mid in mids}


def test_the_ids_file_is_what_download_ids_reads(world: Path, tmp_path: Path) -> None:
    classes = two_classes(world)
    cfg = select.SelectConfig(
        labels=label_files(world), classes=tuple(classes.values()), out=tmp_path / "select",
        class_names=world / "data" / "dict.csv",
    )  # fmt: skip
    select.run(cfg)
    ids = outputs.read_ids(cfg.out)
    assert set(ids) == expected(world, set(classes)) and 0 < len(ids) < 40
    with WorldServer(ServeConfig(world=world)) as srv:
        download.run(
            download.DownloadConfig(
                out=tmp_path / "dl",
                input=InputConfig(
                    csvs=image_csvs(world),
                    ids_file=cfg.out / outputs.IDS_TXT,
                    mirror_template=world_layout.mirror_template(srv.base_url),
                ),
                fetch=FetchConfig(allow_private=True, first_byte_timeout=2, total_timeout=10),
                workers=1,
                quiet=True,
            )  # fmt: skip
        )
    rows = manifest.load_all(tmp_path / "dl")
    assert sorted(rows["image_id"]) == ids and set(rows["status"]) == {"ok"}
    assert sorted(shard_ids(tmp_path / "dl")) == ids


def test_download_classes_fetches_exactly_the_selected_images(world: Path, tmp_path: Path) -> None:
    classes = two_classes(world)
    (first, second) = classes.values()
    out = tmp_path / "dl"
    labels = [arg for path in label_files(world) for arg in ("--labels", str(path))]
    with WorldServer(ServeConfig(world=world)) as srv:
        args = [
            "download", *map(str, image_csvs(world)), "--out", str(out), "--quiet",
            "--classes", f"{first.upper()},{second}", *labels,
            "--class-names", str(world / "data" / "dict.csv"), "--allow-private-addresses",
            "--mirror-url", world_layout.mirror_template(srv.base_url), "--workers", "1",
        ]  # fmt: skip
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        requests = sum(srv.state.requests.values())
    want = expected(world, set(classes))
    assert sorted(shard_ids(out)) == sorted(want)
    assert set(manifest.load_all(out)["image_id"]) == want  # nothing else was even tried
    assert requests == len(want)  # one request per image: no source failed
    assert set((out / "select" / "ids.txt").read_text().split()) == want
    (record_path,) = (out / "runs").glob("*.json")
    record = json.loads(record_path.read_text())
    chosen = record["config"]["input"]  # the selection's resolved config, and what it chose
    assert chosen["selection"]["classes"] == [f"{first.upper()},{second}"]
    assert chosen["selection"]["images"] == [str(p.absolute()) for p in image_csvs(world)]
    assert chosen["ids_file"] == str(out.absolute() / "select" / "ids.txt")
    selection = record["selection"]
    assert {r["label_name"] for r in selection["per_class"]} == set(classes)
    assert selection["counts"]["images"] == len(want)
    assert first in result.output  # the table of counts per class is printed


def test_download_refuses_classes_with_ids_or_without_labels(world: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("")
    csvs = list(map(str, image_csvs(world)))
    base = ["download", *csvs, "--out", str(tmp_path / "dl"), "--classes", "cat"]
    result = runner.invoke(app, [*base, "--ids", str(ids), "--labels", csvs[0]])
    assert result.exit_code == 1 and "--classes or --ids, not both" in result.output
    result = runner.invoke(app, base)
    assert result.exit_code == 1 and "--classes needs --labels" in result.output
    result = runner.invoke(app, [*base[:-2], "--labels", csvs[0]])
    assert result.exit_code == 1 and "--labels needs --classes" in result.output
