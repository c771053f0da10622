"""`train --stage backbone`: f and h on T's noisy labels, from the image shards (the baseline).

With `--finetune-backbone`, the other variants of Veit et al. run on images too and update f:
they start from the baseline's f and h, and their phases, losses and learning-rate schedule are
`train`'s (`train.plan`, `train.compute_losses`, `train.get_lr`) with f(I) computed from the
batch's images instead of read from a table. Batches put T's images first and V_train's last,
mixed 9:1 where the variant needs both, exactly the layout of `batches.Batch`.

Reads top to bottom: the config; processes (DDP); the data; the models; one step; checkpoints;
a phase; evaluation on V_eval; `run`. `launch` starts it in N processes under `torchrun`.

Each variant lives in OUT/<variant>/: `backbone.pt` (f, h, g, optimizer, progress and the resolved
config; what `embed --weights` takes) and `backbone_per_class.parquet`; OUT/backbone_metrics.json
holds every finished variant. A rerun resumes from the last checkpoint, restarting the epoch under
way (the streams are a pure function of seed and epoch). With N processes (`torchrun`), each reads
its own share of the shards, `--batch-size` is per process, and rank 0 alone writes and evaluates.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from nlc_model import evaluate, report, train
from nlc_model.batches import Batch
from nlc_model.images import shards
from nlc_model.images.backbone import Backbone, BackboneSpec, check_image_size, load_weights
from nlc_model.images.batches import ImageData, Mix, image_batches, load_image_data
from nlc_model.metrics import Metrics, score_pairs
from nlc_model.models import Classifier, ClassifierConfig, CleanerConfig, LabelCleaner
from nlc_model.train import Objective, State
from openimages_pipe.errors import InputError

CHECKPOINT = "backbone.pt"  # not train's ckpt.pt: both stages may share one run folder
METRICS = "backbone_metrics.json"
# Settings that do not change what is learned; any other difference refuses to resume.
NOT_TRAINING = ("shards", "splits", "out", "variant", "finetune_backbone", "device", "workers",
                "checkpoint_every", "log_every")  # fmt: skip
# Settings the baseline does not use: a fine-tuning run may change them and still start from it.
NOT_BASELINE = ("finetune_steps", "pretrain_steps", "finetune_lr", "clean_share", "clean_weight",
                "unverified", "embed", "hidden", "activation")  # fmt: skip


@dataclass(frozen=True)
class BackboneConfig:
    """Everything `train --stage backbone` needs; saved, resolved, in every checkpoint."""

    shards: Path  # a download folder (or its shards/)
    splits: Path
    out: Path
    arch: str = "resnet50"  # see backbone.ARCHS
    width: int = 32  # `tiny` only: channels of its first stage
    weights: Path | None = None  # start f (and h) from a local torchvision state dict/checkpoint
    image_size: int = 224  # S: crops are S x S
    min_scale: float = 0.08  # RandomResizedCrop's smallest area
    variant: str = "baseline"  # with finetune_backbone: any of train.VARIANTS, or "all"
    finetune_backbone: bool = False
    steps: int = 10_000  # baseline, and the joint phase of nlc-*
    finetune_steps: int = 1000
    pretrain_steps: int = 1000
    batch_size: int = 64  # images per step and process
    clean_share: float = 0.1  # V_train's share of a mixed batch: the paper's 9:1
    lr: float = 1e-3  # AdamW peak
    finetune_lr: float = 1e-4
    weight_decay: float = 0.05
    warmup: int = 500  # linear warm-up steps of each phase (at most a tenth of it)
    clean_weight: float = 0.1
    classify_weight: float = 1.0
    unverified: str = "negative"
    embed: int = 256
    hidden: int = 512
    activation: str = "relu"
    workers: int = 4  # DataLoader processes per training process
    device: str = "auto"
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10


def variant_config(cfg: BackboneConfig) -> train.TrainConfig:
    """train's config with our settings: its phases, losses and schedule apply unchanged."""
    shared = {f.name for f in fields(train.TrainConfig)} & {f.name for f in fields(cfg)}
    values = {k: getattr(cfg, k) for k in shared if k not in ("variant", "device")}
    return train.TrainConfig(features=Path("-"), **values)


