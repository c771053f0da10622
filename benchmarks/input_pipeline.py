"""Does the image input pipeline keep the model fed? Pipeline alone vs model step alone, one run.

Makes Parquet shards like `download`'s (photo-like 1024x768 originals through oi-pipe's own
`resize_image`: shorter side 256, JPEG quality 95) unless --shards points at real ones, then times:

    decode/worker  one process reading the shards and decoding + cropping (RandomResizedCrop, flip),
                   as one DataLoader worker does: images/s per worker at --size
    pipeline       the whole input path alone (shards -> DataLoader with --workers -> batches on
                   the device), no model
    model          the training step alone (f + h, AdamW) on synthetic tensors already on the
                   device: images/s it can consume
    verdict        whether the pipeline delivers at least what the model consumes, and if not,
                   how many decode workers it would take

--gpu (needs CUDA; meant for a machine with a GPU): GPU decode alone (nvJPEG, whole batches, JPEG
bytes already in memory; with and without the roi_align crop), resnet50 bf16 channels-last training
on synthetic tensors, and the same training fed by the real input pipeline (workers read bytes, the
GPU decodes), all at --size from the 256 px shards.

    .venv/bin/python benchmarks/input_pipeline.py [--arch resnet50] [--size 224] [--workers 1]
    .venv/bin/python benchmarks/input_pipeline.py --gpu --workers 12 --batch 256 --images 8192
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from resize_speed import photo_like  # benchmarks/ is on sys.path when run as a script

from nlc_model.images import crops, shards
from nlc_model.images.backbone import Backbone, BackboneSpec
from nlc_model.models import Classifier, ClassifierConfig
from openimages_pipe.download.resize import ResizeConfig, resize_image
from openimages_pipe.download.shard_writer import ParquetShardWriter, ShardRecord

CLASSES = 600  # d of h in the model step (Open Images V4's boxable classes: a middle size)


def make_shards(out: Path, images: int) -> Path:
    """`images` 256 px JPEGs in shards of 1,000, as `download` writes them (a few distinct ones,
    repeated: their decode cost is what matters, and generating originals is slow)."""
    distinct = []
    for seed in range(min(images, 64)):
        r = resize_image("x", photo_like(1024, 768, seed), None, ResizeConfig(image_size=256))
        distinct.append(r)
    writer = ParquetShardWriter(out / "shards", "bench", 1000, fsync=False)
    for i in range(images):
        r = distinct[i % len(distinct)]
        record = ShardRecord(
            f"{i:016x}", r.jpeg, r.width, r.height, 1024, 768, "original", None, True
        )
        writer.add(record)
    writer.close()
    return out


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def decode_per_worker(index: shards.ShardIndex, size: int, n: int) -> float:
    """Images/s of one process decoding and cropping, as one loader worker does."""
    spec = shards.StreamSpec(size, train=True)
    stream = iter(shards.ShardStream(index, np.arange(len(index)), spec))
    next(stream)  # the first piece's read is not what a steady worker pays per image
    start = time.perf_counter()
    for _ in range(n):
        next(stream)
    return rate(n, time.perf_counter() - start)


def pipeline_alone(index, size: int, batch: int, workers: int, device, steps: int, gpu: bool):
    """Images/s of the whole input path delivering batches on the device, no model."""
    spec = shards.StreamSpec(size, train=True, on_device=gpu)
    stream = shards.ShardStream(index, np.arange(len(index)), spec, workers=workers)
    batches = iter(shards.loader(stream, batch, pin=gpu))
    shards.to_device(next(batches), spec, device)  # workers started, first pieces read
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        shards.to_device(next(batches), spec, device)
    sync(device)
    return rate(steps * batch, time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_and_step(arch: str, width: int, device: torch.device):
    f = Backbone(BackboneSpec(arch, width)).to(device)
    h = Classifier(ClassifierConfig(CLASSES, f.dim)).to(device)
    cuda = device.type == "cuda"
    if cuda:
        f = f.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([*f.parameters(), *h.parameters()], 1e-3)

    def step(images: torch.Tensor, y: torch.Tensor) -> None:
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(h(f(images)).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def model_alone(step, size: int, batch: int, device, steps: int) -> float:
    """Images/s the training step consumes on synthetic tensors already on the device."""
    images = torch.rand(batch, 3, size, size, device=device)
    y = (torch.rand(batch, CLASSES, device=device) < 0.01).float()
    for _ in range(2):  # warm-up: kernel selection, allocator
        step(images, y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(images, y)
    sync(device)
    return rate(steps * batch, time.perf_counter() - start)


def model_with_pipeline(step, index, size, batch, workers, device, steps: int) -> float:
    spec = shards.StreamSpec(size, train=True, on_device=device.type == "cuda")
    stream = shards.ShardStream(index, np.arange(len(index)), spec, workers=workers)
    batches = iter(shards.loader(stream, batch, pin=device.type == "cuda"))
    y = (torch.rand(batch, CLASSES, device=device) < 0.01).float()
    for _ in range(2):
        step(shards.to_device(next(batches), spec, device)[0], y)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(shards.to_device(next(batches), spec, device)[0], y)
    sync(device)
    return rate(steps * batch, time.perf_counter() - start)


def decode_only(batch: crops.EncodedBatch, device: torch.device) -> list[torch.Tensor]:
    offsets = batch.offsets.tolist()
    jpegs = [batch.data[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return crops.decode(jpegs, device)


def gpu_decode(index: shards.ShardIndex, size: int, batch: int, device, crop: bool) -> float:
    """nvJPEG on whole batches of JPEG bytes already in memory; with the roi_align crop or not."""
    spec = shards.StreamSpec(size, train=False, on_device=True)
    samples = list(shards.ShardStream(index, np.arange(len(index)), spec))
    starts = range(0, len(samples) - batch + 1, batch)
    batches = [crops.collate_encoded(samples[i : i + batch]) for i in starts]
    for b in batches[:2]:  # warm-up: nvJPEG handles, allocator
        crops.decode_on_device(b, size, device) if crop else decode_only(b, device)
    sync(device)
    start = time.perf_counter()
    for b in batches:
        crops.decode_on_device(b, size, device) if crop else decode_only(b, device)
    sync(device)
    return rate(len(batches) * batch, time.perf_counter() - start)


def cpu_report(args, index, device) -> list[tuple[str, float]]:
    size, batch, workers, steps = args.size, args.batch, args.workers, args.steps
    step = model_and_step(args.arch, args.width, device)
    decode = decode_per_worker(index, size, args.decode_images)
    pipeline = pipeline_alone(index, size, batch, workers, device, steps, gpu=False)
    model = model_alone(step, size, batch, device, steps)
    return [
        (f"decode + crop, 1 worker, {size} px", decode),
        (f"pipeline alone, {workers} workers", pipeline),
        (f"{args.arch} step alone", model),
    ]


def gpu_report(args, index, device) -> list[tuple[str, float]]:
    size, batch, workers, steps = args.size, args.batch, args.workers, args.steps
    step = model_and_step(args.arch, args.width, device)
    decode = gpu_decode(index, size, batch, device, crop=False)
    decode_crop = gpu_decode(index, size, batch, device, crop=True)
    pipeline = pipeline_alone(index, size, batch, workers, device, steps, gpu=True)
    model = model_alone(step, size, batch, device, steps)
    both = model_with_pipeline(step, index, size, batch, workers, device, steps)
    return [
        (f"GPU decode only (nvJPEG, batches of {batch})", decode),
        (f"GPU decode + crop to {size} px", decode_crop),
        (f"pipeline alone, {workers} workers", pipeline),
        (f"{args.arch} bf16 channels-last step alone", model),
        (f"{args.arch} training with the pipeline", both),
    ]


def verdict(rows: list[tuple[str, float]], workers: int) -> str:
    pipeline = next(v for name, v in rows if name.startswith("pipeline alone"))
    model = next(v for name, v in rows if name.endswith("step alone"))
    if pipeline >= model:
        return f"the pipeline keeps up: {pipeline / model:.1f}x what the model consumes"
    short = f"the pipeline falls short: {pipeline:,.0f} < {model:,.0f} images/s"
    per_worker = next((v for name, v in rows if name.startswith("decode + crop")), None)
    if per_worker is None:
        return f"{short}; raise --workers (now {workers})"
    need = int(np.ceil(model / per_worker))
    return f"{short}; at {per_worker:,.0f} images/s per worker it takes {need} workers"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=Path, help="real shards (a download folder); default: made")
    p.add_argument("--images", type=int, default=1024, help="images in the made shards")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--width", type=int, default=32, help="tiny only")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--steps", type=int, default=4, help="timed batches of each measurement")
    p.add_argument("--decode-images", type=int, default=300)
    p.add_argument("--gpu", action="store_true", help="GPU decode and training (needs CUDA)")
    args = p.parse_args()
    if args.gpu and not torch.cuda.is_available():
        print("--gpu: no CUDA device here; GPU figures not measured", file=sys.stderr)
        return 1
    device = torch.device("cuda" if args.gpu else "cpu")
    if not args.gpu:
        torch.set_num_threads(shards.cpu_threads(args.workers))  # a core per decode worker
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.shards or make_shards(Path(tmp), args.images)
        index = shards.read_index(folder)
        kb = sum((Path(index.root) / f).stat().st_size for f in index.files) / len(index) / 1024
        rows = (gpu_report if args.gpu else cpu_report)(args, index, device)
    name = torch.cuda.get_device_name() if args.gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"{len(index):,} images of {kb:.1f} KB, {args.size} px crops, batch {args.batch}, {name}")
    for label, value in rows:
        print(f"  {label:48s} {value:10,.1f} images/s")
    print(verdict(rows, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
