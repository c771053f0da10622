"""Each worker's memory is bounded by what one image may cost to decode and convert, judged from
its header before a pixel is decoded (`ResizeConfig.max_decode_bytes`)."""

from __future__ import annotations

import io
import subprocess
import sys

from PIL import Image, ImageDraw

from openimages_pipe.download.records import Reason, Resized
from openimages_pipe.download.resize import ResizeConfig, decode_cost, resize_image
from tests.fixtures.images import png_claiming
from tests.fixtures.paths import REPO

MIB = 2**20


def palette_with_transparency(side: int) -> bytes:
    img = Image.new("P", (side, side), 0)
    img.putpalette([(i * 7) % 256 for i in range(768)])
    ImageDraw.Draw(img).rectangle((side // 8, side // 8, side // 2, side), fill=5)
    out = io.BytesIO()
    img.save(out, "PNG", transparency=0)
    return out.getvalue()


def test_a_palette_png_with_transparency_costs_ten_bytes_a_pixel_and_more() -> None:
    img = Image.open(io.BytesIO(palette_with_transparency(100)))
    assert decode_cost(img) >= 10 * 100 * 100  # P, RGBA, its alpha, RGB, the white background
    rgb = Image.open(io.BytesIO(png_claiming(100, 100)))
    assert decode_cost(rgb) == 4 * 100 * 100  # decoded straight into RGB, 4 bytes a pixel


def test_the_13000_pixel_palette_png_is_too_large_by_default_before_decoding() -> None:
    # 169M pixels pass max_pixels; decoded and converted they took 1.6 GB in one worker.
    body = png_claiming(13_000, 13_000, palette=True)
    assert len(body) < 2_000
    assert resize_image("a", body, None, ResizeConfig()) == Resized("a", Reason.TOO_LARGE)


def _peak_growth_mib(body_file: str, bound: int) -> tuple[str, float]:
    """Resize in a fresh process; its peak RSS growth over the call, in MiB."""
    code = (
        "import resource, sys\n"
        "from openimages_pipe.download.resize import ResizeConfig, resize_image\n"
        "body = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = resize_image('a', body, None, ResizeConfig(max_decode_bytes=int(sys.argv[2])))\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(out.reason.value, (after - before) / 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, body_file, str(bound)], cwd=REPO,
                          capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    reason, growth = done.stdout.split()
    return reason, float(growth)


def test_too_costly_is_too_large_and_costly_but_allowed_stays_under_the_bound(tmp_path) -> None:
    path = tmp_path / "p.png"
    path.write_bytes(palette_with_transparency(2000))  # 4M pixels: ~53 MiB by the estimate
    assert _peak_growth_mib(str(path), 32 * MIB)[0] == "too_large"
    reason, growth = _peak_growth_mib(str(path), 64 * MIB)
    assert reason == "ok" and growth < 64
