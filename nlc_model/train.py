"""`train`: the label-cleaning network g and the classifier h on cached features, five variants.

Reads top to bottom: the config; each variant as a list of phases; the learning-rate schedule;
the losses; one step; checkpoints; the loop over a variant's phases; evaluation; `run`.

The paper's method (Veit et al., CVPR 2017), on features f(I) read from a table:
- L_clean = sum over V_train rows of |c - v|, c = g(y, f(I)) (L1: labels are sparse, and a
  squared error would pull every c towards small non-zero values);
- L_classify = BCE(h(f(I)), q) with q = c for rows of T, taken without gradient into g (otherwise
  c = p = 0 solves both losses), and q = v for rows of V_train;
- total = clean_weight * L_clean + classify_weight * L_classify (0.1 and 1 in the paper), both
  summed over classes and divided by the batch size, so the paper's ratio holds for any batch size;
- batches mix T and V_train 9:1 (`clean_share` = 0.1) where a variant sees both.

Each variant lives in RUN/<variant>/: `ckpt.pt` (models, optimizer, progress and the resolved
config), `config.json`, `per_class.parquet` and, with --save-predictions, `predictions.parquet`.
A rerun of the same command resumes from the last checkpoint; a finished variant is only
re-evaluated. Batches are a pure function of (seed, phase, step), so a resumed run trains on the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import enum
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from nlc_model import data as data_mod
from nlc_model import evaluate, report
from nlc_model.batches import UNVERIFIED, Batch, BatchMaker
from nlc_model.data import TrainData
from nlc_model.metrics import score_pairs
from nlc_model.models import ACTIVATIONS, Classifier, ClassifierConfig, CleanerConfig, LabelCleaner
from openimages_pipe.errors import InputError

VARIANTS = ("baseline", "finetune-mixed", "finetune-clean", "nlc-pretrained", "nlc-joint")
NEEDS_BASELINE = ("finetune-mixed", "finetune-clean")  # they start from baseline's h
CHECKPOINT = "ckpt.pt"
# Settings that do not change what is learned; any other difference refuses to resume.
NOT_TRAINING = ("splits", "features", "out", "variant", "device", "save_predictions",
                "checkpoint_every", "log_every")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train` needs; saved, resolved, in every checkpoint and in config.json."""

    splits: Path
    features: Path
    out: Path
    variant: str = "all"  # one of VARIANTS, or "all"
    device: str = "auto"  # auto, cpu or cuda
    save_predictions: bool = False
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


def plan(variant: str, cfg: TrainConfig) -> tuple[Phase, ...]:
    mixed, ob = cfg.clean_share, Objective
    return {
        "baseline": (Phase(ob.NOISY, cfg.steps, cfg.lr, 0.0),),
        "finetune-mixed": (Phase(ob.MIXED, cfg.finetune_steps, cfg.finetune_lr, mixed),),
        "finetune-clean": (Phase(ob.CLEAN, cfg.finetune_steps, cfg.finetune_lr, 1.0),),
        "nlc-pretrained": (
            Phase(ob.CLEANER, cfg.pretrain_steps, cfg.lr, 1.0),
            Phase(ob.JOINT, cfg.steps, cfg.lr, mixed),
        ),
        "nlc-joint": (Phase(ob.JOINT, cfg.steps, cfg.lr, mixed),),
    }[variant]


def get_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """1) linear warm-up over min(warmup, steps / 10) steps, 2) cosine decay to lr / 10."""
    warmup = min(warmup, steps // 10)
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr / 10 + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - lr / 10)


@dataclass(frozen=True)
class Losses:
    clean: torch.Tensor
    classify: torch.Tensor
    total: torch.Tensor


def compute_losses(
    g: LabelCleaner | None, h: Classifier, batch: Batch, objective: Objective, cfg: TrainConfig
) -> Losses:
    """The batch's first B - Bv rows are T's, the last Bv V_train's (see `batches`)."""
    n, noisy = batch.x.shape[0], batch.x.shape[0] - batch.clean
    clean = classify = batch.x.new_zeros(())
    q_noisy = batch.y[:noisy]  # (B - Bv, d) targets of the T rows: y, or c for the nlc variants
    if objective.uses_g:
        c = g(batch.y[noisy:], batch.x[noisy:]).float()  # (Bv, d)
        clean = ((c - batch.v).abs() * batch.v_mask).sum() / n
        if noisy:
            with torch.no_grad():  # q = c, no gradient into g: else c = p = 0 is a minimum
                q_noisy = g(batch.y[:noisy], batch.x[:noisy]).float()
    if objective.trains_h:
        logits = h(batch.x).float()  # (B, d)
        q = torch.cat([q_noisy, batch.v])
        weight = torch.cat([torch.ones_like(q_noisy), batch.v_mask])
        bce = F.binary_cross_entropy_with_logits(logits, q, weight=weight, reduction="sum")
        classify = bce / n
    return Losses(clean, classify, cfg.clean_weight * clean + cfg.classify_weight * classify)


