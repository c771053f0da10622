"""The resize stage: fetched bytes -> an upright, resized, re-encoded JPEG (a `Resized` record).

`resize_image` is plain synchronous Pillow code, a pure module-level function that the download
command runs in a `ProcessPoolExecutor`, never on the event loop. A bad image is data: the function
returns `Resized(reason=DECODE_ERROR | TOO_LARGE)` and never raises for what is in `body`.

One image, in order:
1. open (header only) with a short list of formats; refuse width * height > `max_pixels`
   (TOO_LARGE) before a single pixel is decoded;
2. JPEG draft mode: libjpeg decodes at 1/2, 1/4 or 1/8 scale, never below the target size; the
   full-size decode is where most of the time goes (3.6 MP: ~3x less CPU drafted);
3. refuse what would cost more memory than `max_decode_bytes` to decode and convert (from the
   header, `colour.decode_cost`), load, then convert to RGB (`colour.to_rgb`: alpha and
   transparency keys composited on white, 16-bit scaled down, CMYK/palette/1-bit expanded);
4. resize in the stored frame (bicubic, with `reducing_gap`), then transpose the small result:
   the EXIF orientation first, then the CSV's `Rotation`;
5. centre-crop (for `center-crop`) and encode as a baseline JPEG with no EXIF/ICC metadata.

`original_width` and `original_height` are the full-size dimensions of the *upright* image, that
is after the EXIF orientation and the Rotation, so they have the same orientation as `width` and
`height` (a portrait photo is portrait in both).
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from dataclasses import dataclass

from PIL import Image

from openimages_pipe.download.colour import decode_cost, to_rgb
from openimages_pipe.download.records import Reason, Resized, ResizeMode

# Formats we let Pillow parse. Flickr and the mirrors serve JPEG (the JPEG plugin also opens MPO,
# the multi-picture JPEG of many cameras), rarely PNG, GIF, WebP, BMP or TIFF. Everything else
# (EPS, which would run Ghostscript; PSD; ICO; ...) is refused as undecodable rather than handed to
# a rarely exercised parser.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
# Draft mode decodes at the smallest 1/2^k scale (k <= 3) still >= DRAFT_GAP x the target size.
# With 1, libjpeg's scaled IDCT (an area average, like img2dataset's cv2.INTER_AREA) does most of
# the reduction and the resampling filter the last 1-2x. On photo-like JPEGs
# (benchmarks/resize_speed.py) that is 41-45 dB PSNR from a full decode + Lanczos and 25-35 % less
# CPU than a gap of 2 (Pillow's `thumbnail` default; 48 dB). A 1024x768 image (the S3 mirror's
# size) is drafted at 1/2 to 256, where a gap of 2 decodes it whole.
DRAFT_GAP = 1.0
# resize() first shrinks by an integer factor with a box filter while the rest stays >= this gap:
# 3.0 is, per Pillow's docs, almost indistinguishable from the plain filter, and much faster for
# non-JPEG inputs where draft mode does not apply.
REDUCING_GAP = 3.0
# Bicubic (Pillow's is antialiased, like torchvision's) rather than Lanczos for the last 1-2x:
# 1.2 ms less per 3.6 MP photo (3.3 against 4.5), and the stored JPEG is as faithful as
# img2dataset's: 36.2 dB PSNR from a full decode + Lanczos, against 37.0 for Lanczos and 36.2 for
# img2dataset's full decode + INTER_AREA (100 photos of the download benchmark's corpus, q95).
RESAMPLE = Image.Resampling.BICUBIC

EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transposition that makes the stored pixels upright, as in
# ImageOps.exif_transpose (which needs the file's EXIF, so cannot run on the resized copy).
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
AXIS_SWAPPING = frozenset({5, 6, 7, 8})
# Counter-clockwise quarter turns, as the CSV's Rotation counts them; Pillow's ROTATE_n is CCW too.
QUARTER_TURNS = {
    1: Image.Transpose.ROTATE_90,
    2: Image.Transpose.ROTATE_180,
    3: Image.Transpose.ROTATE_270,
}

# What Pillow raises on bytes it cannot decode: UnidentifiedImageError and "image file is
# truncated" (OSErrors), ValueError and SyntaxError from the plugins, EOFError from frame seeks,
# the four that Image.open itself reads as "malformed file" (SyntaxError, IndexError, TypeError,
# struct.error), and AssertionError: Pillow narrows types with asserts that some malformed files
# trip (a palette PNG without a palette). Found by fuzzing JPEG, PNG, GIF, TIFF, WebP and BMP
# bodies (50k mutations, nothing else escaped); tests/test_resize.py keeps a small fuzz.
DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    AssertionError,
)


@dataclass(frozen=True)
class ResizeConfig:
    """How every image of a download is resized; picklable, so it travels to the workers."""

    mode: ResizeMode = ResizeMode.KEEP_RATIO
    image_size: int = 256  # the side that `mode` sets, in pixels
    quality: int = 95  # JPEG quality of the output
    # Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS, above which Image.open raises
    # DecompressionBombError), so our refusal and Pillow's agree. A lower cap is honoured exactly;
    # a higher one cannot lift Pillow's, which we do not change (a process-wide global).
    max_pixels: int = 178_956_970
    # The most memory one image may take to decode and convert to RGB in a worker, estimated from
    # the header before a pixel is decoded (`decode_cost`): the largest RGB image max_pixels allows
    # (Pillow holds RGB in 4 bytes a pixel: 683 MiB). A palette image with transparency passes
    # through RGBA and an alpha mask, 10 bytes a pixel: 13000 x 13000 of it would take 1.6 GiB.
    max_decode_bytes: int = 4 * 178_956_970
    # Never enlarge: an image smaller than the target is kept at its size (centre-crop still
    # squares it). Enlarging adds bytes and no information; a training pipeline resizes anyway.
    upscale: bool = False

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be within 1..100, got {self.quality}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if self.max_decode_bytes < 1:
            raise ValueError(f"max_decode_bytes must be >= 1, got {self.max_decode_bytes}")


def resize_image(image_id: str, body: bytes, rotation: float | None, cfg: ResizeConfig) -> Resized:
    """Decode `body`, make it upright, resize it as `cfg` says and encode it as JPEG.

    `rotation` is the CSV's Rotation: degrees counter-clockwise that make the image upright, applied
    only when the image carries no EXIF orientation (which says the same, so never both). None,
    NaN and 0 mean none; other values are rounded to the nearest multiple of 90 (Open Images only
    has 0, 90, 180 and 270). Pass None for a source whose pixels the Rotation does not describe.
    """
    try:
        with warnings.catch_warnings():
            # One image's warnings (corrupt EXIF, the bomb *warning*: our own cap decides) are noise
            # in a run of millions; what happened to it is the Reason we return.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(body), formats=ALLOWED_FORMATS) as img:
                return _resize_open_image(image_id, img, rotation, cfg)
    except (Image.DecompressionBombError, MemoryError):
        return Resized(image_id, Reason.TOO_LARGE)
    except DECODE_ERRORS:
        return Resized(image_id, Reason.DECODE_ERROR)


def _resize_open_image(
    image_id: str, img: Image.Image, rotation: float | None, cfg: ResizeConfig
) -> Resized:
    stored_w, stored_h = img.size
    if stored_w * stored_h > cfg.max_pixels:  # checked on the header: nothing decoded yet
        return Resized(image_id, Reason.TOO_LARGE)
    if stored_w < 1 or stored_h < 1:
        return Resized(image_id, Reason.DECODE_ERROR)

    # A JPEG's EXIF precedes its pixels, and its orientation sets the draft size; other formats
    # may carry theirs after the pixels (PNG's eXIf, XMP), where reading it decodes the image.
    jpeg = img.format in ("JPEG", "MPO")
    orientation = _exif_orientation(img) if jpeg else 1
    geometry = _geometry(img.size, orientation, rotation, cfg)
    box = _draft(img, geometry.stored_target)
    if decode_cost(img) > cfg.max_decode_bytes:  # the header (and draft) say what decoding takes
        return Resized(image_id, Reason.TOO_LARGE)
    img.load()  # a truncated or corrupt body raises here: a DECODE_ERROR
    loaded = _exif_orientation(img)
    if loaded != orientation:
        # Read only now (PNG, WebP), or already applied by the plugin while loading (Pillow's TIFF
        # plugin transposes and drops the tag): what is left to apply is what the tag says now.
        orientation, geometry = loaded, _geometry(img.size, loaded, rotation, cfg)
    turns, upright, stored_target = geometry.turns, geometry.upright, geometry.stored_target
    rgb = to_rgb(img)
    if rgb.size != stored_target or box is not None:
        rgb = rgb.resize(stored_target, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)
    if orientation in EXIF_TRANSPOSE:
        rgb = rgb.transpose(EXIF_TRANSPOSE[orientation])
    if turns:
        rgb = rgb.transpose(QUARTER_TURNS[turns])
    if cfg.mode is ResizeMode.CENTER_CROP:
        rgb = _center_square(rgb)

    return Resized(
        image_id,
        Reason.OK,
        jpeg=_encode_jpeg(rgb, cfg.quality),
        width=rgb.width,
        height=rgb.height,
        original_width=upright[0],
        original_height=upright[1],
    )


@dataclass(frozen=True)
class _Geometry:
    turns: int  # the CSV Rotation's quarter turns still to apply (0 under an EXIF orientation)
    upright: tuple[int, int]  # full-size (width, height) once upright
    stored_target: tuple[int, int]  # the size to resize to, in the stored frame


def _geometry(
    stored: tuple[int, int], orientation: int, rotation: float | None, cfg: ResizeConfig
) -> _Geometry:
    # Open Images' Rotation describes the same correction as an EXIF orientation (it was derived
    # for images shown without theirs): applying both would turn an upright image over.
    turns = 0 if orientation in EXIF_TRANSPOSE else quarter_turns(rotation)
    swap = (orientation in AXIS_SWAPPING) != (turns % 2 == 1)
    upright = (stored[1], stored[0]) if swap else stored
    target = target_size(upright, cfg)
    return _Geometry(turns, upright, (target[1], target[0]) if swap else target)


def quarter_turns(rotation: float | None) -> int:
    """The CSV's Rotation as counter-clockwise quarter turns in 0..3 (nearest, ties to even)."""
    if rotation is None or not math.isfinite(rotation):
        return 0
    return round(rotation / 90) % 4


