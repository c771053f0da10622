"""The `oi-pipe` command line: one thin typer command per job, each building a frozen config.

Command modules are imported inside each command so that `oi-pipe --help` stays fast and commands
that do not train never import torch. Bad input (an `InputError`) becomes one line on stderr that
names the file, the line and the value, and exit code 1.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from openimages_pipe import __version__, cli_download
from openimages_pipe.errors import InputError
from openimages_pipe.world_layout import DEFAULT_PORT, Layout

T = TypeVar("T")


class Stage(enum.StrEnum):
    """What `train` trains: g and h on cached features, or f and h from the image shards."""

    FEATURES = "features"
    BACKBONE = "backbone"


app = typer.Typer(
    name="oi-pipe",
    help="Rebuild Open Images from its URL lists and learn from its noisy labels.",
    rich_markup_mode="markdown",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
world_app = typer.Typer(
    help="An offline Open Images world: generate it, serve it over HTTP with real-world faults.",
    no_args_is_help=True,
)
app.add_typer(world_app, name="world")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"oi-pipe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Rebuild Open Images from its URL lists and learn from its noisy labels."""


def guarded(fn: Callable[[], T]) -> T:
    """Run a command body; bad input exits 1 with one clear line instead of a traceback."""
    try:
        return fn()
    except InputError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(1) from None


@app.command("inspect")
def inspect_cmd(
    files: Annotated[
        list[Path], typer.Argument(help="Open Images CSV files (images, labels, class files).")
    ],
    validate: Annotated[
        bool,
        typer.Option(help="Scan every row and stop at the first bad value (file, line, value)."),
    ] = True,
) -> None:
    """Tell what each Open Images CSV is: its kind, the releases that wrote it, its rows.

    The kind and release come from the header (or its absence); with --validate every row is read
    once, streaming, and the first bad ImageID, Confidence, OriginalSize or Rotation is reported
    with its file and line.
    """
    from openimages_pipe import inspect_files as command

    guarded(lambda: command.run(command.InspectConfig(tuple(files), validate)))


app.command("download")(cli_download.download_cmd)
app.command("status")(cli_download.status_cmd)


@world_app.command("make")
def world_make_cmd(
    out: Annotated[Path, typer.Argument(help="Directory to write the world into.")],
    seed: Annotated[int, typer.Option(help="Everything in the world follows from this seed.")] = 0,
    images: Annotated[int, typer.Option(min=10, help="Number of images.")] = 1000,
    layout: Annotated[
        Layout, typer.Option(help="Official file names and columns of this release.")
    ] = Layout.V1,
    port: Annotated[
        int, typer.Option(help="Port the CSV's URLs point at; `world serve` binds it.")
    ] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(min=1, help="Processes that render images.")] = 2,
) -> None:
    """Write a small, realistic Open Images world in the official formats.

    Procedurally drawn images whose labels a small CNN can learn (23 real V1 classes in a
    hierarchy), Flickr-shaped URLs with real sizes and MD5s, machine labels with a real
    classifier's noise (about 26.6% false positives) and human verifications of the validation set.
    """
    from openimages_pipe import world_layout, world_make

    cfg = world_make.MakeConfig(
        out=out,
        seed=seed,
        images=images,
        layout=layout,
        base_url=world_layout.base_url(port=port),
        workers=workers,
    )
    summary = guarded(lambda: world_make.run(cfg))
    typer.echo(world_make.describe(summary))


@world_app.command("serve")
def world_serve_cmd(
    world: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="A directory from `world make`.")
    ],
    port: Annotated[
        int | None, typer.Option(help="Port to bind; default: the one the world's URLs use.")
    ] = None,
    faults: Annotated[
        str,
        typer.Option(
            help="Fault mix: `none`, `flickr` (realistic link rot), `all` (every kind), or "
            "`404=0.05,429=0.01,transient=2,...`; presets and overrides combine: `flickr,404=0.1`."
        ),
    ] = "none",
    fault_seed: Annotated[
        int | None, typer.Option(help="Seed of each image's fate; default: the world's seed.")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Write every ImageID's fault to this CSV before serving.")
    ] = None,
) -> None:
    """Serve a world over HTTP on 127.0.0.1 at the URLs in its CSVs, with seeded faults.

    Each image's fate is a pure function of (seed, ImageID): 404, 410, a redirect to Flickr's
    "photo unavailable" PNG, 403, 429 with Retry-After, 500/503, a slow first byte, a stalled or
    truncated body, a connection reset, an HTML page, changed bytes, a redirect loop or an endless
    body. Transient faults clear after a few attempts. Stops on Ctrl-C.
    """
    from openimages_pipe import world_server

    cfg = world_server.ServeConfig(
        world=world, port=port, faults=faults, fault_seed=fault_seed, truth=truth
    )
    guarded(lambda: world_server.run(cfg))


