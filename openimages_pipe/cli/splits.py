"""The `build-splits` and `stats` commands: typer options in, a frozen config out.

Registered on the app by `cli.py`; polars is imported only when one of them runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe.cli.common import guarded
from openimages_pipe.errors import InputError

# A --classes value ending so is meant as a file, never as a class name.
CLASS_FILE_SUFFIXES = (".csv", ".txt", ".tsv")


def class_spec(values: list[str] | None) -> Path | tuple[str, ...] | None:
    """`--classes`: one existing file is a class file; anything else is names and MIDs."""
    if not values:
        return None
    files = [v for v in values if Path(v).is_file()]
    missing = [v for v in values if v.lower().endswith(CLASS_FILE_SUFFIXES) and v not in files]
    if missing:
        raise InputError("--classes: no such class file", Path(missing[0]))
    if files and len(values) > 1:
        raise InputError(
            "--classes takes one class file, or names and MIDs, not both", Path(files[0])
        )
    return Path(values[0]) if files else tuple(values)


def build_splits_cmd(
    images: Annotated[
        list[Path],
        typer.Option(
            help="Images CSV of any release (needs Subset); repeat per file, or a quoted glob "
            "such as 'images_2016_08/*/images.csv'."
        ),
    ],
    machine_labels: Annotated[
        list[Path], typer.Option(help="Machine image-level labels CSV; repeat per file or glob.")
    ],
    human_labels: Annotated[
        list[Path],
        typer.Option(help="Human-verified image-level labels CSV; repeat per file or glob."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for the Parquet files and splits.json.")],
    classes: Annotated[
        list[str] | None,
        typer.Option(
            help="Vocabulary: a labelmap or trainable-classes list (one MID a line) or a "
            "class-descriptions file; or the classes themselves, by display name (case and "
            "spaces ignored, matched against --class-names, default V1's dict.csv) or MID, "
            "repeated or comma-separated, as `select --classes` takes them. Default: the V1 "
            "rule, from the data."
        ),
    ] = None,
    class_names: Annotated[
        Path | None,
        typer.Option(help="Display names: dict.csv or class-descriptions (header or not)."),
    ] = None,
    downloaded: Annotated[
        str | None,
        typer.Option(
            help="A download folder (or its s3://BUCKET/PREFIX): keep only images its manifest "
            "says ok."
        ),
    ] = None,
    clean_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of V that goes to V_train.")
    ] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of the V_train / V_eval hash.")] = 0,
    min_confidence: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Drop machine labels below this confidence.")
    ] = 0.0,
    min_train_images: Annotated[
        int,
        typer.Option(min=0, help="V1 rule: training images with a machine label of the class."),
    ] = 20,  # vocabulary.V1_MIN_TRAIN_IMAGES (not imported: it would import polars)
    min_val_images: Annotated[
        int, typer.Option(min=0, help="V1 rule: V images verified to show the class.")
    ] = 50,  # vocabulary.V1_MIN_VAL_IMAGES
    verified_from: Annotated[
        str,
        typer.Option(
            help="Which human verifications form V. validation: those of validation and test "
            "images (the paper's setting, V1-V3's only ones). all: training images too, which "
            "then leave T and join V, split by the same hash (V4-V7 verify mostly training "
            "images); splits.json counts them as train_images_moved_to_v."
        ),
    ] = "validation",
) -> None:
    """Build the noisy set T and the verified set V as Parquet, V split 1/4 - 3/4.

    T: training images with their machine labels. V: validation and test images with at least one
    human verification, carrying both their machine labels and the verdicts (Confidence 1: present,
    0: absent, never a positive). An image's side of V is a hash of (seed, ImageID), stable when
    other images rot away. Repeated labels merge (highest confidence wins); unknown MIDs and
    images missing from the images CSV are dropped and counted in splits.json.
    """
    from openimages_pipe.splits import build as command

    def body() -> command.SplitsSummary:
        cfg = command.SplitsConfig(
            images=tuple(images), machine_labels=tuple(machine_labels),
            human_labels=tuple(human_labels), out=out, classes=class_spec(classes),
            class_names=class_names, downloaded=downloaded, clean_fraction=clean_fraction,
            seed=seed, min_confidence=min_confidence, min_train_images=min_train_images,
            min_val_images=min_val_images, verified_from=verified_from,
        )  # fmt: skip
        return command.run(cfg)

    typer.echo(command.describe(guarded(body)))


def stats_cmd(
    splits: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="A `build-splits` folder.")
    ],
    figures: Annotated[
        Path | None, typer.Option(help="Folder for the PNG figures; default SPLITS/figures.")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Rows in each per-class table.")] = 10,
) -> None:
    """Statistics of a splits folder, as tables and PNG figures.

    The sets and every drop; class frequency (the long tail, log scale); the machine labels'
    precision measured on V, overall, by confidence and per class; and, when built with a
    download manifest, the classes that lost the largest share of their images to link rot.
    """
    from openimages_pipe.splits import stats as command

    guarded(lambda: command.run(command.StatsConfig(splits=splits, figures=figures, top=top)))
