"""The resize stage on tiny generated images: sizes, orientation, modes, draft, bombs, bad bytes."""

from __future__ import annotations

import io
import math
import multiprocessing
import pickle
import random
import struct
from concurrent.futures import ProcessPoolExecutor

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat

from openimages_pipe.download import resize
from openimages_pipe.download.records import Reason, Resized, ResizeMode
from openimages_pipe.download.resize import ResizeConfig, quarter_turns, resize_image
from tests.fixtures.images import encode, png_claiming

RED = (255, 0, 0)
T = Image.Transpose


def decode(result: Resized) -> Image.Image:
    assert result.reason is Reason.OK, result.reason
    assert result.jpeg is not None
    img = Image.open(io.BytesIO(result.jpeg))
    assert img.format == "JPEG"
    assert img.size == (result.width, result.height)
    return img


def marked(size: tuple[int, int] = (120, 80)) -> Image.Image:
    """An upright white image with a red block in its top-left corner."""
    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).rectangle((0, 0, size[0] // 3, size[1] // 3), fill=RED)
    return img


def red_corner(img: Image.Image) -> str:
    """Which corner of `img` the red block is in."""
    img = img.convert("RGB")
    corners = {
        "top-left": (0.1, 0.1),
        "top-right": (0.9, 0.1),
        "bottom-left": (0.1, 0.9),
        "bottom-right": (0.9, 0.9),
    }
    red = [
        name
        for name, (fx, fy) in corners.items()
        if _is_red(img.getpixel((int(fx * img.width), int(fy * img.height))))
    ]
    assert len(red) == 1, red
    return red[0]


def _is_red(pixel) -> bool:
    r, g, b = pixel
    return r > 200 and g < 80 and b < 80


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


SMALL = ResizeConfig(image_size=40)


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "size", "expected"),
    [
        (ResizeMode.KEEP_RATIO, (400, 300), (53, 40)),
        (ResizeMode.KEEP_RATIO, (300, 400), (40, 53)),
        (ResizeMode.LONGER_SIDE, (400, 300), (40, 30)),
        (ResizeMode.LONGER_SIDE, (300, 400), (30, 40)),
        (ResizeMode.CENTER_CROP, (400, 300), (40, 40)),
        (ResizeMode.CENTER_CROP, (300, 400), (40, 40)),
        (ResizeMode.NONE, (400, 300), (400, 300)),
    ],
)
def test_every_mode_gives_its_size(mode, size, expected):
    result = resize_image("a", encode(marked(size)), None, ResizeConfig(mode=mode, image_size=40))
    assert decode(result).size == expected
    assert (result.original_width, result.original_height) == size


@pytest.mark.parametrize(
    ("mode", "upscale", "expected"),
    [
        (ResizeMode.KEEP_RATIO, False, (30, 20)),
        (ResizeMode.LONGER_SIDE, False, (30, 20)),
        (ResizeMode.CENTER_CROP, False, (20, 20)),  # squared, not enlarged
        (ResizeMode.KEEP_RATIO, True, (60, 40)),
        (ResizeMode.CENTER_CROP, True, (40, 40)),
    ],
)
def test_small_images_are_not_enlarged_unless_asked(mode, upscale, expected):
    cfg = ResizeConfig(mode=mode, image_size=40, upscale=upscale)
    result = resize_image("a", encode(marked((30, 20))), None, cfg)
    assert decode(result).size == expected


def test_center_crop_keeps_the_centre():
    img = Image.new("RGB", (300, 100), "white")
    ImageDraw.Draw(img).rectangle((100, 0, 199, 99), fill=RED)  # the central square is red
    out = decode(resize_image("a", encode(img), None, ResizeConfig(ResizeMode.CENTER_CROP, 40)))
    assert _is_red(out.getpixel((2, 2))) and _is_red(out.getpixel((37, 37)))


# --- orientation ---------------------------------------------------------------------------------

