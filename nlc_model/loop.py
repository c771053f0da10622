"""The training loop of both trainers: a variant's phases, their steps, checkpoints and resume.

`train` (g and h on cached features) and `images.train_backbone` (f and h, and g, on images) each
build their own models, batches and step and hand them here, as torchvision's `train_one_epoch` is
handed whatever model and loader. What this module owns, in the order a run uses it:

- `TrainSettings`: the settings both trainers share, held by each one's config (each with its own
  defaults); `config_dict` spreads them out into the flat dict that every checkpoint, config.json
  and launch.json hold, the keys and values the flat configs of old wrote, so old folders resume;
- `plan`: each variant of Veit et al. as a list of phases; `get_lr`: the schedule within a phase;
- `VariantRun` and its `State`: what a variant's checkpoint holds and where it stands;
  `save_checkpoint` writes it atomically, `resume` restores it with the optimizer under way;
- `run_phase`: one phase's steps (learning rate per step, progress and timing, periodic
  checkpoints, the end-of-phase checkpoint that drops the optimizer), from a trainer's `Feed`;
  `run_variant`: the phases left, then `done`; `run_variants`: each variant trained, then
  evaluated into the metrics file.
"""

from __future__ import annotations

import enum
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from nlc_model import report
from openimages_pipe.errors import InputError

VARIANTS = ("baseline", "finetune-mixed", "finetune-clean", "nlc-pretrained", "nlc-joint")
NEEDS_BASELINE = ("finetune-mixed", "finetune-clean")  # they start from baseline's h


@dataclass(frozen=True)
class TrainSettings:
    """How both trainers train; the defaults are `train`'s (`train_backbone.TRAINING`: its own)."""

    steps: int = 5000  # baseline's steps, and the joint phase of the nlc variants
    finetune_steps: int = 1000  # the fine-tuning variants, on top of baseline's h
    pretrain_steps: int = 1000  # nlc-pretrained: g alone on V_train before the joint phase
    batch_size: int = 4096  # big batches keep CPU cores busy; the 9:1 split is of this
    clean_share: float = 0.1  # V_train's share of a mixed batch: the paper's 9:1
    lr: float = 1e-2  # AdamW peak; h is linear and g small: they take large steps
    finetune_lr: float = 1e-3  # fine-tuning starts from a trained h: smaller steps
    weight_decay: float = 0.0
    warmup: int = 100  # linear warm-up steps of each phase (at most a tenth of it)
    clean_weight: float = 0.1
    classify_weight: float = 1.0
    unverified: str = "negative"  # unverified classes of v: "negative" or "masked"
    embed: int = 256  # g's embeddings of y and f(I) (not given by the paper)
    hidden: int = 512  # g's hidden layer (not given by the paper)
    activation: str = "relu"
    seed: int = 0
    checkpoint_every: int = 200  # steps
    log_every: int = 20  # steps between progress updates (each one syncs the device)


def config_dict(cfg: Any) -> dict:
    """A trainer's config as one flat dict, its `TrainSettings` spread out, paths as strings."""
    flat: dict = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        flat |= asdict(value) if isinstance(value, TrainSettings) else {f.name: value}
    return {k: str(v) if isinstance(v, Path) else v for k, v in flat.items()}


def config_from_dict(kind: type, flat: dict) -> Any:
    """`config_dict`'s inverse for a config class `kind` (paths already made `Path`s)."""
    names = {f.name for f in fields(TrainSettings)}
    training = TrainSettings(**{k: v for k, v in flat.items() if k in names})
    return kind(**{k: v for k, v in flat.items() if k not in names}, training=training)


class Objective(enum.Enum):
    NOISY = "noisy labels"  # h on T's machine labels
    MIXED = "mixed labels"  # h on T's machine labels and V_train's verified ones, 9:1
    CLEAN = "clean labels"  # h on V_train's verified labels only
    CLEANER = "cleaner"  # g alone: L_clean on V_train
    JOINT = "joint"  # g and h: L_clean, and L_classify with q = c on T and v on V_train

    @property
    def uses_g(self) -> bool:
        return self in (Objective.CLEANER, Objective.JOINT)

    @property
    def trains_h(self) -> bool:
        return self is not Objective.CLEANER


