"""`embed`: one row per shard image, of the backbone's width, readable by `train`'s loader."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from rich.console import Console
from typer.testing import CliRunner

from nlc_model import data
from nlc_model.images import crops, embed
from nlc_model.images import train_backbone as tb
from nlc_model.images.backbone import Backbone, BackboneSpec, load_weights
from openimages_pipe.cli import app
from openimages_pipe.errors import InputError
from tests.fixtures.nlc_images import shard_ids

QUIET = Console(quiet=True)
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_inputs, backbone_config) -> tuple[Path, Path]:
    """Real shards and a `train --stage backbone` checkpoint (tiny, width 4: D = 32)."""
    root = tmp_path_factory.mktemp("embed")
    tb.run(backbone_config(root / "run", image_size=40, steps=1), QUIET)
    return image_inputs[0], root / "run" / "baseline" / tb.CHECKPOINT


def test_one_row_per_image_with_the_checkpoints_width(trained, tmp_path: Path) -> None:
    download, ckpt = trained
    out = tmp_path / "features.parquet"
    summary = embed.run(embed.EmbedConfig(download, ckpt, out, batch_size=8, workers=2), QUIET)
    table = pq.read_table(out)
    assert sorted(table["image_id"].to_pylist()) == sorted(shard_ids(download))
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[32]"
    assert str(table.schema.field("image_id").type) == "string"
    assert (summary.images, summary.dim) == (table.num_rows, 32)
    assert b'"image_size": 40' in table.schema.metadata[b"oi_pipe_config"]
    features = data.load_features(out, torch.device("cpu"), torch.float32)  # what `train` reads
    assert features.table.shape == (table.num_rows, 32)
    assert not list(tmp_path.glob(".*tmp*"))


def test_embedding_is_f_of_the_centre_crop(trained, tmp_path: Path) -> None:
    download, ckpt = trained
    out = tmp_path / "features.parquet"
    embed.run(embed.EmbedConfig(download, ckpt, out, workers=0), QUIET)
    shard = pq.read_table(sorted((download / "shards").glob("*.parquet"))[0])
    row = shard.slice(0, 1).to_pylist()[0]
    f = Backbone(BackboneSpec("tiny", 4))
    load_weights(ckpt, f)
    box = crops.eval_box(row["width"], row["height"])
    image = crops.decode_crop(row["image"]["bytes"], box, 40, flip=False).float() / 255
    with torch.no_grad():
        expected = f.eval()(image[None])[0].numpy()
    table = pq.read_table(out)
    got = table["embedding"][table["image_id"].to_pylist().index(row["image_id"])].as_py()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_torchvision_state_dict_needs_and_takes_arch(trained, tmp_path: Path) -> None:
    download, _ = trained
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    out = tmp_path / "features.parquet"
    with pytest.raises(InputError, match="needs --arch"):
        embed.run(embed.EmbedConfig(download, weights, out), QUIET)
    cfg = embed.EmbedConfig(download, weights, out, arch="resnet18", image_size=32, workers=0)
    assert embed.run(cfg, QUIET).dim == 512


def test_missing_weights_file_is_a_clear_error(trained, tmp_path: Path) -> None:
    download, _ = trained
    missing = tmp_path / "ckpt.pt"
    with pytest.raises(InputError, match="weights file not found") as e:
        embed.run(embed.EmbedConfig(download, missing, tmp_path / "f.parquet"), QUIET)
    assert str(missing) in str(e.value) and not (tmp_path / "f.parquet").exists()


def test_arch_that_contradicts_the_checkpoint_is_refused(trained, tmp_path: Path) -> None:
    download, ckpt = trained
    with pytest.raises(InputError, match="holds a tiny"):
        embed.run(embed.EmbedConfig(download, ckpt, tmp_path / "f.parquet", arch="resnet50"), QUIET)


def test_output_is_replaced_whole(trained, tmp_path: Path) -> None:
    download, ckpt = trained
    out = tmp_path / "features.parquet"
    out.write_bytes(b"an older, different file")
    embed.run(embed.EmbedConfig(download, ckpt, out, workers=0), QUIET)
    assert pq.read_table(out).num_rows == len(shard_ids(download))
    assert io.BytesIO(out.read_bytes()).read(4) == b"PAR1"


def test_cli_embed_writes_features_and_names_a_missing_file(trained, tmp_path: Path) -> None:
    download, ckpt = trained
    out = tmp_path / "features.parquet"
    args = ["embed", "--shards", str(download), "--out", str(out), "--workers", "0"]
    result = runner.invoke(app, [*args, "--weights", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert pq.read_metadata(out).num_rows == len(shard_ids(download))
    result = runner.invoke(app, [*args, "--weights", str(tmp_path / "none.pt")])
    assert result.exit_code == 1 and "none.pt: weights file not found" in result.output
    assert "Traceback" not in result.output
