"""verify: formats from magic bytes, placeholders, and the CSV's size and MD5 under each mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from openimages_pipe.download.records import Md5Mode, Reason, Source
from openimages_pipe.download.verify import (
    is_placeholder_url,
    known_placeholder_md5s,
    md5_b64,
    placeholders_path,
    sniff,
    verify,
)
from openimages_pipe.world.layout import PLACEHOLDER_PATH
from openimages_pipe.world.render import md5_b64 as world_md5_b64
from openimages_pipe.world.render import placeholder_png
from tests.fixtures.images import flat

JPG_URL = "http://127.0.0.1:8642/farm3.staticflickr.com/2467/3654456151_a8c2b5a1e5_o.jpg"
PNG_URL = "http://127.0.0.1:8642/farm3.staticflickr.com/2467/3654456151_a8c2b5a1e5_o.png"


def encode(fmt: str) -> bytes:
    return flat((12, 8), 90, fmt)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("JPEG", "jpeg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"),
     ("TIFF", "tiff")],
)  # fmt: skip
def test_sniff_knows_every_format_pillow_writes(fmt: str, expected: str) -> None:
    assert sniff(encode(fmt)) == expected


def test_sniff_knows_big_endian_tiff() -> None:
    assert sniff(b"MM\x00*" + bytes(12)) == "tiff"


@pytest.mark.parametrize(
    "body",
    [b"", b"<!DOCTYPE html><html>gone</html>", b'{"stat": "fail"}', b"\xff\xd8", b"RIFF1234WAVE",
     bytes(64)],
)  # fmt: skip
def test_sniff_refuses_non_images(body: bytes) -> None:
    assert sniff(body) is None


def test_md5_is_the_csv_encoding() -> None:
    body = encode("JPEG")
    assert md5_b64(body) == world_md5_b64(body)  # what world make writes as OriginalMD5
    assert md5_b64(b"") == "1B2M2Y8AsgTpgAmY7PhCfg=="  # base64 of MD5(""), d41d8cd9...


def verdict(body: bytes, source: Source = Source.ORIGINAL, url: str = JPG_URL, **kwargs: object):
    kwargs.setdefault("mode", Md5Mode.STRICT)
    return verify(body, source=source, url=url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [b"", b"<html><body>This page is private.</body></html>"])
@pytest.mark.parametrize("source", list(Source))
def test_non_images_are_rejected_from_every_source(body: bytes, source: Source) -> None:
    assert verdict(body, source).reason is Reason.NOT_AN_IMAGE


@pytest.mark.parametrize("source", list(Source))
def test_a_png_behind_a_jpg_url_is_a_placeholder(source: Source) -> None:
    png = encode("PNG")
    assert verdict(png, source, JPG_URL).reason is Reason.PLACEHOLDER
    assert verdict(png, source, PNG_URL).reason is Reason.OK  # a PNG original is a PNG
    assert verdict(png, source, JPG_URL[:-4] + ".JPEG").reason is Reason.PLACEHOLDER


def test_a_known_placeholder_hash_is_a_placeholder_whatever_its_url() -> None:
    # The world's placeholder is drawn by Pillow, so its hash is computed here, never hard-coded.
    placeholder = placeholder_png()
    known = frozenset({md5_b64(placeholder)})
    for source in Source:
        result = verdict(placeholder, source, PNG_URL, placeholder_md5s=known)
        assert result.reason is Reason.PLACEHOLDER
        assert not result.verified
    # Only the list knows: without it, this PNG behind a .png URL is a fine image.
    assert verdict(placeholder, Source.MIRROR, PNG_URL).reason is Reason.OK
    # Even a CSV that promises exactly these bytes does not make a placeholder the photo.
    promised = verdict(
        placeholder, Source.ORIGINAL, PNG_URL, placeholder_md5s=known,
        expected_md5=md5_b64(placeholder), expected_size=len(placeholder),
    )  # fmt: skip
    assert promised.reason is Reason.PLACEHOLDER


def test_placeholder_urls() -> None:
    assert is_placeholder_url("http://127.0.0.1:8642" + PLACEHOLDER_PATH)
    assert is_placeholder_url("https://s.yimg.com/pw/images/en-us/photo_unavailable_l.png")
    assert not is_placeholder_url(JPG_URL)
    assert not is_placeholder_url("https://example.com/a.jpg?next=photo_unavailable")


def test_shipped_placeholder_list_loads_and_entries_are_read(tmp_path: Path) -> None:
    assert placeholders_path().is_file()
    assert all(len(h) == 24 and h.endswith("==") for h in known_placeholder_md5s())
    listed = tmp_path / "placeholders.toml"
    listed.write_text(
        '[[placeholder]]\nmd5 = "abc="\nbytes = 1\nsource = "here"\n'
        '[[placeholder]]\nmd5 = "def="\nbytes = 2\nsource = "there"\n'
    )
    assert known_placeholder_md5s(listed) == {"abc=", "def="}


def original(body: bytes, mode: Md5Mode, *, md5: str | None, size: int | None):
    return verdict(body, Source.ORIGINAL, JPG_URL, mode=mode, expected_md5=md5, expected_size=size)


def test_strict_keeps_only_a_matching_original() -> None:
    body = encode("JPEG")
    good = original(body, Md5Mode.STRICT, md5=md5_b64(body), size=len(body))
    assert (good.reason, good.verified, good.md5) == (Reason.OK, True, md5_b64(body))
    other = md5_b64(b"something else")
    changed = original(body, Md5Mode.STRICT, md5=other, size=len(body) + 7)
    assert changed.reason is Reason.MD5_MISMATCH  # both differ: the content changed
    assert changed.md5 == md5_b64(body)
    assert original(body, Md5Mode.STRICT, md5=other, size=len(body)).reason is (Reason.MD5_MISMATCH)
    assert original(body, Md5Mode.STRICT, md5=None, size=len(body) + 1).reason is (
        Reason.SIZE_MISMATCH
    )
    assert original(body, Md5Mode.STRICT, md5=md5_b64(body), size=len(body) + 1).reason is (
        Reason.SIZE_MISMATCH
    )


def test_lenient_keeps_a_mismatch_unverified_and_off_checks_nothing() -> None:
    body = encode("JPEG")
    other = md5_b64(b"something else")
    lenient = original(body, Md5Mode.LENIENT, md5=other, size=len(body) + 1)
    assert (lenient.reason, lenient.verified) == (Reason.OK, False)
    assert original(body, Md5Mode.LENIENT, md5=md5_b64(body), size=len(body)).verified
    off_match = original(body, Md5Mode.OFF, md5=md5_b64(body), size=len(body))
    assert (off_match.reason, off_match.verified) == (Reason.OK, False)
    off_mismatch = original(body, Md5Mode.OFF, md5=other, size=1)
    assert (off_mismatch.reason, off_mismatch.verified) == (Reason.OK, False)


def test_an_original_without_an_md5_is_kept_unverified() -> None:
    body = encode("JPEG")
    result = original(body, Md5Mode.STRICT, md5=None, size=len(body))
    assert (result.reason, result.verified) == (Reason.OK, False)  # a size alone proves little


@pytest.mark.parametrize("source", [Source.THUMBNAIL, Source.MIRROR])
def test_thumbnails_and_the_mirror_are_never_verified(source: Source) -> None:
    body = encode("JPEG")
    for md5 in (md5_b64(body), md5_b64(b"other")):
        result = verdict(body, source, expected_md5=md5, expected_size=len(body))
        assert (result.reason, result.verified) == (Reason.OK, False)
