"""Procedural images of an offline world: pure Pillow, deterministic from a per-image seed.

Owns how a world's images and files look: `plan_canvas` places an image's objects on a canvas of
a Flickr-like size, `assign_variants` decides which images come as PNG, CMYK, grayscale, with an
EXIF Orientation, or stored turned (the V6+ `Rotation` column), and `render_all` draws and writes
the original, the `_z` thumbnail and the mirror copy of every image in a process pool, handing back
one small `RenderResult` per image (its size and MD5 are what the images CSV states). The upright
scene's pixels (background, shapes, textures) are `drawing`'s.

Orientation conventions: an EXIF image stores its pixels so that applying the tag gives the upright
scene; its thumbnail and mirror are upright (Flickr and the mirror applied the tag). A ROTATED image
stores its pixels turned clockwise by `rotation` degrees in all three copies, since Open Images'
Rotation is the counter-clockwise turn that makes an image upright.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import math
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from openimages_pipe.world.classes import Hierarchy
from openimages_pipe.world.drawing import SceneObject, draw_scene
from openimages_pipe.world.quota import quota_size

JPEG_QUALITY = 90
THUMBNAIL_SIDE, THUMBNAIL_QUALITY = 640, 80  # Flickr's `_z` size
MIRROR_SIDE, MIRROR_QUALITY = 1024, 85
PLACEHOLDER_SIZE = (500, 374)
ASPECTS = ((4, 3), (3, 2), (16, 9), (1, 1), (5, 4), (2, 1))
ASPECT_WEIGHTS = (0.4, 0.25, 0.12, 0.1, 0.1, 0.03)
LARGE_PROBABILITY = 0.03  # images above 1600 px a side are rare
OBJECT_SIZE = (0.25, 0.5)  # object side as a fraction of the canvas' shorter side
# How the stored pixels are turned from the upright scene: the inverse of what a viewer applies.
EXIF_TO_STORED = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                  8: Image.Transpose.ROTATE_270}  # fmt: skip
ROTATION_TO_STORED = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
                      270: Image.Transpose.ROTATE_90}  # fmt: skip


class Variant(enum.StrEnum):
    """The closed set of ways an original is encoded."""

    PLAIN = "plain"  # RGB JPEG
    PNG = "png"
    CMYK = "cmyk"  # CMYK JPEG
    GRAY = "gray"  # L JPEG
    EXIF = "exif"  # RGB JPEG with an EXIF Orientation != 1
    ROTATED = "rotated"  # RGB JPEG stored turned; the CSV's Rotation says by how much


# EXIF orientations and Rotation degrees in camera-like proportions (a quarter turn is commonest).
TURNS = {Variant.EXIF: (6, 6, 8, 3), Variant.ROTATED: (90, 90, 270, 180)}
VARIANT_RATES = {Variant.PNG: 0.03, Variant.CMYK: 0.03, Variant.GRAY: 0.05, Variant.EXIF: 0.03,
                 Variant.ROTATED: 0.03}  # fmt: skip


@dataclass(frozen=True)
class RenderJob:
    """Everything a worker needs to draw and write one image's files."""

    image_id: str
    seed: int
    size: tuple[int, int]  # upright width, height
    objects: tuple[SceneObject, ...]
    variant: Variant
    turn: int  # EXIF orientation (EXIF) or clockwise degrees (ROTATED); 0 otherwise
    original: Path
    thumbnail: Path | None
    mirror: Path | None


@dataclass(frozen=True)
class RenderResult:
    image_id: str
    ext: str
    width: int  # of the stored pixels
    height: int
    size: int
    md5_b64: str
    files_bytes: int  # original + thumbnail + mirror


def ext_of(variant: Variant) -> str:
    return "png" if variant is Variant.PNG else "jpg"


def content_type(ext: str) -> str:
    return "image/png" if ext == "png" else "image/jpeg"


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def assign_variants(count: int, rotation: bool, rng: random.Random) -> list[tuple[Variant, int]]:
    """(variant, turn) per image; every variant gets a fixed quota (at least one in any world)."""
    order = list(range(count))
    rng.shuffle(order)
    out = [(Variant.PLAIN, 0)] * count
    start = 0
    for variant, rate in VARIANT_RATES.items():
        if variant is Variant.ROTATED and not rotation:
            continue
        quota = min(quota_size(rate, count), count - start)
        for i in order[start : start + quota]:
            out[i] = (variant, rng.choice(TURNS.get(variant, (0,))))
        start += quota
    return out


