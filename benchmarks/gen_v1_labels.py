"""Generate Open Images V1-scale label files for the `build-splits` benchmark.

Writes, in the official V1 layout under OUT (never commit it: ~7 GB at full scale):

    images_2016_08/{train,validation}/images.csv       all 11 V1 columns, Flickr-shaped values
    machine_ann_2016_08/{train,validation}/labels.csv  ImageID,Source,LabelName,Confidence
    human_ann_2016_08/validation/labels.csv            a verification of every validation label
    dict.csv                                           the real V1 class dictionary
    download/manifest.parquet                          a download manifest with link rot

Full scale is V1's: 9,011,219 train images with 79,156,606 machine labels; 167,056 validation
images with 2,047,758 machine labels, each verified (about 26.6% false positives). Labels use
6,012 real MIDs with a long-tail (Zipf-like) frequency; no image has a class twice. Everything
follows from --seed. `--scale 0.01` makes a 1% world for a quick run.

    .venv/bin/python benchmarks/gen_v1_labels.py /tmp/oi-v1 [--scale 1.0] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl

from openimages_pipe import packaged

TRAIN_IMAGES, TRAIN_LABELS = 9_011_219, 79_156_606
VAL_IMAGES, VAL_LABELS = 167_056, 2_047_758
CLASSES = 6_012
ZIPF_OFFSET = 20  # p(rank k) ~ 1 / (k + offset): a head ~200x the tail, a few tail classes rare
FP_RATE = 0.266
LINK_ROT = {"ok": 0.91, "missing": 0.08, "failed": 0.01}
CHUNK_ROWS = 4_000_000
AUTHORS = ("Warren", "Karen", "José Luis Sánchez", "Smith, John", "Zoë", "mk", "Dan & Lisa")
TITLES = ("IMG_0042", "DSC01234", "Pearl, Kauai", '"Old" truck', "Straßenbahn in Köln", "")


def image_ids(n: int, rng: np.random.Generator) -> list[str]:
    """n distinct 64-bit IDs as 16 lower-case hex digits, sorted like the official files."""
    ids = np.unique(rng.integers(0, 2**63, size=int(n * 1.01) + 16, dtype=np.int64))
    ids = rng.permutation(ids)[:n]
    return [f"{x:016x}" for x in np.sort(ids).tolist()]


def labels_per_image(images: int, labels: int, rng: np.random.Generator) -> np.ndarray:
    """At least one label per image, Poisson-spread, summing exactly to `labels`."""
    counts = 1 + rng.poisson(labels / images - 1, size=images)
    diff = labels - int(counts.sum())
    while diff:
        pick = rng.integers(0, images, size=abs(diff))
        step = 1 if diff > 0 else -1
        np.add.at(counts, pick, step)
        counts = np.maximum(counts, 1)
        diff = labels - int(counts.sum())
    return counts


def draw_classes(counts: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """(img, cls) pairs, `counts[img]` distinct classes per image, sorted by image then class."""
    img = np.repeat(np.arange(len(counts), dtype=np.uint32), counts)
    cls = rng.choice(len(p), size=len(img), p=p).astype(np.uint16)
    while True:
        df = pl.DataFrame({"img": img, "cls": cls}).sort("img", "cls")
        dup = (pl.col("img") == pl.col("img").shift(1)) & (pl.col("cls") == pl.col("cls").shift(1))
        mask = df.select(dup.fill_null(False)).to_series().to_numpy()
        if not mask.any():
            return df
        img, cls = df["img"].to_numpy(), df["cls"].to_numpy().copy()
        cls[mask] = rng.choice(len(p), size=int(mask.sum()), p=p)


def write_csv_chunks(path: Path, frames) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for k, frame in enumerate(frames):
            frame.write_csv(f, include_header=k == 0)


def image_rows(ids: list[str], subset: str, rng: np.random.Generator):
    """The V1 images CSV, in chunks: every column a real file has, of realistic length."""
    for start in range(0, len(ids), CHUNK_ROWS):
        n = len(ids[start : start + CHUNK_ROWS])
        r = pl.DataFrame(
            {
                "ImageID": ids[start : start + n],
                "farm": rng.integers(1, 10, n),
                "server": rng.integers(1000, 10000, n),
                "photo": rng.integers(10**9, 10**11, n),
                "secret": rng.integers(10**9, 10**10, n),
                "secret2": rng.integers(10**9, 10**10, n),
                "user": rng.integers(10**7, 10**8, n),
                "author": rng.integers(0, len(AUTHORS), n),
                "title": rng.integers(0, len(TITLES), n),
                "size": rng.integers(50_000, 9_000_000, n),
                "md5": rng.integers(10**17, 10**18, n),
            }
        )
        c = pl.col
        yield r.select(
            "ImageID",
            pl.lit(subset).alias("Subset"),
            pl.format(
                "https://farm{}.staticflickr.com/{}/{}_{}_o.jpg",
                c.farm,
                c.server,
                c.photo,
                c.secret,
            ).alias("OriginalURL"),
            pl.format("https://www.flickr.com/photos/{}@N05/{}", c.user, c.photo).alias(
                "OriginalLandingURL"
            ),
            pl.lit("https://creativecommons.org/licenses/by/2.0/").alias("License"),
            pl.format("https://www.flickr.com/people/{}@N05/", c.user).alias("AuthorProfileURL"),
            c.author.replace_strict(dict(enumerate(AUTHORS))).alias("Author"),
            c.title.replace_strict(dict(enumerate(TITLES))).alias("Title"),
            c.size.alias("OriginalSize"),
            pl.format("{}abcd==", c.md5).alias("OriginalMD5"),
            pl.format(
                "https://c{}.staticflickr.com/{}/{}/{}_{}_z.jpg",
                c.farm % 8 + 1,
                c.farm,
                c.server,
                c.photo,
                c.secret2,
            ).alias("Thumbnail300KURL"),
        )


def label_rows(ids: pl.Series, pairs: pl.DataFrame, mids: pl.Series, source: str, values):
    """Label rows in chunks; `values(chunk)` gives each row's Confidence as a string Series."""
    for start in range(0, pairs.height, CHUNK_ROWS):
        chunk = pairs.slice(start, CHUNK_ROWS)
        yield pl.DataFrame(
            {
                "ImageID": ids.gather(chunk["img"]),
                "Source": pl.repeat(source, chunk.height, eager=True),
                "LabelName": mids.gather(chunk["cls"]),
                "Confidence": values(chunk),
            }
        )


