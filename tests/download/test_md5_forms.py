"""`OriginalMD5` in the two forms found in real lists: base64 (official) and 32 hex digits."""

from __future__ import annotations

import hashlib

from openimages_pipe.download.records import Md5Mode, Reason, Source
from openimages_pipe.download.verify import as_md5_b64, md5_b64, verify
from tests.fixtures.images import flat

URL = "https://c1.staticflickr.com/5/4129/5215831864_46f356962f_o.jpg"


def test_a_hex_md5_is_the_same_digest_as_its_base64() -> None:
    body = b"the bytes of a photo"
    hex_md5 = hashlib.md5(body).hexdigest()
    assert as_md5_b64(hex_md5) == as_md5_b64(hex_md5.upper()) == md5_b64(body)
    assert as_md5_b64(md5_b64(body)) == md5_b64(body)
    assert as_md5_b64("I4V4qq54NBEFDwBqPYCkDA==") == "I4V4qq54NBEFDwBqPYCkDA=="  # CVDF's TSV


def test_an_original_checked_against_a_hex_md5_is_verified_or_a_mismatch() -> None:
    body = flat((40, 30))

    def check(md5: str):
        return verify(body, source=Source.ORIGINAL, url=URL, mode=Md5Mode.STRICT, expected_md5=md5,
                       expected_size=len(body))  # fmt: skip

    good = check(hashlib.md5(body).hexdigest())
    assert (good.reason, good.verified) == (Reason.OK, True)
    bad = check(hashlib.md5(b"other").hexdigest())
    assert bad.reason is Reason.MD5_MISMATCH
