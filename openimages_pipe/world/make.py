"""`world make`: write a small, realistic offline Open Images world in the official formats.

Composes the world stages: plan every image (ID, subset, objects, file variant; its Flickr
metadata from `flickr`), render them (`render`), draw machine labels and human
verifications from the true classes (`labels`), then write the official CSVs,
`served/routes.csv`, the truth and, last, `world.json` (so a folder with a `world.json` holds a
complete world). Paths and URL shapes come from `layout`, the contract with `world serve`.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from openimages_pipe import packaged
from openimages_pipe.errors import InputError
from openimages_pipe.world import classes as world_classes
from openimages_pipe.world import flickr as world_flickr
from openimages_pipe.world import labels as world_labels
from openimages_pipe.world import layout as wl
from openimages_pipe.world import render as world_render
from openimages_pipe.world.classes import Hierarchy
from openimages_pipe.world.flickr import FlickrPhoto
from openimages_pipe.world.labels import LabelStats, MachineLabel
from openimages_pipe.world.quota import quota
from openimages_pipe.world.render import RenderJob, RenderResult, Variant

FORMAT_VERSION = 1
LABELS_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence")
MISSING_ROTATION_RATE = 0.02  # V6+ `Rotation` is empty where the photo had left Flickr
OWNED = (wl.WORLD_JSON, "data", "served", "truth")  # all that a rerun deletes in `out`
# fmt: off
IMAGES_COLUMNS = ("ImageID", "Subset", "OriginalURL", "OriginalLandingURL", "License",
                  "AuthorProfileURL", "Author", "Title", "OriginalSize", "OriginalMD5",
                  "Thumbnail300KURL")
# fmt: on


@dataclass(frozen=True)
class MakeConfig:
    """Everything `world make` needs; saved, resolved, in `world.json`."""

    out: Path
    seed: int = 0
    images: int = 1000
    layout: wl.Layout = wl.Layout.V1
    base_url: str = field(default_factory=wl.base_url)
    validation_fraction: float = 0.3  # enough for Veit et al.'s 1/4 - 3/4 split of V
    test_fraction: float = 0.15  # V6/V7 only; V1 has no test subset
    fp_rate: float = 0.266  # Open Images V1's measured machine-label false-positive rate
    mirror_train_fraction: float = 0.19  # CVDF's mirror holds 1.74M of V1's 9.01M train images
    max_side: int = 3000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass(frozen=True)
class PlannedImage:
    image_id: str
    subset: str
    objects: tuple[str, ...]
    photo: FlickrPhoto
    rotation: str  # the V6+ Rotation cell: "0.0", "90.0", ... or "" (unknown)
    job: RenderJob


@dataclass(frozen=True)
class WorldSummary:
    out: str
    seed: int
    layout: str
    images: int
    subsets: dict[str, int]
    formats: dict[str, int]
    routes: int
    thumbnails: int
    mirrors: int
    bytes_on_disk: int
    machine_labels: int
    human_labels: int
    labels: LabelStats


def resolve(cfg: MakeConfig) -> MakeConfig:
    """Validate the config and pin what depends on the layout (V1 has no test subset)."""
    layout = wl.Layout(cfg.layout)
    test = cfg.test_fraction if "test" in wl.LAYOUT_SUBSETS[layout] else 0.0
    val = cfg.validation_fraction
    if cfg.images < 1:
        raise InputError("images must be at least 1", value=str(cfg.images))
    if not (val >= 0 and test >= 0 and val + test < 1):
        raise InputError("validation + test fractions must be in [0, 1)", value=f"{val} + {test}")
    if not (0 <= cfg.fp_rate < 1 and 0 <= cfg.mirror_train_fraction <= 1):
        raise InputError("fp_rate must lie in [0, 1) and mirror_train_fraction in [0, 1]")
    if cfg.max_side < 400:
        raise InputError("max_side must be at least 400", value=str(cfg.max_side))
    base, workers = cfg.base_url.rstrip("/"), max(1, cfg.workers)
    return replace(cfg, out=Path(cfg.out), layout=layout, base_url=base, test_fraction=test,
                   workers=workers)  # fmt: skip


def run(cfg: MakeConfig) -> WorldSummary:
    """Write the world to `cfg.out` and return its statistics."""
    cfg = resolve(cfg)
    paths = wl.WorldPaths(cfg.out)
    _clear(paths.root)
    hierarchy = world_classes.build_hierarchy()
    plans = plan_images(cfg, hierarchy, paths)
    results = world_render.render_all([p.job for p in plans], cfg.workers)
    truth = {p.image_id: hierarchy.closure(p.objects) for p in plans}
    rng = random.Random(f"{cfg.seed}:labels")
    quality = world_labels.plan_quality(hierarchy, rng)
    labels = world_labels.machine_labels(truth, hierarchy, quality, cfg.fp_rate, rng)
    human = write_data(cfg, paths, plans, results, labels, truth)
    routes = write_served(cfg.base_url, paths, plans, results)
    truth_rows = [(i, mid) for i in sorted(truth) for mid in sorted(truth[i])]
    _write_csv(paths.truth_objects, wl.TRUTH_COLUMNS, truth_rows)
    summary = WorldSummary(
        str(cfg.out), cfg.seed, str(cfg.layout), len(plans),
        subsets={s: sum(p.subset == s for p in plans) for s in wl.LAYOUT_SUBSETS[cfg.layout]},
        formats={str(v): sum(p.job.variant is v for p in plans) for v in Variant},
        routes=routes, thumbnails=sum(p.job.thumbnail is not None for p in plans),
        mirrors=sum(p.job.mirror is not None for p in plans),
        bytes_on_disk=sum(f.stat().st_size for f in paths.root.rglob("*") if f.is_file()),
        machine_labels=len(labels), human_labels=human,
        labels=world_labels.label_stats(labels, truth, hierarchy),
    )  # fmt: skip
    _write_world_json(cfg, paths, hierarchy, summary)
    return summary


def _write_world_json(
    cfg: MakeConfig, paths: wl.WorldPaths, hierarchy: Hierarchy, summary: WorldSummary
) -> None:
    """Written last and atomically: the server reads seed, base_url and layout from it."""
    config = {**asdict(cfg), "out": str(cfg.out), "layout": str(cfg.layout)}
    record = {
        "format_version": FORMAT_VERSION, "seed": cfg.seed, "layout": str(cfg.layout),
        "base_url": cfg.base_url, "images": cfg.images, "config": config,
        "classes": [asdict(c) for c in hierarchy.classes], "stats": asdict(summary),
    }  # fmt: skip
    tmp = paths.world_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, paths.world_json)


def describe(summary: WorldSummary) -> str:
    """A few lines for the terminal: what was written and how noisy its labels are."""
    s, lab = summary, summary.labels
    per_class = sorted(lab.per_class_fp.values()) or [0.0]
    subsets = ", ".join(f"{k} {v}" for k, v in s.subsets.items())
    formats = ", ".join(f"{k} {v}" for k, v in s.formats.items())
    return (
        f"world {s.out}: {s.images} images ({subsets}), layout {s.layout}, seed {s.seed}, "
        f"{s.bytes_on_disk / 1e6:.1f} MB\n"
        f"formats: {formats}; {s.thumbnails} thumbnails, {s.mirrors} mirror copies, "
        f"{s.routes} routes\n"
        f"machine labels: {s.machine_labels}, {lab.fp_rate:.1%} false positives (per class "
        f"{per_class[0]:.0%} to {per_class[-1]:.0%}, {lab.related_fp_share:.0%} from related "
        f"classes), recall {lab.recall:.1%}; human verifications: {s.human_labels}"
    )


def _clear(root: Path) -> None:
    """Remove a previous world's files; refuse to touch a folder that is not a world."""
    if root.exists() and any(root.iterdir()):
        if not (root / wl.WORLD_JSON).exists():
            raise InputError(f"not empty and holds no {wl.WORLD_JSON}; choose a new folder", root)
        for target in (root / name for name in OWNED):
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    root.mkdir(parents=True, exist_ok=True)


