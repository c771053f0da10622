"""`train`: the label-cleaning network g and the classifier h on cached features, five variants.

Reads top to bottom: the config; the losses; one step; a variant's models (fresh, resumed, or
from baseline's h) and what each of its phases feeds the loop; evaluation; `run`. The phases, the
learning-rate schedule, checkpoints and resume are `loop`'s, shared with `images.train_backbone`,
which trains f on images through the same loop and the same losses (`compute_losses`).

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

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console

from nlc_model import data as data_mod
from nlc_model import evaluate, loop, report
from nlc_model.batches import UNVERIFIED, Batch, BatchMaker
from nlc_model.data import TrainData
from nlc_model.loop import (
    NEEDS_BASELINE,
    VARIANTS,
    Feed,
    Objective,
    Phase,
    TrainSettings,
    VariantRun,
    config_dict,
    load_checkpoint,
    plan,
)
from nlc_model.metrics import score_pairs
from nlc_model.models import ACTIVATIONS, Classifier, ClassifierConfig, CleanerConfig, LabelCleaner
from openimages_pipe.errors import InputError

CHECKPOINT = "ckpt.pt"
# Settings that do not change what is learned; any other difference refuses to resume.
NOT_TRAINING = ("splits", "features", "out", "variant", "device", "save_predictions",
                "checkpoint_every", "log_every")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train` needs; saved, resolved and flat, in every checkpoint and config.json."""

    splits: Path
    features: Path
    out: Path
    variant: str = "all"  # one of VARIANTS, or "all"
    device: str = "auto"  # auto, cpu or cuda
    save_predictions: bool = False
    training: TrainSettings = TrainSettings()  # steps, batches, learning rates, losses, g's sizes


@dataclass(frozen=True)
class Losses:
    clean: torch.Tensor
    classify: torch.Tensor
    total: torch.Tensor