@dataclass(frozen=True)
class Phase:
    objective: Objective
    steps: int
    lr: float
    clean_share: float  # 0: T only, 1: V_train only


def plan(variant: str, s: TrainSettings) -> tuple[Phase, ...]:
    mixed, ob = s.clean_share, Objective
    return {
        "baseline": (Phase(ob.NOISY, s.steps, s.lr, 0.0),),
        "finetune-mixed": (Phase(ob.MIXED, s.finetune_steps, s.finetune_lr, mixed),),
        "finetune-clean": (Phase(ob.CLEAN, s.finetune_steps, s.finetune_lr, 1.0),),
        "nlc-pretrained": (
            Phase(ob.CLEANER, s.pretrain_steps, s.lr, 1.0),
            Phase(ob.JOINT, s.steps, s.lr, mixed),
        ),
        "nlc-joint": (Phase(ob.JOINT, s.steps, s.lr, mixed),),
    }[variant]


def get_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """1) linear warm-up over min(warmup, steps / 10) steps, 2) cosine decay to lr / 10."""
    warmup = min(warmup, steps // 10)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr / 10 + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - lr / 10)


@dataclass
class State:
    """Where a variant stands; saved in its checkpoint."""

    phase: int = 0  # index of the phase under way
    step: int = 0  # steps of that phase done
    done: bool = False
    seconds: float = 0.0  # training time so far, all phases
    samples: int = 0  # images seen so far, all phases


@dataclass
class VariantRun:
    """A variant under training: what its checkpoint holds, and where it stands."""

    name: str
    path: Path  # its checkpoint: RUN/<variant>/ckpt.pt, or backbone.pt
    config: dict  # the resolved flat config (`config_dict`) every checkpoint carries
    models: dict[str, nn.Module | None]  # by checkpoint key: g and h, or f, h and g
    specs: dict[str, dict | None]  # the models' configs by checkpoint key, to rebuild them
    device: torch.device
    writes: bool = True  # with several processes, rank 0 alone writes
    state: State = field(default_factory=State)
    optimizer_state: dict | None = None  # restored into the phase under way

    @property
    def folder(self) -> Path:
        return self.path.parent


def save_checkpoint(run: VariantRun, opt: torch.optim.Optimizer | None) -> None:
    weights = {k: None if m is None else m.state_dict() for k, m in run.models.items()}
    optimizer = None if opt is None else opt.state_dict()
    ckpt = {"config": run.config, "variant": run.name, **run.specs, **weights,
            "optimizer": optimizer, "state": asdict(run.state)}  # fmt: skip
    tmp = run.path.with_name(run.path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, run.path)  # a kill mid-write keeps the previous checkpoint


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    if not path.is_file():
        raise InputError("no checkpoint here: train this variant first", path=path)
    return torch.load(path, map_location=device, weights_only=True)


def check_same_settings(old: dict, new: dict, skip: tuple[str, ...], path: Path, said: str) -> None:
    """Refuse to mix settings in one run folder: a resumed or added variant trains like the rest.

    `old` and `new` are flat configs; the first differing key is named as its option."""
    for key in (k for k in new if k not in skip):
        if old.get(key) != new[key]:
            msg = f"{said} --{key.replace('_', '-')} {old.get(key)}, not {new[key]}"
            raise InputError(f"{msg}; use another --out or the same setting", path)


def resume(run: VariantRun, ckpt: dict) -> None:
    """Continue from a checkpoint: its weights and progress, and the optimizer under way."""
    for key, model in run.models.items():
        if model is not None:
            model.load_state_dict(ckpt[key])
    run.state, run.optimizer_state = State(**ckpt["state"]), ckpt["optimizer"]


def optimizer(run: VariantRun, params: list, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW for the phase under way; on a resume, with the moments the checkpoint saved."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if run.optimizer_state is not None:
        opt.load_state_dict(run.optimizer_state)
        run.optimizer_state = None
    return opt


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # honest timings: wait for the queued kernels


def record(run: VariantRun, since: float, samples: int) -> float:
    """Add the time and samples since `since` to the run's state; return samples/s."""
    sync(run.device)
    seconds = time.perf_counter() - since
    run.state.seconds, run.state.samples = run.state.seconds + seconds, run.state.samples + samples
    return samples / max(seconds, 1e-9)


def progress_bar(console: Console) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    tail = (TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    return Progress(*columns, *tail, console=console)


@dataclass(frozen=True)
class Feed:
    """A trainer's own part of one phase, what `run_phase` steps through."""

    optimizer: torch.optim.Optimizer  # from `optimizer`: resumed where the checkpoint stopped
    batches: Iterator  # one batch per step, from the step under way on
    step: Callable[[Any], Tensor]  # one optimizer step on a batch; returns the loss
    samples: int  # per step, all processes together
    title: str  # of the phase's progress bar
    unit: str = "samples"


def run_phase(run: VariantRun, index: int, phase: Phase, feed: Feed, s: TrainSettings, bar) -> None:
    opt = feed.optimizer
    task = bar.add_task(feed.title, total=phase.steps, info="")
    bar.update(task, completed=run.state.step)
    sync(run.device)
    clock, samples = time.perf_counter(), 0
    for step, batch in zip(range(run.state.step, phase.steps), feed.batches, strict=False):
        for group in opt.param_groups:
            group["lr"] = get_lr(step, phase.steps, phase.lr, s.warmup)
        loss = feed.step(batch)
        samples += feed.samples
        run.state.step = step + 1
        last, save = step + 1 == phase.steps, (step + 1) % s.checkpoint_every == 0
        if last or save or (step + 1) % s.log_every == 0:
            rate = record(run, clock, samples)
            info = f"loss {loss.item():.4f}  {rate:,.0f} {feed.unit}/s"
            bar.update(task, completed=step + 1, info=info)
            if save and not last and run.writes:
                save_checkpoint(run, opt)
            clock, samples = time.perf_counter(), 0  # samples/s leaves checkpoint writes out
    run.state.phase, run.state.step = index + 1, 0
    if run.writes:
        save_checkpoint(run, None)  # the next phase starts a fresh optimizer


def run_variant(run: VariantRun, phases: tuple[Phase, ...], feed: Callable[[int, Phase], Feed],
                s: TrainSettings, bar) -> VariantRun:  # fmt: skip
    """The phases left (none once done), each from the trainer's `feed(index, phase)`."""
    for index in range(run.state.phase, len(phases)):
        run_phase(run, index, phases[index], feed(index, phases[index]), s, bar)
    if not run.state.done:
        run.state.done = True
        if run.writes:
            save_checkpoint(run, None)
    return run


def training_summary(run: VariantRun, phases: tuple[Phase, ...]) -> dict:
    """What training adds to a variant's metrics entry."""
    s = run.state
    return {
        "steps": sum(p.steps for p in phases),
        "train_s": round(s.seconds, 3),
        "samples_per_s": s.samples / s.seconds if s.seconds > 0 else None,
    }


def run_variants(names: tuple[str, ...], train: Callable[[str], VariantRun],
                 evaluate: Callable[[VariantRun], dict], metrics: Path, writes: bool = True,
                 wait: Callable[[], Any] | None = None) -> dict[str, dict]:  # fmt: skip
    """Train each variant, then evaluate it into `metrics` (JSON, with the variants of earlier
    runs); with several processes only the writing one evaluates, and `wait` holds them all."""
    results = json.loads(metrics.read_text()) if metrics.is_file() else {}
    for name in names:
        run = train(name)
        if writes:
            results[name] = evaluate(run)
            report.write_json(metrics, results)  # after each variant: a kill keeps those done
        if wait is not None:
            wait()  # the next variant starts from files rank 0 has just written
    return results
