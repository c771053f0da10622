"""The networks of Veit et al. (CVPR 2017): backbone f, label-cleaning network g, classifier h.

f maps an image to visual features f(I). In this stage f is fixed: its outputs are read from a
features table (`data.load_features`), so f is the identity on cached features here; the trainable
backbone and `oi-pipe embed` come with the image pipeline.

g cleans a noisy multi-hot label vector y with the help of f(I):
    c = clip(y + g'(y, f(I)), 0, 1)
where g' embeds y and f(I) separately (one linear layer each), concatenates the two embeddings,
passes one hidden layer and projects back up to the d classes. The identity skip makes g learn a
correction to y rather than the labels themselves.

h is a linear multi-label classifier on the features: p = sigmoid(W f(I) + b). It returns logits;
the losses use the numerically stable `binary_cross_entropy_with_logits`.

The paper does not give g's embedding and hidden sizes nor its activation; the defaults below are
ours (small next to d = 6,012 classes, as the paper's "low-dimensional embedding" asks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
OUT_INIT_STD = 1e-3  # g' starts near zero, so c starts near y: joint training begins from y


@dataclass(frozen=True)
class CleanerConfig:
    """g: sizes of its embeddings and hidden layer (our defaults; the paper gives none)."""

    classes: int  # d
    features: int  # D, the width of f(I)
    embed: int = 256  # each of y and f(I) is projected to this many dimensions
    hidden: int = 512
    activation: str = "relu"


@dataclass(frozen=True)
class ClassifierConfig:
    """h: one linear layer from f(I) to d logits."""

    classes: int
    features: int


class LabelCleaner(nn.Module):
    """g: c = clip(y + g'(y, f(I)), 0, 1)."""

    def __init__(self, cfg: CleanerConfig) -> None:
        super().__init__()
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}: {cfg.activation}")
        act = ACTIVATIONS[cfg.activation]
        self.cfg = cfg
        self.embed_labels = nn.Linear(cfg.classes, cfg.embed)
        self.embed_features = nn.Linear(cfg.features, cfg.embed)
        self.hidden = nn.Sequential(act(), nn.Linear(2 * cfg.embed, cfg.hidden), act())
        self.out = nn.Linear(cfg.hidden, cfg.classes)
        nn.init.normal_(self.out.weight, std=OUT_INIT_STD)
        nn.init.zeros_(self.out.bias)

    def residual(self, y: Tensor, x: Tensor) -> Tensor:
        """g'(y, f(I)): the correction to y, unbounded. y (B, d) multi-hot, x (B, D) -> (B, d)."""
        e = torch.cat([self.embed_labels(y), self.embed_features(x)], dim=1)  # (B, 2 * embed)
        return self.out(self.hidden(e))

    def forward(self, y: Tensor, x: Tensor) -> Tensor:
        # The clip keeps c a valid label vector; where it is active the gradient is zero, which
        # is what the paper's formulation implies (it trains g with L1 through the clip).
        return (y + self.residual(y, x)).clamp(0.0, 1.0)  # (B, d)


class Classifier(nn.Module):
    """h: logits W f(I) + b; p = sigmoid(logits)."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.linear = nn.Linear(cfg.features, cfg.classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)  # (B, d) logits