# EXIF orientation -> how a camera stores an upright picture (the inverse of what undoes it).
STORED_FOR_EXIF = {3: T.ROTATE_180, 6: T.ROTATE_90, 8: T.ROTATE_270}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_gives_the_upright_image(orientation):
    stored = marked().transpose(STORED_FOR_EXIF[orientation])
    exif = Image.Exif()
    exif[resize.EXIF_ORIENTATION_TAG] = orientation
    body = encode(stored, exif=exif.tobytes())
    assert red_corner(ImageOps.exif_transpose(Image.open(io.BytesIO(body)))) == "top-left"

    result = resize_image("a", body, None, SMALL)
    out = decode(result)
    assert red_corner(out) == "top-left"
    assert out.size == (60, 40)  # landscape again, shorter side 40
    assert (result.original_width, result.original_height) == (120, 80)
    assert resize.EXIF_ORIENTATION_TAG not in out.getexif()  # no stale orientation in the output


@pytest.mark.parametrize(
    ("rotation", "stored_by"),
    [(90.0, T.ROTATE_270), (180.0, T.ROTATE_180), (270.0, T.ROTATE_90), (89.7, T.ROTATE_270)],
)
def test_csv_rotation_gives_the_upright_image(rotation, stored_by):
    # Rotation is the counter-clockwise turn that makes the image upright, so it is stored turned
    # the other way.
    result = resize_image("a", encode(marked().transpose(stored_by)), rotation, SMALL)
    out = decode(result)
    assert red_corner(out) == "top-left"
    assert out.size == (60, 40)
    assert (result.original_width, result.original_height) == (120, 80)


def test_exif_orientation_wins_over_the_rotation():
    # EXIF 6 makes the stored pixels upright; the CSV's Rotation describes the same correction,
    # so applying it too would turn the image over.
    exif = Image.Exif()
    exif[resize.EXIF_ORIENTATION_TAG] = 6
    body = encode(marked().transpose(T.ROTATE_90), exif=exif.tobytes())
    out = decode(resize_image("a", body, 180.0, SMALL))
    assert red_corner(out) == "top-left"
    assert out.size == (60, 40)


@pytest.mark.parametrize(
    ("rotation", "turns"),
    [(None, 0), (float("nan"), 0), (float("inf"), 0), (0.0, 0), (90.0, 1), (180.0, 2)]
    + [(270.0, 3), (360.0, 0), (450.0, 1), (-90.0, 3), (91.0, 1), (134.0, 1), (136.0, 2)],
)
def test_quarter_turns(rotation, turns):
    assert quarter_turns(rotation) == turns


def test_centre_crop_of_a_rotated_image_is_upright():
    cfg = ResizeConfig(ResizeMode.CENTER_CROP, 40)
    img = Image.new("RGB", (120, 80), "white")
    ImageDraw.Draw(img).rectangle((20, 0, 60, 26), fill=RED)  # top-left of the central square
    out = decode(resize_image("a", encode(img.transpose(T.ROTATE_270)), 90.0, cfg))
    assert out.size == (40, 40)
    assert red_corner(out) == "top-left"


# --- colour modes --------------------------------------------------------------------------------


def _half_and_half(mode: str, left, right) -> Image.Image:
    img = Image.new(mode, (80, 40), left)
    for x in range(40, 80):
        for y in range(40):
            img.putpixel((x, y), right)
    return img


def _sixteen_bit_png() -> bytes:
    values = [65535 if x < 40 else 32768 for _ in range(40) for x in range(80)]
    img = Image.frombytes("I;16", (80, 40), struct.pack(f"<{len(values)}H", *values))
    return encode(img, "PNG")


def _palette_with_transparency() -> bytes:
    img = _half_and_half("P", 0, 1)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    return encode(img, "PNG", transparency=0)  # index 0 (black) transparent


