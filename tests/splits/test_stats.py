"""`oi-pipe stats` on hand-made splits, and both commands through the CLI."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from openimages_pipe.cli import app
from openimages_pipe.splits import build as splits
from openimages_pipe.splits import stats
from tests.fixtures.splits_data import A, B, C, basic, iid, manifest, write

runner = CliRunner()


@pytest.fixture
def built(tmp_path: Path) -> Path:
    content = basic()
    manifest(tmp_path / "dl" / "manifest.parquet",
             dict.fromkeys(content.images, "ok") | {"t1": "missing"})  # fmt: skip
    cfg = write(tmp_path, content, downloaded=tmp_path / "dl")
    splits.run(cfg)
    return cfg.out


def test_precision_of_machine_labels_is_measured_on_v(built: Path) -> None:
    s = stats.compute(built)
    # verified machine labels of V: v1 A+ B-, v2 A- C+, v3 B+, x1 A+, x2 C- (v3's D: no machine)
    assert (s.tp, s.fp) == (4, 3)
    per_class = {r["label_name"]: (r["tp"], r["fp"]) for r in s.classes.iter_rows(named=True)}
    assert per_class[A] == (2, 1) and per_class[B] == (1, 1) and per_class[C] == (1, 1)
    by_conf = {
        round(r["confidence"], 1): (r["tp"], r["fp"]) for r in s.by_confidence.iter_rows(named=True)
    }
    assert by_conf == {0.6: (1, 0), 0.7: (1, 1), 0.8: (0, 1), 0.9: (2, 1)}
    assert "57.1% precise" in stats.summary_line(s)


def test_link_rot_per_class_is_sorted_by_share_lost(built: Path) -> None:
    rot = stats.compute(built).link_rot
    assert rot is not None
    shares = rot.filter(pl.col("images") > 0)["lost_share"].to_list()
    assert shares == sorted(shares, reverse=True)
    a, b = (rot.filter(pl.col("label_name") == m).row(0, named=True) for m in (A, B))
    assert (a["images"], a["lost"]) == (4, 1) and (b["images"], b["lost"]) == (3, 1)  # t1 lost


def test_stats_prints_tables_and_writes_figures(built: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["stats", str(built), "--figures", str(tmp_path / "fig")],
                           env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    for title in ("Sets", "Class frequency", "Machine labels measured on V", "Link rot"):
        assert title in result.output
    pngs = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert pngs == ["class_frequency.png", "label_precision.png", "link_rot.png"]
    assert all((tmp_path / "fig" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_stats_of_a_folder_without_splits_fails_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stats", str(tmp_path)])
    assert result.exit_code == 1
    assert "no splits.json" in result.output and "Traceback" not in result.output


def _cli_args(cfg: splits.SplitsConfig) -> list[str]:
    args = ["build-splits", "--out", str(cfg.out), "--class-names", str(cfg.class_names)]
    for option, paths in (("--images", cfg.images), ("--machine-labels", cfg.machine_labels),
                          ("--human-labels", cfg.human_labels)):  # fmt: skip
        args += [a for p in paths for a in (option, str(p))]
    return args + ["--min-train-images", "1", "--min-val-images", "1"]


def test_build_splits_through_the_cli(tmp_path: Path) -> None:
    cfg = write(tmp_path, basic())
    result = runner.invoke(app, _cli_args(cfg))
    assert result.exit_code == 0, result.output
    assert "T: 4 images, 6 machine labels" in result.output
    assert pl.read_parquet(cfg.out / "T.parquet").height == 4
    assert (cfg.out / "splits.json").is_file()


def test_bad_input_through_the_cli_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, basic())
    labels = cfg.machine_labels[0]
    labels.write_text(labels.read_text().replace(iid("t2"), "0000000000000zz2"))
    result = runner.invoke(app, _cli_args(cfg))
    assert result.exit_code == 1
    assert f"{labels}:4:" in result.output and "Traceback" not in result.output


def test_a_record_naming_the_former_hash_path_still_reads(built: Path) -> None:
    import json

    from openimages_pipe.splits import split_hash

    path = built / "splits.json"
    record = json.loads(path.read_text())
    assert split_hash.reference(record["split_hash"]["reference"]) is split_hash.side_of_one
    # a folder written before the package layout (oi-pipe's flat modules) names the old path
    record["split_hash"]["reference"] = "openimages_pipe.split_hash.side_of_one"
    path.write_text(json.dumps(record))
    assert split_hash.reference(record["split_hash"]["reference"]) is split_hash.side_of_one
    assert stats.compute(built).tp == 4
    with pytest.raises(ValueError, match="not a split hash"):
        split_hash.reference("somewhere.else.side_of_one")