def plan_images(cfg: MakeConfig, hierarchy: Hierarchy, paths: wl.WorldPaths) -> list[PlannedImage]:
    """Every image of the world, sorted by ImageID, with the job that renders it."""
    rng = random.Random(f"{cfg.seed}:images")
    ids: set[str] = set()
    while len(ids) < cfg.images:
        ids.add(f"{rng.getrandbits(64):016x}")
    n = cfg.images
    subsets = quota(n, {"validation": cfg.validation_fraction, "test": cfg.test_fraction}, rng)
    variants = world_render.assign_variants(n, cfg.layout is not wl.Layout.V1, rng)
    photos = world_flickr.plan_photos(n, rng)
    unknown_rotation = quota(n, {"unknown": MISSING_ROTATION_RATE}, rng)
    plans = []
    for k, image_id in enumerate(sorted(ids)):
        subset, (variant, turn) = subsets[k] or "train", variants[k]
        mirror = subset != "train" or rng.random() < cfg.mirror_train_fraction
        objects = world_classes.sample_scene(rng, hierarchy)
        size, placed = world_render.plan_canvas(rng, hierarchy, objects, cfg.max_side)
        original = paths.original(image_id, world_render.ext_of(variant))
        thumb = paths.thumbnail(image_id) if photos[k].has_thumbnail else None
        copy = paths.mirror(subset, image_id) if mirror else None
        job = RenderJob(image_id, rng.getrandbits(32), size, placed, variant, turn, original,
                        thumb, copy)  # fmt: skip
        rotation = "" if unknown_rotation[k] else "0.0"
        if variant is Variant.ROTATED:
            rotation = f"{turn}.0"
        plans.append(PlannedImage(image_id, subset, objects, photos[k], rotation, job))
    return plans


