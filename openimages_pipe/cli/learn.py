"""`train`: typer options in, one frozen config of `nlc_model` out; the commands around it
(`embed`, `evaluate`, `clean-labels`) are in `cli.models`.

Registered on the app by `cli/__init__.py`; torch is imported only when the command runs.
"""

from __future__ import annotations

import enum
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe.cli.common import guarded
from openimages_pipe.errors import InputError


class Stage(enum.StrEnum):
    """What `train` trains: g and h on cached features, or f and h from the image shards."""

    FEATURES = "features"
    BACKBONE = "backbone"


INPUTS, SCHEDULE, CLEANER, BACKBONE, RUN = "Inputs", "Schedule", "Cleaner", "Backbone", "Run"


def train_cmd(
    splits: Annotated[
        Path, typer.Option(help="Split files from `build-splits`.", rich_help_panel=INPUTS)
    ],
    out: Annotated[
        Path,
        typer.Option(help="Run folder: checkpoints, metrics, per-class AP.", rich_help_panel=RUN),
    ],
    features: Annotated[
        Path | None,
        typer.Option(
            help="Features table: a Parquet file or folder (image_id, embedding).",
            rich_help_panel=INPUTS,
        ),
    ] = None,
    shards: Annotated[
        str | None,
        typer.Option(
            help="Download folder of Parquet image shards (backbone): a local folder or "
            "s3://BUCKET/PREFIX (credentials and endpoint from the AWS_* variables, as for "
            "download --out).",
            rich_help_panel=INPUTS,
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Steps of baseline and nlc-* (features 5000, backbone 10000).",
            rich_help_panel=SCHEDULE,
        ),
    ] = None,
    finetune_steps: Annotated[
        int | None,
        typer.Option(min=1, help="Steps of finetune-* (1000).", rich_help_panel=SCHEDULE),
    ] = None,
    pretrain_steps: Annotated[
        int | None,
        typer.Option(
            min=1, help="nlc-pretrained: steps of g alone (1000).", rich_help_panel=SCHEDULE
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=2, help="Images per step (features 4096, backbone 64).", rich_help_panel=SCHEDULE
        ),
    ] = None,
    clean_share: Annotated[
        float,
        typer.Option(
            help="V_train's share of a mixed batch (0.1 is the paper's 9:1).",
            rich_help_panel=SCHEDULE,
        ),
    ] = 0.1,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Peak AdamW learning rate (features 1e-2, backbone 1e-3).",
            rich_help_panel=SCHEDULE,
        ),
    ] = None,
    finetune_lr: Annotated[
        float | None,
        typer.Option(
            help="Peak learning rate of finetune-* (1e-3; 1e-4).", rich_help_panel=SCHEDULE
        ),
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option(
            help="AdamW weight decay (features 0, backbone 0.05).", rich_help_panel=SCHEDULE
        ),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            help="Warm-up steps per phase (features 100, backbone 500).", rich_help_panel=SCHEDULE
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(help="Seed of the initial weights and the batches.", rich_help_panel=SCHEDULE),
    ] = 0,
    clean_weight: Annotated[
        float, typer.Option(help="Weight of L_clean.", rich_help_panel=CLEANER)
    ] = 0.1,
    classify_weight: Annotated[
        float, typer.Option(help="Weight of L_classify.", rich_help_panel=CLEANER)
    ] = 1.0,
    unverified: Annotated[
        str,
        typer.Option(
            help="Unverified classes of V_train: `negative` or `masked`.", rich_help_panel=CLEANER
        ),
    ] = "negative",
    embed: Annotated[
        int,
        typer.Option(min=1, help="g: size of the y and f(I) embeddings.", rich_help_panel=CLEANER),
    ] = 256,
    hidden: Annotated[
        int, typer.Option(min=1, help="g: size of its hidden layer.", rich_help_panel=CLEANER)
    ] = 512,
    activation: Annotated[
        str, typer.Option(help="g: relu, gelu or tanh.", rich_help_panel=CLEANER)
    ] = "relu",
    arch: Annotated[
        str,
        typer.Option(
            help="f: resnet50, inception_v3, resnet18, mobilenet_v3_small, tiny.",
            rich_help_panel=BACKBONE,
        ),
    ] = "resnet50",
    width: Annotated[
        int,
        typer.Option(
            min=1, help="f = tiny: channels of its first stage.", rich_help_panel=BACKBONE
        ),
    ] = 32,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="Start f from a local state dict or backbone.pt.", rich_help_panel=BACKBONE
        ),
    ] = None,
    image_size: Annotated[
        int, typer.Option(min=8, help="Crop size S (backbone).", rich_help_panel=BACKBONE)
    ] = 224,
    min_scale: Annotated[
        float, typer.Option(help="RandomResizedCrop's smallest area.", rich_help_panel=BACKBONE)
    ] = 0.08,
    finetune_backbone: Annotated[
        bool,
        typer.Option(help="Run --variant on images, updating f too.", rich_help_panel=BACKBONE),
    ] = False,
    workers: Annotated[
        int, typer.Option(min=0, help="Loader processes (backbone).", rich_help_panel=BACKBONE)
    ] = 4,
    nproc: Annotated[
        int,
        typer.Option(min=1, help="Processes, launched with torchrun.", rich_help_panel=BACKBONE),
    ] = 1,
    stage: Annotated[
        Stage,
        typer.Option(
            help="`features`: g and h on cached features; `backbone`: f and h on T's noisy "
            "labels from the image shards (the paper's baseline).",
            rich_help_panel=RUN,
        ),
    ] = Stage.FEATURES,
    variant: Annotated[
        str,
        typer.Option(
            help="all, baseline, finetune-mixed, finetune-clean, nlc-pretrained or nlc-joint.",
            rich_help_panel=RUN,
        ),
    ] = "all",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel=RUN)] = "auto",
    save_predictions: Annotated[
        bool,
        typer.Option(
            help="Write RUN/VARIANT/predictions.parquet (scores on V_eval).", rich_help_panel=RUN
        ),
    ] = False,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(min=1, help="Steps between checkpoints (200; 500).", rich_help_panel=RUN),
    ] = None,
) -> None:
    """Train the label-cleaning network g and classifier h of Veit et al.

    With `--stage features` (default): the paper's variants on cached features, evaluated on
    V_eval (mAP, AP_all, by decile) in the layout of the paper's Table 2. With `--stage backbone`:
    f and h on T's noisy labels from the image shards, then `oi-pipe embed`. Rerunning the same
    command resumes from the last checkpoint.
    """
    # Settings whose default depends on the stage: only those given replace the stage's defaults.
    given = {
        k: v
        for k, v in dict(
            steps=steps, finetune_steps=finetune_steps, pretrain_steps=pretrain_steps,
            batch_size=batch_size, lr=lr, finetune_lr=finetune_lr, weight_decay=weight_decay,
            warmup=warmup, checkpoint_every=checkpoint_every,
        ).items()
        if v is not None
    } | dict(
        clean_share=clean_share, seed=seed, clean_weight=clean_weight,
        classify_weight=classify_weight, unverified=unverified, embed=embed, hidden=hidden,
        activation=activation,
    )  # fmt: skip

    def backbone_stage() -> None:
        from nlc_model.images import launch, train_backbone
        from openimages_pipe.download import storage

        if shards is None:
            raise InputError("--stage backbone needs --shards (a download folder)")
        cfg = train_backbone.BackboneConfig(
            shards=storage.location(shards), splits=splits, out=out, arch=arch, width=width,
            weights=weights, image_size=image_size, min_scale=min_scale,
            variant=variant if finetune_backbone else "baseline",
            finetune_backbone=finetune_backbone, workers=workers, device=device,
            training=replace(train_backbone.TRAINING, **given),
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
        from nlc_model.loop import TrainSettings

        if features is None:
            raise InputError("--stage features needs --features (from `oi-pipe embed`)")
        cfg = train.TrainConfig(
            splits=splits, features=features, out=out, variant=variant, device=device,
            save_predictions=save_predictions, training=TrainSettings(**given),
        )  # fmt: skip
        train.run(cfg)

    guarded(backbone_stage if stage is Stage.BACKBONE or finetune_backbone else features_stage)