def config_dict(cfg: BackboneConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}


@dataclass(frozen=True)
class Procs:
    rank: int
    world: int
    device: torch.device
    started: bool  # we initialised the process group, so we end it


def start_processes(device_name: str, workers: int) -> Procs:
    """One process, or one of `torchrun`'s: nccl between GPUs, gloo between CPU processes."""
    device = train.pick_device(device_name)
    started = False
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        started = True
    world = dist.get_world_size() if dist.is_initialized() else 1
    if device.type == "cpu":
        torch.set_num_threads(shards.cpu_threads(workers, world))
    if not dist.is_initialized():
        return Procs(0, 1, device, started)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return Procs(dist.get_rank(), dist.get_world_size(), device, started)


class Net(nn.Module):
    """f, h and g (for the nlc variants) in one module, so that DDP averages every gradient."""

    def __init__(self, f: Backbone, h: Classifier, g: LabelCleaner | None) -> None:
        super().__init__()
        self.f, self.h, self.g = f, h, g

    def forward(self, images: Tensor, y: Tensor, v: Tensor, v_mask: Tensor,
                objective: Objective, tcfg: train.TrainConfig) -> tuple[Tensor, ...]:  # fmt: skip
        frozen = not self.f.training
        with torch.no_grad() if frozen else nullcontext():
            x = self.f(images)  # (B, D)
        losses = train.compute_losses(self.g, self.h, Batch(x, y, v, v_mask), objective, tcfg)
        return losses.clean, losses.classify, losses.total


def set_trainable(net: Net, objective: Objective) -> list[nn.Parameter]:
    """f and h learn with L_classify; g with L_clean. The cleaner's pre-training leaves f fixed."""
    for module, on in ((net.f, objective.trains_h), (net.h, objective.trains_h),
                       (net.g, objective.uses_g)):  # fmt: skip
        if module is not None:
            module.train(on).requires_grad_(on)
    return [p for p in net.parameters() if p.requires_grad]


def build_net(name: str, cfg: BackboneConfig, data: ImageData, device: torch.device) -> Net:
    d, tcfg = len(data.classes), variant_config(cfg)
    torch.manual_seed(cfg.seed)
    f = Backbone(BackboneSpec(cfg.arch, cfg.width))
    h = Classifier(ClassifierConfig(d, f.dim))
    # h's bias starts at each class's log-odds in T, as in `train`: rare labels are known at once.
    prior = torch.as_tensor(data.classes.t_count / max(1, len(data.splits["T"])))
    h.linear.bias.data.copy_(torch.logit(prior.clamp(1e-6, 0.5)))
    uses_g = any(p.objective.uses_g for p in train.plan(name, tcfg))
    cleaner = CleanerConfig(d, f.dim, cfg.embed, cfg.hidden, cfg.activation)
    g = LabelCleaner(cleaner) if uses_g else None
    net = Net(f, h, g).to(device)
    return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net


@dataclass
class VariantRun:
    name: str
    folder: Path
    net: Net
    state: State
    optimizer_state: dict | None = None


def save_checkpoint(
    run: VariantRun, cfg: BackboneConfig, opt: torch.optim.Optimizer | None
) -> None:
    net = run.net
    ckpt = {
        "config": config_dict(cfg),
        "variant": run.name,
        "backbone": asdict(net.f.spec),
        "classifier": asdict(net.h.cfg),
        "cleaner": None if net.g is None else asdict(net.g.cfg),
        "f": net.f.state_dict(),
        "h": net.h.state_dict(),
        "g": None if net.g is None else net.g.state_dict(),
        "optimizer": None if opt is None else opt.state_dict(),
        "state": asdict(run.state),
    }
    tmp = run.folder / (CHECKPOINT + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, run.folder / CHECKPOINT)  # a kill mid-write keeps the previous checkpoint


def check_compatible(ckpt: dict, path: Path, cfg: BackboneConfig, variant: str) -> None:
    old, new = ckpt["config"], config_dict(cfg)
    skip = NOT_TRAINING + (NOT_BASELINE if variant == "baseline" else ())
    for key in (k for k in new if k not in skip):
        if old.get(key) != new[key]:
            msg = f"checkpoint was trained with --{key.replace('_', '-')} {old.get(key)}, not"
            raise InputError(f"{msg} {new[key]}; use another --out or the same setting", path)


