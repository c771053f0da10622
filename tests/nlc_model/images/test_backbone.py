"""Backbone f: every parameter of f (and of h on top) learns; weights come from local files only."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torchvision

from nlc_model.images.backbone import Backbone, BackboneSpec, check_image_size, load_weights
from nlc_model.models import Classifier, ClassifierConfig
from openimages_pipe.errors import InputError


def backward(f: Backbone, h: Classifier, size: int) -> None:
    images = torch.rand(2, 3, size, size)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(h(f(images)), y)
    loss.backward()


@pytest.mark.parametrize(("arch", "size"), [("tiny", 32), ("resnet18", 32)])
def test_every_parameter_of_f_and_h_gets_a_gradient(arch: str, size: int) -> None:
    f = Backbone(BackboneSpec(arch, width=8))
    h = Classifier(ClassifierConfig(3, f.dim))
    assert f(torch.rand(2, 3, size, size)).shape == (2, f.dim)
    backward(f, h, size)
    for name, p in [*f.named_parameters(), *h.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_tiny_feature_width_is_eight_times_its_width() -> None:
    assert Backbone(BackboneSpec("tiny", width=4)).dim == 32


def test_unknown_architecture_names_the_choices() -> None:
    with pytest.raises(InputError, match="resnet50, inception_v3"):
        Backbone(BackboneSpec("vgg16"))


def test_inception_needs_75_pixels() -> None:
    check_image_size("inception_v3", 75)
    with pytest.raises(InputError, match="at least 75"):
        check_image_size("inception_v3", 64)


def test_torchvision_state_dict_loads_without_its_imagenet_head(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save({"model": reference.state_dict()}, path)  # as torchvision's reference scripts save
    f = Backbone(BackboneSpec("resnet18"))
    assert "torchvision" in load_weights(path, f)
    assert torch.equal(f.net.conv1.weight, reference.conv1.weight)
    assert torch.equal(f.net.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)


def test_state_dict_of_another_network_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    with pytest.raises(InputError, match="not a resnet18 state dict") as e:
        load_weights(path, Backbone(BackboneSpec("resnet18")))
    assert str(path) in str(e.value)


def test_our_checkpoint_loads_f_and_h(tmp_path: Path) -> None:
    f, h = Backbone(BackboneSpec("tiny", 4)), Classifier(ClassifierConfig(3, 32))
    path = tmp_path / "backbone.pt"
    ckpt = {
        "backbone": asdict(f.spec),
        "classifier": asdict(h.cfg),
        "f": f.state_dict(),
        "h": h.state_dict(),
    }
    torch.save(ckpt, path)
    f2, h2 = Backbone(BackboneSpec("tiny", 4)), Classifier(ClassifierConfig(3, 32))
    assert load_weights(path, f2, h2) == f"f and h from {path}"
    x = torch.rand(2, 3, 32, 32)
    f.eval(), f2.eval()
    assert torch.equal(h(f(x)), h2(f2(x)))
    with pytest.raises(InputError, match="another backbone"):
        load_weights(path, Backbone(BackboneSpec("tiny", 8)))


def test_missing_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(InputError, match="weights file not found") as e:
        load_weights(missing, Backbone(BackboneSpec("tiny", 4)))
    assert str(missing) in str(e.value) and "nothing is downloaded" in str(e.value)


def test_file_that_is_not_weights_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(InputError, match="not a PyTorch weights file"):
        load_weights(bad, Backbone(BackboneSpec("tiny", 4)))
