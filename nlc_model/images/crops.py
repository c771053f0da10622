"""Crops and JPEG decoding: stored JPEG + a box -> (3, S, S) pixels, on the CPU or on the GPU.

A crop is a box (x0, y0, x1, y1) in the stored image, drawn before decoding from the shard's
width and height: RandomResizedCrop and a horizontal flip for training (`train_box`), the centre
crop of a resize to S / 0.875 for evaluation (`eval_box`: 224 from 256). Both decoders crop the
same box, so the CPU and GPU paths see the same augmentation.

- `decode_crop` (CPU, in DataLoader workers): one image -> uint8 (3, S, S), with torchvision's
  decoder (1.0 ms for a 65 KB 256 px JPEG against PIL's 1.8 ms; PIL's scaled "draft" decode
  still takes 1.3 ms at 1/4 size: Huffman decoding, which scaling does not skip, dominates).
- `decode_on_device` (GPU): a whole batch of JPEG bytes through one batched nvJPEG call, padded
  into one tensor, and every box resized in one `roi_align` (its adaptive sampling averages each
  output pixel over its footprint, an antialiased downscale). Runs on the CPU too, for tests.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align

# torchvision 0.29 deprecates its image decoders for TorchCodec's and warns on every call. Known,
# and not yet actionable here (TorchCodec is not a dependency): `decode` silences this message
# only, so that it does not bury every other warning of a run or a test session.
DEPRECATED = "The image decoding and encoding capabilities of TorchVision"

CENTER_CROP = 0.875  # evaluation: resize to S / 0.875, centre crop S
RATIOS = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect ratios (torchvision's)

Box = tuple[float, float, float, float]


def train_box(w: int, h: int, rng: np.random.Generator, min_scale: float) -> Box:
    """RandomResizedCrop: area in [min_scale, 1] of the image, aspect ratio in 3/4-4/3."""
    for _ in range(10):
        area = w * h * rng.uniform(min_scale, 1.0)
        ratio = math.exp(rng.uniform(math.log(RATIOS[0]), math.log(RATIOS[1])))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return float(x0), float(y0), float(x0 + cw), float(y0 + ch)
    return eval_box(w, h, 1.0)  # torchvision's fallback after 10 tries: the centred square


def eval_box(w: int, h: int, crop: float = CENTER_CROP) -> Box:
    side = crop * min(w, h)
    x0, y0 = (w - side) / 2, (h - side) / 2
    return x0, y0, x0 + side, y0 + side


def decode(data: Tensor | list[Tensor], device: torch.device | str = "cpu"):
    """torchvision's `decode_jpeg` to RGB: one uint8 (3, h, w), or a list for a list."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", DEPRECATED, DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_crop(jpeg: bytes, box: Box, size: int, flip: bool) -> Tensor:
    """CPU: JPEG bytes -> (3, size, size) uint8 of the box, resized with antialiasing."""
    pixels = decode(torch.frombuffer(bytearray(jpeg), dtype=torch.uint8))
    x0, y0, x1, y1 = box
    top, left = min(round(y0), pixels.shape[1] - 1), min(round(x0), pixels.shape[2] - 1)
    height = max(1, min(round(y1), pixels.shape[1]) - top)
    width = max(1, min(round(x1), pixels.shape[2]) - left)
    out = TF.resized_crop(pixels, top, left, height, width, [size, size], antialias=True)
    return out.flip(-1) if flip else out


@dataclass(frozen=True)
class EncodedBatch:
    """B JPEGs back to back, with their boxes: what workers hand over when the GPU decodes."""

    data: Tensor  # (total bytes,) uint8
    offsets: Tensor  # (B + 1,) int64: JPEG i is data[offsets[i]:offsets[i + 1]]
    boxes: Tensor  # (B, 4) float32 x0, y0, x1, y1 in stored pixels
    flips: Tensor  # (B,) bool
    positions: Tensor  # (B,) int64

    def pin_memory(self) -> EncodedBatch:
        return EncodedBatch(*(t.pin_memory() for t in (self.data, self.offsets, self.boxes,
                                                        self.flips, self.positions)))  # fmt: skip


def collate_encoded(samples: list[tuple[bytes, Box, bool, int]]) -> EncodedBatch:
    """In the worker: one flat byte tensor per batch, not one shared-memory segment per image."""
    jpegs, boxes, flips, positions = zip(*samples, strict=True)
    lengths = np.fromiter((len(j) for j in jpegs), np.int64, len(jpegs))
    data = np.frombuffer(b"".join(jpegs), np.uint8).copy()
    return EncodedBatch(
        torch.from_numpy(data),
        torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)])),
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor(flips, dtype=torch.bool),
        torch.tensor(positions, dtype=torch.int64),
    )


def decode_on_device(batch: EncodedBatch, size: int, device: torch.device) -> Tensor:
    """A whole batch: JPEGs -> (B, 3, size, size) float in [0, 1] on `device`."""
    offsets = batch.offsets.tolist()
    jpegs = [batch.data[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    images = decode(jpegs, device)  # list of (3, h, w) uint8
    height, width = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
    padded = torch.zeros(len(images), 3, height, width, dtype=torch.uint8, device=device)
    for i, image in enumerate(images):
        padded[i, :, : image.shape[1], : image.shape[2]] = image
    boxes = batch.boxes.to(device, non_blocking=True)
    rois = torch.cat([torch.arange(len(images), device=device)[:, None].float(), boxes], 1)
    # aligned=True: pixel centres at +0.5, so a box of the whole image maps onto it exactly
    out = roi_align(padded.float(), rois, (size, size), spatial_scale=1.0, aligned=True)
    flips = batch.flips.to(device, non_blocking=True)[:, None, None, None]
    return torch.where(flips, out.flip(-1), out).div_(255.0)
