"""Procedural images: deterministic, decodable, in every variant, with learnable objects."""

from __future__ import annotations

import base64
import hashlib
import io
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from openimages_pipe.world.classes import PALETTE, Shape, Texture, build_hierarchy, sample_scene
from openimages_pipe.world.drawing import SceneObject
from openimages_pipe.world.render import (
    MIRROR_SIDE,
    PLACEHOLDER_SIZE,
    THUMBNAIL_SIDE,
    RenderJob,
    Variant,
    assign_variants,
    content_type,
    ext_of,
    placeholder_png,
    plan_canvas,
    render_all,
    render_one,
    render_upright,
)

RED = PALETTE["red"]


def _job(tmp: Path, variant: Variant = Variant.PLAIN, turn: int = 0, size=(900, 600), seed=1,
         objects=None) -> RenderJob:  # fmt: skip
    if objects is None:
        objects = (SceneObject("/m/0k4j", Shape.SQUARE, RED, Texture.SOLID, (100, 100, 300)),)
    ext = ext_of(variant)
    return RenderJob(f"{seed:016x}", seed, size, objects, variant, turn, tmp / f"o/{seed}.{ext}",
                     tmp / f"t/{seed}.jpg", tmp / f"m/{seed}.jpg")  # fmt: skip


def _diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0-255."""
    assert a.size == b.size
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def test_objects_survive_a_downscale_to_64_px(tmp_path: Path) -> None:
    job = _job(tmp_path)
    small = render_upright(job).resize((96, 64), Image.Resampling.BOX)
    centre = small.getpixel((round(250 / 900 * 96), round(250 / 600 * 64)))
    assert all(abs(c - r) < 25 for c, r in zip(centre, RED, strict=True)), centre


def test_render_is_deterministic_in_the_seed(tmp_path: Path) -> None:
    a = render_upright(_job(tmp_path, seed=3)).tobytes()
    assert a == render_upright(_job(tmp_path, seed=3)).tobytes()
    assert a != render_upright(_job(tmp_path, seed=4)).tobytes()


def test_original_size_and_md5_are_those_of_the_written_file(tmp_path: Path) -> None:
    job = _job(tmp_path)
    result = render_one(job)
    data = job.original.read_bytes()
    assert result.size == len(data)
    assert result.md5_b64 == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert (result.width, result.height) == Image.open(job.original).size == job.size


def test_thumbnail_and_mirror_are_smaller_reencodes(tmp_path: Path) -> None:
    job = _job(tmp_path, size=(1500, 1000))
    render_one(job)
    thumb, mirror = Image.open(job.thumbnail), Image.open(job.mirror)
    assert max(thumb.size) == THUMBNAIL_SIDE and thumb.format == "JPEG"
    assert max(mirror.size) == MIRROR_SIDE
    digests = {hashlib.md5(p.read_bytes()).digest() for p in (job.original, job.thumbnail)}
    assert len(digests) == 2


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied_gives_the_upright_image(tmp_path: Path, orientation) -> None:
    job = _job(tmp_path, Variant.EXIF, orientation)
    result = render_one(job)
    stored = Image.open(job.original)
    assert stored.getexif()[0x0112] == orientation
    assert (result.width, result.height) == stored.size
    assert _diff(ImageOps.exif_transpose(stored), render_upright(job)) < 3
    assert Image.open(job.thumbnail).size[0] > Image.open(job.thumbnail).size[1]  # upright


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_counter_clockwise_gives_the_upright_image(tmp_path: Path, rotation) -> None:
    job = _job(tmp_path, Variant.ROTATED, rotation)
    render_one(job)
    stored = Image.open(job.original)
    assert _diff(stored.rotate(rotation, expand=True), render_upright(job)) < 3
    assert stored.size == (job.size[::-1] if rotation != 180 else job.size)
    assert Image.open(job.thumbnail).size[0] * Image.open(job.original).size[1] == pytest.approx(
        Image.open(job.thumbnail).size[1] * Image.open(job.original).size[0], rel=0.01
    )  # the copies are stored turned like the original


@pytest.mark.parametrize(
    ("variant", "fmt", "mode"),
    [(Variant.PNG, "PNG", "RGB"), (Variant.CMYK, "JPEG", "CMYK"), (Variant.GRAY, "JPEG", "L"),
     (Variant.PLAIN, "JPEG", "RGB")],
)  # fmt: skip
def test_variants_decode_in_their_format_and_mode(tmp_path: Path, variant, fmt, mode) -> None:
    job = _job(tmp_path, variant)
    result = render_one(job)
    img = Image.open(job.original)
    assert (img.format, img.mode) == (fmt, mode)
    img.load()
    assert result.ext == ("png" if variant is Variant.PNG else "jpg")
    assert content_type(result.ext) == ("image/png" if fmt == "PNG" else "image/jpeg")
    assert Image.open(job.thumbnail).mode in ("RGB", "L")


def test_png_original_is_lossless(tmp_path: Path) -> None:
    job = _job(tmp_path, Variant.PNG)
    render_one(job)
    assert Image.open(job.original).tobytes() == render_upright(job).tobytes()


def test_assign_variants_quotas_and_rotation_only_when_asked() -> None:
    with_rotation = Counter(v for v, _ in assign_variants(100, True, random.Random(0)))
    assert with_rotation == {Variant.PLAIN: 83, Variant.PNG: 3, Variant.CMYK: 3, Variant.GRAY: 5,
                             Variant.EXIF: 3, Variant.ROTATED: 3}  # fmt: skip
    without = assign_variants(40, False, random.Random(0))
    assert Variant.ROTATED not in {v for v, _ in without}
    assert all(turn in (3, 6, 8) for v, turn in without if v is Variant.EXIF)


def test_plan_canvas_sizes_are_flickr_like_and_objects_inside() -> None:
    h, rng = build_hierarchy(), random.Random(2)
    sides = []
    for _ in range(300):
        (w, ht), objects = plan_canvas(rng, h, sample_scene(rng, h), 3000)
        sides.append(max(w, ht))
        for obj in objects:
            x, y, side = obj.box
            assert min(x, y) >= 0 and x + side <= w and y + side <= ht
            assert side >= 0.25 * min(w, ht) - 1
    assert min(sides) >= 400 and max(sides) <= 3000
    assert sum(400 <= s <= 1600 for s in sides) / len(sides) > 0.9


def test_pool_and_inline_render_the_same_bytes(tmp_path: Path) -> None:
    jobs_a = [_job(tmp_path / "a", size=(500, 400), seed=s) for s in range(6)]
    jobs_b = [_job(tmp_path / "b", size=(500, 400), seed=s) for s in range(6)]
    a, b = render_all(jobs_a, workers=2), render_all(jobs_b, workers=1)
    assert [r.md5_b64 for r in a] == [r.md5_b64 for r in b]
    assert [r.image_id for r in a] == [j.image_id for j in jobs_a]


def test_placeholder_is_a_grey_500x374_png() -> None:
    data = placeholder_png()
    img = Image.open(io.BytesIO(data))
    assert (img.format, img.size) == ("PNG", PLACEHOLDER_SIZE)
    r, g, b = ImageStat.Stat(img.convert("RGB")).median
    assert r == g == b and r > 180
    assert data == placeholder_png()
