"""The resize stage on other projects' test images (../shared/data/image-corpus: Pillow's and
libjpeg-turbo's: CMYK, orientation series, 16-bit, transparency, truncated files, fuzzer cases,
bombs), each stored image compared with Pillow's own upright RGB rendering of the file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from openimages_pipe.download import worker
from openimages_pipe.download.records import Md5Mode, Reason, Source
from openimages_pipe.download.resize import (
    ALLOWED_FORMATS,
    REDUCING_GAP,
    RESAMPLE,
    ResizeConfig,
    resize_image,
)
from openimages_pipe.download.verify import Check, sniff
from tests.fixtures.paths import SHARED_DATA

CORPUS = SHARED_DATA / "image-corpus"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".md")
CFG = ResizeConfig(image_size=64)
# Grey levels, 8 x 8 grid means against Pillow's full decode resized with the same filter: JPEG
# drafting and the q95 encode leave a few; a flipped or turned image of the orientation series
# differs by tens.
MAX_DIFFERENCE = 6.0


def reference(body: bytes) -> Image.Image | None:
    """Pillow's own rendering: loaded, EXIF-transposed, 16-bit scaled, transparency on white; or
    None where Pillow (limited to the formats a download accepts) cannot render the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(body), formats=ALLOWED_FORMATS)
            img.load()
            return _on_white(ImageOps.exif_transpose(img))
    except Exception:  # noqa: BLE001 (any failure of Pillow's own means "no reference")
        return None


def _on_white(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        key = img.info.get("transparency")
        top = values.max()  # 16-bit PNGs are 0..65535; 32-bit and float ones as resize reads them
        sixteen = img.mode.startswith("I;16") or (img.mode == "I" and top > 255)
        scale = 257.0 if sixteen else 1 / 255 if img.mode == "F" and top <= 1 else 1.0
        grey = np.clip(values / scale, 0, 255).round()
        if isinstance(key, int):  # a grey transparency key: those pixels are white
            grey = np.where(values == key, 255, grey)
        return Image.fromarray(grey.astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def coarse_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference (0-255) of the two images' luma as grids of at most 8 x 8 means:
    blind to JPEG's ringing and chroma subsampling on pixel art, not to a flip, a turn, an
    inverted CMYK or a transparency left black."""
    side = max(1, min(8, min(a.size) // 4))  # a tiny image: a coarser grid
    grid = (side, side)
    x, y = (np.asarray(i.convert("L").resize(grid, Image.Resampling.BOX), float) for i in (a, b))
    return float(np.abs(x - y).mean())


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_each_corpus_file_is_stored_as_pillow_renders_it_or_refused(path: Path) -> None:
    body = path.read_bytes()
    out = resize_image("a", body, None, CFG)
    assert out.reason in (Reason.OK, Reason.DECODE_ERROR, Reason.TOO_LARGE)
    if out.reason is not Reason.OK:
        if out.reason is Reason.DECODE_ERROR and sniff(body) and "crash" not in path.name:
            expected = reference(body)  # refused although Pillow renders it: only if it is tiny
            assert expected is None or min(expected.size) < 2, path
        return
    expected = reference(body)
    assert expected is not None, "stored an image Pillow itself cannot render"
    assert (out.original_width, out.original_height) == expected.size  # upright, once
    stored = Image.open(io.BytesIO(out.jpeg))
    assert stored.mode == "RGB" and stored.size == (out.width, out.height)
    expected = expected.resize(stored.size, RESAMPLE, reducing_gap=REDUCING_GAP)
    assert coarse_difference(stored, expected) <= MAX_DIFFERENCE, path


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_a_copy_is_called_undersized_exactly_when_it_is_stored_smaller(path: Path) -> None:
    """The worker's flag that sends fetch on to the next source (a thumbnail too small for the
    target), on every corpus file as a thumbnail: it agrees with the stored image, orientation
    series and odd formats included."""
    thumbnail = Check(Source.THUMBNAIL, "http://127.0.0.1/t.jpg", Md5Mode.STRICT)
    verdict, out = worker.check_and_resize("a", path.read_bytes(), thumbnail, None, CFG)
    if verdict.reason is not Reason.OK:
        assert not verdict.undersized
        return
    assert out is not None and out.jpeg is not None
    stored = Image.open(io.BytesIO(out.jpeg)).size
    assert verdict.undersized == (min(stored) < CFG.image_size), (path, stored)


def test_the_tiff_orientation_series_is_turned_once() -> None:
    """g4_orientation_1..8.tif hold one picture under the eight orientations: stored upright, all
    eight are the same (turned twice, 2-4 came out flipped, 5-8 with width and height swapped)."""
    stored = []
    for k in range(1, 9):
        out = resize_image("a", (CORPUS / f"pillow/g4_orientation_{k}.tif").read_bytes(), None, CFG)
        stored.append(Image.open(io.BytesIO(out.jpeg)))
    assert {s.size for s in stored} == {stored[0].size} and stored[0].width > stored[0].height
    assert all(coarse_difference(s, stored[0]) < 2 for s in stored[1:])


def test_bigtiff_is_an_image_and_a_transparency_key_is_white() -> None:
    body = (CORPUS / "pillow/hopper_bigtiff.tif").read_bytes()
    assert body.startswith(b"II+\x00") and sniff(body) == "tiff"
    assert resize_image("a", body, None, CFG).reason is Reason.OK
    source = Image.open(CORPUS / "pillow/rgb_trns.png")  # 64 x 64: stored at its size
    key = np.asarray(source.convert("RGB")) == np.array(source.info["transparency"])
    keyed = key.all(axis=2)  # the pixels of the key colour (0, 255, 52): transparent
    out = resize_image("a", (CORPUS / "pillow/rgb_trns.png").read_bytes(), None, CFG)
    stored = np.asarray(Image.open(io.BytesIO(out.jpeg)).convert("RGB"), dtype=float)
    assert keyed.sum() > 100 and stored[keyed].mean() > 240  # white, not green