@pytest.mark.parametrize(
    ("name", "body", "left", "right"),
    [
        ("CMYK", encode(Image.new("CMYK", (80, 40), (0, 255, 255, 0))), RED, RED),
        ("P+transparency", _palette_with_transparency(), (255, 255, 255), (0, 0, 255)),
        ("LA", encode(_half_and_half("LA", (0, 0), (0, 255)), "PNG"), (255,) * 3, (0,) * 3),
        (
            "RGBA",
            encode(_half_and_half("RGBA", (9, 9, 9, 0), RED + (255,)), "PNG"),
            (255,) * 3,
            RED,
        ),
        ("I;16", _sixteen_bit_png(), (255,) * 3, (128,) * 3),
        ("1", encode(_half_and_half("1", 1, 0), "PNG"), (255,) * 3, (0,) * 3),
        ("L", encode(Image.new("L", (80, 40), 200)), (200,) * 3, (200,) * 3),
        ("F", encode(Image.new("F", (80, 40), 0.5), "TIFF"), (128,) * 3, (128,) * 3),
        ("I", encode(Image.new("I", (80, 40), 65535), "TIFF"), (255,) * 3, (255,) * 3),
    ],
)
def test_modes_become_rgb(name, body, left, right):
    out = decode(resize_image("a", body, None, ResizeConfig(image_size=20)))
    assert out.mode == "RGB" and out.size == (40, 20)
    for (x, y), want in (((5, 10), left), ((35, 10), right)):
        got = out.getpixel((x, y))
        assert all(abs(g - w) <= 6 for g, w in zip(got, want, strict=True)), (name, got, want)


# --- draft mode ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_photo() -> bytes:
    """A 4000x3000 photo-like JPEG: gradients, noise and a red corner."""
    w, h = 4000, 3000
    gradient = Image.linear_gradient("L").resize((w, h))
    noise = Image.effect_noise((w, h), 40)
    img = Image.merge("RGB", (gradient, noise, gradient.transpose(T.ROTATE_180)))
    ImageDraw.Draw(img).rectangle((0, 0, w // 4, h // 4), fill=RED)
    return encode(img, quality=90)


def _spy_decoded_sizes(monkeypatch) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    original = resize.to_rgb

    def spy(img):
        sizes.append(img.size)
        return original(img)

    monkeypatch.setattr(resize, "to_rgb", spy)
    return sizes


def test_draft_decodes_a_big_jpeg_at_reduced_scale(monkeypatch, big_photo):
    sizes = _spy_decoded_sizes(monkeypatch)
    result = resize_image("a", big_photo, None, ResizeConfig(image_size=256))
    out = decode(result)
    assert out.size == (341, 256)
    assert (result.original_width, result.original_height) == (4000, 3000)
    assert sizes == [(500, 375)]  # 1/8 scale: still >= (341, 256)

    reference = Image.open(io.BytesIO(big_photo)).convert("RGB")
    reference = reference.resize((341, 256), Image.Resampling.LANCZOS)
    # the q95 encode alone differs by ~1.6 on this noisy picture; draft adds ~0.6
    assert mean_difference(out, reference) < 3.0


def test_draft_with_rotation_is_exact(monkeypatch, big_photo):
    sizes = _spy_decoded_sizes(monkeypatch)
    result = resize_image("a", big_photo, 90.0, ResizeConfig(ResizeMode.LONGER_SIDE, 200))
    out = decode(result)
    assert sizes == [(500, 375)]  # 1/8: still >= (200, 150), the target in the stored frame
    assert out.size == (150, 200)
    assert (result.original_width, result.original_height) == (3000, 4000)
    assert red_corner(out) == "bottom-left"  # top-left of the stored image, turned 90 CCW


@pytest.mark.parametrize(
    ("size", "mode"),
    [
        ((700, 513), ResizeMode.KEEP_RATIO),
        ((1025, 257), ResizeMode.KEEP_RATIO),
        ((257, 1025), ResizeMode.LONGER_SIDE),
        ((999, 333), ResizeMode.CENTER_CROP),
        ((640, 480), ResizeMode.NONE),
    ],
)
def test_draft_never_decodes_below_the_target(monkeypatch, size, mode):
    sizes = _spy_decoded_sizes(monkeypatch)
    cfg = ResizeConfig(mode=mode, image_size=32)
    target = resize.target_size(size, cfg)
    out = decode(resize_image("a", encode(marked(size)), None, cfg))
    (decoded,) = sizes
    wanted = [
        min(full, math.ceil(t * resize.DRAFT_GAP)) for full, t in zip(size, target, strict=True)
    ]
    assert decoded[0] >= wanted[0] and decoded[1] >= wanted[1]
    if mode is not ResizeMode.NONE:
        assert decoded[0] < size[0]  # draft did reduce
    if mode is ResizeMode.CENTER_CROP:
        assert out.size == (min(target), min(target))
    else:
        assert out.size == target
        assert red_corner(out) == "top-left"


# --- bad input -----------------------------------------------------------------------------------


def test_a_decompression_bomb_is_too_large_without_decoding(monkeypatch):
    sizes = _spy_decoded_sizes(monkeypatch)
    assert resize_image("a", png_claiming(100_000, 100_000), None, SMALL).reason is Reason.TOO_LARGE
    # under Pillow's own limit but over ours: refused on the header, before any decode
    body = encode(marked((200, 200)), "PNG")
    cfg = ResizeConfig(image_size=40, max_pixels=10_000)
    assert resize_image("a", body, None, cfg) == Resized("a", Reason.TOO_LARGE)
    assert sizes == []


def test_a_jpeg_claiming_huge_dimensions_is_too_large():
    body = bytearray(encode(marked((64, 48))))
    sof = body.index(b"\xff\xc0")
    body[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)  # height, width
    assert resize_image("a", bytes(body), None, SMALL).reason is Reason.TOO_LARGE


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<!doctype html><html><body>Not found</body></html>",
        b"\xff\xd8\xff\xe0" + b"\x00" * 100,  # JPEG magic, nothing after
        png_claiming(64, 48),  # a valid header and no pixel data
        encode(marked((64, 48)), "ICO"),  # decodable by Pillow, but not a format we accept
    ],
)
def test_undecodable_bytes_are_a_decode_error(body):
    assert resize_image("a", body, None, SMALL) == Resized("a", Reason.DECODE_ERROR)


