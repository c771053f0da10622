"""Backbone f: images -> features f(I), a torchvision network chosen by name or a tiny CNN.

f takes (B, 3, S, S) float images in [0, 1] and returns (B, D) features: it normalises with the
ImageNet mean and std itself, so every caller (training, `embed`, the benchmarks) feeds the same
thing. A torchvision network is built with `weights=None` (nothing is ever fetched) and its last
linear layer is replaced by the identity, so D is that layer's input width; the baseline of Veit et
al. puts the classifier h of `models` on top: d sigmoid outputs, p = sigmoid(h(f(I))).

`load_weights` reads a local file: a torchvision state dict (its last layer is left out, as d
differs from ImageNet's 1,000 classes) or a checkpoint of `train --stage backbone`, which names
its architecture and also holds h. A missing or unreadable file is an `InputError` naming it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from nlc_model.models import Classifier
from openimages_pipe.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]


def tiny_cnn(width: int) -> tuple[nn.Module, int]:
    """Four stride-2 stages of width, 2w, 4w, 8w channels (D = 8w), the last three with a second
    3x3 conv (the first stage works at full resolution: one conv there costs the most), then a
    global average pool: it learns the offline world's shapes and colours at 64 px on 2 cores."""
    layers, c_in = conv_bn(3, width, 2), width
    for c in (2 * width, 4 * width, 8 * width):
        layers += conv_bn(c_in, c, 2) + conv_bn(c, c, 1)
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), c_in


def torchvision_net(name: str, head: str) -> Callable[[int], tuple[nn.Module, int]]:
    def build(width: int) -> tuple[nn.Module, int]:
        extra = {"aux_logits": False, "init_weights": True} if name == "inception_v3" else {}
        net = getattr(torchvision.models, name)(weights=None, **extra)
        dim = net.get_submodule(head).in_features
        *path, last = head.split(".")
        parent = net.get_submodule(".".join(path)) if path else net
        setattr(parent, last, nn.Identity())  # f ends before the ImageNet classifier
        return net, dim

    return build


# name -> (builder of (network, D), the torchvision classifier layer f drops; None for ours)
ARCHS: dict[str, tuple[Callable[[int], tuple[nn.Module, int]], str | None]] = {
    "resnet50": (torchvision_net("resnet50", "fc"), "fc"),
    "inception_v3": (torchvision_net("inception_v3", "fc"), "fc"),  # the paper's network
    "resnet18": (torchvision_net("resnet18", "fc"), "fc"),
    "mobilenet_v3_small": (torchvision_net("mobilenet_v3_small", "classifier.3"), "classifier.3"),
    "tiny": (tiny_cnn, None),
}
MIN_SIZE = {"inception_v3": 75}  # smaller inputs shrink to nothing inside the network


@dataclass(frozen=True)
class BackboneSpec:
    """f: which network; `width` only shapes `tiny` (D = 8 * width)."""

    arch: str = "resnet50"
    width: int = 32


class Backbone(nn.Module):
    """f: (B, 3, S, S) floats in [0, 1] -> (B, D) features."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        if spec.arch not in ARCHS:
            raise InputError(f"unknown backbone; choose one of {', '.join(ARCHS)}", value=spec.arch)
        self.spec = spec
        self.net, self.dim = ARCHS[spec.arch][0](spec.width)  # the network and D
        # not persistent: a torchvision state dict loads into `net` as it is
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, images: Tensor) -> Tensor:
        return self.net((images - self.mean) / self.std)  # (B, D)


def check_image_size(arch: str, size: int) -> None:
    least = MIN_SIZE.get(arch, 32)
    if size < least:
        raise InputError(f"--image-size: {arch} needs at least {least} px", value=str(size))


def read_weights(path: Path) -> dict:
    """The object in a local weights file; never a download."""
    if not path.is_file():
        raise InputError(
            "weights file not found (nothing is downloaded: give a local torchvision state dict "
            "or a checkpoint of `train --stage backbone`)",
            path=path,
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise InputError(f"not a PyTorch weights file: {str(e).splitlines()[0]}", path) from None
    if not isinstance(obj, dict):
        raise InputError("weights file holds no state dict", path, value=type(obj).__name__)
    return obj


def is_checkpoint(obj: dict) -> bool:
    return "backbone" in obj and "f" in obj


def spec_of(obj: dict) -> BackboneSpec | None:
    """The spec a checkpoint was trained with; None for a plain state dict."""
    return BackboneSpec(**obj["backbone"]) if is_checkpoint(obj) else None


def load_torchvision(f: Backbone, state: dict, path: Path) -> None:
    state = state.get("model", state.get("state_dict", state))  # reference-script wrappers
    head = ARCHS[f.spec.arch][1]
    drop = tuple(p for p in (head and f"{head}.", "AuxLogits.") if p)  # layers f does not have
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    missing, unexpected = f.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(
            f"not a {f.spec.arch} state dict: missing {missing[:3]}, unexpected {unexpected[:3]}",
            path,
        )


def load_weights(
    path: Path, f: Backbone, h: Classifier | None = None, obj: dict | None = None
) -> str:
    """Load f, and h when the file is our checkpoint with the same classes; say what was loaded.
    `obj` is the file's content when the caller has read it already."""
    obj = read_weights(path) if obj is None else obj
    if not is_checkpoint(obj):
        load_torchvision(f, obj, path)
        return f"torchvision {f.spec.arch} weights from {path}"
    if (spec := spec_of(obj)) != f.spec:
        msg = f"checkpoint holds another backbone than {asdict(f.spec)}"
        raise InputError(msg, path, value=str(asdict(spec)))
    f.load_state_dict(obj["f"])
    if h is None or obj.get("h") is None or obj["classifier"] != asdict(h.cfg):
        return f"f from {path}"
    h.load_state_dict(obj["h"])
    return f"f and h from {path}"
