"""`train --stage backbone`: f and h on T's noisy labels, from the image shards (the baseline).

With `--finetune-backbone`, the other variants of Veit et al. run on images too and update f:
they start from the baseline's f and h, and their phases, schedule, checkpoints and resume are
`loop`'s and their losses `train.compute_losses`, exactly as for `train` on features, with f(I)
computed from the batch's images instead of read from a table. Batches put T's images first and
V_train's last, mixed 9:1 where the variant needs both, exactly the layout of `batches.Batch`.

Reads top to bottom: the config; processes (DDP); the models; a variant's start (checkpoint,
baseline, or --weights); one step; what each phase feeds `loop.run_phase`; evaluation on V_eval;
`run`. `launch` starts it in N processes under `torchrun`.

Each variant lives in OUT/<variant>/: `backbone.pt` (f, h, g, optimizer, progress and the resolved
flat config; what `embed --weights` takes) and `backbone_per_class.parquet`;
OUT/backbone_metrics.json holds every finished variant. A rerun resumes from the last checkpoint,
restarting the epoch under way (the streams are a pure function of seed and epoch). With N
processes (`torchrun`), each reads its own share of the shards, `--batch-size` is per process,
and rank 0 alone writes and evaluates.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from nlc_model import evaluate, loop, report, train
from nlc_model.batches import Batch
from nlc_model.images import shards
from nlc_model.images.backbone import Backbone, BackboneSpec, check_image_size, load_weights
from nlc_model.images.batches import ImageData, Mix, image_batches, load_image_data
from nlc_model.loop import Feed, Objective, Phase, TrainSettings, VariantRun, config_dict, plan
from nlc_model.metrics import Metrics, score_pairs
from nlc_model.models import Classifier, ClassifierConfig, CleanerConfig, LabelCleaner
from openimages_pipe.errors import InputError

CHECKPOINT = "backbone.pt"  # not train's ckpt.pt: both stages may share one run folder
METRICS = "backbone_metrics.json"
# Settings that do not change what is learned; any other difference refuses to resume.
NOT_TRAINING = ("shards", "splits", "out", "variant", "finetune_backbone", "device", "workers",
                "checkpoint_every", "log_every")  # fmt: skip
# Settings the baseline does not use: a fine-tuning run may change them and still start from it.
NOT_BASELINE = ("finetune_steps", "pretrain_steps", "finetune_lr", "clean_share", "clean_weight",
                "unverified", "embed", "hidden", "activation")  # fmt: skip
# Where the backbone trains otherwise than h and g on features: a whole network, per image.
TRAINING = TrainSettings(
    steps=10_000,  # baseline, and the joint phase of nlc-*
    batch_size=64,  # images per step and process
    lr=1e-3,  # AdamW peak
    finetune_lr=1e-4,
    weight_decay=0.05,
    warmup=500,
    checkpoint_every=500,
    log_every=10,
)


@dataclass(frozen=True)
class BackboneConfig:
    """Everything `train --stage backbone` needs; saved, resolved and flat, in every checkpoint."""

    shards: Path | str  # a download folder (or its shards/), or its s3:// URL
    splits: Path
    out: Path
    arch: str = "resnet50"  # see backbone.ARCHS
    width: int = 32  # `tiny` only: channels of its first stage
    weights: Path | None = None  # start f (and h) from a local torchvision state dict/checkpoint
    image_size: int = 224  # S: crops are S x S
    min_scale: float = 0.08  # RandomResizedCrop's smallest area
    variant: str = "baseline"  # with finetune_backbone: any of train.VARIANTS, or "all"
    finetune_backbone: bool = False
    workers: int = 4  # DataLoader processes per training process
    device: str = "auto"
    training: TrainSettings = TRAINING


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
                objective: Objective, s: TrainSettings) -> tuple[Tensor, ...]:  # fmt: skip
        frozen = not self.f.training
        with torch.no_grad() if frozen else nullcontext():
            x = self.f(images)  # (B, D)
        losses = train.compute_losses(self.g, self.h, Batch(x, y, v, v_mask), objective, s)
        return losses.clean, losses.classify, losses.total


def set_trainable(net: Net, objective: Objective) -> list[nn.Parameter]:
    """f and h learn with L_classify; g with L_clean. The cleaner's pre-training leaves f fixed."""
    for module, on in ((net.f, objective.trains_h), (net.h, objective.trains_h),
                       (net.g, objective.uses_g)):  # fmt: skip
        if module is not None:
            module.train(on).requires_grad_(on)
    return [p for p in net.parameters() if p.requires_grad]


def build_net(name: str, cfg: BackboneConfig, data: ImageData, device: torch.device) -> Net:
    d, s = len(data.classes), cfg.training
    torch.manual_seed(s.seed)
    f = Backbone(BackboneSpec(cfg.arch, cfg.width))
    h = Classifier(ClassifierConfig(d, f.dim))
    # h's bias starts at each class's log-odds in T, as in `train`: rare labels are known at once.
    prior = torch.as_tensor(data.classes.t_count / max(1, len(data.splits["T"])))
    h.linear.bias.data.copy_(torch.logit(prior.clamp(1e-6, 0.5)))
    uses_g = any(p.objective.uses_g for p in plan(name, s))
    cleaner = CleanerConfig(d, f.dim, s.embed, s.hidden, s.activation)
    g = LabelCleaner(cleaner) if uses_g else None
    net = Net(f, h, g).to(device)
    return net.to(memory_format=torch.channels_last) if device.type == "cuda" else net