def plan_canvas(
    rng: random.Random, hierarchy: Hierarchy, mids: tuple[str, ...], max_side: int
) -> tuple[tuple[int, int], tuple[SceneObject, ...]]:
    """A Flickr-like canvas size (mostly 400-1600 px a side) and where each object sits."""
    if rng.random() < LARGE_PROBABILITY:
        long = rng.randint(1600, max(1600, max_side))
    else:
        long = round(math.exp(rng.uniform(math.log(400), math.log(1600))))
    long = min(long, max_side)
    a, b = rng.choices(ASPECTS, ASPECT_WEIGHTS)[0]
    short = max(1, round(long * b / a))
    size = (long, short) if rng.random() < 0.75 else (short, long)
    placed: list[SceneObject] = []
    for mid in mids:
        cls = hierarchy.by_mid[mid]
        side = round(rng.uniform(*OBJECT_SIZE) * min(size))
        for _ in range(10):  # prefer spots that do not hide the objects already there
            x, y = rng.randint(0, size[0] - side), rng.randint(0, size[1] - side)
            if all(_apart((x, y, side), o.box) for o in placed):
                break
        placed.append(SceneObject(mid, cls.shape, cls.colour, cls.texture, (x, y, side)))
    return size, tuple(placed)


def _apart(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    dx, dy = (a[0] + a[2] / 2) - (b[0] + b[2] / 2), (a[1] + a[2] / 2) - (b[1] + b[2] / 2)
    return math.hypot(dx, dy) > 0.6 * (a[2] + b[2]) / 2


def render_upright(job: RenderJob) -> Image.Image:
    """The job's scene as a viewer should see it (see `drawing`)."""
    return draw_scene(job.seed, job.size, job.objects)


def encode_original(job: RenderJob, upright: Image.Image) -> bytes:
    """The original's bytes: the scene stored as the job's variant says."""
    buf = BytesIO()
    if job.variant is Variant.PNG:
        upright.save(buf, "PNG", optimize=False)
    elif job.variant is Variant.CMYK:
        upright.convert("CMYK").save(buf, "JPEG", quality=JPEG_QUALITY)
    elif job.variant is Variant.GRAY:
        upright.convert("L").save(buf, "JPEG", quality=JPEG_QUALITY)
    elif job.variant is Variant.EXIF:
        exif = Image.Exif()
        exif[0x0112] = job.turn  # Orientation
        stored = upright.transpose(EXIF_TO_STORED[job.turn])
        stored.save(buf, "JPEG", quality=JPEG_QUALITY, exif=exif)
    elif job.variant is Variant.ROTATED:
        upright.transpose(ROTATION_TO_STORED[job.turn]).save(buf, "JPEG", quality=JPEG_QUALITY)
    else:
        upright.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _shrink(img: Image.Image, side: int) -> Image.Image:
    """`img` with its longest side at most `side` (LANCZOS after a fast box reduction)."""
    img = img.convert("L" if img.mode == "L" else "RGB")
    scale = side / max(img.size)
    if scale >= 1:
        return img
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def render_one(job: RenderJob) -> RenderResult:
    """Draw one image and write its original, thumbnail and mirror files."""
    upright = render_upright(job)
    original = encode_original(job, upright)
    copy_source = upright
    if job.variant is Variant.ROTATED:
        copy_source = upright.transpose(ROTATION_TO_STORED[job.turn])
    elif job.variant is Variant.GRAY:
        copy_source = upright.convert("L")
    written = _write(job.original, original)
    mirror = _shrink(copy_source, MIRROR_SIDE)  # the thumbnail is cut from it: fewer pixels
    if job.mirror is not None:
        written += _write(job.mirror, _jpeg(mirror, MIRROR_QUALITY))
    if job.thumbnail is not None:
        written += _write(job.thumbnail, _jpeg(_shrink(mirror, THUMBNAIL_SIDE), THUMBNAIL_QUALITY))
    swap = job.variant is Variant.ROTATED and job.turn != 180
    swap |= job.variant is Variant.EXIF and job.turn in (6, 8)
    width, height = job.size[::-1] if swap else job.size
    return RenderResult(
        job.image_id, ext_of(job.variant), width, height, len(original), md5_b64(original), written
    )


def _write(path: Path, data: bytes) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def render_all(jobs: list[RenderJob], workers: int) -> list[RenderResult]:
    """Render every job, in a process pool when `workers` > 1 (drawing is CPU-bound)."""
    if workers <= 1 or len(jobs) < 2:
        return [render_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=min(workers, os.cpu_count() or 1)) as pool:
        return list(pool.map(render_one, jobs, chunksize=max(1, len(jobs) // (workers * 8))))


def placeholder_png() -> bytes:
    """Flickr's grey "This photo is no longer available" image (500x374 PNG)."""
    img = Image.new("RGB", PLACEHOLDER_SIZE, (221, 221, 221))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((210, 110, 290, 170), radius=8, outline=(170, 170, 170), width=4)
    draw.ellipse((236, 126, 264, 154), outline=(170, 170, 170), width=4)
    font = ImageFont.load_default(size=22)
    text = "This photo is no longer available"
    width = draw.textlength(text, font=font)
    draw.text(((PLACEHOLDER_SIZE[0] - width) / 2, 200), text, fill=(119, 119, 119), font=font)
    buf = BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
