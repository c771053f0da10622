"""`clean-labels`: c for every image of T in T.parquet's columns, from a finished nlc variant."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from nlc_model.clean_labels import CleanLabelsConfig, run
from nlc_model.data import load_train_data
from nlc_model.models import CleanerConfig, LabelCleaner
from nlc_model.synthetic import make_world, write_world
from openimages_pipe.cli import app
from openimages_pipe.errors import InputError


def _cfg(root: Path, out: Path, **kw) -> CleanLabelsConfig:
    return CleanLabelsConfig(root / "run", root / "splits", root / "features.parquet", out, **kw)


def test_cli_writes_c_for_every_image_of_t(trained: Path, tiny, tmp_path: Path) -> None:
    out = tmp_path / "clean.parquet"
    args = [
        "clean-labels",
        "--run",
        str(trained / "run"),
        "--splits",
        str(trained / "splits"),
        "--features",
        str(trained / "features.parquet"),
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.schema.names == ["image_id", "labels", "confidences"]
    # Recompute c with the checkpoint's g and compare with what was written.
    ckpt = torch.load(trained / "run" / "nlc-joint" / "ckpt.pt", weights_only=True)
    g = LabelCleaner(CleanerConfig(**ckpt["cleaner"]))
    g.load_state_dict(ckpt["g"])
    data = load_train_data(
        trained / "splits", trained / "features.parquet", torch.device("cpu"), ("T",)
    )
    split = data.splits["T"]
    assert table.column("image_id").to_pylist() == split.image_ids.to_pylist()
    rows = torch.arange(len(split))
    with torch.no_grad():
        c = g(split.noisy.dense(rows, tiny.classes), data.features.table[split.feature_rows])
    for i, (labels, conf) in enumerate(
        zip(
            table.column("labels").to_pylist(), table.column("confidences").to_pylist(), strict=True
        )
    ):
        assert labels == torch.nonzero(c[i] >= 0.5).flatten().tolist()  # sorted, all above 0.5
        assert conf == pytest.approx(c[i, labels].tolist(), abs=1e-6)


def test_top_k_and_threshold_bound_each_row(trained: Path, tmp_path: Path) -> None:
    counts = run(_cfg(trained, tmp_path / "c.parquet", threshold=0.0, top_k=2))
    table = pq.read_table(tmp_path / "c.parquet")
    assert all(len(x) == 2 for x in table.column("labels").to_pylist())
    assert counts["images"] == table.num_rows


def test_wrong_embedding_width_is_named(trained: Path, tiny, tmp_path: Path) -> None:
    other = tmp_path / "w"
    small = replace(tiny, features=5)
    write_world(make_world(small), other / "splits", other / "features.parquet")
    cfg = replace(_cfg(trained, tmp_path / "c.parquet"), features=other / "features.parquet")
    with pytest.raises(InputError) as e:
        run(cfg)
    assert "w/features.parquet" in str(e.value) and "(value: '5')" in str(e.value)


def test_a_variant_without_g_is_refused(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="'baseline'"):
        run(_cfg(trained, tmp_path / "c.parquet", variant="baseline"))
