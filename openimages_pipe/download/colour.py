"""Decoded pixels of any mode -> 8-bit RGB, transparency on white; and what that costs in memory.

Plain Pillow, run in the worker processes by `resize`. `decode_cost` is judged from the header
(mode, size, transparency) before a pixel is decoded, so that `resize` can refuse an image whose
decoding and conversion would take more than its bound in one worker.
"""

from __future__ import annotations

from PIL import Image

WHITE = (255, 255, 255)
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

# Bytes a pixel takes in Pillow's memory, by mode (the others, RGB included, take 4).
PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def decode_cost(img: Image.Image) -> int:
    """Peak bytes of decoding `img` (at its drafted size) and converting it as `to_rgb` does:
    the decoded image plus every copy alive at once on its way to RGB."""
    mode, pixels = img.mode, img.width * img.height
    if img.mode in ALPHA_MODES or img.has_transparency_data:
        extra = 4 + 1 + 4 + 4  # RGBA, its alpha band, the RGB and the white background
    elif mode == "RGB":
        extra = 0
    elif mode in SIXTEEN_BIT_MODES:
        extra = 4 + 4 + 1 + 4  # as 32-bit, scaled, as L, as RGB
    elif mode in ("I", "F"):
        extra = 4 + 1 + 4  # scaled, as L, as RGB
    else:
        extra = 4  # CMYK, YCbCr, L, P, 1, ... converted to RGB
    return pixels * (PIXEL_BYTES.get(mode, 4) + extra)


def to_rgb(img: Image.Image) -> Image.Image:
    """Decode `img` as 8-bit RGB: alpha and transparency composited on white, 16-bit scaled down.

    Transparency is an alpha band, a palette's alpha or a transparency key (PNG's tRNS: one grey
    or RGB value that is transparent); Pillow turns each of them into alpha on RGBA."""
    transparent = img.mode in ALPHA_MODES or img.has_transparency_data
    if img.mode == "RGB" and not transparent:
        img.load()
        return img
    alpha = _alpha(img) if transparent else None
    rgb = _eight_bit(img).convert("RGB")
    if alpha is None:
        return rgb
    background = Image.new("RGB", rgb.size, WHITE)
    background.paste(rgb, mask=alpha)
    return background


def _alpha(img: Image.Image) -> Image.Image:
    """The image's alpha as an L band. A 16- or 32-bit grey's transparency key is matched on the
    full values: Pillow's own conversion to RGBA compares it after clipping to 8 bits, and would
    make every pixel above 254 transparent."""
    key = img.info.get("transparency")
    if img.mode in SIXTEEN_BIT_MODES | {"I"} and isinstance(key, int):
        import numpy as np  # only here: a rare kind of PNG, and workers need not load numpy

        values = np.asarray(img.convert("I"))
        return Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8), "L")
    return img.convert("RGBA").getchannel("A")


def _eight_bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit greys as 8-bit L, scaled, not clipped; other modes as they are."""
    mode = img.mode
    if mode in SIXTEEN_BIT_MODES:
        # 0..65535 -> 0..255; convert("L") alone would clip almost every pixel to white
        return img.convert("I").point(lambda v: v * (1 / 257)).convert("L")
    if mode == "I":
        # 32-bit integers: PNG/TIFF 16-bit data in practice; scale only if it exceeds 8 bits
        if img.getextrema()[1] > 255:
            img = img.point(lambda v: v * (1 / 257))
        return img.convert("L")
    if mode == "F":
        # floats: 0..1 in practice (scientific TIFFs); anything else is clipped by convert
        if img.getextrema()[1] <= 1.0:
            img = img.point(lambda v: v * 255)
        return img.convert("L")
    return img
