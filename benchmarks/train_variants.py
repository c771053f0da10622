"""Benchmark of `oi-pipe train`: the paper's five variants on a generated feature world, and speed.

Quality (always): for each seed, `nlc_model.synthetic` writes a feature world with known truth and
Open Images-like noise (26.6% false positives, 85% of them from a sibling class; WorldConfig's
defaults unless overridden), `train.run` trains all five variants on it exactly as
`oi-pipe train` does, and `clean_labels.run` cleans T with nlc-joint's g; the cleaned labels are
compared with the truth. Prints a Markdown table per seed and the mean over seeds.

Speed (--speed): samples/s of each variant's training step at the paper's dimensions (D = 2048
features, d = 6,012 classes, g at its default sizes), on a generated world held in memory, on the
device that `--device` picks. With --gpu-scale (for a GPU): the time to train all five variants on
a generated T of 1M images x 2048 features x 6,012 classes, the feature table resident on the GPU.

    .venv/bin/python benchmarks/train_variants.py --seeds 0 1 2 --speed
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from rich.console import Console

from nlc_model import clean_labels, data, loop, train
from nlc_model.synthetic import WorldConfig, make_world, write_world

QUALITY_TRAIN = dict(steps=1000, finetune_steps=500, pretrain_steps=500, batch_size=2048,
                     embed=64, hidden=128)  # fmt: skip  # g scaled to d = 100 classes
PAPER_DIMS = WorldConfig(classes=6012, families=1503, features=2048, t_images=20_000,
                         v_images=8_000, labels_per_image=8.8)  # fmt: skip  # 8.8: V1's T
GPU_SCALE = replace(PAPER_DIMS, t_images=1_000_000, v_images=160_000)


def precision_recall(labels: dict[str, set], truth: dict[str, set]) -> dict[str, float]:
    hit = sum(len(ls & truth[i]) for i, ls in labels.items())
    return {
        "precision": hit / max(1, sum(len(ls) for ls in labels.values())),
        "recall": hit / max(1, sum(len(truth[i]) for i in labels)),
    }


def cleaned_quality(world, cleaned: Path) -> dict[str, dict[str, float]]:
    """Precision and recall against the truth: T's machine labels, and the cleaned ones."""
    d, t = world.cfg.classes, world.splits["T"]
    ids = t.column("image_id").to_pylist()
    truth = {i: set(r[r < d].tolist()) for i, r in zip(ids, world.truth["T"], strict=True)}
    machine = {i: set(ls) for i, ls in zip(ids, t.column("labels").to_pylist(), strict=True)}
    table = pq.read_table(cleaned)
    rows = zip(
        table.column("image_id").to_pylist(), table.column("labels").to_pylist(), strict=True
    )
    ours = {i: set(ls) for i, ls in rows}  # the images of T that have features
    return {
        "machine": precision_recall({i: machine[i] for i in ours}, truth),
        "cleaned": precision_recall(ours, truth),
    }


def quality(seed: int, work: Path, device: str) -> dict:
    world = make_world(WorldConfig(seed=seed))
    root = work / f"seed{seed}"
    write_world(world, root / "splits", root / "features", files=4)
    cfg = train.TrainConfig(root / "splits", root / "features", root / "run", device=device,
                            training=loop.TrainSettings(seed=seed, **QUALITY_TRAIN))  # fmt: skip
    results = train.run(cfg, console=Console(quiet=True))
    cleaned = root / "cleaned_T.parquet"
    clean_cfg = clean_labels.CleanLabelsConfig(root / "run", root / "splits", root / "features",
                                               cleaned, device=device)  # fmt: skip
    clean_labels.run(clean_cfg, console=Console(quiet=True))
    return {"results": results, "noise": world.stats, "cleaned": cleaned_quality(world, cleaned)}


def in_memory(world, device: torch.device) -> data.TrainData:
    """TrainData straight from a generated world: the reader's own steps, minus the files."""
    dim, where = world.cfg.features, Path("<generated>")
    flat = world.features.column("embedding").combine_chunks().flatten().to_numpy()
    table = torch.from_numpy(np.require(flat, requirements="W").reshape(-1, dim))
    table = table.to(device=device, dtype=data.storage_dtype(device))
    ids = world.features.column("image_id").combine_chunks().cast(pa.large_string())
    features = data.Features(table, ids, where)
    sets, dropped = {}, {}
    for name, split in world.splits.items():
        s, dropped[name] = data.split_set(name, split, features, world.cfg.classes, where)
        sets[name] = s.to(device)
    return data.TrainData(data.class_table(world.classes, where), features, sets, dropped)


