"""`evaluate`: any model's predictions scored exactly as `train` scores its own; bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from nlc_model.evaluate import EvaluateConfig, run
from openimages_pipe.cli import app
from openimages_pipe.errors import InputError


def test_predictions_of_train_score_the_same_through_evaluate(trained: Path) -> None:
    out = trained / "eval"
    args = [
        "evaluate",
        "--splits",
        str(trained / "splits"),
        "--predictions",
        str(trained / "run" / "baseline" / "predictions.parquet"),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    ours = json.loads((trained / "run" / "metrics.json").read_text())["baseline"]
    theirs = json.loads((out / "metrics.json").read_text())["predictions"]
    for key in ("mAP", "AP_all", "classes_evaluated", "pairs", "images"):
        assert theirs[key] == pytest.approx(ours[key], abs=1e-9), key
    assert (out / "per_class.parquet").is_file() and (out / "deciles.png").is_file()


def test_rows_in_any_order_and_extra_rows_are_ignored(trained: Path, tiny, tmp_path: Path) -> None:
    preds = pq.read_table(trained / "run" / "baseline" / "predictions.parquet")
    ref = run(
        EvaluateConfig(trained / "splits", trained / "run" / "baseline" / "predictions.parquet")
    )
    stranger = pa.table({"image_id": ["not-in-v-eval"], "scores": [[0.5] * tiny.classes]})
    shuffled = pa.concat_tables(
        [preds.take(np.random.default_rng(0).permutation(len(preds))), stranger.cast(preds.schema)]
    )
    pq.write_table(shuffled, tmp_path / "p.parquet")
    got = run(EvaluateConfig(trained / "splits", tmp_path / "p.parquet"))
    assert got["mAP"] == pytest.approx(ref["mAP"]) and got["AP_all"] == pytest.approx(ref["AP_all"])
    assert got["prediction_rows_not_in_V_eval"] == 1


def test_missing_images_are_left_out_and_counted(trained: Path, tmp_path: Path) -> None:
    preds = pq.read_table(trained / "run" / "baseline" / "predictions.parquet")
    pq.write_table(preds.slice(0, 20), tmp_path / "p.parquet")
    got = run(EvaluateConfig(trained / "splits", tmp_path / "p.parquet"))
    assert got["images"] <= 20 and got["images_without_scores"] >= len(preds) - 20 - 5


def test_score_vectors_of_the_wrong_length_are_named(trained: Path, tmp_path: Path) -> None:
    bad = pa.table({"image_id": ["x"], "scores": [[0.1, 0.2]]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(InputError) as e:
        run(EvaluateConfig(trained / "splits", tmp_path / "bad.parquet"))
    assert "bad.parquet" in str(e.value) and "(value: '2')" in str(e.value)


def test_missing_predictions_file_is_one_line(trained: Path, tmp_path: Path) -> None:
    args = ["evaluate", "--splits", str(trained / "splits"), "--predictions", str(tmp_path / "no")]
    result = CliRunner().invoke(app, args)
    assert (
        result.exit_code == 1 and f"{tmp_path / 'no'}: predictions file not found" in result.output
    )
