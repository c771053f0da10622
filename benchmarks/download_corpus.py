"""The data of `download_vs_img2dataset.py`: img2dataset's venv, a photo corpus, a world, CSVs.

Everything lives under `benchmarks/.data/` (git-ignored) and is made once, then reused:

    venv-img2dataset/           img2dataset (pinned) and scikit-image (for its sample photos only)
    sources.npz                 8 real photographs: scikit-image's astronaut, coffee, chelsea,
                                rocket, motorcycle left/right; scikit-learn's china, flower
    corpus-N/                   an offline world (`WorldServer` serves it) of N photo-like JPEGs:
        world.json              seed, base_url (rewritten for the port of each run), layout
        corpus.json             what was made, with the mix of sizes, bytes per pixel, ...
        corpus.csv              one row per image: route path, size, MD5, ...
        served/routes.csv       URL path -> file, as `world serve` reads it
        served/flickr/NNNNN.jpg the images, at Flickr-original-like URLs
    csv/                        the Open Images CSVs for oi-pipe, the url lists for img2dataset

Each image is a crop (60-100 % of a side, at the target's aspect ratio) of one of the 8 photos,
maybe mirrored, rescaled (Lanczos) to a camera size from 640x480 to 4000x3000 (a fixed mix, 30 %
portrait, 3.6 MP on average), given sensor grain (the upscaled photo alone is far too smooth: its
JPEG would have a third of a real photo's bytes and decode faster than one), and encoded at a
quality from 85 to 95 with 4:2:0 chroma, like a camera or Flickr. The result is ~0.35 bytes per
pixel (1.3 MB for the mean 3.6 MP), about what Flickr originals weigh (~1.4 MB at 3.6 MP), and
oi-pipe's `resize_image` takes ~21 ms of CPU per image on it, as the issue measured on photos.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

DATA = Path(__file__).resolve().parent / ".data"
IMG2DATASET_VERSION = "1.47.0"
SKIMAGE_VERSION = "0.26.0"
CORPUS_VERSION = 1  # bump when the generator changes: a cached corpus of another version is remade
# (width, height) of landscape photos and their share of the corpus; 30 % are turned portrait.
# Mean 3.64 MP: phones and compacts (3-12 MP), and the downsized uploads that Flickr also holds.
SIZE_MIX = (
    ((640, 480), 0.10),
    ((1024, 768), 0.14),
    ((1600, 1200), 0.18),
    ((1920, 1080), 0.10),
    ((2048, 1536), 0.20),
    ((3000, 2000), 0.12),
    ((3264, 2448), 0.08),
    ((4000, 3000), 0.08),
)
PORTRAIT_SHARE = 0.30
QUALITY = (85, 95)
GRAIN_SIGMA = (4.0, 10.0)  # luminance grain, in 8-bit levels (ISO 200-1600 look)
GRAIN_TILE = (3200, 4200)  # one noise field, cropped at random offsets: fast and never visible
SUBSET = "train"


def run_checked(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, timeout=timeout, **kwargs)


# --- the img2dataset environment -----------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_version(python: Path, package: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    try:
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_img2dataset_venv(venv: Path) -> tuple[Path, str]:
    """A venv with img2dataset==IMG2DATASET_VERSION and scikit-image (constrained not to move
    any of img2dataset's dependencies); made once, reused while the version matches."""
    python = venv_python(venv)
    if installed_version(python, "img2dataset") == IMG2DATASET_VERSION and installed_version(
        python, "scikit-image"
    ):
        return python, IMG2DATASET_VERSION
    print(f"installing img2dataset=={IMG2DATASET_VERSION} into {venv} (once, ~2 min)", flush=True)
    run_checked([sys._base_executable, "-m", "venv", str(venv)], timeout=300)  # type: ignore[attr-defined]
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run_checked([*pip, f"img2dataset=={IMG2DATASET_VERSION}"], timeout=900)
    freeze = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, timeout=120,
        check=True,
    ).stdout  # fmt: skip
    constraints = venv / "img2dataset-constraints.txt"
    constraints.write_text(freeze)
    run_checked([*pip, f"scikit-image=={SKIMAGE_VERSION}", "-c", str(constraints)], timeout=900)
    version = installed_version(python, "img2dataset")
    assert version == IMG2DATASET_VERSION, version
    return python, version


# --- the source photographs ----------------------------------------------------------------------

_DUMP_SKIMAGE = """
import sys, numpy as np, skimage.data as d
left, right, _ = d.stereo_motorcycle()
np.savez(sys.argv[1], astronaut=d.astronaut(), coffee=d.coffee(), chelsea=d.chelsea(),
         rocket=d.rocket(), motorcycle_left=left, motorcycle_right=right)
"""


