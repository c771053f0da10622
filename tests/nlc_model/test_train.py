"""The trainer: the losses' gradient paths, the schedule, and a 3-step run that resumes exactly."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from nlc_model import train
from nlc_model.batches import BatchMaker
from nlc_model.data import load_train_data
from nlc_model.loop import Objective, get_lr
from nlc_model.models import Classifier, ClassifierConfig, CleanerConfig, LabelCleaner
from nlc_model.synthetic import WorldConfig
from nlc_model.train import compute_losses
from openimages_pipe.cli import app
from openimages_pipe.errors import InputError


def _models(tiny: WorldConfig) -> tuple[LabelCleaner, Classifier]:
    torch.manual_seed(0)
    g = LabelCleaner(CleanerConfig(tiny.classes, tiny.features, embed=4, hidden=8))
    with torch.no_grad():
        g.out.weight.normal_(std=0.5)  # a g' far from zero, so that c differs from y
    return g, Classifier(ClassifierConfig(tiny.classes, tiny.features))


def _batch(world_dir: Path):
    names = ("T", "V_train")
    data = load_train_data(
        world_dir / "splits", world_dir / "features.parquet", torch.device("cpu"), names
    )
    return BatchMaker(data, size=40, clean_share=0.1, unverified="negative", seed=0)(0)


def test_classify_loss_sends_no_gradient_into_g(world_dir, tiny, features_config, tmp_path) -> None:
    cfg = features_config(tmp_path)
    g, h = _models(tiny)
    batch = _batch(world_dir)
    losses = compute_losses(g, h, batch, Objective.JOINT, cfg.training)
    losses.classify.backward(retain_graph=True)
    assert all(p.grad is None for p in g.parameters())
    assert all(p.grad.abs().sum() > 0 for p in h.parameters())
    h.zero_grad(set_to_none=True)
    losses.clean.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert all(p.grad is None for p in h.parameters())


def test_joint_targets_are_c_on_t_and_v_on_v_train(world_dir, tiny, features_config, tmp_path):
    cfg = features_config(tmp_path)
    g, h = _models(tiny)
    batch = _batch(world_dir)
    losses = compute_losses(g, h, batch, Objective.JOINT, cfg.training)
    with torch.no_grad():
        c = g(batch.y, batch.x)  # (B, d)
        q = torch.cat([c[: 40 - batch.clean], batch.v])
        classify = F.binary_cross_entropy_with_logits(h(batch.x), q, reduction="sum") / 40
        clean = (c[40 - batch.clean :] - batch.v).abs().sum() / 40
    assert not torch.equal(c, batch.y)  # so the check below tells c from y
    assert losses.classify.item() == pytest.approx(classify.item(), rel=1e-5)
    assert losses.clean.item() == pytest.approx(clean.item(), rel=1e-5)
    assert losses.total.item() == pytest.approx(0.1 * clean.item() + classify.item(), rel=1e-5)
    noisy = compute_losses(g, h, batch, Objective.MIXED, cfg.training)  # q = y on T: another value
    assert noisy.classify.item() != pytest.approx(classify.item(), rel=1e-3)


def test_lr_warms_up_then_decays_to_a_tenth() -> None:
    lrs = [get_lr(s, 200, 1.0, warmup=10) for s in range(200)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def _params(run_dir: Path, variant: str) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run_dir / variant / "ckpt.pt", weights_only=True)
    return {f"h.{k}": v for k, v in ckpt["h"].items()} | {f"g.{k}": v for k, v in ckpt["g"].items()}


def test_three_step_run_checkpoints_reloads_and_resumes(features_config, tmp_path, monkeypatch):
    whole = features_config(tmp_path / "whole", variant="nlc-joint")
    train.run(whole)
    calls = []
    real_step = train.train_step

    def killed_at_third(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the process were killed during step 3
        return real_step(*args, **kw)

    monkeypatch.setattr(train, "train_step", killed_at_third)
    cut = replace(whole, out=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        train.run(cut)
    ckpt = torch.load(cut.out / "nlc-joint" / "ckpt.pt", weights_only=True)
    assert ckpt["state"]["step"] == 2 and not ckpt["state"]["done"]
    assert ckpt["config"]["steps"] == 3 and ckpt["optimizer"] is not None
    g = LabelCleaner(CleanerConfig(**ckpt["cleaner"]))
    g.load_state_dict(ckpt["g"])  # the checkpoint rebuilds g from its own config

    calls.clear()
    monkeypatch.setattr(
        train, "train_step", lambda *a, **kw: calls.append(1) or real_step(*a, **kw)
    )
    results = train.run(cut)
    assert len(calls) == 1  # only step 3 was left
    resumed, uninterrupted = _params(cut.out, "nlc-joint"), _params(whole.out, "nlc-joint")
    for name, value in uninterrupted.items():
        assert torch.allclose(resumed[name], value, atol=1e-6), name
    assert not torch.equal(resumed["g.out.weight"], g.out.weight)  # step 3 did change g
    saved = json.loads((whole.out / "metrics.json").read_text())["nlc-joint"]
    assert results["nlc-joint"]["mAP"] == pytest.approx(saved["mAP"], abs=1e-6)

    calls.clear()
    train.run(cut)  # finished: evaluated again, not trained
    assert calls == []


def test_resuming_with_other_settings_is_refused(features_config, tmp_path: Path) -> None:
    cfg = features_config(tmp_path, variant="baseline")
    train.run(cfg)
    with pytest.raises(InputError) as e:
        train.run(features_config(tmp_path, lr=0.5, variant="nlc-joint"))  # same folder
    assert f"{tmp_path / 'config.json'}: written with --lr 0.01, not 0.5" in str(e.value)
    (tmp_path / "config.json").unlink()  # the checkpoint holds its config too
    with pytest.raises(InputError) as e:
        train.run(features_config(tmp_path, lr=0.5, variant="baseline"))
    assert f"{tmp_path / 'baseline' / 'ckpt.pt'}: written with --lr" in str(e.value)


def test_finetuning_starts_from_baseline_h(features_config, tiny, tmp_path: Path) -> None:
    cfg = features_config(tmp_path, variant="finetune-clean", finetune_lr=1e-12)
    results = train.run(cfg)
    assert set(results) == {"baseline", "finetune-clean"}
    base, tuned = (
        torch.load(tmp_path / v / "ckpt.pt", weights_only=True)["h"]
        for v in ("baseline", "finetune-clean")
    )
    fresh = Classifier(ClassifierConfig(tiny.classes, tiny.features)).state_dict()
    assert torch.allclose(base["linear.weight"], tuned["linear.weight"], atol=1e-6)
    assert not torch.allclose(fresh["linear.weight"], tuned["linear.weight"], atol=1e-3)


def _train_args(world_dir: Path, out: Path) -> list[str]:
    """`oi-pipe train` on the TINY world's splits and features, into `out`."""
    splits, features = world_dir / "splits", world_dir / "features.parquet"
    return ["train", "--splits", str(splits), "--features", str(features), "--out", str(out)]


