"""Fixtures of the nlc_model tests, made once per session; tests write only to their tmp_path.

- `tiny`: the config of TINY, a generated feature world of 12 classes and 8-wide features;
- `world_dir`: TINY written as split files (splits/) and a features table (features.parquet);
- `trained`: `world_dir` with run/, where `train` has trained baseline (with its predictions) and
  nlc-joint, 30 steps each: what `evaluate` and `clean-labels` read;
- `image_inputs`: real downloaded shards and split files for their images (the image path);
- `features_config`, `backbone_config`: tiny CPU configs of the two trainers as
  `make(out, **changes)`, where a change to a `TrainSettings` field goes into `training`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

import pytest

from nlc_model import train
from nlc_model.images import train_backbone
from nlc_model.loop import TrainSettings
from nlc_model.synthetic import WorldConfig, make_world, write_world
from tests.fixtures.nlc_images import real_download, shard_ids, write_splits

TINY = WorldConfig(classes=12, families=4, features=8, t_images=300, v_images=200, seed=4)
# 2-3 steps a phase, a checkpoint and a progress line after every step; else each one's defaults
FEATURES = TrainSettings(steps=3, finetune_steps=2, pretrain_steps=2, batch_size=40, embed=4,
                         hidden=8, warmup=0, checkpoint_every=1, log_every=1)  # fmt: skip
BACKBONE = replace(train_backbone.TRAINING, steps=3, batch_size=4, warmup=0, checkpoint_every=1,
                   log_every=1)  # fmt: skip
SETTINGS = frozenset(f.name for f in fields(TrainSettings))


def changed(cfg, **changes):
    """`cfg` with `changes`; those to `TrainSettings` fields made to `cfg.training`."""
    training = replace(cfg.training, **{k: v for k, v in changes.items() if k in SETTINGS})
    return replace(
        cfg, training=training, **{k: v for k, v in changes.items() if k not in SETTINGS}
    )


@pytest.fixture(scope="session")
def tiny() -> WorldConfig:
    return TINY


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    write_world(make_world(TINY), root / "splits", root / "features.parquet")
    return root


@pytest.fixture(scope="session")
def trained(world_dir: Path) -> Path:
    settings = TrainSettings(steps=30, batch_size=40, embed=8, hidden=8)
    splits, features, out = world_dir / "splits", world_dir / "features.parquet", world_dir / "run"
    for variant in ("baseline", "nlc-joint"):  # one run folder, as a user adds a variant to it
        cfg = train.TrainConfig(splits, features, out, variant=variant, save_predictions=True,
                                training=settings)  # fmt: skip
        train.run(cfg)
    return world_dir


@pytest.fixture(scope="session")
def image_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A download folder of real shards, and split files for its images."""
    download = real_download(tmp_path_factory)
    return download, write_splits(tmp_path_factory.mktemp("splits"), shard_ids(download))


@pytest.fixture(scope="session")
def features_config(world_dir: Path) -> Callable:
    def make(out: Path, **changes) -> train.TrainConfig:
        splits, features = world_dir / "splits", world_dir / "features.parquet"
        return changed(train.TrainConfig(splits, features, out, training=FEATURES), **changes)

    return make


@pytest.fixture(scope="session")
def backbone_config(image_inputs: tuple[Path, Path]) -> Callable:
    def make(out: Path, **changes) -> train_backbone.BackboneConfig:
        download, splits = image_inputs
        cfg = train_backbone.BackboneConfig(download, splits, out, arch="tiny", width=4,
                                            image_size=32, workers=0, device="cpu",
                                            training=BACKBONE)  # fmt: skip
        return changed(cfg, **changes)

    return make