def test_a_truncated_jpeg_is_a_decode_error():
    body = encode(Image.effect_noise((300, 200), 50).convert("RGB"))
    assert resize_image("a", body[: len(body) // 2], None, SMALL).reason is Reason.DECODE_ERROR


def test_mutated_images_never_raise():
    rng = random.Random(7)
    seeds = [
        encode(marked((97, 61))),
        encode(marked((97, 61)), progressive=True),
        encode(marked((97, 61)), "PNG"),
        encode(marked((97, 61)).convert("P"), "GIF"),
        encode(marked((97, 61)), "WEBP"),
    ]
    seen = set()
    for seed in seeds:
        for _ in range(40):
            body = bytearray(seed)
            for _ in range(rng.choice([1, 3, 10])):
                pos = rng.randrange(len(body))
                body[pos] = rng.randrange(256)
            body = body[: rng.randrange(len(body) // 2, len(body) + 1)]
            seen.add(resize_image("a", bytes(body), 90.0, SMALL).reason)
    assert seen <= {Reason.OK, Reason.DECODE_ERROR, Reason.TOO_LARGE}
    assert Reason.DECODE_ERROR in seen


# --- the process pool ----------------------------------------------------------------------------


def test_config_validates_and_pickles():
    with pytest.raises(ValueError, match="image_size"):
        ResizeConfig(image_size=0)
    with pytest.raises(ValueError, match="quality"):
        ResizeConfig(quality=101)
    cfg = ResizeConfig(ResizeMode.CENTER_CROP, 64, quality=80)
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_runs_in_a_spawned_process_pool():
    bodies = [encode(marked((120, 80))), b"garbage"]
    context = multiprocessing.get_context("spawn")  # nothing inherited: all of it is pickled
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        ok, bad = pool.map(resize_image, ["a", "b"], bodies, [None, None], [SMALL, SMALL])
    assert decode(ok).size == (60, 40)
    assert bad == Resized("b", Reason.DECODE_ERROR)
