"""`world make` end to end on tiny worlds: official formats, consistent files, determinism."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from openimages_pipe import packaged
from openimages_pipe.errors import InputError
from openimages_pipe.world import layout as wl
from openimages_pipe.world.classes import build_hierarchy
from openimages_pipe.world.make import IMAGES_COLUMNS, MakeConfig, describe, run

BASE = "http://127.0.0.1:9999"
IMAGES = 60
pytestmark = pytest.mark.usefixtures("dict_csv")  # tests/conftest.py: world make copies it


def _make(root: Path, **kw) -> Path:
    kw = {"seed": 7, "images": IMAGES, "base_url": BASE, "workers": 1, "max_side": 1200, **kw}
    run(MakeConfig(out=root, **kw))
    return root


@pytest.fixture(scope="module")
def v1(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("v1"), workers=2)


@pytest.fixture(scope="module")
def v6(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("v6"), layout=wl.Layout.V6)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _data(root: Path, layout: wl.Layout, kind: str, subset: str = "") -> Path:
    return root / "data" / wl.data_file(layout, kind, subset)


def _images(root: Path, layout: wl.Layout) -> list[dict[str, str]]:
    return [
        r for s in wl.LAYOUT_SUBSETS[layout] for r in _rows(_data(root, layout, "images", s))[1]
    ]


def _csv_bytes(root: Path) -> dict[str, bytes]:
    files = [*root.glob("data/**/*.csv"), root / "served/routes.csv", root / "truth/objects.csv"]
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


@pytest.mark.parametrize("layout", [wl.Layout.V1, wl.Layout.V6])
def test_images_csvs_have_the_official_header_and_parse(v1, v6, layout) -> None:
    root = v1 if layout is wl.Layout.V1 else v6
    expected = list(IMAGES_COLUMNS) + (["Rotation"] if layout is not wl.Layout.V1 else [])
    total = 0
    for subset in wl.LAYOUT_SUBSETS[layout]:
        path = _data(root, layout, "images", subset)
        assert path.read_bytes().startswith(",".join(expected).encode() + b"\n")
        header, rows = _rows(path)
        assert header == expected and all(r["Subset"] == subset for r in rows)
        assert all(None not in r and len(r) == len(expected) for r in rows)
        total += len(rows)
    assert total == IMAGES


def test_label_csvs_have_the_official_header(v1, v6) -> None:
    for root, layout in ((v1, wl.Layout.V1), (v6, wl.Layout.V6)):
        for subset in wl.LAYOUT_SUBSETS[layout]:
            kinds = ["machine_labels"] + (["human_labels"] if subset != "train" else [])
            for kind in kinds:
                header, _ = _rows(_data(root, layout, kind, subset))
                assert header == ["ImageID", "Source", "LabelName", "Confidence"]


def test_image_ids_are_16_hex_and_unique(v1) -> None:
    ids = [r["ImageID"] for r in _images(v1, wl.Layout.V1)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == IMAGES


def test_served_original_matches_size_and_md5_in_the_csv(v1) -> None:
    routes = {r["path"]: r for r in _rows(v1 / "served/routes.csv")[1]}
    for row in _images(v1, wl.Layout.V1):
        route = routes[row["OriginalURL"].removeprefix(BASE)]
        assert route["kind"] == "original" and route["image_id"] == row["ImageID"]
        data = (v1 / "served" / route["file"]).read_bytes()
        assert int(row["OriginalSize"]) == len(data)
        assert row["OriginalMD5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
        Image.open(v1 / "served" / route["file"]).load()


def test_urls_are_flickr_shaped(v1) -> None:
    for row in _images(v1, wl.Layout.V1):
        original = (
            r"/farm([1-9])\.staticflickr\.com/(\d{4})/(\d{10,11})_([0-9a-f]{10})_o\.(jpg|png)"
        )
        m = re.fullmatch(re.escape(BASE) + original, row["OriginalURL"])
        assert m, row["OriginalURL"]
        assert row["OriginalLandingURL"].endswith(f"/{m[3]}")
        assert row["License"] == "https://creativecommons.org/licenses/by/2.0/"
        if row["Thumbnail300KURL"]:
            assert re.fullmatch(rf"{re.escape(BASE)}/c\d\.staticflickr\.com/{m[1]}/{m[2]}/{m[3]}_"
                                r"[0-9a-f]{10}_z\.jpg", row["Thumbnail300KURL"])  # fmt: skip
            assert m[4] not in row["Thumbnail300KURL"]


def test_routes_cover_every_url_with_existing_files(v1) -> None:
    header, routes = _rows(v1 / "served/routes.csv")
    assert header == list(wl.ROUTES_COLUMNS)
    kinds = Counter(r["kind"] for r in routes)
    rows = _images(v1, wl.Layout.V1)
    assert kinds["original"] == IMAGES
    assert kinds["thumbnail"] == sum(1 for r in rows if r["Thumbnail300KURL"]) < IMAGES
    by_path = {r["path"]: r for r in routes}
    assert len(by_path) == len(routes)
    for r in rows:
        if r["Subset"] == "validation":  # the mirror holds all of validation
            assert (
                wl.MIRROR_PATH_TEMPLATE.format(subset="validation", image_id=r["ImageID"])
                in by_path
            )
    for r in routes:
        file = v1 / "served" / r["file"]
        assert file.is_file()
        expected = "image/png" if file.suffix == ".png" else "image/jpeg"
        assert r["content_type"] == expected
        if r["kind"] == "mirror":
            assert max(Image.open(file).size) <= 1024
    assert (v1 / "served/photo_unavailable.png").is_file()


def test_thumbnails_differ_from_originals(v1) -> None:
    files = defaultdict(dict)
    for r in _rows(v1 / "served/routes.csv")[1]:
        files[r["image_id"]][r["kind"]] = (v1 / "served" / r["file"]).read_bytes()
    pairs = [(f["original"], f["thumbnail"]) for f in files.values() if "thumbnail" in f]
    assert pairs and all(hashlib.md5(a).digest() != hashlib.md5(b).digest() for a, b in pairs)


def test_truth_holds_every_ancestor_and_humans_verify_against_it(v1) -> None:
    h = build_hierarchy()
    truth = defaultdict(set)
    for r in _rows(v1 / "truth/objects.csv")[1]:
        truth[r["image_id"]].add(r["label_name"])
    assert len(truth) == IMAGES
    for labels in truth.values():
        assert all(set(h.ancestors(m)) <= labels for m in labels)
    _, machine = _rows(_data(v1, wl.Layout.V1, "machine_labels", "validation"))
    _, human = _rows(_data(v1, wl.Layout.V1, "human_labels", "validation"))
    assert [(r["ImageID"], r["LabelName"]) for r in human] == [
        (r["ImageID"], r["LabelName"]) for r in machine
    ]
    for r in human:
        assert r["Source"] == "human"
        assert r["Confidence"] == ("1" if r["LabelName"] in truth[r["ImageID"]] else "0")
    assert {r["Confidence"] for r in human} == {"0", "1"}


def test_machine_labels_look_like_the_real_files(v1) -> None:
    rows = [r for s in ("train", "validation")
            for r in _rows(_data(v1, wl.Layout.V1, "machine_labels", s))[1]]  # fmt: skip
    assert {r["Source"] for r in rows} == {"machine"}
    assert {r["Confidence"] for r in rows} <= {"0.5", "0.6", "0.7", "0.8", "0.9", "1.0"}
    stats = json.loads((v1 / "world.json").read_text())["stats"]["labels"]
    assert abs(stats["fp_rate"] - 0.266) <= 0.03


def test_variants_and_dirty_metadata_are_present(v1, v6) -> None:
    stats = json.loads((v6 / "world.json").read_text())["stats"]
    assert all(stats["formats"][v] >= 1 for v in ("png", "cmyk", "gray", "exif", "rotated"))
    rows = _images(v6, wl.Layout.V6)
    assert {r["Rotation"] for r in rows} >= {"0.0", ""} and any(
        r["Rotation"] in ("90.0", "180.0", "270.0") for r in rows
    )
    titles = [r["Title"] for r in rows]
    assert any("," in t for t in titles) and any('"' in t for t in titles)
    assert any("\n" in t for t in titles) and any(not t.isascii() for t in titles)
    assert any(not r["Thumbnail300KURL"] for r in rows)
    jpegs = [r["ImageID"] for r in _images(v1, wl.Layout.V1) if r["OriginalURL"].endswith(".jpg")]
    modes = Counter(Image.open(v1 / "served" / f"original/{i}.jpg").mode for i in jpegs)
    assert {"RGB", "L", "CMYK"} <= set(modes)


def test_rotated_originals_turn_upright(v6) -> None:
    for r in _images(v6, wl.Layout.V6):
        if r["Rotation"] in ("90.0", "270.0"):
            ext = r["OriginalURL"].rsplit(".", 1)[1]
            stored = Image.open(v6 / "served" / f"original/{r['ImageID']}.{ext}")
            turned = stored.rotate(float(r["Rotation"]), expand=True)
            assert turned.size == stored.size[::-1]


def test_class_descriptions(v1, v6) -> None:
    assert _data(v1, wl.Layout.V1, "class_descriptions").read_bytes() == (
        packaged.dict_csv().read_bytes()
    )
    header, rows = _rows(_data(v6, wl.Layout.V6, "class_descriptions"))
    assert header == ["LabelName", "DisplayName"] and len(rows) == 7881
    names = {r["LabelName"]: r["DisplayName"] for r in rows}
    assert names["/m/01bjv"] == "Bus" and names["/m/01c_0l"] == "Ducks, geese and swans"


def test_v6_human_source_is_verification_and_has_test_subset(v6) -> None:
    _, human = _rows(_data(v6, wl.Layout.V6, "human_labels", "test"))
    assert human and {r["Source"] for r in human} == {"verification"}
    assert not _data(v6, wl.Layout.V6, "human_labels", "train").exists()


def test_world_json_records_config_and_stats(v1) -> None:
    record = wl.WorldPaths(v1).read_world_json()
    assert record["format_version"] == 1
    assert (record["seed"], record["layout"], record["base_url"]) == (7, "v1", BASE)
    assert record["config"]["test_fraction"] == 0.0 and record["config"]["images"] == IMAGES
    assert record["stats"]["subsets"] == {"train": 42, "validation": 18}
    on_disk = sum(f.stat().st_size for f in v1.rglob("*") if f.is_file() and f.name != "world.json")
    assert record["stats"]["bytes_on_disk"] == on_disk


def test_same_seed_same_world_other_seed_other_world(v1, tmp_path) -> None:
    again = _make(tmp_path / "again")  # workers=1 here, 2 for v1: the pool changes nothing
    assert _csv_bytes(again) == _csv_bytes(v1)
    other = _make(tmp_path / "other", seed=8)
    assert _csv_bytes(other)["served/routes.csv"] != _csv_bytes(v1)["served/routes.csv"]
    assert _images(other, wl.Layout.V1)[0]["ImageID"] != _images(v1, wl.Layout.V1)[0]["ImageID"]


def test_rerun_replaces_a_world_and_refuses_other_folders(tmp_path) -> None:
    root = _make(tmp_path / "w", images=12)
    _make(root, images=12, seed=9)
    assert json.loads((root / "world.json").read_text())["seed"] == 9
    assert len(list((root / "served/original").iterdir())) == 12
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="world.json"):
        _make(stranger)
    assert (stranger / "notes.txt").read_text() == "mine"


def test_bad_config_names_the_value(tmp_path) -> None:
    with pytest.raises(InputError, match="fractions"):
        run(MakeConfig(out=tmp_path / "x", validation_fraction=0.9, layout=wl.Layout.V6))


def test_v7_uses_its_own_file_names(tmp_path) -> None:
    root = _make(tmp_path / "v7", images=12, layout=wl.Layout.V7)
    assert (root / "data/oidv7-val-annotations-human-imagelabels.csv").is_file()
    assert (root / "data/oidv7-class-descriptions.csv").is_file()
    assert (root / "data/test-images-with-rotation.csv").is_file()


def test_describe_mentions_the_headline_numbers(tmp_path) -> None:
    summary = run(MakeConfig(out=tmp_path, images=12, base_url=BASE, workers=1, max_side=800))
    text = describe(summary)
    assert "12 images" in text and "false positives" in text and str(tmp_path) in text