def ensure_sources(data: Path, python: Path) -> Path:
    """sources.npz: scikit-image's photos (dumped by the img2dataset venv, which has it) and
    scikit-learn's (from this venv)."""
    path = data / "sources.npz"
    if path.is_file():
        return path
    from sklearn.datasets import load_sample_images

    tmp = data / "skimage-sources.npz"
    run_checked([str(python), "-c", _DUMP_SKIMAGE, str(tmp)], timeout=300)
    photos = dict(np.load(tmp))
    sample = load_sample_images()
    for name, image in zip(sample.filenames, sample.images, strict=True):
        photos[Path(name).stem] = image
    partial = data / "sources.partial.npz"
    np.savez(partial, **photos)
    partial.replace(path)
    tmp.unlink()
    return path


# --- the corpus ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    world: Path
    rows: pl.DataFrame  # index, image_id, path, file, width, height, bytes, md5_b64, ...

    @property
    def files(self) -> list[Path]:
        served = self.world / "served"
        return [served / f for f in self.rows["file"]]

    def stats(self) -> dict:
        return json.loads((self.world / "corpus.json").read_text())


def _plan(n: int, seed: int) -> list[dict]:
    """Every image's recipe: a fixed size mix (exact quotas, shuffled), then random choices."""
    rng = random.Random(seed)
    sizes: list[tuple[int, int]] = []
    for size, share in SIZE_MIX:
        sizes += [size] * round(share * n)
    while len(sizes) < n:
        sizes.append(SIZE_MIX[len(sizes) % len(SIZE_MIX)][0])
    sizes = sizes[:n]
    rng.shuffle(sizes)
    plans = []
    for i, (w, h) in enumerate(sizes):
        if rng.random() < PORTRAIT_SHARE:
            w, h = h, w
        photo_id = 1_000_000_000 + rng.randrange(9_000_000_000)
        plans.append(
            {
                "index": i,
                "width": w,
                "height": h,
                "seed": rng.randrange(2**32),
                "quality": rng.randint(*QUALITY),
                "sigma": rng.uniform(*GRAIN_SIGMA),
                "path": f"/farm{rng.randint(1, 9)}.staticflickr.com/{rng.randint(1000, 9999)}/"
                f"{photo_id}_{rng.getrandbits(40):010x}_o.jpg",
                "file": f"flickr/{i:05d}.jpg",
            }
        )
    return plans


_WORKER: dict = {}


def _init_worker(sources: str) -> None:
    _WORKER["photos"] = dict(np.load(sources))
    _WORKER["names"] = sorted(_WORKER["photos"])
    rng = np.random.default_rng(12345)
    _WORKER["grain"] = rng.standard_normal(GRAIN_TILE, dtype=np.float32)


def make_photo(plan: dict) -> bytes:
    """One photo-like JPEG: crop, mirror, rescale, grain, encode (see the module docstring)."""
    rng = random.Random(plan["seed"])
    name = rng.choice(_WORKER["names"])
    src = Image.fromarray(_WORKER["photos"][name])
    w, h = plan["width"], plan["height"]
    # the largest crop of the target's aspect ratio, then 60-100 % of it, anywhere
    sw, sh = src.size
    cw, ch = (sw, round(sw * h / w)) if sw * h / w <= sh else (round(sh * w / h), sh)
    scale = rng.uniform(0.6, 1.0)
    cw, ch = max(8, round(cw * scale)), max(8, round(ch * scale))
    x0, y0 = rng.randint(0, sw - cw), rng.randint(0, sh - ch)
    img = src.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = img.resize((w, h), Image.Resampling.LANCZOS)
    tile = _WORKER["grain"]
    if h > tile.shape[0] or w > tile.shape[1]:  # a portrait 3000x4000: the tile turned
        tile = tile.T
    oy, ox = rng.randint(0, tile.shape[0] - h), rng.randint(0, tile.shape[1] - w)
    grain = tile[oy : oy + h, ox : ox + w]
    pixels = np.asarray(img, dtype=np.float32)
    pixels += (grain * plan["sigma"])[..., None]
    np.clip(pixels, 0, 255, out=pixels)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "JPEG", quality=plan["quality"])
    return out.getvalue()


def _make_one(args: tuple[dict, str]) -> dict:
    plan, served = args
    body = make_photo(plan)
    target = Path(served) / plan["file"]
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(target)
    md5 = hashlib.md5(body).digest()
    return {**plan, "bytes": len(body), "md5_b64": base64.b64encode(md5).decode()}


