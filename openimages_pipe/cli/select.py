"""The `select` command, and the selection options that `download --classes` shares with it.

Registered on the app by `cli/__init__.py`. The options' help texts live here once (`option`),
so that `select --help` and `download --help` say the same thing; `selection_config` builds the
frozen SelectConfig from them. polars loads only when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe.cli.common import guarded
from openimages_pipe.errors import InputError
from openimages_pipe.select.records import LabelSource

# `select --help` groups the options: which classes, from which labels, which images, where to.
CLASSES, LABELS, IMAGES, OUTPUT = "Classes", "Labels", "Images", "Output"
MACHINE_MIN_CONFIDENCE = 0.5  # select.selection.MACHINE_MIN_CONFIDENCE (not imported: polars)
HELP = {
    "classes": "Classes to select, by display name (case, spaces and underscores ignored: "
    "'teddy_bear' is 'Teddy bear') or MID (/m/01yrx); repeat, or separate with commas. A name "
    "that several MIDs share selects all of them; an unknown one is an error naming the nearest.",
    "class_names": "Display names to match --classes against: dict.csv or any release's "
    "class-descriptions. Default: V1's dict.csv, shipped with oi-pipe.",
    "labels": "Image-level label CSVs to select from, machine and/or human, any release; "
    "repeat per file, or a quoted glob such as 'machine_ann_2016_08/*/labels.csv'.",
    "source": "Which labels select an image. human: verified positives (Confidence 1). "
    "machine: machine labels at or above --min-confidence. any: either, except that a human "
    "negative (Confidence 0) vetoes the machine label of its class on its image. A human "
    "negative never selects.",
    "min_confidence": "Lowest machine Confidence that selects.",
    "images": "Only images these images CSVs list; repeat per file or glob.",
    "subset": "Only images of this subset of the --images CSVs (train, validation, test); "
    "repeatable.",
    "downloaded": "A download folder: only images its manifest says ok.",
    "exclusive": "Only images none of whose positive labels (by the same rule of which labels "
    "select) is of a class outside --classes.",
    "max_per_class": "Each class (MID) brings in at most N images, those of lowest rank (a "
    "stable hash of seed and ImageID): the same on every machine, and a larger N only adds "
    "images. labels.parquet lists every chosen-class label of the images brought in, so a class "
    "can end with more than N.",
    "seed": "Seed of the --max-per-class rank.",
}


def option(name: str, panel: str, *names: str, **settings: object):
    """The typer option `name` with its help text, in `panel` of the command's --help (`names`:
    its flags, where they are not the parameter's name)."""
    return typer.Option(*names, help=HELP[name], rich_help_panel=panel, **settings)


def selection_config(out: Path, **values: object):
    """The SelectConfig of these option values (tuples for lists; None for empty lists)."""
    from openimages_pipe.select.selection import SelectConfig

    listed = ("labels", "classes", "images", "subsets")
    values = {k: tuple(v or ()) if k in listed else v for k, v in values.items()}
    return SelectConfig(out=out, **values)  # type: ignore[arg-type]


def download_selection(out: Path | str, ids: Path | None, **values: object):
    """`download --classes`: the selection the download makes first, into OUT/select/; None
    without --classes. The images it may take are the download's CSVs (set by the download)."""
    if not values["classes"] and not values["labels"]:
        return None
    if not isinstance(out, Path):  # select writes local files: ids.txt, labels.parquet
        message = "--classes needs a local --out: run `oi-pipe select --out DIR` and give --ids"
        raise InputError(message, value=str(out))
    if not values["classes"]:
        raise InputError("--labels needs --classes: the classes to select from them")
    if not values["labels"]:
        raise InputError("--classes needs --labels: the label CSVs to select the images from")
    if ids is not None:
        raise InputError("give --classes or --ids, not both")
    return selection_config(out / "select", **values)


def select_cmd(
    *,  # keyword-only: grouped by panel, so --out (required) stands last, in Output
    classes: Annotated[list[str], option("classes", CLASSES)],
    class_names: Annotated[Path | None, option("class_names", CLASSES, dir_okay=False)] = None,
    labels: Annotated[list[Path], option("labels", LABELS)],
    source: Annotated[LabelSource, option("source", LABELS)] = LabelSource.ANY,
    min_confidence: Annotated[
        float, option("min_confidence", LABELS, min=0.0, max=1.0)
    ] = MACHINE_MIN_CONFIDENCE,
    images: Annotated[list[Path] | None, option("images", IMAGES)] = None,
    subset: Annotated[list[str] | None, option("subset", IMAGES)] = None,
    downloaded: Annotated[Path | None, option("downloaded", IMAGES, file_okay=False)] = None,
    exclusive: Annotated[bool, option("exclusive", IMAGES)] = False,
    max_per_class: Annotated[int | None, option("max_per_class", IMAGES, min=1)] = None,
    seed: Annotated[int, option("seed", IMAGES)] = 0,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for ids.txt, labels.parquet and select.json.", rich_help_panel=OUTPUT
        ),
    ],
) -> None:
    """Pick the images of chosen classes from the label CSVs: the `--ids` file of a download.

    Writes OUT/ids.txt (one ImageID a line, what `download --ids` reads), OUT/labels.parquet
    (image_id, label_name, source, confidence of the selected positives) and OUT/select.json
    (the resolved config and counts per class: candidates, vetoed by a human negative, dropped by
    each restriction, selected), and prints the counts. The label CSVs are streamed: the full V1
    machine labels (79M rows) take well under 2 GB.
    """
    from openimages_pipe.select import selection as command

    def body():
        cfg = selection_config(
            out, labels=labels, classes=classes, class_names=class_names, source=source,
            min_confidence=min_confidence, images=images, subsets=subset, downloaded=downloaded,
            exclusive=exclusive, max_per_class=max_per_class, seed=seed,
        )  # fmt: skip
        return command.run(cfg)

    typer.echo(command.describe(guarded(body)))
