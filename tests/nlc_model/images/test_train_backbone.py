"""`train --stage backbone` on real downloaded shards: steps, a checkpoint, a crash, a resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from rich.console import Console

from nlc_model.images import train_backbone as tb
from nlc_model.images.backbone import Backbone, BackboneSpec, load_weights
from nlc_model.images.launch import load_config, save_config
from nlc_model.loop import config_dict
from nlc_model.models import Classifier, ClassifierConfig
from openimages_pipe.errors import InputError

QUIET = Console(quiet=True)
REAL_BATCHES = tb.image_batches


class Killed(Exception):
    pass


def crash_after(steps: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the batch stream fail after `steps` batches, as a killed run would stop."""
    real, drawn = REAL_BATCHES, []

    def batches(*args, **kwargs):
        for batch in real(*args, **kwargs):
            if len(drawn) == steps:
                raise Killed
            drawn.append(1)
            yield batch

    monkeypatch.setattr(tb, "image_batches", batches)
    return drawn


def test_baseline_trains_checkpoints_and_resumes(backbone_config, tmp_path, monkeypatch) -> None:
    cfg = backbone_config(tmp_path)
    crash_after(2, monkeypatch)
    with pytest.raises(Killed):
        tb.run(cfg, QUIET)
    path = tmp_path / "baseline" / tb.CHECKPOINT
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["config"] == config_dict(cfg)  # the resolved config travels with it
    assert (ckpt["state"]["step"], ckpt["state"]["done"]) == (2, False)
    assert ckpt["optimizer"] is not None and ckpt["backbone"] == {"arch": "tiny", "width": 4}

    drawn = crash_after(10, monkeypatch)  # never reached: the resumed run needs one step
    results = tb.run(cfg, QUIET)
    assert len(drawn) == 1
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["state"]["done"] and ckpt["state"]["samples"] == 3 * cfg.training.batch_size
    assert math.isfinite(results["baseline"]["AP_all"])
    assert json.loads((tmp_path / tb.METRICS).read_text())["baseline"]["steps"] == 3
    assert (tmp_path / "baseline" / "backbone_per_class.parquet").is_file()

    f, h = Backbone(BackboneSpec("tiny", 4)), Classifier(ClassifierConfig(4, 32))
    fresh = [p.clone() for p in f.parameters()]
    assert load_weights(path, f, h) == f"f and h from {path}"
    assert any(not torch.equal(a, b) for a, b in zip(fresh, f.parameters(), strict=True))


def test_resuming_with_other_settings_is_refused(backbone_config, tmp_path) -> None:
    tb.run(backbone_config(tmp_path, steps=1), QUIET)
    with pytest.raises(InputError, match="--lr 0.001, not 0.01"):
        tb.run(backbone_config(tmp_path, steps=1, lr=0.01), QUIET)


def test_finetune_backbone_updates_f_in_nlc_joint(backbone_config, tmp_path) -> None:
    tb.run(backbone_config(tmp_path, steps=2, clean_share=0.25), QUIET)  # --stage backbone
    # g's sizes are no concern of the baseline: the fine-tuning run starts from it as it is
    cfg = backbone_config(tmp_path, steps=2, clean_share=0.25, variant="nlc-joint",
                          finetune_backbone=True, embed=8, hidden=16)  # fmt: skip
    results = tb.run(cfg, QUIET)
    assert set(results) == {"baseline", "nlc-joint"}
    base, joint = (torch.load(tmp_path / v / tb.CHECKPOINT, weights_only=True) for v in results)
    assert base["state"]["samples"] == 2 * 4, "baseline was not trained again"
    assert joint["g"] is not None and joint["cleaner"]["embed"] == 8 and joint["state"]["done"]
    changed = [k for k in base["f"] if not torch.equal(base["f"][k], joint["f"][k])]
    assert any(k.endswith("weight") for k in changed), "f learned from the image path"


def test_other_variants_need_finetune_backbone(backbone_config, tmp_path) -> None:
    with pytest.raises(InputError, match="--finetune-backbone"):
        tb.run(backbone_config(tmp_path, variant="nlc-joint"), QUIET)


def test_missing_weights_file_is_a_clear_error(backbone_config, tmp_path) -> None:
    missing = tmp_path / "resnet.pth"
    with pytest.raises(InputError, match="weights file not found") as e:
        tb.run(backbone_config(tmp_path / "run", weights=missing), QUIET)
    assert str(missing) in str(e.value)


def test_config_round_trips_through_json_for_torchrun(backbone_config, tmp_path) -> None:
    cfg = backbone_config(tmp_path, weights=tmp_path / "w.pt")
    save_config(cfg, tmp_path / "launch.json")
    assert load_config(tmp_path / "launch.json") == cfg


def test_train_stage_backbone_from_the_command_line(image_inputs, tmp_path) -> None:
    from typer.testing import CliRunner

    from openimages_pipe.cli import app

    download, splits = image_inputs
    args = ["train", "--stage", "backbone", "--shards", str(download), "--splits", str(splits)]
    args += ["--out", str(tmp_path), "--arch", "tiny", "--width", "4", "--image-size", "32"]
    args += ["--steps", "2", "--batch-size", "4", "--warmup", "0", "--workers", "0"]
    result = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "baseline" / "backbone.pt").is_file()
    missing = CliRunner().invoke(app, ["train", "--stage", "backbone", "--splits", str(splits),
                                       "--out", str(tmp_path / "x")])  # fmt: skip
    assert missing.exit_code == 1 and "--shards" in missing.output
    no_features = CliRunner().invoke(
        app, ["train", "--splits", str(splits), "--out", str(tmp_path)]
    )
    assert no_features.exit_code == 1 and "--features" in no_features.output
