"""The commands around the trainer: `embed` (image shards -> the features `train` reads),
`evaluate` (any model's scores on V_eval, as `train` scores its own) and `clean-labels` (a trained
cleaner's labels for T). Typer options in, one frozen config of `nlc_model` out.

Registered on the app by `cli/__init__.py`; torch is imported only when one of them runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openimages_pipe.cli.common import guarded


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
        str,
        typer.Option(
            help="Download folder (or its shards/) of Parquet image shards: a local folder or "
            "s3://BUCKET/PREFIX (credentials and endpoint from the AWS_* variables, as for "
            "download --out)."
        ),
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
    from openimages_pipe.download import storage

    def body() -> None:
        cfg = embed.EmbedConfig(
            shards=storage.location(shards), weights=weights, out=out, arch=arch,
            image_size=image_size, batch_size=batch_size, workers=workers, device=device,
        )  # fmt: skip
        embed.run(cfg)

    guarded(body)
