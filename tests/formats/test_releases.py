"""Invariants of the release manifests in `manifests/`: schema, internal consistency, and the few
facts about Open Images that the rest of oi-pipe relies on (columns, Source values, headers)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.fixtures.paths import MANIFESTS

RELEASE_FILES = sorted(MANIFESTS.glob("v*.toml"))

DICT_CSV_SHA256 = "6be8501de1a116034c1b2094b1a27eebc3eaff701be30ecc2c15db594dcc53a7"
DICT_CSV_ROWS = 7881

KINDS = {
    "images",
    "machine_labels",
    "human_labels",
    "class_descriptions",
    "class_list",
    "boxes",
    "archive",
    "other",
}
FILE_KEYS = {"kind", "name", "url", "archive", "subset", "header", "columns", "rows", "local"}
TOP_KEYS = {
    "id",
    "version",
    "name",
    "date",
    "released",
    "class_count",
    "sources",
    "label_sources",
    "mirror",
    "subsets",
    "files",
}
SUBSET_KEYS = {"images", "machine_labels", "human_labels", "boxes"}
MIRROR_FOLDERS = {"train", "validation", "test", "challenge2018"}

V1_IMAGE_COLUMNS = [
    "ImageID",
    "Subset",
    "OriginalURL",
    "OriginalLandingURL",
    "License",
    "AuthorProfileURL",
    "Author",
    "Title",
    "OriginalSize",
    "OriginalMD5",
    "Thumbnail300KURL",
]
LABEL_COLUMNS = ["ImageID", "Source", "LabelName", "Confidence"]
V2_PLUS_SUBSETS = {"train": 9011219, "validation": 41620, "test": 125436}


def _load(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


RELEASES = {p.stem: _load(p) for p in RELEASE_FILES}


def _files(doc: dict, kind: str) -> list[dict]:
    return [f for f in doc["files"] if f["kind"] == kind]


def test_there_is_one_manifest_per_release_v1_to_v7():
    assert sorted(RELEASES) == [f"v{n}" for n in range(1, 8)]


def test_ids_match_file_names_and_are_unique():
    ids = [doc["id"] for doc in RELEASES.values()]
    assert len(ids) == len(set(ids))
    for stem, doc in RELEASES.items():
        assert doc["id"] == stem


def test_versions_are_ordered_and_match_ids():
    ordered = sorted(RELEASES.values(), key=lambda d: d["version"])
    assert [d["version"] for d in ordered] == list(range(1, len(ordered) + 1))
    assert [d["id"] for d in ordered] == [f"v{d['version']}" for d in ordered]
    assert [d["name"] for d in ordered] == [f"Open Images V{d['version']}" for d in ordered]


def test_dates_and_release_days_are_well_formed_and_increase():
    ordered = sorted(RELEASES.values(), key=lambda d: d["version"])
    tags = [d["date"] for d in ordered]
    assert all(re.fullmatch(r"20\d\d_(0[1-9]|1[0-2])", t) for t in tags), tags
    assert tags == sorted(tags) and len(set(tags)) == len(tags)
    for doc in ordered:
        released = doc["released"]
        assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?", released), released
        # Data are tagged before (or in the month of) their publication.
        assert released[:7] >= doc["date"].replace("_", "-"), doc["id"]


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_top_level_keys_and_types(stem):
    doc = RELEASES[stem]
    assert set(doc) <= TOP_KEYS, set(doc) - TOP_KEYS
    assert {"id", "version", "name", "date", "label_sources", "mirror", "subsets", "files"} <= set(
        doc
    )
    assert isinstance(doc["class_count"], int) and doc["class_count"] > 0
    assert doc["sources"] and all(
        isinstance(s, str) and s.startswith("https://") for s in doc["sources"]
    )


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_label_sources_are_non_empty_and_disjoint(stem):
    sources = RELEASES[stem]["label_sources"]
    machine, human = sources["machine"], sources["human"]
    assert machine and human
    assert all(isinstance(s, str) and s for s in machine + human)
    assert not set(machine) & set(human)
    assert machine == ["machine"]


def test_human_sources_known_per_release():
    assert RELEASES["v1"]["label_sources"]["human"] == ["human"]
    for stem in ("v3", "v4", "v5", "v6", "v7"):
        assert RELEASES[stem]["label_sources"]["human"] == [
            "verification",
            "crowdsource-verification",
        ]


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_subset_counts_are_positive_ints(stem):
    subsets = RELEASES[stem]["subsets"]
    assert "train" in subsets and "validation" in subsets
    for name, counts in subsets.items():
        assert set(counts) <= SUBSET_KEYS, (name, set(counts) - SUBSET_KEYS)
        assert isinstance(counts["images"], int) and counts["images"] > 0
        for key, value in counts.items():
            assert isinstance(value, int) and not isinstance(value, bool), (name, key)
            assert value >= 0, (name, key)


def test_subsets_of_v1_and_of_later_releases():
    assert RELEASES["v1"]["subsets"] == {
        "train": {"images": 9011219, "human_labels": 0},
        "validation": {"images": 167057},
    }
    for stem in ("v2", "v3", "v4", "v5", "v6", "v7"):
        images = {name: c["images"] for name, c in RELEASES[stem]["subsets"].items()}
        assert images == V2_PLUS_SUBSETS, stem


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_every_file_is_well_formed(stem):
    doc = RELEASES[stem]
    assert doc["files"]
    for f in doc["files"]:
        where = (stem, f.get("name"))
        assert set(f) <= FILE_KEYS, (where, set(f) - FILE_KEYS)
        assert f["kind"] in KINDS, where
        assert isinstance(f["name"], str) and f["name"], where
        assert isinstance(f["header"], bool), where
        columns = f["columns"]
        assert isinstance(columns, list) and columns, where
        assert all(isinstance(c, str) and c for c in columns), where
        assert len(set(columns)) == len(columns), where
        if "rows" in f:
            assert isinstance(f["rows"], int) and f["rows"] > 0, where
        if "subset" in f:
            assert f["subset"] in doc["subsets"], where


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_file_urls_and_archives_agree(stem):
    for f in RELEASES[stem]["files"]:
        url = urlparse(f["url"])
        assert url.scheme == "https" and url.netloc, f["url"]
        last = url.path.rsplit("/", 1)[-1]
        if "archive" in f:
            assert last == f["archive"] and last.endswith(".tar.gz"), f["url"]
            assert not f["name"].startswith("/"), f["name"]
        else:
            assert last == f["name"], f["url"]
        if url.netloc == "storage.googleapis.com":
            assert url.path.startswith("/openimages/"), f["url"]


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_no_file_is_listed_twice(stem):
    keys = [(f["url"], f["name"]) for f in RELEASES[stem]["files"]]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_every_release_has_images_and_both_label_kinds(stem):
    doc = RELEASES[stem]
    for kind in ("images", "machine_labels", "human_labels", "class_descriptions"):
        assert _files(doc, kind), (stem, kind)


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_each_subset_has_exactly_one_images_file(stem):
    doc = RELEASES[stem]
    by_subset = [f["subset"] for f in _files(doc, "images")]
    assert sorted(by_subset) == sorted(doc["subsets"])


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_at_most_one_label_file_per_subset_and_kind(stem):
    doc = RELEASES[stem]
    for kind in ("machine_labels", "human_labels", "boxes"):
        subsets = [f["subset"] for f in _files(doc, kind)]
        assert all(s is not None for s in subsets)
        assert len(subsets) == len(set(subsets)), (stem, kind)


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_images_file_rows_match_subset_counts(stem):
    doc = RELEASES[stem]
    for f in _files(doc, "images"):
        if "rows" in f:
            assert f["rows"] == doc["subsets"][f["subset"]]["images"], f["name"]


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_column_layouts_of_each_kind(stem):
    doc = RELEASES[stem]
    image_lists = [f for f in _files(doc, "other") if "OriginalURL" in f["columns"]]
    for f in _files(doc, "images") + image_lists:
        assert f["header"] is True
        assert f["columns"][:11] == V1_IMAGE_COLUMNS, f["name"]
    for kind in ("machine_labels", "human_labels"):
        for f in _files(doc, kind):
            assert f["header"] is True and f["columns"] == LABEL_COLUMNS, f["name"]
    for f in _files(doc, "class_descriptions"):
        assert f["columns"] == ["LabelName", "DisplayName"], f["name"]
    for f in _files(doc, "class_list"):
        assert f["header"] is False and f["columns"] == ["LabelName"], f["name"]
        assert f["name"].endswith(".txt"), f["name"]
    for f in _files(doc, "boxes"):
        assert f["header"] is True
        assert f["columns"][:8] == LABEL_COLUMNS + ["XMin", "XMax", "YMin", "YMax"], f["name"]


def test_v1_image_columns_are_exactly_the_eleven():
    files = _files(RELEASES["v1"], "images")
    assert len(files) == 2
    for f in files:
        assert f["columns"] == V1_IMAGE_COLUMNS


def test_rotation_column_first_appears_in_v4():
    for stem, doc in RELEASES.items():
        for f in _files(doc, "images"):
            has_rotation = "Rotation" in f["columns"]
            assert has_rotation == (doc["version"] >= 4), (stem, f["name"])
            if has_rotation:
                assert f["columns"] == V1_IMAGE_COLUMNS + ["Rotation"], (stem, f["name"])


def test_full_class_descriptions_get_a_header_row_from_v6_on():
    for stem, doc in RELEASES.items():
        full = [
            f
            for f in _files(doc, "class_descriptions")
            if "boxable" not in f["name"] and f.get("rows") != 600
        ]
        assert len(full) == 1, stem
        assert full[0]["header"] is (doc["version"] >= 6), stem


@pytest.mark.parametrize("stem", sorted(RELEASES))
def test_mirror(stem):
    doc = RELEASES[stem]
    mirror = doc["mirror"]
    template = mirror["url_template"]
    assert "{subset}" in template and "{image_id}" in template
    url = template.format(subset="validation", image_id="0001eeaf4aed83f9")
    assert url == "https://open-images-dataset.s3.amazonaws.com/validation/0001eeaf4aed83f9.jpg"
    assert mirror["max_side"] == 1024
    assert mirror["subsets"] and set(mirror["subsets"]) <= set(doc["subsets"])
    train = mirror["train_images"]
    assert isinstance(train, int) and 0 < train < doc["subsets"]["train"]["images"]
    for subset, folders in mirror.get("subset_map", {}).items():
        assert subset in mirror["subsets"], subset
        assert folders and set(folders) <= MIRROR_FOLDERS, folders


def test_v1_validation_maps_to_the_v2_validation_and_test_folders():
    mirror = RELEASES["v1"]["mirror"]
    assert mirror["subset_map"] == {"validation": ["validation", "test"]}
    v2 = RELEASES["v2"]["subsets"]
    v1_validation = RELEASES["v1"]["subsets"]["validation"]["images"]
    # V2 split V1's validation set into its validation and test sets (one image fewer).
    assert 0 <= v1_validation - (v2["validation"]["images"] + v2["test"]["images"]) <= 1


def test_v5_and_v6_share_the_machine_label_files_and_their_counts():
    # V6 re-links V5's machine-label files, so their counts must agree.
    for subset in ("train", "validation", "test"):
        assert (
            RELEASES["v5"]["subsets"][subset]["machine_labels"]
            == RELEASES["v6"]["subsets"][subset]["machine_labels"]
        )
    v5_machine = {f["url"] for f in _files(RELEASES["v5"], "machine_labels")}
    v6_machine = {f["url"] for f in _files(RELEASES["v6"], "machine_labels")}
    assert v5_machine == v6_machine


def test_dict_csv_is_the_upstream_file():
    data = (MANIFESTS / "dict.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == DICT_CSV_SHA256
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert len(rows) == DICT_CSV_ROWS
    assert all(len(r) == 2 and r[0] and r[1] for r in rows)
    mids = [r[0] for r in rows]
    assert len(set(mids)) == len(mids)
    assert all(m.startswith(("/m/", "/g/")) for m in mids)
    assert rows[0][0] != "LabelName"  # no header row


def test_v1_class_descriptions_entry_points_at_the_shipped_dict_csv():
    (entry,) = _files(RELEASES["v1"], "class_descriptions")
    assert entry["header"] is False
    assert (MANIFESTS / entry["local"]).is_file()
    assert entry["rows"] == DICT_CSV_ROWS
    assert RELEASES["v1"]["class_count"] <= entry["rows"]


def test_attribution_names_the_license_and_the_checksum():
    text = (MANIFESTS / "ATTRIBUTION.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in text
    assert "https://github.com/openimages/dataset" in text
    assert DICT_CSV_SHA256 in text
