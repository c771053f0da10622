"""worker.check_and_resize: the verdict first, and a decode only for a body that passed."""

from __future__ import annotations

import pytest

from openimages_pipe.download import worker
from openimages_pipe.download.records import Md5Mode, Reason, ResizeMode, Source
from openimages_pipe.download.resize import ResizeConfig
from openimages_pipe.download.spool import Spools
from openimages_pipe.download.verify import Check, md5_b64
from tests.fixtures.images import flat

URL = "http://127.0.0.1/photo.jpg"


def jpeg(size=(640, 480)) -> bytes:
    return flat(size, (200, 40, 40), quality=90)


def check(body: bytes, **kw) -> Check:
    fields = {"expected_size": len(body), "expected_md5": md5_b64(body)} | kw
    return Check(Source.ORIGINAL, URL, Md5Mode.STRICT, **fields)


def test_a_verified_body_is_resized() -> None:
    body = jpeg()
    verdict, resized = worker.check_and_resize("a", body, check(body), None, ResizeConfig())
    assert (verdict.reason, verdict.verified, verdict.md5) == (Reason.OK, True, md5_b64(body))
    assert resized is not None and resized.reason is Reason.OK
    assert (resized.width, resized.height) == (341, 256)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"expected_md5": md5_b64(b"other")}, Reason.MD5_MISMATCH),
        ({"expected_size": 1}, Reason.SIZE_MISMATCH),
    ],
)
def test_a_rejected_body_is_never_decoded(monkeypatch, changes, reason) -> None:
    decoded = []
    monkeypatch.setattr(worker, "resize_image", lambda *a: decoded.append(a))
    body = jpeg()
    verdict, resized = worker.check_and_resize(
        "a", body, check(body, **changes), None, ResizeConfig()
    )
    assert (verdict.reason, resized, decoded) == (reason, None, [])


def test_a_known_placeholder_is_never_decoded() -> None:
    body = jpeg((10, 10))
    c = check(body, placeholder_md5s=frozenset({md5_b64(body)}))
    verdict, resized = worker.check_and_resize("a", body, c, None, ResizeConfig())
    assert (verdict.reason, resized) == (Reason.PLACEHOLDER, None)


def test_a_body_that_passes_but_does_not_decode_is_rejected_as_a_decode_error() -> None:
    body = jpeg()[:300]  # JPEG magic, truncated long before the pixels
    verdict, resized = worker.check_and_resize("a", body, check(body), None, ResizeConfig())
    # rejected like a placeholder, so that fetch goes on to the thumbnail and the mirror
    assert (verdict.reason, verdict.verified) == (Reason.DECODE_ERROR, False)
    assert resized is not None and resized.reason is Reason.DECODE_ERROR


@pytest.mark.skipif(not hasattr(__import__("os"), "memfd_create"), reason="memfd is Linux-only")
def test_a_spooled_body_is_judged_like_its_bytes() -> None:
    body = jpeg()
    spools = Spools()
    spool = spools.acquire()
    spool.write(body[:1000])
    spool.write(body[1000:])
    verdict, resized = worker.check_and_resize("a", spool.ref(), check(body), 90.0, ResizeConfig())
    spool.release()
    spools.close()
    assert (verdict.reason, verdict.md5) == (Reason.OK, md5_b64(body))
    assert resized is not None and (resized.width, resized.height) == (256, 341)  # turned 90


@pytest.mark.parametrize(
    ("size", "rotation", "resize", "undersized"),
    [
        ((400, 120), None, ResizeConfig(), True),  # keep-ratio: the shorter side is under 256
        ((640, 480), None, ResizeConfig(), False),
        ((120, 400), 90.0, ResizeConfig(mode=ResizeMode.CENTER_CROP), True),  # upright 400x120
        ((640, 200), None, ResizeConfig(mode=ResizeMode.LONGER_SIDE), False),  # 640 >= 256
        ((200, 150), None, ResizeConfig(mode=ResizeMode.LONGER_SIDE), True),
        ((40, 30), None, ResizeConfig(mode=ResizeMode.NONE), False),  # none asks for no size
        ((400, 120), None, ResizeConfig(upscale=True), False),  # enlarged to the target
    ],
)
def test_the_verdict_says_when_the_image_is_stored_smaller_than_the_target(
    size, rotation, resize, undersized
) -> None:
    body = jpeg(size)
    thumbnail = Check(Source.THUMBNAIL, URL, Md5Mode.STRICT)
    verdict, resized = worker.check_and_resize("a", body, thumbnail, rotation, resize)
    assert (verdict.reason, verdict.undersized) == (Reason.OK, undersized)
    assert resized is not None and resized.reason is Reason.OK