def target_size(size: tuple[int, int], cfg: ResizeConfig) -> tuple[int, int]:
    """The (width, height) to resize `size` to, before any centre crop."""
    w, h = size
    if cfg.mode is ResizeMode.NONE:
        return size
    scale = cfg.image_size / _fixed_side(size, cfg.mode)
    if scale >= 1 and not cfg.upscale:
        return size
    return max(1, round(w * scale)), max(1, round(h * scale))


def undersized(size: tuple[int, int], cfg: ResizeConfig) -> bool:
    """True when an upright image of `size` is stored smaller than `cfg` asks, in the side that
    its mode fixes: never enlarged, so a bigger copy elsewhere would give a bigger result."""
    if cfg.mode is ResizeMode.NONE or cfg.upscale:
        return False
    return _fixed_side(size, cfg.mode) < cfg.image_size


def _fixed_side(size: tuple[int, int], mode: ResizeMode) -> int:
    """The side that `image_size` sets: the longer for longer-side, else the shorter."""
    return max(size) if mode is ResizeMode.LONGER_SIDE else min(size)


def _exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8), or 1 when absent or unreadable: bad EXIF is not a bad image."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) and value in EXIF_TRANSPOSE else 1


def _draft(
    img: Image.Image, stored_target: tuple[int, int]
) -> tuple[float, float, float, float] | None:
    """Ask a JPEG to decode at a reduced scale; the box to resize from, or None (full decode).

    Pillow's draft picks the largest power-of-2 reduction (<= 8) whose result is still >= the
    requested size in both dimensions, so it never goes below `stored_target`.
    """
    if stored_target == img.size:
        return None
    (target_w, target_h), (full_w, full_h) = stored_target, img.size
    request = (
        min(full_w, math.ceil(target_w * DRAFT_GAP)),
        min(full_h, math.ceil(target_h * DRAFT_GAP)),
    )
    drafted = img.draft("RGB", request)
    if drafted is None:  # not a JPEG
        return None
    box = drafted[1]  # (0, 0, W / scale, H / scale): the exact source area of the decoded pixels
    return None if box[2:] == img.size else box  # scale 1: a plain full decode


def _center_square(img: Image.Image) -> Image.Image:
    side = min(img.size)
    left = (img.width - side) // 2
    top = (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    """Baseline JPEG, Pillow's default 4:2:0 subsampling; no EXIF (no GPS, no stale orientation)."""
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
