"""`build-splits` on small hand-made CSVs: one test per rule of the issue."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from openimages_pipe.errors import InputError
from openimages_pipe.splits import build as splits
from openimages_pipe.splits import split_hash
from tests.fixtures.splits_data import (
    NAMES,
    SETS,
    A,
    B,
    C,
    Content,
    D,
    basic,
    iid,
    manifest,
    read_sets,
    rows_by_image,
    write,
    write_csv,
)


def build(tmp_path: Path, content: Content | None = None, **options):
    cfg = write(tmp_path, content or basic(), **options)
    summary = splits.run(cfg)
    record = json.loads((cfg.out / "splits.json").read_text())
    return read_sets(cfg.out), record, summary


def test_outputs_have_the_fixed_schema(tmp_path: Path) -> None:
    sets, record, _ = build(tmp_path)
    lists = pl.List(pl.Int32)
    assert sets["T"].schema == {"image_id": pl.String, "labels": lists,
                                "confidences": pl.List(pl.Float32)}  # fmt: skip
    for name in ("V_train", "V_eval"):
        assert sets[name].schema == {**sets["T"].schema, "verified_pos": lists,
                                     "verified_neg": lists}  # fmt: skip
    assert sets["classes"].schema == {
        "class_index": pl.Int32, "label_name": pl.String, "display_name": pl.String,
        "t_count": pl.Int64, "v_pos": pl.Int64, "v_neg": pl.Int64,
    }  # fmt: skip
    # class index = position of the MID in sorted order; names from the class-descriptions file
    assert sets["classes"]["label_name"].to_list() == [A, B, C, D]
    assert sets["classes"]["class_index"].to_list() == [0, 1, 2, 3]
    assert sets["classes"]["display_name"].to_list() == [NAMES[m] for m in (A, B, C, D)]
    t = rows_by_image(sets["T"])
    assert t[iid("t1")]["labels"] == [0, 1]
    assert t[iid("t1")]["confidences"] == pytest.approx([0.9, 0.6])  # aligned with labels
    assert t[iid("t2")]["labels"] == [1, 2]
    for frame in (sets[s] for s in SETS):  # every list sorted, every set sorted by image_id
        assert frame["image_id"].is_sorted()
        for column in ("labels", "verified_pos", "verified_neg"):
            if column in frame.columns:
                assert all(v == sorted(v) for v in frame[column].to_list())
    assert record["counts"]["T"] == {"images": 4, "labels": 6}
    assert sets["classes"].filter(pl.col("label_name") == A).row(0, named=True) == {
        "class_index": 0, "label_name": A, "display_name": "Apple",
        "t_count": 2, "v_pos": 2, "v_neg": 1,
    }  # fmt: skip


def test_negatives_stay_negative(tmp_path: Path) -> None:
    sets, _, _ = build(tmp_path)
    v = rows_by_image(pl.concat([sets["V_train"], sets["V_eval"]]))
    v1, x2 = v[iid("v1")], v[iid("x2")]
    assert v1["verified_pos"] == [0] and v1["verified_neg"] == [1]  # B verified absent
    assert v1["labels"] == [0, 1]  # the machine still said B: that is the noisy y
    assert x2["verified_pos"] == [] and x2["verified_neg"] == [2]
    negatives = {(i, c) for i, r in v.items() for c in r["verified_neg"]}
    positives = {(i, c) for i, r in v.items() for c in r["verified_pos"]}
    assert negatives and not negatives & positives


def test_duplicate_rows_merge_and_the_higher_confidence_wins(tmp_path: Path) -> None:
    content = basic()
    content.machine += [("t1", A, "0.4"), ("t1", B, "0.95")]
    content.human += [("v1", B, "1")]  # v1's B was verified 0 and now also 1: 1 wins
    sets, record, _ = build(tmp_path, content)
    t1 = rows_by_image(sets["T"])[iid("t1")]
    assert t1["labels"] == [0, 1] and t1["confidences"] == pytest.approx([0.9, 0.95])
    v1 = rows_by_image(pl.concat([sets["V_train"], sets["V_eval"]]))[iid("v1")]
    assert v1["verified_pos"] == [0, 1] and v1["verified_neg"] == []
    assert record["drops"]["duplicate_label_rows_merged"] == 3


def test_unknown_mids_are_dropped_and_counted(tmp_path: Path) -> None:
    classes = write_csv(tmp_path / "labelmap.txt", None, [[A], [B], [C]])
    sets, record, _ = build(tmp_path, classes=classes)
    assert sets["classes"]["label_name"].to_list() == [A, B, C]
    assert iid("t4") not in rows_by_image(sets["T"])  # its only label was D
    assert record["drops"]["machine_labels_mid_not_in_vocabulary"] == 1
    assert record["drops"]["human_labels_mid_not_in_vocabulary"] == 1
    assert record["vocabulary"]["source"] == "file"
    assert record["vocabulary"]["mids_in_labels_not_in_vocabulary"] == 1


def test_labels_of_images_missing_from_the_images_csv_are_dropped_and_counted(
    tmp_path: Path,
) -> None:
    content = basic()
    content.machine.append(("g1", A, "0.9"))
    content.images["g1"] = "train"
    cfg = write(tmp_path, content)
    images = cfg.images[0].read_text().splitlines()  # the train images file, without g1
    cfg.images[0].write_text("\n".join(line for line in images if iid("g1") not in line) + "\n")
    splits.run(cfg)
    record = json.loads((cfg.out / "splits.json").read_text())
    assert record["drops"]["label_rows_image_not_in_images_csv"] == 1
    assert iid("g1") not in pl.read_parquet(cfg.out / "T.parquet")["image_id"].to_list()


def test_min_confidence_filters_machine_labels_only(tmp_path: Path) -> None:
    sets, record, _ = build(tmp_path, min_confidence=0.65)
    assert rows_by_image(sets["T"])[iid("t1")]["labels"] == [0]  # B at 0.6 is gone
    assert iid("t4") not in rows_by_image(sets["T"])  # D at 0.55
    assert record["drops"]["machine_labels_below_min_confidence"] == 4  # t1 B, t4 D, v2 C, v4 C
    v2 = rows_by_image(pl.concat([sets["V_train"], sets["V_eval"]]))[iid("v2")]
    assert v2["labels"] == [0] and v2["verified_pos"] == [2]  # verdicts are not filtered


def test_computed_vocabulary_follows_the_v1_rule_thresholds(tmp_path: Path) -> None:
    sets, record, _ = build(tmp_path / "a", min_train_images=2)  # A: t1, t3; B: t1, t2
    assert sets["classes"]["label_name"].to_list() == [A, B]
    sets, record, _ = build(tmp_path / "b", min_val_images=2)  # A: verified present in v1, x1
    assert sets["classes"]["label_name"].to_list() == [A]
    assert record["vocabulary"].items() >= {"source": "computed", "min_val_images": 2}.items()


def test_an_empty_vocabulary_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="min-val-images"):
        build(tmp_path, min_val_images=99)


@pytest.mark.parametrize(
    ("header", "rows"),
    [
        (None, [[m] for m in (C, A, B)]),  # a labelmap / trainable list: one MID a line
        (None, [[m, NAMES[m]] for m in (C, A, B)]),  # class-descriptions without a header
        (("LabelName", "DisplayName"), [[m, NAMES[m]] for m in (C, A, B)]),  # with one
    ],
    ids=["labelmap", "descriptions", "descriptions-with-header"],
)
def test_every_classes_file_format_gives_the_same_vocabulary(
    tmp_path: Path, header: tuple[str, ...] | None, rows: list[list[str]]
) -> None:
    classes = write_csv(tmp_path / "classes.txt", header, rows)
    sets, _, _ = build(tmp_path, classes=classes)
    assert sets["classes"].select("class_index", "label_name", "display_name").rows() == [
        (0, A, "Apple"), (1, B, "Bus"), (2, C, "Cat"),
    ]  # fmt: skip


def test_v_holds_validation_and_test_images_with_a_verification(tmp_path: Path) -> None:
    sets, record, _ = build(tmp_path, release_id="v7")
    v = rows_by_image(pl.concat([sets["V_train"], sets["V_eval"]]))
    assert set(v) == {iid(n) for n in ("v1", "v2", "v3", "x1", "x2")}  # v4: no verification
    assert record["counts"]["V"]["images"] == 5


def test_human_labels_of_training_images_are_not_used(tmp_path: Path) -> None:
    content = basic()
    content.human += [("t1", C, "1"), ("t2", B, "0")]
    sets, record, _ = build(tmp_path, content, release_id="v6")  # V6 has train human labels
    t = rows_by_image(sets["T"])
    assert t[iid("t1")]["labels"] == [0, 1] and t[iid("t2")]["labels"] == [1, 2]
    assert "verified_pos" not in sets["T"].columns
    assert record["drops"]["human_labels_on_train_images"] == 2


def test_t_and_v_never_share_an_image(tmp_path: Path) -> None:
    sets, _, _ = build(tmp_path)
    t_ids = set(sets["T"]["image_id"])
    train, evaluate = set(sets["V_train"]["image_id"]), set(sets["V_eval"]["image_id"])
    assert t_ids and train and evaluate
    assert not t_ids & (train | evaluate) and not train & evaluate


def test_an_image_listed_in_two_subsets_is_refused(tmp_path: Path) -> None:
    cfg = write(tmp_path, basic())
    with cfg.images[1].open("a") as f:  # t1 again, now as a validation image
        f.write(",".join([iid("t1"), "validation", *["x"] * 9]) + "\n")
    with pytest.raises(InputError, match="two subsets") as error:
        splits.run(cfg)
    assert error.value.value == iid("t1")


def test_split_assignment_is_the_documented_hash(tmp_path: Path) -> None:
    content = many_v_images(300)
    sets, record, _ = build(tmp_path, content, seed=5, clean_fraction=0.3)
    for name, clean in (("V_train", True), ("V_eval", False)):
        for image_id in sets[name]["image_id"]:
            assert split_hash.side_of_one(image_id, 5, 0.3) is clean
    share = sets["V_train"].height / (sets["V_train"].height + sets["V_eval"].height)
    assert 0.22 < share < 0.38
    assert record["split_hash"]["threshold"] == str(int(0.3 * 2**64))


def many_v_images(n: int, seed: int = 0) -> Content:
    rng = random.Random(seed)
    content = basic()
    for k in range(n):
        name = f"g{k:x}"
        content.images[name] = rng.choice(["validation", "test"])
        content.machine.append((name, rng.choice([A, B, C]), "0.8"))
        content.human.append((name, A, rng.choice("01")))
    return content


def test_split_is_stable_when_a_tenth_of_the_images_are_removed(tmp_path: Path) -> None:
    content = many_v_images(400)
    sets, _, _ = build(tmp_path / "all", content)
    side = {i: True for i in sets["V_train"]["image_id"]}
    side |= {i: False for i in sets["V_eval"]["image_id"]}
    rng = random.Random(1)
    gone = set(rng.sample(sorted(content.images), len(content.images) // 10))
    fewer = Content(
        {n: s for n, s in content.images.items() if n not in gone},
        [r for r in content.machine if r[0] not in gone],
        [r for r in content.human if r[0] not in gone],
    )
    sets, _, _ = build(tmp_path / "fewer", fewer)
    after = {i: True for i in sets["V_train"]["image_id"]}
    after |= {i: False for i in sets["V_eval"]["image_id"]}
    assert len(after) < len(side) and all(side[i] == s for i, s in after.items())


def test_downloaded_keeps_only_images_the_manifest_says_ok(tmp_path: Path) -> None:
    content = basic()
    statuses = dict.fromkeys(content.images, "ok") | {"t2": "missing", "v1": "failed"}
    del statuses["x1"]  # never tried: not in the manifest at all
    # manifest parts written by "another version": extra and missing columns beyond the two
    parts = tmp_path / "download" / "manifest"
    names = sorted(statuses)
    manifest(parts / "part-0.parquet", {n: statuses[n] for n in names[:5]}, reason=["x"] * 5)
    manifest(parts / "part-1.parquet", {n: statuses[n] for n in names[5:]})
    sets, record, _ = build(tmp_path, content, downloaded=tmp_path / "download")
    kept = set(sets["T"]["image_id"]) | set(sets["V_train"]["image_id"])
    kept |= set(sets["V_eval"]["image_id"])
    assert not kept & {iid(n) for n in ("t2", "v1", "x1")}
    assert iid("t1") in kept and iid("v2") in kept
    assert record["counts"]["images"]["by_status"] == {
        "ok": 7, "failed": 1, "missing": 1, "not_in_manifest": 1,
    }  # fmt: skip
    assert record["drops"]["T_images_not_downloaded"] == 1
    assert record["drops"]["V_images_not_downloaded"] == 2
    rot = pl.read_parquet(tmp_path / "v1" / "splits" / "link_rot.parquet")
    a = rot.filter(pl.col("label_name") == A).row(0, named=True)
    assert (a["images"], a["kept"], a["lost"]) == (4, 2, 2)  # t1, t3 | v1, x1 verified present


def test_a_manifest_without_a_status_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "download" / "manifest.parquet"
    pl.DataFrame({"image_id": [iid("t1")], "state": ["ok"]}).write_parquet(path, mkdir=True)
    with pytest.raises(InputError, match="lacks column status"):
        build(tmp_path, downloaded=tmp_path / "download")


@pytest.mark.parametrize(
    ("kind", "edit", "message", "line"),
    [
        ("machine", lambda t: t.replace(",Confidence", ",Conf"), "missing required column", 1),
        ("machine", lambda t: t.replace(iid("t2"), "00000000000000g2"), "16 hex digits", 4),
        ("human", lambda t: t.replace(",0\n", ",2\n", 1), "Confidence", 3),
        ("images", lambda t: t.replace(iid("t3"), "t3"), "16 hex digits", 4),
    ],
    ids=["missing-column", "non-hex-image-id", "confidence-2", "non-hex-in-images"],
)
def test_bad_input_fails_with_file_and_line(
    tmp_path: Path, kind: str, edit, message: str, line: int
) -> None:
    cfg = write(tmp_path, basic())
    path = {"machine": cfg.machine_labels[0], "human": cfg.human_labels[0],
            "images": cfg.images[0]}[kind]  # fmt: skip
    path.write_text(edit(path.read_text()))
    with pytest.raises(InputError, match=message) as error:
        splits.run(cfg)
    assert (error.value.path, error.value.line) == (path, line)
    assert not (cfg.out / "splits.json").exists()


def test_the_resolved_config_travels_with_every_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, basic(), seed=3)
    splits.run(cfg)
    record = json.loads((cfg.out / "splits.json").read_text())
    assert record["config"]["seed"] == 3 and record["config"]["out"] == str(cfg.out)
    assert [i["rows"] for i in record["inputs"] if i["option"] == "images"] == [4, 6]
    for name in ("classes", *SETS):
        meta = pq.read_metadata(cfg.out / f"{name}.parquet").metadata[b"oi_pipe"]
        assert json.loads(meta)["config"] == record["config"]
    assert not list(cfg.out.glob(".*.tmp"))


def test_a_rerun_replaces_every_output(tmp_path: Path) -> None:
    content = basic()
    manifest(tmp_path / "dl" / "manifest.parquet", dict.fromkeys(content.images, "ok"))
    cfg = write(tmp_path, content, downloaded=tmp_path / "dl")
    splits.run(cfg)
    assert (cfg.out / "link_rot.parquet").exists()
    splits.run(replace(cfg, downloaded=None, seed=9))
    assert not (cfg.out / "link_rot.parquet").exists()
    assert json.loads((cfg.out / "splits.json").read_text())["config"]["seed"] == 9


def test_overlapping_sets_fail_the_check() -> None:
    t = pl.DataFrame({"img": [1, 2, 3]})
    sets = {"T": t, "V_train": pl.DataFrame({"img": [3]}), "V_eval": pl.DataFrame({"img": [4]})}
    with pytest.raises(splits.SplitsInvariantError, match="both T and V"):
        splits.check_sets(sets, 2)
    sets["V_train"] = pl.DataFrame({"img": [4]})
    with pytest.raises(splits.SplitsInvariantError, match="V_train and V_eval"):
        splits.check_sets(sets, 2)
    with pytest.raises(splits.SplitsInvariantError, match="cover V"):
        splits.check_sets({**sets, "V_train": pl.DataFrame({"img": [5]})}, 3)
