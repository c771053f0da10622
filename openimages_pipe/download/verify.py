"""Is this body the photo? Pure checks on fetched bytes, no I/O past loading one data file.

This module owns what the fetch stage asks of every body it receives: its format from magic bytes
(`sniff`), whether it is a known placeholder, and, for originals, whether it matches the images
CSV's `OriginalSize` and `OriginalMD5` under an `Md5Mode`. It hands back a `Verdict`; fetch turns
a rejected verdict into "try the next source". A redirect to a placeholder URL is caught by fetch
before any byte is read (`is_placeholder_url` is the test it uses). Decoding is not checked here:
the resize stage owns Pillow and `decode_error`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from openimages_pipe.download.records import Md5Mode, Reason, Source
from openimages_pipe.packaged import manifests_dir

PLACEHOLDER_MARK = "photo_unavailable"  # Flickr redirects deleted photos to .../photo_unavailable*
JPEG_SUFFIXES = (".jpg", ".jpeg")
# (offset, magic, format). WebP is RIFF....WEBP, so it takes two entries' worth of checking below.
MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (8, b"WEBP", "webp"),
    (0, b"BM", "bmp"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"II+\x00", "tiff"),  # BigTIFF, which Pillow's TIFF plugin reads too
    (0, b"MM\x00+", "tiff"),
)


@dataclass(frozen=True)
class Verdict:
    """What verification says of one body: keep it (`OK`) or why not, and whether it was proven."""

    reason: Reason
    verified: bool = False  # size and MD5 matched the CSV (originals only)
    md5: str | None = None  # base64 MD5 of the body, as the CSV writes OriginalMD5
    # Not verify's: the worker sets it after the resize (`resize.undersized`), for fetch to try
    # a later source instead of storing a reduced copy small.
    undersized: bool = False


def md5_b64(body: bytes) -> str:
    """Base64 of the binary MD5: the encoding of the images CSV's `OriginalMD5`."""
    return base64.b64encode(hashlib.md5(body).digest()).decode("ascii")


def as_md5_b64(written: str) -> str:
    """An `OriginalMD5` as the official files write it (base64 of the 16 bytes), also when a
    third-party list wrote the same digest as 32 hex digits."""
    text = written.strip()
    if len(text) == 32 and all(c in "0123456789abcdefABCDEF" for c in text):
        return base64.b64encode(bytes.fromhex(text)).decode("ascii")
    return text


def sniff(body: bytes) -> str | None:
    """The image format its first bytes announce (jpeg, png, gif, webp, bmp, tiff), or None."""
    for offset, magic, fmt in MAGIC:
        if body[offset : offset + len(magic)] == magic:
            if fmt == "webp" and not body.startswith(b"RIFF"):
                continue
            return fmt
    return None


def is_placeholder_url(url: str) -> bool:
    """True for a URL whose path is Flickr's "photo unavailable" image."""
    try:
        path = URL(url).path
    except (TypeError, ValueError):
        return False
    return PLACEHOLDER_MARK in path


def _is_jpeg_url(url: str) -> bool:
    try:
        return URL(url).path.lower().endswith(JPEG_SUFFIXES)
    except (TypeError, ValueError):
        return False


def placeholders_path() -> Path:
    return manifests_dir() / "placeholders.toml"


@functools.cache
def known_placeholder_md5s(path: Path | None = None) -> frozenset[str]:
    """The base64 MD5s in `manifests/placeholders.toml`; each entry says where it comes from."""
    doc = tomllib.loads((path or placeholders_path()).read_text(encoding="utf-8"))
    return frozenset(entry["md5"] for entry in doc.get("placeholder", []))


@dataclass(frozen=True)
class Check:
    """Everything `verify` needs besides the body; picklable, so a worker process can run it next
    to the decode, and the body need not be hashed on the event loop."""

    source: Source
    url: str
    mode: Md5Mode
    expected_size: int | None = None
    expected_md5: str | None = None
    placeholder_md5s: frozenset[str] = frozenset()

    def __call__(self, body: bytes) -> Verdict:
        return verify(
            body, source=self.source, url=self.url, mode=self.mode,
            expected_size=self.expected_size, expected_md5=self.expected_md5,
            placeholder_md5s=self.placeholder_md5s,
        )  # fmt: skip


def verify(
    body: bytes,
    *,
    source: Source,
    url: str,
    mode: Md5Mode,
    expected_size: int | None = None,
    expected_md5: str | None = None,
    placeholder_md5s: frozenset[str] = frozenset(),
) -> Verdict:
    """Judge one body fetched from `url` for `source`.

    Order: a known placeholder hash, then "is it an image at all", then a PNG where a JPEG was
    asked for (Flickr's placeholder is a PNG; no Open Images original behind a .jpg URL is), then,
    for originals only and unless `mode` is OFF, the CSV's MD5 and size. When both differ the
    reason is md5_mismatch: the content changed, and the size is only the cheaper symptom.
    """
    md5 = md5_b64(body)
    if md5 in placeholder_md5s:
        return Verdict(Reason.PLACEHOLDER, md5=md5)
    fmt = sniff(body)
    if fmt is None:
        return Verdict(Reason.NOT_AN_IMAGE, md5=md5)
    if fmt == "png" and _is_jpeg_url(url):
        return Verdict(Reason.PLACEHOLDER, md5=md5)
    if source is not Source.ORIGINAL or mode is Md5Mode.OFF:
        return Verdict(Reason.OK, verified=False, md5=md5)
    md5_ok = expected_md5 is None or md5 == as_md5_b64(expected_md5)
    size_ok = expected_size is None or len(body) == expected_size
    if not md5_ok or not size_ok:
        if mode is Md5Mode.LENIENT:
            return Verdict(Reason.OK, verified=False, md5=md5)
        return Verdict(Reason.MD5_MISMATCH if not md5_ok else Reason.SIZE_MISMATCH, md5=md5)
    # Proven only by an MD5: a matching size alone says little about the bytes.
    return Verdict(Reason.OK, verified=expected_md5 is not None, md5=md5)