@app.command("demo")
def demo_cmd(
    out: Annotated[
        Path | None,
        typer.Argument(help="Directory for the demo world; default: a temporary one."),
    ] = None,
    images: Annotated[int, typer.Option(min=10, help="Number of images in the world.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the world and of its faults.")] = 0,
    faults: Annotated[str, typer.Option(help="Fault mix the server injects.")] = "flickr",
    learn: Annotated[
        bool, typer.Option(help="Also train f, embed, and run the five variants (CPU).")
    ] = True,
) -> None:
    """Run everything that exists on an offline world, with no internet.

    Makes a world, serves it on 127.0.0.1 with realistic faults, probes its URLs and reads every
    CSV back through the reader, printing what each stage produced.
    """
    from openimages_pipe import demo

    cfg = demo.DemoConfig(out=out, images=images, seed=seed, faults=faults, learn=learn)
    guarded(lambda: demo.run(cfg))


@app.command("train")
def train_cmd(
    splits: Annotated[Path, typer.Option(help="Split files from `build-splits`.")],
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, metrics, per-class AP.")],
    features: Annotated[
        Path | None,
        typer.Option(help="Features table: a Parquet file or folder (image_id, embedding)."),
    ] = None,
    stage: Annotated[
        Stage,
        typer.Option(
            help="`features`: g and h on cached features; `backbone`: f and h on T's noisy "
            "labels from the image shards (the paper's baseline)."
        ),
    ] = Stage.FEATURES,
    shards: Annotated[
        Path | None, typer.Option(help="Download folder of Parquet image shards (backbone).")
    ] = None,
    arch: Annotated[
        str, typer.Option(help="f: resnet50, inception_v3, resnet18, mobilenet_v3_small, tiny.")
    ] = "resnet50",
    width: Annotated[int, typer.Option(min=1, help="f = tiny: channels of its first stage.")] = 32,
    weights: Annotated[
        Path | None, typer.Option(help="Start f from a local state dict or backbone.pt.")
    ] = None,
    image_size: Annotated[int, typer.Option(min=8, help="Crop size S (backbone).")] = 224,
    min_scale: Annotated[float, typer.Option(help="RandomResizedCrop's smallest area.")] = 0.08,
    finetune_backbone: Annotated[
        bool, typer.Option(help="Run --variant on images, updating f too.")
    ] = False,
    workers: Annotated[int, typer.Option(min=0, help="Loader processes (backbone).")] = 4,
    nproc: Annotated[int, typer.Option(min=1, help="Processes, launched with torchrun.")] = 1,
    variant: Annotated[
        str,
        typer.Option(
            help="all, baseline, finetune-mixed, finetune-clean, nlc-pretrained or nlc-joint."
        ),
    ] = "all",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    save_predictions: Annotated[
        bool, typer.Option(help="Write RUN/VARIANT/predictions.parquet (scores on V_eval).")
    ] = False,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Steps of baseline and nlc-* (features 5000, backbone 10000)."),
    ] = None,
    finetune_steps: Annotated[
        int | None, typer.Option(min=1, help="Steps of finetune-* (1000).")
    ] = None,
    pretrain_steps: Annotated[
        int | None, typer.Option(min=1, help="nlc-pretrained: steps of g alone (1000).")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=2, help="Images per step (features 4096, backbone 64).")
    ] = None,
    clean_share: Annotated[
        float, typer.Option(help="V_train's share of a mixed batch (0.1 is the paper's 9:1).")
    ] = 0.1,
    lr: Annotated[
        float | None, typer.Option(help="Peak AdamW learning rate (features 1e-2, backbone 1e-3).")
    ] = None,
    finetune_lr: Annotated[
        float | None, typer.Option(help="Peak learning rate of finetune-* (1e-3; 1e-4).")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="AdamW weight decay (features 0, backbone 0.05).")
    ] = None,
    warmup: Annotated[
        int | None, typer.Option(help="Warm-up steps per phase (features 100, backbone 500).")
    ] = None,
    clean_weight: Annotated[float, typer.Option(help="Weight of L_clean.")] = 0.1,
    classify_weight: Annotated[float, typer.Option(help="Weight of L_classify.")] = 1.0,
    unverified: Annotated[
        str, typer.Option(help="Unverified classes of V_train: `negative` or `masked`.")
    ] = "negative",
    embed: Annotated[int, typer.Option(min=1, help="g: size of the y and f(I) embeddings.")] = 256,
    hidden: Annotated[int, typer.Option(min=1, help="g: size of its hidden layer.")] = 512,
    activation: Annotated[str, typer.Option(help="g: relu, gelu or tanh.")] = "relu",
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and the batches.")] = 0,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, help="Steps between checkpoints (200; 500).")
    ] = None,
) -> None:
    """Train the label-cleaning network g and classifier h of Veit et al.

    With `--stage features` (default): the paper's variants on cached features, evaluated on
    V_eval (mAP, AP_all, by decile) in the layout of the paper's Table 2. With `--stage backbone`:
    f and h on T's noisy labels from the image shards, then `oi-pipe embed`. Rerunning the same
    command resumes from the last checkpoint.
    """
    given = {
        k: v
        for k, v in dict(
            steps=steps, finetune_steps=finetune_steps, pretrain_steps=pretrain_steps,
            batch_size=batch_size, lr=lr, finetune_lr=finetune_lr, weight_decay=weight_decay,
            warmup=warmup, checkpoint_every=checkpoint_every,
        ).items()
        if v is not None
    }  # fmt: skip
    common = dict(
        splits=splits, out=out, device=device, clean_share=clean_share, seed=seed,
        clean_weight=clean_weight, classify_weight=classify_weight, unverified=unverified,
        embed=embed, hidden=hidden, activation=activation,
    )  # fmt: skip

    def backbone_stage() -> None:
        from nlc_model import launch, train_backbone

        if shards is None:
            raise InputError("--stage backbone needs --shards (a download folder)")
        cfg = train_backbone.BackboneConfig(
            shards=shards, arch=arch, width=width, weights=weights, image_size=image_size,
            min_scale=min_scale, workers=workers, finetune_backbone=finetune_backbone,
            variant=variant if finetune_backbone else "baseline", **common, **given,
        )  # fmt: skip
        if nproc == 1:
            train_backbone.run(cfg)
            return
        train_backbone.check_options(cfg)  # bad input fails before torchrun starts
        code = launch.launch(cfg, nproc)
        if code:
            raise typer.Exit(code)

    def features_stage() -> None:
        from nlc_model import train

        if features is None:
            raise InputError("--stage features needs --features (from `oi-pipe embed`)")
        cfg = train.TrainConfig(
            features=features, variant=variant, save_predictions=save_predictions,
            **common, **given,
        )  # fmt: skip
        train.run(cfg)

    guarded(backbone_stage if stage is Stage.BACKBONE or finetune_backbone else features_stage)