def start_variant(
    name: str, cfg: BackboneConfig, data: ImageData, device: torch.device
) -> VariantRun:
    """Fresh models (from --weights), the variant's checkpoint, or the baseline's f and h."""
    net = build_net(name, cfg, data, device)
    run = VariantRun(name, cfg.out / name, net, State())
    run.folder.mkdir(parents=True, exist_ok=True)
    path = run.folder / CHECKPOINT
    if path.is_file():
        ckpt = torch.load(path, map_location=device, weights_only=True)
        check_compatible(ckpt, path, cfg, name)
        for part in ("f", "h", "g"):
            if getattr(net, part) is not None:
                getattr(net, part).load_state_dict(ckpt[part])
        run.state, run.optimizer_state = State(**ckpt["state"]), ckpt["optimizer"]
    elif name != "baseline":
        load_weights(cfg.out / "baseline" / CHECKPOINT, net.f, net.h)
    elif cfg.weights is not None:
        load_weights(cfg.weights, net.f, net.h)
    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # honest timings: wait for the queued kernels


def train_step(model: nn.Module, opt, batch: tuple, objective: Objective, tcfg, cuda: bool):
    images, y, v, v_mask = batch
    if cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda" if cuda else "cpu", torch.bfloat16, enabled=cuda):
        _, _, total = model(images, y, v, v_mask, objective, tcfg)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return total


def record(run: VariantRun, device: torch.device, since: float, samples: int) -> float:
    """Add the time and images since the last record to the run; return images/s."""
    sync(device)
    seconds = time.perf_counter() - since
    run.state.seconds, run.state.samples = run.state.seconds + seconds, run.state.samples + samples
    return samples / max(seconds, 1e-9)


def run_phase(run: VariantRun, index: int, data: ImageData, cfg: BackboneConfig, procs: Procs,
              bar) -> None:  # fmt: skip
    tcfg, device, cuda = variant_config(cfg), procs.device, procs.device.type == "cuda"
    phase = train.plan(run.name, tcfg)[index]
    params = set_trainable(run.net, phase.objective)
    opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=cfg.weight_decay)
    if run.optimizer_state is not None:
        opt.load_state_dict(run.optimizer_state)
        run.optimizer_state = None
    ddp = procs.world > 1  # DDP's constructor gives every rank rank 0's weights
    model = DistributedDataParallel(run.net, [device] if cuda else None) if ddp else run.net
    spec = shards.StreamSpec(cfg.image_size, True, cfg.min_scale, cuda, cfg.seed + index)
    mix = Mix(cfg.batch_size, phase.clean_share, cfg.workers, cfg.unverified)
    batches = image_batches(data, spec, mix, device, procs.rank, procs.world, run.state.step)
    task = bar.add_task(f"{run.name}: {phase.objective.value} (images)", total=phase.steps, info="")
    bar.update(task, completed=run.state.step)
    sync(device)
    clock, samples = time.perf_counter(), 0
    for step in range(run.state.step, phase.steps):
        for group in opt.param_groups:
            group["lr"] = train.get_lr(step, phase.steps, phase.lr, cfg.warmup)
        loss = train_step(model, opt, next(batches), phase.objective, tcfg, cuda)
        samples += cfg.batch_size * procs.world
        run.state.step = step + 1
        last = step + 1 == phase.steps
        if last or (step + 1) % cfg.log_every == 0:
            rate = record(run, device, clock, samples)
            info = f"loss {loss.item():.4f}  {rate:,.0f} images/s"
            bar.update(task, completed=step + 1, info=info)
            clock, samples = time.perf_counter(), 0
        if not last and (step + 1) % cfg.checkpoint_every == 0 and procs.rank == 0:
            save_checkpoint(run, cfg, opt)
    run.state.phase, run.state.step = index + 1, 0
    if procs.rank == 0:
        save_checkpoint(run, cfg, None)  # the next phase starts a fresh optimizer


