"""g and h: shapes, gradients into every parameter, the clip, and the identity skip of g."""

from __future__ import annotations

import pytest
import torch

from nlc_model.models import Classifier, ClassifierConfig, CleanerConfig, LabelCleaner

D, CLASSES, B = 10, 7, 16


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = (torch.rand(B, CLASSES, generator=gen) < 0.3).float()  # (B, d) multi-hot
    x = torch.randn(B, D, generator=gen)  # (B, D)
    return y, x


def _cleaner(**kw) -> LabelCleaner:
    torch.manual_seed(0)
    return LabelCleaner(CleanerConfig(CLASSES, D, embed=4, hidden=6, **kw))


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_g_forward_backward_reaches_every_parameter(activation: str) -> None:
    g = _cleaner(activation=activation)
    with torch.no_grad():  # move g' away from zero so that the clip is not active everywhere
        g.out.weight.normal_(std=0.3)
    y, x = _inputs()
    c = g(y, x)
    assert c.shape == (B, CLASSES)
    (c - (1 - y)).abs().sum().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_h_forward_backward_reaches_every_parameter() -> None:
    h = Classifier(ClassifierConfig(CLASSES, D))
    y, x = _inputs()
    logits = h(x)
    assert logits.shape == (B, CLASSES)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, y).backward()
    for name, p in h.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_c_equals_y_when_the_correction_is_zero() -> None:
    g = _cleaner()
    with torch.no_grad():
        g.out.weight.zero_()
        g.out.bias.zero_()
    y, x = _inputs()
    assert torch.equal(g.residual(y, x), torch.zeros_like(y))
    assert torch.equal(g(y, x), y)


def test_c_is_clipped_to_unit_interval() -> None:
    g = _cleaner()
    y, x = _inputs()
    with torch.no_grad():
        g.out.weight.normal_(std=5.0)  # corrections far outside [-1, 1]
    raw = y + g.residual(y, x)
    assert raw.min() < 0 and raw.max() > 1  # the clip has something to do
    c = g(y, x)
    assert c.min() >= 0 and c.max() <= 1
    inside = (raw >= 0) & (raw <= 1)
    assert torch.equal(c[inside], raw[inside])
    with torch.no_grad():
        g.out.weight.zero_()
        g.out.bias.fill_(3.0)
    assert torch.equal(g(y, x), torch.ones_like(y))


def test_g_starts_near_identity() -> None:
    y, x = _inputs()
    assert (_cleaner()(y, x) - y).abs().max() < 0.05


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="activation"):
        _cleaner(activation="swish")
