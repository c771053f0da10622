"""Which image of the offline world fails, and how: seeded fault injection, pure and without I/O.

This module owns the closed set of faults the world server can inject (`Fault`), their mix
(`FaultSpec`, parsed from text by `parse_fault_spec`) and each image's fate (`fate`), a pure
function of (seed, ImageID). `server` applies the fates and writes them out as truth.

A fate applies to the image's Flickr URLs: OriginalURL and Thumbnail300KURL share it, since a
deleted Flickr photo is gone in every size. The S3-style mirror ignores fates: it serves what it
holds (routes of kind `mirror`) and answers 404 for any other `/open-images-dataset/...` path.

Permanent faults fire on every request. Transient faults fire on the first `transient_failures`
requests to each URL (counted per URL, so the original and the thumbnail each fail that often),
then the URL serves normally, so a downloader that retries recovers.

| fault           | kind  | what the server does                        | downloader records       |
| --------------- | ----- | ------------------------------------------- | ------------------------ |
| none            |       | 200, the file, its Content-Type and -Length | ok                       |
| 404             | perm. | 404 Not Found                               | dead: not found          |
| 410             | perm. | 410 Gone (as old farmN.static.flickr.com)   | dead: gone               |
| placeholder     | perm. | 302 to PLACEHOLDER_PATH (200 image/png)     | dead: placeholder (final |
|                 |       |                                             | URL or placeholder MD5)  |
| 403             | perm. | 403 Forbidden                               | dead: forbidden          |
| 429             | trans | 429 with `Retry-After: retry_after`         | wait Retry-After, retry  |
| 500             | trans | 500 Internal Server Error                   | retry with backoff       |
| 503             | trans | 503 Service Unavailable                     | retry with backoff       |
| slow_first_byte | trans | waits `slow_seconds`, then serves normally  | timeout if short, retry  |
| stall_midway    | trans | 200, full Content-Length, sends half,       | read timeout if shorter  |
|                 |       | waits `stall_seconds`, sends the rest       | than the stall, retry    |
| truncated       | trans | 200, full Content-Length, half sent, closes | payload error, retry     |
| reset           | trans | RST on the connection before any response   | connection error, retry  |
| html            | perm. | 200 text/html, an HTML page                 | not an image             |
| changed         | perm. | 200, a re-encode of the picture: decodable, | checksum mismatch (keep  |
|                 |       | same Content-Type, MD5 and size differ      | or drop by policy)       |
| redirect_loop   | perm. | 302 A -> A?loop=1 -> A ... forever          | too many redirects       |
| huge            | perm. | 200 image/jpeg, chunked, no Content-Length, | too large: stop at the   |
|                 |       | JPEG-looking bytes up to `huge_bytes`       | size cap                 |

Permanent faults are not worth a retry; "retry" above means: retry, and after
`transient_failures` failures record ok.

A stalled body is finished after the stall, so a patient client receives the right bytes; only a
client whose read timeout is shorter than `stall_seconds` fails, and then recovers on a retry.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field


class Fault(enum.StrEnum):
    """What the server does to one image's Flickr URLs; values are the names used in fault specs.

    The member order is the order `fate` accumulates probabilities in: do not reorder.
    """

    NONE = "none"
    HTTP_404 = "404"
    HTTP_410 = "410"
    PLACEHOLDER = "placeholder"
    HTTP_403 = "403"
    HTTP_429 = "429"
    HTTP_500 = "500"
    HTTP_503 = "503"
    SLOW_FIRST_BYTE = "slow_first_byte"
    STALL = "stall_midway"
    TRUNCATED = "truncated"
    RESET = "reset"
    HTML = "html"
    CHANGED = "changed"
    REDIRECT_LOOP = "redirect_loop"
    HUGE = "huge"


TRANSIENT_FAULTS = frozenset(
    {
        Fault.HTTP_429,
        Fault.HTTP_500,
        Fault.HTTP_503,
        Fault.SLOW_FIRST_BYTE,
        Fault.STALL,
        Fault.TRUNCATED,
        Fault.RESET,
    }
)
INJECTABLE = tuple(f for f in Fault if f is not Fault.NONE)
MIB = 1024 * 1024

# Flickr in 2021: about 8% of Open Images' originals are dead, mostly 404, the rest 410 (old farm
# hosts), the "photo unavailable" placeholder, 403 and oddities; a few % fail transiently.
FLICKR_PRESET: Mapping[Fault, float] = {
    Fault.HTTP_404: 0.050,
    Fault.HTTP_410: 0.010,
    Fault.PLACEHOLDER: 0.010,
    Fault.HTTP_403: 0.005,
    Fault.HTML: 0.002,
    Fault.CHANGED: 0.003,
    Fault.REDIRECT_LOOP: 0.0005,
    Fault.HUGE: 0.0005,
    Fault.HTTP_429: 0.010,
    Fault.HTTP_503: 0.010,
    Fault.HTTP_500: 0.005,
    Fault.RESET: 0.005,
    Fault.TRUNCATED: 0.003,
    Fault.STALL: 0.002,
    Fault.SLOW_FIRST_BYTE: 0.005,
}
# Every fault in an equal share, with one share left healthy, so a small test world meets them all.
ALL_PRESET: Mapping[Fault, float] = {f: 1 / (len(INJECTABLE) + 1) for f in INJECTABLE}
PRESETS: Mapping[str, Mapping[Fault, float]] = {
    "none": {},
    "flickr": FLICKR_PRESET,
    "all": ALL_PRESET,
}
PARAMETERS = ("transient", "slow", "stall", "retry_after", "huge_mb")


@dataclass(frozen=True)
class FaultSpec:
    """The fault mix: a probability per fault (the rest is NONE) and how faults behave."""

    probabilities: Mapping[Fault, float] = field(default_factory=dict)
    transient_failures: int = 2
    slow_seconds: float = 3.0
    stall_seconds: float = 3.0
    retry_after: int = 1
    huge_bytes: int = 512 * MIB

    def __post_init__(self) -> None:
        if Fault.NONE in self.probabilities:
            raise ValueError("NONE takes no probability: it is what the other faults leave")
        for fault, p in self.probabilities.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"probability of {fault.value} must be in [0, 1], got {p}")
        # A little slack: presets of thirds and sixteenths add up to 1 only up to rounding.
        if self.total > 1.0 + 1e-9:
            raise ValueError(f"fault probabilities sum to {self.total:.4f}, more than 1")
        if self.transient_failures < 0 or self.retry_after < 0 or self.huge_bytes < 0:
            raise ValueError("transient, retry_after and huge_mb must not be negative")
        if self.slow_seconds < 0 or self.stall_seconds < 0:
            raise ValueError("slow and stall must not be negative")

    @property
    def total(self) -> float:
        """The probability that an image has any fault at all."""
        return sum(self.probabilities.values())

    def probability(self, fault: Fault) -> float:
        if fault is Fault.NONE:
            return 1.0 - self.total
        return self.probabilities.get(fault, 0.0)


def is_transient(fault: Fault) -> bool:
    """True for faults that stop after `transient_failures` requests to a URL."""
    return fault in TRANSIENT_FAULTS


def _valid_names() -> str:
    faults = ", ".join(f.value for f in INJECTABLE)
    return (
        f"presets: {', '.join(PRESETS)}; faults (NAME=probability): {faults}; "
        f"parameters: {', '.join(p + '=' for p in PARAMETERS)}"
    )


def _number(token: str, value: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(
            f"fault spec token {token!r}: {value!r} is not a {kind.__name__}"
        ) from None


def parse_fault_spec(text: str) -> FaultSpec:
    """Parse `none`, a preset, `NAME=p` pairs and parameters, comma-separated, left to right.

    Example: `flickr,404=0.1,transient=3,slow=0.5,stall=0.5,retry_after=1,huge_mb=64`.
    """
    probabilities: dict[Fault, float] = {}
    params: dict[str, float] = {}
    faults_by_name = {f.value: f for f in INJECTABLE}
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        if token in PRESETS:
            probabilities.update(PRESETS[token])
            continue
        name, sep, value = (part.strip() for part in token.partition("="))
        if sep and name in faults_by_name:
            probabilities[faults_by_name[name]] = _number(token, value, float)
        elif sep and name in PARAMETERS:
            params[name] = _number(token, value, float if name in ("slow", "stall") else int)
        else:
            raise ValueError(f"unknown fault spec token {token!r}; valid: {_valid_names()}")
    return FaultSpec(
        probabilities={f: p for f, p in probabilities.items() if p != 0},
        transient_failures=int(params.get("transient", 2)),
        slow_seconds=params.get("slow", 3.0),
        stall_seconds=params.get("stall", 3.0),
        retry_after=int(params.get("retry_after", 1)),
        huge_bytes=int(params.get("huge_mb", 512)) * MIB,
    )


def fate(seed: int, image_id: str, spec: FaultSpec) -> Fault:
    """The fault of one image: its hash, mapped to [0, 1), picked by cumulative probability.

    Faults are accumulated in `Fault` member order; whatever is left over is NONE. blake2b, not
    Python's `hash`, so the fate is the same in every process and on every machine.
    """
    digest = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    cumulative = 0.0
    for fault in INJECTABLE:
        cumulative += spec.probabilities.get(fault, 0.0)
        if u < cumulative:
            return fault
    return Fault.NONE


def describe(spec: FaultSpec) -> str:
    """One line for humans: the mix in percent and the timing parameters."""
    mix = ", ".join(
        f"{f.value}={spec.probability(f):.2%}" for f in INJECTABLE if f in spec.probabilities
    )
    return (
        f"faults: {mix or 'none'} (healthy {spec.probability(Fault.NONE):.2%}); "
        f"transient faults fail the first {spec.transient_failures} requests per URL; "
        f"slow={spec.slow_seconds}s stall={spec.stall_seconds}s retry_after={spec.retry_after}s "
        f"huge={spec.huge_bytes // MIB} MiB"
    )