def compute_losses(
    g: LabelCleaner | None, h: Classifier, batch: Batch, objective: Objective, s: TrainSettings
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
    return Losses(clean, classify, s.clean_weight * clean + s.classify_weight * classify)


def train_step(g, h, opt, batch: Batch, objective: Objective, s: TrainSettings) -> Losses:
    device = batch.x.device
    with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        losses = compute_losses(g, h, batch, objective, s)
    opt.zero_grad(set_to_none=True)
    losses.total.backward()
    opt.step()
    return losses


def check_same_training(old: dict, cfg: TrainConfig, path: Path) -> None:
    """Refuse to mix settings in one run folder: a resumed or added variant trains like the rest."""
    loop.check_same_settings(old, config_dict(cfg), NOT_TRAINING, path, "written with")


def check_compatible(ckpt: dict, path: Path, cfg: TrainConfig, data: TrainData) -> None:
    """Refuse to resume with other training settings, classes or feature width."""
    check_same_training(ckpt["config"], cfg, path)
    if ckpt["classifier"]["features"] != data.features.dim:
        msg = f"embedding width differs from the checkpoint's ({ckpt['classifier']['features']})"
        raise InputError(msg, data.features.path, value=str(data.features.dim))
    if ckpt["classifier"]["classes"] != len(data.classes):
        raise InputError("class count differs from the checkpoint's", path, str(len(data.classes)))


def start_variant(name: str, cfg: TrainConfig, data: TrainData, device: torch.device) -> VariantRun:
    """Fresh models, or the variant's checkpoint; fine-tuning starts from baseline's h."""
    d, dim, s = len(data.classes), data.features.dim, cfg.training
    uses_g = any(p.objective.uses_g for p in plan(name, s))
    cleaner = CleanerConfig(d, dim, s.embed, s.hidden, s.activation)
    torch.manual_seed(s.seed)  # same initial h for every variant that starts fresh
    h = Classifier(ClassifierConfig(d, dim)).to(device)
    # h's bias starts at each class's log-odds in T: no steps spent learning that labels are rare.
    prior = torch.as_tensor(data.classes.t_count / max(1, len(data.splits["T"])), device=device)
    h.linear.bias.data.copy_(torch.logit(prior.clamp(1e-6, 0.5)))
    g = LabelCleaner(cleaner).to(device) if uses_g else None
    specs = {"cleaner": None if g is None else asdict(g.cfg), "classifier": asdict(h.cfg)}
    path = cfg.out / name / CHECKPOINT
    run = VariantRun(name, path, config_dict(cfg), {"g": g, "h": h}, specs, device)
    run.folder.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        ckpt = load_checkpoint(path)
        check_compatible(ckpt, path, cfg, data)
        loop.resume(run, ckpt)
    elif name in NEEDS_BASELINE:
        h.load_state_dict(load_checkpoint(cfg.out / "baseline" / CHECKPOINT)["h"])
    return run


def phase_feed(run: VariantRun, index: int, phase: Phase, data: TrainData, s: TrainSettings
               ) -> Feed:  # fmt: skip
    """What one phase trains (g, h or both), on which batches, with which step."""
    g, h = run.models["g"], run.models["h"]
    maker = BatchMaker(data, s.batch_size, phase.clean_share, s.unverified, s.seed + index)
    params = [*(g.parameters() if phase.objective.uses_g else ())]
    params += [*(h.parameters() if phase.objective.trains_h else ())]
    opt = loop.optimizer(run, params, phase.lr, s.weight_decay)

    def step(batch: Batch) -> torch.Tensor:
        return train_step(g, h, opt, batch, phase.objective, s).total

    batches = map(maker, itertools.count(run.state.step))  # a batch is a function of its step
    return Feed(opt, batches, step, s.batch_size, f"{run.name}: {phase.objective.value}")


def train_variant(name: str, data: TrainData, cfg: TrainConfig, bar) -> VariantRun:
    run, s = start_variant(name, cfg, data, data.features.table.device), cfg.training
    return loop.run_variant(
        run, plan(name, s), lambda index, phase: phase_feed(run, index, phase, data, s), s, bar
    )


def evaluate_variant(run: VariantRun, data: TrainData, cfg: TrainConfig) -> dict:
    """Score h on V_eval; write per_class.parquet (and predictions); return the JSON entry."""
    config = run.config | {"variant": run.name}
    out = run.folder / "predictions.parquet" if cfg.save_predictions else None
    h, split = run.models["h"], data.splits["V_eval"]
    pairs = evaluate.predict(h, split, data.features.table, out, config)
    m = score_pairs(pairs, len(data.classes))
    report.write_parquet(
        run.folder / "per_class.parquet", report.per_class(m, data.classes), config
    )
    report.write_json(run.folder / "config.json", config)
    trained = loop.training_summary(run, plan(run.name, cfg.training))
    return report.summarize(m, data.classes) | trained | {"images_without_features": data.dropped}


def resolve_variants(name: str) -> tuple[str, ...]:
    if name == "all":
        return VARIANTS
    if name not in VARIANTS:
        raise InputError(f"unknown variant; choose one of all, {', '.join(VARIANTS)}", value=name)
    return ("baseline", name) if name in NEEDS_BASELINE else (name,)


def check_settings(s: TrainSettings) -> None:
    """Bad settings named, with the allowed values."""
    if s.unverified not in UNVERIFIED:
        raise InputError(f"--unverified must be one of {', '.join(UNVERIFIED)}", value=s.unverified)
    if s.activation not in ACTIVATIONS:
        allowed = ", ".join(ACTIVATIONS)
        raise InputError(f"--activation must be one of {allowed}", value=s.activation)
    if not 0 < s.clean_share < 1:
        raise InputError("--clean-share must be between 0 and 1", value=str(s.clean_share))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise InputError("--device must be one of auto, cpu, cuda", value=name)
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available", value=name)
    return torch.device(name)


def run(cfg: TrainConfig, console: Console | None = None) -> dict[str, dict]:
    console = console or Console()
    variants = resolve_variants(cfg.variant)
    check_settings(cfg.training)
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
    with loop.progress_bar(console) as bar:
        results = loop.run_variants(
            variants,
            lambda name: train_variant(name, data, cfg, bar),
            lambda run: evaluate_variant(run, data, cfg),
            cfg.out / "metrics.json",
        )
    ordered = {v: results[v] for v in VARIANTS if v in results}
    evaluate.show(console, ordered, cfg.out)
    return ordered