def write_data(
    cfg: MakeConfig,
    paths: wl.WorldPaths,
    plans: list[PlannedImage],
    results: list[RenderResult],
    labels: list[MachineLabel],
    truth: dict[str, frozenset[str]],
) -> int:
    """The layout's official CSVs per subset and the class descriptions; returns the number of
    human verifications (of every machine label of the validation and test images)."""
    subset_of = {p.image_id: p.subset for p in plans}
    has_rotation = cfg.layout is not wl.Layout.V1
    human_source = "verification" if has_rotation else "human"
    header = IMAGES_COLUMNS + (("Rotation",) if has_rotation else ())
    verified = 0
    for subset in wl.LAYOUT_SUBSETS[cfg.layout]:

        def file(kind: str, subset: str = subset) -> Path:
            return paths.data / wl.data_file(cfg.layout, kind, subset)

        pairs = [(p, r) for p, r in zip(plans, results, strict=True) if p.subset == subset]
        rows = [_image_row(cfg.base_url, p, r, has_rotation) for p, r in pairs]
        _write_csv(file("images"), header, rows)
        mine = [x for x in labels if subset_of[x.image_id] == subset]
        rows = [(x.image_id, "machine", x.mid, x.confidence) for x in mine]
        _write_csv(file("machine_labels"), LABELS_COLUMNS, rows)
        if subset == "train":
            continue  # Veit et al.'s setting: no human label on train (V1 had none there)
        checks = world_labels.verify(mine, truth)
        verified += len(checks)
        rows = [(v.image_id, human_source, v.mid, str(int(v.present))) for v in checks]
        _write_csv(file("human_labels"), LABELS_COLUMNS, rows)
    _write_class_descriptions(
        cfg.layout, paths.data / wl.data_file(cfg.layout, "class_descriptions")
    )
    return verified


def _image_row(base: str, plan: PlannedImage, result: RenderResult, rotation: bool) -> tuple:
    p = plan.photo
    original, thumb = world_flickr.photo_urls(base, p, result.ext)
    row = (plan.image_id, plan.subset, original, p.landing_url, world_flickr.LICENSE,
           p.profile_url, p.author, p.title, str(result.size), result.md5_b64, thumb)  # fmt: skip
    return row + ((plan.rotation,) if rotation else ())


def _write_csv(path: Path, header: tuple[str, ...], rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # QUOTE_MINIMAL and \n, like the real files
        writer.writerow(header)
        writer.writerows(rows)


def _write_class_descriptions(layout: wl.Layout, path: Path) -> None:
    """V1: the real `dict.csv`, byte for byte. V6/V7: the same vocabulary under a header, names
    capitalised as in the later releases."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout is wl.Layout.V1:
        shutil.copyfile(packaged.dict_csv(), path)
        return
    with packaged.dict_csv().open(encoding="utf-8", newline="") as f:
        rows = [(mid, name[:1].upper() + name[1:]) for mid, name in csv.reader(f)]
    _write_csv(path, ("LabelName", "DisplayName"), rows)


def write_served(
    base: str, paths: wl.WorldPaths, plans: list[PlannedImage], results: list[RenderResult]
) -> int:
    """`served/routes.csv` (every URL path the server answers) and the placeholder PNG."""
    rows = []
    for plan, result in zip(plans, results, strict=True):
        original, thumb = world_flickr.photo_urls(base, plan.photo, result.ext)
        job = plan.job
        ctype = world_render.content_type(result.ext)
        routes = [(original, wl.RouteKind.ORIGINAL, job.original, ctype)]
        if job.thumbnail is not None:
            routes.append((thumb, wl.RouteKind.THUMBNAIL, job.thumbnail, "image/jpeg"))
        if job.mirror is not None:
            mirror = wl.mirror_url(base, plan.subset, plan.image_id)
            routes.append((mirror, wl.RouteKind.MIRROR, job.mirror, "image/jpeg"))
        for url, kind, file, content_type in routes:
            served = file.relative_to(paths.served).as_posix()
            rows.append((url[len(base) :], plan.image_id, str(kind), served, content_type))
    paths.placeholder.write_bytes(world_render.placeholder_png())
    _write_csv(paths.routes, wl.ROUTES_COLUMNS, rows)
    return len(rows)
