"""Where a worker's CPU goes per image, stage by stage, on the download benchmark's corpus, and what
the resample stage would cost with the other resamplers at hand (issue 3's floor).

Stages, as `resize_image` and `verify` run them on a 1.2 MB original (keep-ratio 256, q95):
MD5 of the body; open (header, EXIF); the drafted decode (libjpeg-turbo at 1/2^k); the resample
to the target size (bicubic, from the draft's box); the JPEG encode. Then the resample alone with
Pillow's bilinear, and with torch's antialiased uint8 bicubic (one thread), on the same decoded
images; the fidelity of torch's output to Pillow's (PSNR); and what `import torch` costs a fresh
process (CPU seconds and peak RSS), since a worker would have to pay it.

CPU time of this process (time.process_time), the best of --passes passes per stage.

    .venv/bin/python benchmarks/resize_stages.py
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import subprocess
import sys
import time
from pathlib import Path

import download_corpus as dc
import numpy as np
from PIL import Image
from resize_quality import psnr

from openimages_pipe.download import resize
from openimages_pipe.download.resize import ResizeConfig

CFG = ResizeConfig(image_size=256, quality=95)
IMPORT_TORCH = (
    "import resource, time; t = time.process_time(); import torch, torch.nn.functional; "
    "print(time.process_time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def drafted(body: bytes) -> tuple[Image.Image, tuple[int, int], tuple | None]:
    img = Image.open(io.BytesIO(body))
    target = resize.target_size(img.size, CFG)
    box = resize._draft(img, target)
    img.load()
    return img, target, box


def cpu_ms(fn, items) -> float:
    """CPU ms per item of `fn` over `items`."""
    start = time.process_time()
    for item in items:
        fn(item)
    return 1000 * (time.process_time() - start) / len(items)


def torch_resampler():
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)

    def resample(args):
        img, target, _box = args  # torch takes no box: the draft's box is its whole image here
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).unsqueeze(0)
        y = F.interpolate(x, size=(target[1], target[0]), mode="bicubic", antialias=True)
        return Image.fromarray(y[0].permute(1, 2, 0).contiguous().numpy())

    return resample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=20, help="every k-th corpus photo")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--data", type=Path, default=dc.DATA)
    args = parser.parse_args()
    python = dc.venv_python(args.data / "venv-img2dataset")
    corpus = dc.ensure_corpus(args.data, 2000, dc.ensure_sources(args.data, python))
    bodies = [f.read_bytes() for f in corpus.files[:: args.stride]]
    # only what the box-free torch path can do exactly: RGB, drafted to a whole-image box or none
    decoded = [drafted(b) for b in bodies]
    exact = [d for d in decoded if d[0].mode == "RGB" and (d[2] is None or d[2][2:] == d[0].size)]

    def pillow(resample):
        return lambda d: d[0].resize(d[1], resample, box=d[2], reducing_gap=resize.REDUCING_GAP)

    stages = {
        "MD5 of the body": (lambda b: hashlib.md5(b).digest(), bodies),
        "open: header + EXIF": (lambda b: resize._exif_orientation(Image.open(io.BytesIO(b))),
                                bodies),
        "decode, drafted (incl. open)": (drafted, bodies),
        "resample: Pillow bicubic (default)": (pillow(resize.RESAMPLE), decoded),
        "resample: Pillow bilinear": (pillow(Image.Resampling.BILINEAR), decoded),
        "encode q95": (lambda img: resize._encode_jpeg(img, CFG.quality),
                       [pillow(resize.RESAMPLE)(d) for d in decoded]),
    }  # fmt: skip
    best = dict.fromkeys(stages, math.inf)
    for _ in range(args.passes):
        for name, (fn, items) in stages.items():
            best[name] = min(best[name], cpu_ms(fn, items))
    cost = subprocess.run([sys.executable, "-c", IMPORT_TORCH], capture_output=True, text=True)
    import_s, import_kb = cost.stdout.split()
    torch_resample = torch_resampler()
    on_exact = {"Pillow bicubic": pillow(resize.RESAMPLE), "torch bicubic": torch_resample}
    exact_ms = dict.fromkeys(on_exact, math.inf)
    for _ in range(args.passes):
        for name, fn in on_exact.items():
            exact_ms[name] = min(exact_ms[name], cpu_ms(fn, exact))
    fidelity = [psnr(pillow(resize.RESAMPLE)(d), torch_resample(d)) for d in exact]

    mb = np.mean([len(b) for b in bodies]) / 1e6
    print(f"{len(bodies)} photos (every {args.stride}th), {mb:.2f} MB on average;"
          f" CPU ms per image, best of {args.passes} passes")  # fmt: skip
    for name, ms in best.items():
        print(f"  {name:38} {ms:6.2f}")
    print(f"resample on the {len(exact)} photos drafted to a whole-image box (or not drafted):")
    for name, ms in exact_ms.items():
        print(f"  {name:38} {ms:6.2f}")
    print(f"  torch vs Pillow bicubic, PSNR dB: mean {np.mean(fidelity):.1f},"
          f" min {min(fidelity):.1f}")  # fmt: skip
    print(f"import torch in a fresh process: {float(import_s):.2f} s CPU, peak RSS "
          f"{int(import_kb) / 1024:.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
