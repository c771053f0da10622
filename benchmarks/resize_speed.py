"""CPU cost of the resize stage per image, with and without JPEG draft mode, in one run.

Generates photo-like JPEGs (gradients, shapes, texture and grain; quality 90, ~0.38 bytes per
pixel, as a Flickr original of 3.6 MP is ~1.4 MB) from 640x480 to 4000x3000 and times
`resize_image` (decode + orient + resize + encode, keep-ratio 256, quality 95) on each:

    full     draft off: the whole image decoded, as img2dataset does
    gap 2    draft at 1/2^k, still >= 2x the target (DRAFT_GAP = 2, as Pillow's `thumbnail`)
    draft    the default: draft at 1/2^k, still >= the target (DRAFT_GAP = 1)

Times are CPU seconds of this process (time.process_time), the median over --repeat runs of each
image, so other load on the machine matters less than with wall-clock time. The variants run
interleaved, image by image.

    .venv/bin/python benchmarks/resize_speed.py [--repeat 7] [--images-per-size 3]
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from openimages_pipe.download import resize
from openimages_pipe.download.resize import ResizeConfig, resize_image

SIZES = [(640, 480), (1024, 768), (1600, 1200), (2400, 1500), (3264, 2448), (4000, 3000)]
VARIANTS = {"full": 1e9, "gap 2": 2.0, "draft": resize.DRAFT_GAP}  # DRAFT_GAP for each
CONFIG = ResizeConfig(image_size=256)


def photo_like(width: int, height: int, seed: int) -> bytes:
    """A JPEG with a photo's structure: smooth regions, edges, mid-frequency texture, grain."""
    rng = random.Random(seed)
    gradients = [
        Image.linear_gradient("L")
        .rotate(rng.uniform(0, 360), fillcolor=rng.randrange(256))
        .resize((width, height))
        for _ in range(3)
    ]
    img = Image.merge("RGB", gradients)
    draw = ImageDraw.Draw(img)
    for _ in range(120):
        x, y = rng.randrange(width), rng.randrange(height)
        s = int(min(width, height) * rng.uniform(0.02, 0.3))
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x, y, x + s, y + s * rng.uniform(0.3, 1.5)), fill=colour)
        else:
            corners = [
                (x + rng.randrange(-s, s + 1), y + rng.randrange(-s, s + 1)) for _ in range(5)
            ]
            draw.polygon(corners, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(max(1, width / 1000)))
    texture = Image.effect_noise((width // 4, height // 4), 24).resize((width, height))
    grain = Image.effect_noise((width, height), 6)
    for layer in (texture, grain):
        img = ImageChops.add(img, Image.merge("RGB", [layer] * 3), offset=-128)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def cpu_ms(body: bytes, gap: float) -> float:
    resize.DRAFT_GAP = gap
    start = time.process_time()
    result = resize_image("bench", body, None, CONFIG)
    elapsed = time.process_time() - start
    assert result.jpeg is not None, result.reason
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--images-per-size", type=int, default=3)
    args = parser.parse_args()

    default_gap = resize.DRAFT_GAP
    print(f"Pillow {Image.__version__}; keep-ratio 256, quality 95; CPU ms per image (median)")
    header = f"{'size':>11} {'MP':>5} {'KB':>6} " + " ".join(f"{v:>7}" for v in VARIANTS)
    print(header + f" {'full/draft':>10} {'gap2/draft':>10}")
    try:
        for width, height in SIZES:
            bodies = [photo_like(width, height, seed) for seed in range(args.images_per_size)]
            times: dict[str, list[float]] = {name: [] for name in VARIANTS}
            for body in bodies:
                cpu_ms(body, default_gap)  # warm up
                for _ in range(args.repeat):
                    for name, gap in VARIANTS.items():
                        times[name].append(cpu_ms(body, gap))
            ms = {name: statistics.median(values) for name, values in times.items()}
            kb = statistics.mean(len(b) for b in bodies) / 1024
            print(
                f"{width:>5}x{height:<5} {width * height / 1e6:5.1f} {kb:6.0f} "
                + " ".join(f"{ms[name]:7.1f}" for name in VARIANTS)
                + f" {ms['full'] / ms['draft']:9.1f}x {ms['gap 2'] / ms['draft']:9.2f}x"
            )
    finally:
        resize.DRAFT_GAP = default_gap


if __name__ == "__main__":
    main()