def start_variant(name: str, net: Net, cfg: BackboneConfig, procs: Procs) -> VariantRun:
    """The variant's checkpoint; else the baseline's f and h; else --weights, or fresh models."""
    f, h, g = net.f, net.h, net.g
    specs = {"backbone": asdict(f.spec), "classifier": asdict(h.cfg),
             "cleaner": None if g is None else asdict(g.cfg)}  # fmt: skip
    path, models = cfg.out / name / CHECKPOINT, {"f": f, "h": h, "g": g}
    run = VariantRun(name, path, config_dict(cfg), models, specs, procs.device, procs.rank == 0)
    run.folder.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        ckpt = loop.load_checkpoint(path, procs.device)
        skip = NOT_TRAINING + (NOT_BASELINE if name == "baseline" else ())
        said = "checkpoint was trained with"
        loop.check_same_settings(ckpt["config"], run.config, skip, path, said)
        loop.resume(run, ckpt)
    elif name != "baseline":
        load_weights(cfg.out / "baseline" / CHECKPOINT, f, h)
    elif cfg.weights is not None:
        load_weights(cfg.weights, f, h)
    return run


def train_step(model: nn.Module, opt, batch: tuple, objective: Objective, s: TrainSettings,
               cuda: bool) -> Tensor:  # fmt: skip
    images, y, v, v_mask = batch
    if cuda:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda" if cuda else "cpu", torch.bfloat16, enabled=cuda):
        _, _, total = model(images, y, v, v_mask, objective, s)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return total


def phase_feed(run: VariantRun, net: Net, index: int, phase: Phase, data: ImageData,
               cfg: BackboneConfig, procs: Procs) -> Feed:  # fmt: skip
    """What one phase trains (set_trainable), on this rank's image stream, with which step."""
    s, device, cuda = cfg.training, procs.device, procs.device.type == "cuda"
    opt = loop.optimizer(run, set_trainable(net, phase.objective), phase.lr, s.weight_decay)
    ddp = procs.world > 1  # DDP's constructor gives every rank rank 0's weights
    model = DistributedDataParallel(net, [device] if cuda else None) if ddp else net
    spec = shards.StreamSpec(cfg.image_size, True, cfg.min_scale, cuda, s.seed + index)
    mix = Mix(s.batch_size, phase.clean_share, cfg.workers, s.unverified)
    batches = image_batches(data, spec, mix, device, procs.rank, procs.world, run.state.step)

    def step(batch: tuple) -> Tensor:
        return train_step(model, opt, batch, phase.objective, s, cuda)

    title = f"{run.name}: {phase.objective.value} (images)"
    return Feed(opt, batches, step, s.batch_size * procs.world, title, unit="images")


def train_variant(name: str, data: ImageData, cfg: BackboneConfig, procs: Procs, bar) -> VariantRun:
    net = build_net(name, cfg, data, procs.device)
    run = start_variant(name, net, cfg, procs)

    def feed(index: int, phase: Phase) -> Feed:
        return phase_feed(run, net, index, phase, data, cfg, procs)

    return loop.run_variant(run, plan(name, cfg.training), feed, cfg.training, bar)


@torch.no_grad()
def evaluate_images(
    f: Backbone, h: Classifier, data: ImageData, cfg: BackboneConfig, device: torch.device
) -> Metrics:
    """h(f(I)) on every V_eval image (centre crops), scored on its verified pairs only."""
    split, cuda = data.splits["V_eval"], device.type == "cuda"
    pairs = evaluate.pairs_of(split)
    spec = shards.StreamSpec(cfg.image_size, train=False, on_device=cuda)
    stream = shards.ShardStream(data.index, data.rows["V_eval"], spec, workers=cfg.workers)
    f.eval()
    h.eval()
    for batch in shards.loader(stream, 2 * cfg.training.batch_size, cuda):
        images, positions = shards.to_device(batch, spec, device)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
            logits = h(f(images))
        pairs.fill(positions.cpu().numpy(), torch.sigmoid(logits.float()).cpu().numpy())
    f.train()
    h.train()
    return score_pairs(pairs, len(data.classes))


def evaluate_variant(run: VariantRun, data: ImageData, cfg: BackboneConfig, device) -> dict:
    m = evaluate_images(run.models["f"], run.models["h"], data, cfg, device)
    config = run.config | {"variant": run.name}
    table = report.per_class(m, data.classes)
    report.write_parquet(run.folder / "backbone_per_class.parquet", table, config)
    summary = report.summarize(m, data.classes) | {"arch": cfg.arch}
    trained = loop.training_summary(run, plan(run.name, cfg.training))
    return summary | trained | {"images_not_in_shards": data.dropped}


def check_options(cfg: BackboneConfig) -> tuple[str, ...]:
    """The variants to run, in order; bad settings named."""
    s = cfg.training
    train.check_settings(s)
    check_image_size(cfg.arch, cfg.image_size)
    if cfg.variant != "baseline" and not cfg.finetune_backbone:
        msg = "on images only baseline trains without --finetune-backbone; for the others, `embed`"
        raise InputError(f"{msg} and train on the features", value=cfg.variant)
    if cfg.finetune_backbone and round(s.batch_size * s.clean_share) < 1:
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
        with loop.progress_bar(console) as bar:
            results = loop.run_variants(
                variants,
                lambda name: train_variant(name, data, cfg, procs, bar),
                lambda run: evaluate_variant(run, data, cfg, procs.device),
                cfg.out / METRICS,
                writes=procs.rank == 0,
                wait=dist.barrier if procs.world > 1 else None,
            )
        if procs.rank == 0:
            evaluate.show(console, {v: results[v] for v in loop.VARIANTS if v in results}, None)
        return results
    finally:
        torch.set_num_threads(threads)
        if procs.started:
            dist.destroy_process_group()