def speed(world_cfg: WorldConfig, device: torch.device, batch: int, steps: int, work: Path):
    """Seconds and samples/s of every variant at `batch`, `steps` steps per phase."""
    started = time.perf_counter()
    loaded = in_memory(make_world(world_cfg), device)
    print(f"  generated and loaded in {time.perf_counter() - started:.0f} s", flush=True)
    timed = loop.TrainSettings(batch_size=batch, steps=steps, finetune_steps=steps,
                               pretrain_steps=steps, checkpoint_every=10**9,
                               log_every=max(1, steps // 4))  # fmt: skip
    cfg = train.TrainConfig(work, work, work / "speed", device=device.type, training=timed)
    rows, console = {}, Console(quiet=True)
    warmup = replace(cfg, out=work / "warmup", training=replace(timed, steps=2))
    with loop.progress_bar(console) as bar:  # warm-up: first-touch of memory, kernel choice
        train.train_variant("nlc-joint", loaded, warmup, bar)
    total = time.perf_counter()
    with loop.progress_bar(console) as bar:
        for name in train.VARIANTS:
            run = train.train_variant(name, loaded, cfg, bar)
            rows[name] = (run.state.seconds, run.state.samples / run.state.seconds)
    return rows, time.perf_counter() - total


def mean_table(runs: list[dict[str, dict]]) -> str:
    """Mean AP_all and mAP over seeds, and nlc-joint's lead over each variant (min over seeds)."""
    lines = ["| model | AP_all | mAP | nlc-joint lead: AP_all, mAP (smallest over seeds) |",
             "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for name in train.VARIANTS:
        mean = {k: np.mean([100 * r[name][k] for r in runs]) for k in ("AP_all", "mAP")}
        lead = {k: min(100 * (r["nlc-joint"][k] - r[name][k]) for r in runs) for k in mean}
        lines.append(f"| {name} | {mean['AP_all']:.2f} | {mean['mAP']:.2f} | "
                     f"{lead['AP_all']:+.2f}, {lead['mAP']:+.2f} |")  # fmt: skip
    return "\n".join(lines)


def markdown(results: dict[str, dict]) -> str:
    lines = ["| model | AP_all | mAP | classes | samples/s (this machine) |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, r in results.items():
        ap = f"{100 * r['AP_all']:.2f} | {100 * r['mAP']:.2f}"
        counts = f"{r['classes_evaluated']}/{r['classes']} | {r['samples_per_s']:,.0f}"
        lines.append(f"| {name} | {ap} | {counts} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--speed", action="store_true", help="samples/s at the paper's dims")
    parser.add_argument("--speed-batch", type=int, default=None, help="default: 1024 CPU, 8192 GPU")
    parser.add_argument("--speed-steps", type=int, default=8)
    parser.add_argument("--gpu-scale", action="store_true", help="1M x 2048 x 6,012, all variants")
    parser.add_argument("--gpu-steps", type=int, default=500)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    device = train.pick_device(args.device)
    work = args.work or Path(tempfile.mkdtemp(prefix="nlc-bench-"))
    gpu = f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {torch.get_num_threads()} torch threads, device {device}{gpu}")
    print(f"world: {asdict(WorldConfig())} (seed varies)\ntraining: {QUALITY_TRAIN}\n")
    per_seed = []
    for seed in args.seeds:
        started = time.perf_counter()
        q = quality(seed, work, device.type)
        per_seed.append(q)
        print(f"### seed {seed} ({time.perf_counter() - started:.0f} s)\n")
        c = q["cleaned"]
        print(f"machine labels: {q['noise']}; against the truth, T's machine labels have "
              f"precision {c['machine']['precision']:.3f}, recall {c['machine']['recall']:.3f}; "
              f"cleaned by nlc-joint's g: {c['cleaned']['precision']:.3f}, "
              f"{c['cleaned']['recall']:.3f}\n")  # fmt: skip
        print(markdown(q["results"]) + "\n", flush=True)
    if per_seed:
        print("### mean over seeds\n\n" + mean_table([q["results"] for q in per_seed]) + "\n")
    if args.speed or args.gpu_scale:
        batch = args.speed_batch or (8192 if device.type == "cuda" else 1024)
        runs = [("paper dims, T 20k", PAPER_DIMS, args.speed_steps)] if args.speed else []
        runs += [("1M x 2048 x 6,012", GPU_SCALE, args.gpu_steps)] if args.gpu_scale else []
        for title, world_cfg, steps in runs:
            print(
                f"### speed: {title}, batch {batch}, {steps} steps per phase, {device}\n",
                flush=True,
            )
            rows, wall = speed(world_cfg, device, batch, steps, work)
            print("| variant | train s | samples/s |\n| --- | ---: | ---: |")
            for name, (seconds, rate) in rows.items():
                print(f"| {name} | {seconds:.1f} | {rate:,.0f} |")
            print(f"\nall five variants: {wall:.1f} s wall\n", flush=True)


if __name__ == "__main__":
    main()
