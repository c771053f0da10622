"""The small typed records that pass between the download stages, and their closed vocabularies.

read (CSV rows -> ImageTask) -> fetch (ImageTask -> Fetched) -> resize (Fetched -> Resized)
-> shard writer (Resized -> shard name) -> manifest (Outcome rows). An image that fails is an
Outcome with a Reason, never an exception.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Source(enum.StrEnum):
    """Where an image's bytes can come from, in the default order of preference."""

    ORIGINAL = "original"  # OriginalURL: full size, verifiable by OriginalSize and OriginalMD5
    THUMBNAIL = "thumbnail"  # Thumbnail300KURL: Flickr's ~300 KB re-encode, not verifiable
    MIRROR = "mirror"  # the S3 mirror by ImageID: a <= 1024 px re-encode, not verifiable

    @property
    def reduced(self) -> bool:
        """A smaller re-encode of the photo: where it comes out under the target size, a later
        source may hold a bigger copy. An original is as big as the photo gets."""
        return self is not Source.ORIGINAL


class Status(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"  # permanent: retried only with --retry-missing
    FAILED = "failed"  # transient: retried by every rerun


class Reason(enum.StrEnum):
    """Why an image ended as it did. The vocabulary is fixed: scripts match on it."""

    OK = "ok"
    HTTP_404 = "http_404"  # also any other 4xx that says "not here" (400, 404, 405, ...)
    HTTP_410 = "http_410"
    HTTP_403 = "http_403"  # also 401 and 451: there, but not for us
    PLACEHOLDER = "placeholder"  # Flickr's "photo unavailable" image instead of the photo
    MD5_MISMATCH = "md5_mismatch"
    SIZE_MISMATCH = "size_mismatch"
    NOT_AN_IMAGE = "not_an_image"  # HTML, JSON, empty body, unknown magic bytes
    DECODE_ERROR = "decode_error"  # image magic bytes, but Pillow cannot decode it
    TOO_LARGE = "too_large"  # body over the byte cap, or over the decompression-bomb pixel cap
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"  # refused, reset, truncated body, DNS failure
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"  # 429 (or 503 with Retry-After) after every retry
    BAD_URL = "bad_url"  # empty, not http(s), or resolving to a refused (private) address
    REDIRECT_LOOP = "redirect_loop"  # a redirect cycle or more redirects than allowed

    @property
    def status(self) -> Status:
        if self is Reason.OK:
            return Status.OK
        return Status.FAILED if self in TRANSIENT_REASONS else Status.MISSING


TRANSIENT_REASONS = frozenset(
    {Reason.TIMEOUT, Reason.CONNECTION_ERROR, Reason.HTTP_5XX, Reason.RATE_LIMITED}
)


class Md5Mode(enum.StrEnum):
    STRICT = "strict"  # a mismatched original is rejected; the next source is tried
    LENIENT = "lenient"  # a mismatched original is kept, with verified = False
    OFF = "off"  # no size or MD5 check; nothing is marked verified


class ResizeMode(enum.StrEnum):
    KEEP_RATIO = "keep-ratio"  # shorter side to image_size
    LONGER_SIDE = "longer-side"  # longer side to image_size
    CENTER_CROP = "center-crop"  # shorter side to image_size, then a centred square
    NONE = "none"  # decoded, oriented and re-encoded at full size


class OutputFormat(enum.StrEnum):
    PARQUET = "parquet"
    JPEG = "jpeg"


@dataclass(frozen=True)
class Candidate:
    source: Source
    url: str


@dataclass(frozen=True)
class ImageTask:
    """One image to fetch: its candidate URLs in order and what the CSV promises about it."""

    image_id: str
    subset: str | None
    candidates: tuple[Candidate, ...]
    original_size: int | None = None
    original_md5: str | None = None  # base64 of the binary MD5, as in the CSV
    rotation: float | None = None  # degrees counter-clockwise that make the image upright


@dataclass(frozen=True)
class Fetched:
    """What one fetch of one image ended with: bytes that passed verification, or a reason."""

    image_id: str
    reason: Reason
    source: Source | None = None  # the source that served `body` (or failed last)
    url: str | None = None  # the URL requested for that source
    http_status: int | None = None
    attempts: int = 0  # HTTP requests made for this image in this run, over all sources
    body: bytes | None = None  # None when spooled (see fetch.Fetcher) or rejected
    size: int | None = None  # bytes of the accepted body
    verified: bool = False  # size and MD5 matched the CSV (originals only)
    md5: str | None = None  # base64 MD5 of the accepted body
    undersized: bool = False  # the accepted body's image is stored smaller than the target
    # An undersized reduced copy was set aside for later sources: this is the full-size image
    # one of them gave, or (undersized) that first copy, kept because none did.
    fell_through: bool = False


@dataclass(frozen=True)
class Resized:
    """An image ready for a shard, or the reason it could not be decoded."""

    image_id: str
    reason: Reason
    jpeg: bytes | None = None
    width: int = 0
    height: int = 0
    original_width: int = 0
    original_height: int = 0


@dataclass(frozen=True)
class Finished:
    """One image after fetch and resize, as a fetch loop hands it on to be recorded: the outcome
    without the original body, and the accepted body's resized image (None if none was accepted)."""

    fetched: Fetched
    resized: Resized | None