@app.command("evaluate")
def evaluate_cmd(
    splits: Annotated[Path, typer.Option(help="Split files from `build-splits`.")],
    predictions: Annotated[
        Path, typer.Option(help="Parquet: image_id, scores (list of d floats, one per class).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Write metrics.json, per_class.parquet, deciles.png here.")
    ] = None,
) -> None:
    """Score any model's predictions on V_eval exactly as `train` scores its own.

    Only human-verified (image, class) pairs count: mAP over classes with a verified positive and
    a verified negative, AP_all over all pairs pooled, and mAP by decile.
    """
    from nlc_model import evaluate

    cfg = evaluate.EvaluateConfig(splits=splits, predictions=predictions, out=out)
    guarded(lambda: evaluate.run(cfg))


@app.command("clean-labels")
def clean_labels_cmd(
    run: Annotated[Path, typer.Option(help="Run folder of `train` with a finished nlc variant.")],
    splits: Annotated[Path, typer.Option(help="Split files from `build-splits`.")],
    features: Annotated[Path, typer.Option(help="Features table used for training.")],
    out: Annotated[Path, typer.Option(help="Parquet file of cleaned labels for T.")],
    variant: Annotated[str, typer.Option(help="nlc-joint or nlc-pretrained.")] = "nlc-joint",
    threshold: Annotated[float, typer.Option(help="Keep classes with c at least this.")] = 0.5,
    top_k: Annotated[int, typer.Option(min=1, help="At most this many labels per image.")] = 50,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Write the cleaned labels c = g(y, f(I)) of every image of T, in T.parquet's columns."""
    from nlc_model import clean_labels

    cfg = clean_labels.CleanLabelsConfig(
        run=run, splits=splits, features=features, out=out, variant=variant,
        threshold=threshold, top_k=top_k, device=device,
    )  # fmt: skip
    guarded(lambda: clean_labels.run(cfg))


@app.command("build-splits")
def build_splits_cmd(
    images: Annotated[
        list[Path],
        typer.Option(help="Images CSV of any release (needs Subset); repeat the option per file."),
    ],
    machine_labels: Annotated[
        list[Path], typer.Option(help="Machine image-level labels CSV; repeat per file.")
    ],
    human_labels: Annotated[
        list[Path],
        typer.Option(help="Human-verified image-level labels CSV; repeat per file."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for the Parquet files and splits.json.")],
    classes: Annotated[
        Path | None,
        typer.Option(
            help="Vocabulary: a labelmap or trainable-classes list (one MID a line) or a "
            "class-descriptions file. Default: the V1 rule, from the data."
        ),
    ] = None,
    class_names: Annotated[
        Path | None,
        typer.Option(help="Display names: dict.csv or class-descriptions (header or not)."),
    ] = None,
    downloaded: Annotated[
        Path | None,
        typer.Option(
            file_okay=False, help="A download folder: keep only images its manifest says ok."
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
) -> None:
    """Build the noisy set T and the verified set V as Parquet, V split 1/4 - 3/4.

    T: training images with their machine labels. V: validation and test images with at least one
    human verification, carrying both their machine labels and the verdicts (Confidence 1: present,
    0: absent, never a positive). An image's side of V is a hash of (seed, ImageID), stable when
    other images rot away. Repeated labels merge (highest confidence wins); unknown MIDs and
    images missing from the images CSV are dropped and counted in splits.json.
    """
    from openimages_pipe import splits as command

    cfg = command.SplitsConfig(
        images=tuple(images), machine_labels=tuple(machine_labels),
        human_labels=tuple(human_labels), out=out, classes=classes, class_names=class_names,
        downloaded=downloaded, clean_fraction=clean_fraction, seed=seed,
        min_confidence=min_confidence, min_train_images=min_train_images,
        min_val_images=min_val_images,
    )  # fmt: skip
    summary = guarded(lambda: command.run(cfg))
    typer.echo(command.describe(summary))


@app.command("stats")
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
    from openimages_pipe import stats as command

    guarded(lambda: command.run(command.StatsConfig(splits=splits, figures=figures, top=top)))


@app.command("embed")
def embed_cmd(
    shards: Annotated[
        Path, typer.Option(help="Download folder (or its shards/) of Parquet image shards.")
    ],
    weights: Annotated[
        Path,
        typer.Option(
            help="RUN/baseline/backbone.pt of `train --stage backbone`, or a local torchvision "
            "state dict (with --arch). Nothing is downloaded."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Features file to write (.parquet).")],
    arch: Annotated[
        str | None,
        typer.Option(help="Network of a torchvision state dict: resnet50, inception_v3, ..."),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Crop size; default: the checkpoint's, else 224.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 256,
    workers: Annotated[int, typer.Option(min=0, help="Loader processes reading shards.")] = 4,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Compute f(I) for every image of the shards: the features table `train --features` reads.

    One row per image (`image_id`, `embedding` of the backbone's width D), from the centre crop
    that evaluation uses; JPEGs are decoded on the GPU when there is one. The file is written
    under a temporary name and moved into place when complete.
    """
    from nlc_model import embed

    cfg = embed.EmbedConfig(
        shards=shards, weights=weights, out=out, arch=arch, image_size=image_size,
        batch_size=batch_size, workers=workers, device=device,
    )  # fmt: skip
    guarded(lambda: embed.run(cfg))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
