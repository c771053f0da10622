"""The learning commands, `train`, `evaluate`, `clean-labels` and `embed`: typer options in, one
frozen config of `nlc_model` out.

Registered on the app by `cli.py`; torch is imported only when one of them runs.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe.cli.common import guarded
from openimages_pipe.errors import InputError


class Stage(enum.StrEnum):
    """What `train` trains: g and h on cached features, or f and h from the image shards."""

    FEATURES = "features"
    BACKBONE = "backbone"


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
        from nlc_model.images import launch, train_backbone

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
    from nlc_model.images import embed

    cfg = embed.EmbedConfig(
        shards=shards, weights=weights, out=out, arch=arch, image_size=image_size,
        batch_size=batch_size, workers=workers, device=device,
    )  # fmt: skip
    guarded(lambda: embed.run(cfg))