@torch.no_grad()
def evaluate_images(
    net: Net, data: ImageData, cfg: BackboneConfig, device: torch.device
) -> Metrics:
    """h(f(I)) on every V_eval image (centre crops), scored on its verified pairs only."""
    split, cuda = data.splits["V_eval"], device.type == "cuda"
    pairs = evaluate.pairs_of(split)
    spec = shards.StreamSpec(cfg.image_size, train=False, on_device=cuda)
    stream = shards.ShardStream(data.index, data.rows["V_eval"], spec, workers=cfg.workers)
    net.eval()
    for batch in shards.loader(stream, 2 * cfg.batch_size, cuda):
        images, positions = shards.to_device(batch, spec, device)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
            logits = net.h(net.f(images))
        pairs.fill(positions.cpu().numpy(), torch.sigmoid(logits.float()).cpu().numpy())
    net.train()
    return score_pairs(pairs, len(data.classes))


def train_variant(name: str, data: ImageData, cfg: BackboneConfig, procs: Procs, bar) -> VariantRun:
    run = start_variant(name, cfg, data, procs.device)
    for index in range(run.state.phase, len(train.plan(name, variant_config(cfg)))):
        run_phase(run, index, data, cfg, procs, bar)
    if not run.state.done and procs.rank == 0:
        run.state.done = True
        save_checkpoint(run, cfg, None)
    return run


def evaluate_variant(run: VariantRun, data: ImageData, cfg: BackboneConfig, device) -> dict:
    m = evaluate_images(run.net, data, cfg, device)
    config = config_dict(cfg) | {"variant": run.name}
    table = report.per_class(m, data.classes)
    report.write_parquet(run.folder / "backbone_per_class.parquet", table, config)
    s = run.state
    return report.summarize(m, data.classes) | {
        "arch": cfg.arch,
        "steps": sum(p.steps for p in train.plan(run.name, variant_config(cfg))),
        "train_s": round(s.seconds, 3),
        "samples_per_s": s.samples / s.seconds if s.seconds > 0 else None,
        "images_not_in_shards": data.dropped,
    }


def check_options(cfg: BackboneConfig) -> tuple[str, ...]:
    """The variants to run, in order; bad settings named."""
    train.check_options(variant_config(cfg))
    check_image_size(cfg.arch, cfg.image_size)
    if cfg.variant != "baseline" and not cfg.finetune_backbone:
        msg = "on images only baseline trains without --finetune-backbone; for the others, `embed`"
        raise InputError(f"{msg} and train on the features", value=cfg.variant)
    if cfg.finetune_backbone and round(cfg.batch_size * cfg.clean_share) < 1:
        raise InputError("--batch-size x --clean-share must give at least one V_train image")
    return ("baseline", *(v for v in train.resolve_variants(cfg.variant) if v != "baseline"))


def run(cfg: BackboneConfig, console: Console | None = None) -> dict[str, dict]:
    variants = check_options(cfg)
    threads = torch.get_num_threads()
    procs = start_processes(cfg.device, cfg.workers)
    console = console or Console(quiet=procs.rank != 0)
    try:
        data = load_image_data(cfg.shards, cfg.splits, procs.device)
        for name, n in data.dropped.items():
            if n:
                console.print(f"[yellow]{name}: {n:,} images are not in the shards: left out[/]")
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in data.splits.items())
        console.print(f"{len(data.index):,} images in {len(data.index.files)} shards; {sizes}")
        console.print(f"{cfg.arch} at {cfg.image_size} px on {procs.world} x {procs.device}")
        cfg.out.mkdir(parents=True, exist_ok=True)
        path = cfg.out / METRICS
        results = json.loads(path.read_text()) if path.is_file() else {}
        with train.progress_bar(console) as bar:
            for name in variants:
                done = train_variant(name, data, cfg, procs, bar)
                if procs.rank == 0:
                    results[name] = evaluate_variant(done, data, cfg, procs.device)
                    report.write_json(path, results)
                if procs.world > 1:
                    dist.barrier()  # the next variant starts from files rank 0 has just written
        if procs.rank == 0:
            evaluate.show(console, {v: results[v] for v in train.VARIANTS if v in results}, None)
        return results
    finally:
        torch.set_num_threads(threads)
        if procs.started:
            dist.destroy_process_group()
