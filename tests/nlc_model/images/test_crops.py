"""Crops: boxes inside the image, CPU and batched device decoding agree, bytes travel whole."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlc_model.images import crops
from tests.fixtures.nlc_images import jpeg

CPU = torch.device("cpu")


def test_train_boxes_stay_inside_with_the_asked_area_and_ratio() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = crops.train_box(341, 256, rng, 0.3)
        assert 0 <= x0 < x1 <= 341 and 0 <= y0 < y1 <= 256
        area = (x1 - x0) * (y1 - y0) / (341 * 256)
        assert 0.28 <= area <= 1.0
        assert 3 / 4 - 0.05 <= (x1 - x0) / (y1 - y0) <= 4 / 3 + 0.05


def test_eval_box_is_the_centre_crop_of_a_resize_to_size_over_0875() -> None:
    assert crops.eval_box(256, 384) == pytest.approx((16.0, 80.0, 240.0, 304.0))


@pytest.mark.parametrize("size", [16, 56])  # smaller and larger than the box
def test_cpu_crop_is_the_box_resized(size: int) -> None:
    data = jpeg(0, 96, 64)  # grey, with a red square over x 24..56, y 16..48
    out = crops.decode_crop(data, (24.0, 16.0, 56.0, 48.0), size, flip=False)
    assert out.shape == (3, size, size) and out.dtype == torch.uint8
    centre = out[:, size // 4 : -size // 4, size // 4 : -size // 4].float().mean((1, 2))
    assert centre[0] > 150 and centre[1] < 90  # red inside the box


def test_flip_mirrors_the_crop() -> None:
    data = jpeg(1, 96, 64)
    box = (0.0, 0.0, 64.0, 64.0)
    plain, flipped = (crops.decode_crop(data, box, 32, f) for f in (False, True))
    assert torch.equal(plain.flip(-1), flipped)


def test_batched_device_decode_matches_the_cpu_path() -> None:
    images = [jpeg(i, w, h) for i, (w, h) in enumerate([(96, 64), (64, 96), (80, 80)])]
    boxes = [(8.0, 4.0, 72.0, 60.0), (0.0, 10.0, 64.0, 90.0), crops.eval_box(80, 80)]
    flips = [False, True, False]
    batch = crops.collate_encoded(
        [(j, b, f, i) for i, (j, b, f) in enumerate(zip(images, boxes, flips, strict=True))]
    )
    assert batch.positions.tolist() == [0, 1, 2]
    out = crops.decode_on_device(batch, 32, CPU)  # the GPU path, run on the CPU
    assert out.shape == (3, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
    for i, (j, b, f) in enumerate(zip(images, boxes, flips, strict=True)):
        cpu = crops.decode_crop(j, b, 32, f).float() / 255
        assert (out[i] - cpu).abs().mean() < 0.03, i