def train_step(g, h, opt, batch: Batch, objective: Objective, cfg: TrainConfig) -> Losses:
    device = batch.x.device
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        losses = compute_losses(g, h, batch, objective, cfg)
    opt.zero_grad(set_to_none=True)
    losses.total.backward()
    opt.step()
    return losses


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
    name: str
    folder: Path
    g: LabelCleaner | None
    h: Classifier
    state: State = field(default_factory=State)
    optimizer_state: dict | None = None  # restored into the phase under way


def config_dict(cfg: TrainConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


def save_checkpoint(run: VariantRun, cfg: TrainConfig, opt: torch.optim.Optimizer | None) -> None:
    ckpt = {
        "config": config_dict(cfg),
        "variant": run.name,
        "cleaner": None if run.g is None else asdict(run.g.cfg),
        "classifier": asdict(run.h.cfg),
        "g": None if run.g is None else run.g.state_dict(),
        "h": run.h.state_dict(),
        "optimizer": None if opt is None else opt.state_dict(),
        "state": asdict(run.state),
    }
    tmp = run.folder / (CHECKPOINT + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, run.folder / CHECKPOINT)  # a kill mid-write keeps the previous checkpoint


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise InputError("no checkpoint here: train this variant first", path=path)
    return torch.load(path, map_location="cpu", weights_only=True)


def check_same_training(old: dict, cfg: TrainConfig, path: Path) -> None:
    """Refuse to mix settings in one run folder: a resumed or added variant trains like the rest."""
    new = config_dict(cfg)
    for key in (k for k in new if k not in NOT_TRAINING):
        if old.get(key) != new[key]:
            msg = f"written with --{key.replace('_', '-')} {old.get(key)}, not {new[key]}"
            raise InputError(f"{msg}; use another --out or the same setting", path)


def check_compatible(ckpt: dict, path: Path, cfg: TrainConfig, data: TrainData) -> None:
    """Refuse to resume with other training settings, classes or feature width."""
    check_same_training(ckpt["config"], cfg, path)
    if ckpt["classifier"]["features"] != data.features.dim:
        msg = f"embedding width differs from the checkpoint's ({ckpt['classifier']['features']})"
        raise InputError(msg, data.features.path, value=str(data.features.dim))
    if ckpt["classifier"]["classes"] != len(data.classes):
        raise InputError("class count differs from the checkpoint's", path, str(len(data.classes)))


def start_variant(name: str, cfg: TrainConfig, data: TrainData, device: torch.device):
    """Fresh models, or the variant's checkpoint; fine-tuning starts from baseline's h."""
    d, dim = len(data.classes), data.features.dim
    uses_g = any(p.objective.uses_g for p in plan(name, cfg))
    cleaner = CleanerConfig(d, dim, cfg.embed, cfg.hidden, cfg.activation)
    torch.manual_seed(cfg.seed)  # same initial h for every variant that starts fresh
    h = Classifier(ClassifierConfig(d, dim)).to(device)
    # h's bias starts at each class's log-odds in T: no steps spent learning that labels are rare.
    prior = torch.as_tensor(data.classes.t_count / max(1, len(data.splits["T"])), device=device)
    h.linear.bias.data.copy_(torch.logit(prior.clamp(1e-6, 0.5)))
    g = LabelCleaner(cleaner).to(device) if uses_g else None
    run = VariantRun(name, cfg.out / name, g, h)
    run.folder.mkdir(parents=True, exist_ok=True)
    path = run.folder / CHECKPOINT
    if path.is_file():
        ckpt = load_checkpoint(path)
        check_compatible(ckpt, path, cfg, data)
        h.load_state_dict(ckpt["h"])
        if g is not None:
            g.load_state_dict(ckpt["g"])
        run.state, run.optimizer_state = State(**ckpt["state"]), ckpt["optimizer"]
    elif name in NEEDS_BASELINE:
        h.load_state_dict(load_checkpoint(cfg.out / "baseline" / CHECKPOINT)["h"])
    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # honest timings: wait for the queued kernels


def run_phase(run: VariantRun, index: int, data: TrainData, cfg: TrainConfig, bar) -> None:
    phase = plan(run.name, cfg)[index]
    device = data.features.table.device
    maker = BatchMaker(data, cfg.batch_size, phase.clean_share, cfg.unverified, cfg.seed + index)
    params = [*(run.g.parameters() if phase.objective.uses_g else ())]
    params += [*(run.h.parameters() if phase.objective.trains_h else ())]
    opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=cfg.weight_decay)
    if run.optimizer_state is not None:
        opt.load_state_dict(run.optimizer_state)
        run.optimizer_state = None
    task = bar.add_task(f"{run.name}: {phase.objective.value}", total=phase.steps, info="")
    bar.update(task, completed=run.state.step)
    sync(device)
    clock, samples = time.perf_counter(), 0
    for step in range(run.state.step, phase.steps):
        for group in opt.param_groups:
            group["lr"] = get_lr(step, phase.steps, phase.lr, cfg.warmup)
        losses = train_step(run.g, run.h, opt, maker(step), phase.objective, cfg)
        samples += cfg.batch_size
        run.state.step = step + 1
        last, save = step + 1 == phase.steps, (step + 1) % cfg.checkpoint_every == 0
        if last or save or (step + 1) % cfg.log_every == 0:
            sync(device)
            now = time.perf_counter()
            run.state.seconds += now - clock
            run.state.samples += samples
            rate = samples / max(now - clock, 1e-9)
            info = f"loss {losses.total.item():.4f}  {rate:,.0f} samples/s"
            bar.update(task, completed=step + 1, info=info)
            if save and not last:
                save_checkpoint(run, cfg, opt)
            clock, samples = time.perf_counter(), 0  # samples/s leaves checkpoint writes out
    run.state.phase, run.state.step = index + 1, 0
    save_checkpoint(run, cfg, None)  # the next phase starts a fresh optimizer