def ensure_corpus(data: Path, n: int, sources: Path, seed: int = 0, processes: int = 2) -> Corpus:
    """corpus-N: made once (a few minutes for 2,000 images on 2 cores), then reused."""
    world = data / f"corpus-{n}"
    meta_path = world / "corpus.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == CORPUS_VERSION and meta.get("seed") == seed:
            return Corpus(world, pl.read_csv(world / "corpus.csv"))
    print(f"making a corpus of {n} photo-like JPEGs in {world} (once)", flush=True)
    served = world / "served"
    (served / "flickr").mkdir(parents=True, exist_ok=True)
    plans = _plan(n, seed)
    start = time.perf_counter()
    made: list[dict] = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes, initializer=_init_worker, initargs=(str(sources),)) as pool:
        for row in pool.imap_unordered(_make_one, [(p, str(served)) for p in plans], 8):
            made.append(row)
            if len(made) % 250 == 0:
                print(f"  {len(made)}/{n} ({time.perf_counter() - start:.0f} s)", flush=True)
    rows = pl.DataFrame(sorted(made, key=lambda r: r["index"]))
    rows = rows.with_columns(
        image_id=pl.Series([_image_id(i) for i in range(n)]),
    )
    rows.write_csv(world / "corpus.csv")
    with (served / "routes.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "image_id", "kind", "file", "content_type"])
        for r in rows.iter_rows(named=True):
            writer.writerow([r["path"], r["image_id"], "original", r["file"], "image/jpeg"])
    pixels = rows["width"] * rows["height"]
    meta = {
        "version": CORPUS_VERSION,
        "seed": seed,
        "images": n,
        "mean_megapixels": round(float(pixels.mean()) / 1e6, 3),
        "mean_bytes": round(float(rows["bytes"].mean())),
        "bytes_per_pixel": round(float(rows["bytes"].sum() / pixels.sum()), 3),
        "total_mb": round(float(rows["bytes"].sum()) / 1e6, 1),
        "sizes": {f"{w}x{h}": share for (w, h), share in SIZE_MIX},
        "portrait_share": PORTRAIT_SHARE,
        "quality": list(QUALITY),
        "grain_sigma": list(GRAIN_SIGMA),
        "sources": sorted(np.load(sources).files),
        "seconds_to_make": round(time.perf_counter() - start),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return Corpus(world, rows)


def _image_id(i: int) -> str:
    """Distinct, uniformly spread 16-hex-digit ImageIDs: i times an odd constant, mod 2^64."""
    return f"{(i * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) % 2**64:016x}"


def write_world_json(world: Path, base_url: str) -> None:
    (world / "world.json").write_text(
        json.dumps({"seed": 0, "base_url": base_url, "layout": "v1"}) + "\n"
    )


# --- the CSVs ------------------------------------------------------------------------------------

IMAGES_COLUMNS = (
    "ImageID", "Subset", "OriginalURL", "OriginalSize", "OriginalMD5", "Thumbnail300KURL",
)  # fmt: skip


def _images_frame(corpus: Corpus, base_url: str, start: int, stop: int) -> pl.DataFrame:
    """Rows start..stop of an images CSV that cycles through the corpus; ImageIDs all distinct
    (the first len(corpus) rows are the corpus's own ImageIDs)."""
    n = corpus.rows.height
    index = np.arange(start, stop, dtype=np.int64)
    rows = corpus.rows[index % n]
    return pl.DataFrame(
        {
            "ImageID": [_image_id(i) for i in range(start, stop)],
            "Subset": [SUBSET] * (stop - start),
            "OriginalURL": (base_url + rows["path"]),
            "OriginalSize": rows["bytes"],
            "OriginalMD5": rows["md5_b64"],
            # a Flickr "_z" thumbnail URL, as in the real CSVs; the benchmark never asks for it
            "Thumbnail300KURL": (base_url + rows["path"].str.replace("_o.jpg", "_z.jpg")),
        }
    )


def write_images_csv(corpus: Corpus, base_url: str, rows: int, path: Path) -> Path:
    """An Open Images images CSV of `rows` rows (chunked: a 9M-row file in bounded memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    chunk = 1_000_000
    with tmp.open("wb") as f:
        for start in range(0, rows, chunk):
            frame = _images_frame(corpus, base_url, start, min(rows, start + chunk))
            frame.write_csv(f, include_header=start == 0)
    tmp.replace(path)
    return path


def ensure_big_csv(corpus: Corpus, base_url: str, rows: int, csv_dir: Path) -> Path:
    """The long images CSV for the peak-RSS check: made once per (corpus, rows, base URL)."""
    port = base_url.rsplit(":", 1)[-1]
    path = csv_dir / f"images-{corpus.rows.height}-x{rows}-p{port}.csv"
    if not path.is_file():
        print(f"writing a {rows:,}-row images CSV to {path} (once)", flush=True)
        start = time.perf_counter()
        write_images_csv(corpus, base_url, rows, path)
        size = path.stat().st_size / 1e9
        print(f"  {size:.2f} GB in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def write_url_list(corpus: Corpus, base_url: str, rows: int, path: Path) -> Path:
    """img2dataset's input: a CSV with a `url` column (and the MD5 as hex, for reference)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = corpus.rows.head(rows).select(
        url=base_url + pl.col("path"),
        md5=pl.col("md5_b64").map_elements(
            lambda b: base64.b64decode(b).hex(), return_dtype=pl.String
        ),
    )
    frame.write_csv(path)
    return path


def read_all(files: list[Path]) -> None:
    """Read every corpus file once so that no run pays for the disk (the page cache holds them)."""
    for f in files:
        with f.open("rb") as fh:
            while fh.read(1 << 20):
                pass


def disk_free_gb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e9
