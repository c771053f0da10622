"""The one training loop: both trainers checkpoint and resume through it; old folders resume."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from rich.console import Console

from nlc_model import loop, report, train
from nlc_model.images import train_backbone as tb
from nlc_model.images.launch import load_config
from openimages_pipe.errors import InputError

QUIET = Console(quiet=True)
TRAINERS = {"features": (train, "features_config"), "backbone": (tb, "backbone_config")}
RUN_PHASE = loop.run_phase


class Killed(Exception):
    pass


def through_the_loop(monkeypatch, kill_after: int | None = None) -> tuple[list, list]:
    """Spy on `loop.run_phase`: the (variant, phase, step) it starts at, and the steps it takes.
    With `kill_after`, the step after that many raises, as if the process were killed."""
    entered, steps = [], []

    def run_phase(run, index, phase, feed, s, bar) -> None:
        entered.append((run.name, index, run.state.step))

        def step(batch):
            if len(steps) == kill_after:
                raise Killed
            steps.append(run.state.step)
            return feed.step(batch)

        RUN_PHASE(run, index, phase, replace(feed, step=step), s, bar)

    monkeypatch.setattr(loop, "run_phase", run_phase)
    return entered, steps


@pytest.mark.parametrize("kind", TRAINERS)
def test_both_trainers_checkpoint_and_resume_through_the_one_loop(
    kind, request, tmp_path, monkeypatch
) -> None:
    trainer, fixture = TRAINERS[kind]
    cfg = request.getfixturevalue(fixture)(tmp_path, variant="baseline")  # 3 steps
    path = tmp_path / "baseline" / trainer.CHECKPOINT
    entered, steps = through_the_loop(monkeypatch, kill_after=2)
    with pytest.raises(Killed):
        trainer.run(cfg, QUIET)
    assert entered == [("baseline", 0, 0)] and steps == [0, 1]
    ckpt = torch.load(path, weights_only=True)
    assert (ckpt["state"]["step"], ckpt["state"]["done"]) == (2, False)
    assert ckpt["optimizer"] is not None and ckpt["config"] == loop.config_dict(cfg)
    assert not list(path.parent.glob("*.tmp"))  # written under another name, then moved

    entered, steps = through_the_loop(monkeypatch)
    trainer.run(cfg, QUIET)
    assert entered == [("baseline", 0, 2)] and steps == [2]  # only step 3 was left
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["state"]["done"] and ckpt["optimizer"] is None  # a phase's end drops it
    assert ckpt["state"]["samples"] == 3 * cfg.training.batch_size

    entered, steps = through_the_loop(monkeypatch)
    results = trainer.run(cfg, QUIET)
    assert entered == [] and results["baseline"]["steps"] == 3  # finished: evaluated again only


def old_flat_config(kind: str, cfg) -> dict:
    """The checkpoints' "config" as the flat TrainConfig and BackboneConfig of old wrote it."""
    if kind == "features":
        return {
            "splits": str(cfg.splits), "features": str(cfg.features), "out": str(cfg.out),
            "variant": "baseline", "device": "auto", "save_predictions": False, "steps": 3,
            "finetune_steps": 2, "pretrain_steps": 2, "batch_size": 40, "clean_share": 0.1,
            "lr": 0.01, "finetune_lr": 0.001, "weight_decay": 0.0, "warmup": 0,
            "clean_weight": 0.1, "classify_weight": 1.0, "unverified": "negative", "embed": 4,
            "hidden": 8, "activation": "relu", "seed": 0, "checkpoint_every": 1, "log_every": 1,
        }  # fmt: skip
    return {
        "shards": str(cfg.shards), "splits": str(cfg.splits), "out": str(cfg.out), "arch": "tiny",
        "width": 4, "weights": None, "image_size": 32, "min_scale": 0.08, "variant": "baseline",
        "finetune_backbone": False, "steps": 3, "finetune_steps": 1000, "pretrain_steps": 1000,
        "batch_size": 4, "clean_share": 0.1, "lr": 0.001, "finetune_lr": 0.0001,
        "weight_decay": 0.05, "warmup": 0, "clean_weight": 0.1, "classify_weight": 1.0,
        "unverified": "negative", "embed": 256, "hidden": 512, "activation": "relu",
        "workers": 0, "device": "cpu", "seed": 0, "checkpoint_every": 1, "log_every": 1,
    }  # fmt: skip


@pytest.mark.parametrize("kind", TRAINERS)
def test_a_run_folder_of_the_old_flat_configs_resumes(kind, request, tmp_path, monkeypatch):
    trainer, fixture = TRAINERS[kind]
    cfg = request.getfixturevalue(fixture)(tmp_path, variant="baseline")
    old = old_flat_config(kind, cfg)
    assert loop.config_dict(cfg) == old
    through_the_loop(monkeypatch, kill_after=2)
    with pytest.raises(Killed):
        trainer.run(cfg, QUIET)
    path = tmp_path / "baseline" / trainer.CHECKPOINT
    torch.save(torch.load(path, weights_only=True) | {"config": old}, path)
    if kind == "features":
        report.write_json(tmp_path / "config.json", old)
        assert list(loop.config_dict(cfg)) == list(old)  # config.json's keys in their old order
    else:
        report.write_json(tmp_path / "launch.json", old)
        assert load_config(tmp_path / "launch.json") == cfg  # what torchrun's processes read

    entered, steps = through_the_loop(monkeypatch)
    trainer.run(cfg, QUIET)
    assert entered == [("baseline", 0, 2)] and steps == [2]
    assert torch.load(path, weights_only=True)["state"]["done"]
    other = replace(cfg, training=replace(cfg.training, lr=0.5))  # still compared key for key
    with pytest.raises(InputError, match=f"--lr {old['lr']}, not 0.5"):
        trainer.run(other, QUIET)