def test_cli_trains_all_variants_and_writes_the_outputs(world_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = _train_args(world_dir, out) + [
        "--steps", "2", "--finetune-steps", "2", "--pretrain-steps", "2", "--batch-size", "40",
        "--embed", "4", "--hidden", "8", "--save-predictions",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Table 2 layout" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(train.VARIANTS)
    for name, m in metrics.items():
        assert 0 <= m["AP_all"] <= 1 and 0 <= m["mAP"] <= 1 and m["classes_evaluated"] > 0
        assert len(m["by_quality_decile"]) == 10 and m["steps"] >= 2
        for file in ("ckpt.pt", "per_class.parquet", "predictions.parquet", "config.json"):
            assert (out / name / file).is_file(), (name, file)
    assert (out / "deciles.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--variant", "nlc-bogus"], "'nlc-bogus'"),
        (["--device", "tpu"], "'tpu'"),
        (["--unverified", "ignored"], "'ignored'"),
    ],
)
def test_bad_options_are_one_line_errors(world_dir: Path, tmp_path: Path, args, named) -> None:
    result = CliRunner().invoke(app, _train_args(world_dir, tmp_path) + args)
    assert result.exit_code == 1
    assert named in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_split_file_is_one_line_naming_it(tmp_path: Path) -> None:
    args = [
        "train",
        "--splits",
        str(tmp_path),
        "--features",
        str(tmp_path / "f.parquet"),
        "--out",
        str(tmp_path / "run"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert f"{tmp_path / 'classes.parquet'}: missing split file" in result.output
