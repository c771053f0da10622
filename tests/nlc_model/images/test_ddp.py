"""More than one process: torchrun with 2 CPU processes (gloo), each reading its own share."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from nlc_model.images import shards
from nlc_model.images import train_backbone as tb
from nlc_model.images.batches import load_image_data
from nlc_model.images.launch import launch


def test_ranks_read_disjoint_shares_of_t_that_cover_it(image_inputs) -> None:
    data = load_image_data(*image_inputs, torch.device("cpu"))
    spec = shards.StreamSpec(32, train=True, seed=1)
    t = data.rows["T"]
    mine = [
        shards.ShardStream(data.index, t, spec, r, 2, workers=1).rank_positions(0) for r in (0, 1)
    ]
    assert not set(mine[0]) & set(mine[1]) and len(mine[0]) and len(mine[1])
    assert sorted(np.concatenate(mine).tolist()) == list(range(len(t)))


def test_torchrun_trains_with_two_gloo_processes(image_inputs, backbone_config, tmp_path: Path,
                                                 capfd) -> None:  # fmt: skip
    download, splits = image_inputs
    cfg = backbone_config(tmp_path, steps=2, checkpoint_every=500)
    code = launch(cfg, nproc=2)
    out = capfd.readouterr().out
    assert code == 0, out
    reads = dict(re.findall(r"rank (\d)/2: (\d+) of \d+ T images", out))
    total = len(load_image_data(download, splits, torch.device("cpu")).rows["T"])
    assert set(reads) == {"0", "1"} and sum(map(int, reads.values())) == total
    ckpt = torch.load(tmp_path / "baseline" / tb.CHECKPOINT, weights_only=True)
    assert ckpt["state"]["done"] and ckpt["state"]["samples"] == 2 * 4 * 2  # steps x B x ranks
    assert (tmp_path / tb.METRICS).is_file()