def train_variant(name: str, data: TrainData, cfg: TrainConfig, bar) -> VariantRun:
    run = start_variant(name, cfg, data, data.features.table.device)
    for index in range(run.state.phase, len(plan(name, cfg))):
        run_phase(run, index, data, cfg, bar)
    if not run.state.done:
        run.state.done = True
        save_checkpoint(run, cfg, None)
    return run


def evaluate_variant(run: VariantRun, data: TrainData, cfg: TrainConfig) -> dict:
    """Score h on V_eval; write per_class.parquet (and predictions); return the JSON entry."""
    config = config_dict(cfg) | {"variant": run.name}
    out = run.folder / "predictions.parquet" if cfg.save_predictions else None
    pairs = evaluate.predict(run.h, data.splits["V_eval"], data.features.table, out, config)
    m = score_pairs(pairs, len(data.classes))
    report.write_parquet(
        run.folder / "per_class.parquet", report.per_class(m, data.classes), config
    )
    report.write_json(run.folder / "config.json", config)
    s = run.state
    return report.summarize(m, data.classes) | {
        "steps": sum(p.steps for p in plan(run.name, cfg)),
        "train_s": round(s.seconds, 3),
        "samples_per_s": s.samples / s.seconds if s.seconds > 0 else None,
        "images_without_features": data.dropped,
    }


def resolve_variants(name: str) -> tuple[str, ...]:
    if name == "all":
        return VARIANTS
    if name not in VARIANTS:
        raise InputError(f"unknown variant; choose one of all, {', '.join(VARIANTS)}", value=name)
    return ("baseline", name) if name in NEEDS_BASELINE else (name,)


def check_options(cfg: TrainConfig) -> None:
    if cfg.unverified not in UNVERIFIED:
        raise InputError(
            f"--unverified must be one of {', '.join(UNVERIFIED)}", value=cfg.unverified
        )
    if cfg.activation not in ACTIVATIONS:
        raise InputError(
            f"--activation must be one of {', '.join(ACTIVATIONS)}", value=cfg.activation
        )
    if not 0 < cfg.clean_share < 1:
        raise InputError("--clean-share must be between 0 and 1", value=str(cfg.clean_share))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise InputError("--device must be one of auto, cpu, cuda", value=name)
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available", value=name)
    return torch.device(name)


def progress_bar(console: Console) -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    tail = (TextColumn("{task.fields[info]}"), TimeRemainingColumn())
    return Progress(*columns, *tail, console=console)


def run(cfg: TrainConfig, console: Console | None = None) -> dict[str, dict]:
    console = console or Console()
    variants = resolve_variants(cfg.variant)
    check_options(cfg)
    device = pick_device(cfg.device)
    if (saved := cfg.out / "config.json").is_file():
        check_same_training(json.loads(saved.read_text()), cfg, saved)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in float32
    names = ("T", "V_train", "V_eval")
    data = data_mod.load_train_data(cfg.splits, cfg.features, device, names)
    for name, n in data.dropped.items():
        if n:
            console.print(f"[yellow]{name}: {n:,} images have no feature row: left out[/]")
    sizes = ", ".join(f"{k} {len(v):,}" for k, v in data.splits.items())
    rows = data.features.table.shape[0]
    console.print(f"{rows:,} feature rows of width {data.features.dim} on {device}; {sizes}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    report.write_json(cfg.out / "config.json", config_dict(cfg))
    path = cfg.out / "metrics.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    with progress_bar(console) as bar:
        for name in variants:
            results[name] = evaluate_variant(train_variant(name, data, cfg, bar), data, cfg)
            report.write_json(path, results)  # after each variant: a kill keeps the finished ones
    ordered = {v: results[v] for v in VARIANTS if v in results}
    evaluate.show(console, ordered, cfg.out)
    return ordered