def tenths(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.arange(5, 11), size=n, p=[0.1, 0.12, 0.15, 0.2, 0.23, 0.2])


def generate(out: Path, scale: float, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    n_train, n_val = round(TRAIN_IMAGES * scale), round(VAL_IMAGES * scale)
    l_train, l_val = round(TRAIN_LABELS * scale), round(VAL_LABELS * scale)
    all_ids = image_ids(n_train + n_val, rng)
    is_val = np.zeros(len(all_ids), dtype=bool)
    is_val[rng.choice(len(all_ids), size=n_val, replace=False)] = True
    ids = {
        "train": [i for i, v in zip(all_ids, is_val, strict=True) if not v],
        "validation": [i for i, v in zip(all_ids, is_val, strict=True) if v],
    }
    dict_mids = pl.read_csv(packaged.dict_csv(), has_header=False).to_series(0)
    mids = pl.Series(rng.permutation(dict_mids.to_numpy())[:CLASSES])  # rank order = popularity
    p = 1.0 / (np.arange(CLASSES) + ZIPF_OFFSET)
    p /= p.sum()
    quality = np.clip(rng.beta(3.0, 1.1, CLASSES), 0, 1)  # per-class share of true positives
    conf_str = pl.Series([f"{t / 10:.1f}" for t in range(11)])
    for subset, n_labels in (("train", l_train), ("validation", l_val)):
        subset_ids = pl.Series(ids[subset])
        write_csv_chunks(
            out / f"images_2016_08/{subset}/images.csv", image_rows(ids[subset], subset, rng)
        )
        pairs = draw_classes(labels_per_image(len(subset_ids), n_labels, rng), p, rng)
        pairs = pairs.with_columns(t=pl.Series(tenths(rng, pairs.height), dtype=pl.UInt8))
        write_csv_chunks(
            out / f"machine_ann_2016_08/{subset}/labels.csv",
            label_rows(subset_ids, pairs, mids, "machine", lambda c: conf_str.gather(c["t"])),
        )
        if subset == "validation":
            # sure labels are more often right; scaled so that FP_RATE of all labels are wrong
            shift = (pairs["t"].to_numpy() - 7.5) / 8
            true_p = np.clip(quality[pairs["cls"].to_numpy()] + shift, 0, 1)
            true_p = np.clip(true_p * (1 - FP_RATE) / true_p.mean(), 0, 1)
            pairs = pairs.with_columns(
                v=pl.Series(rng.random(pairs.height) < true_p).cast(pl.UInt8)
            )
            write_csv_chunks(
                out / "human_ann_2016_08/validation/labels.csv",
                label_rows(subset_ids, pairs, mids, "human", lambda c: c["v"].cast(pl.String)),
            )
    shutil.copyfile(packaged.dict_csv(), out / "dict.csv")
    write_manifest(out / "download" / "manifest.parquet", all_ids, rng)
    return {
        "train_images": n_train,
        "train_labels": l_train,
        "val_images": n_val,
        "val_labels": l_val,
    }


def write_manifest(path: Path, ids: list[str], rng: np.random.Generator) -> None:
    """A download manifest (issue 3's columns, a few of them) with realistic link rot."""
    status = rng.choice(list(LINK_ROT), size=len(ids), p=list(LINK_ROT.values()))
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "image_id": ids,
            "status": status,
            "reason": np.where(
                status == "ok", "ok", np.where(status == "missing", "http_404", "timeout")
            ),
            "attempts": rng.integers(1, 4, len(ids)).astype(np.int32),
        }
    ).write_parquet(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = full V1 scale")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = generate(args.out, args.scale, args.seed)
    print(f"{sizes} in {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
