"""LRP through zennit (`vizcnn.attribution.LRP`).

Oracles: LRP-0 computed by hand on a two-layer net; relevance conservation on a bias-free float64
ReLU net (the map sums to the target logit, within what epsilon and zennit's 1e-6 stabilizers
absorb); the identity epsilon-LRP (epsilon -> 0) = gradient x input on a bias-free ReLU net
whose layers all have rules (Montavon et al. 2019, sec. 10.2.2 of "Layer-wise relevance
propagation: an overview"); and, for the rules vizcnn adds where zennit's hooks do not reach,
the same network written with functional activations, an element-wise scale and a written-out
residual sum against its module form.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from attribution_helpers import plain
from conftest import assert_same_state, model_state
from vizcnn.attribution import LRP, Saliency, attribute, make_methods
from vizcnn.attribution.methods import LRP_COMPOSITES, METHODS
from vizcnn.core.errors import VizError

pytest.importorskip("zennit")

# zennit's stabilizers (1e-6 at every rule, sign-aware) and epsilon move the sum by about
# 1e-6 relative per layer on these nets: the stated tolerance
CONSERVED = 1e-5


class Mlp2(nn.Module):
    """The top-left pixel -> linear(3->2) -> ReLU -> linear(2->2), no biases, set by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.one = nn.Linear(3, 2, bias=False)
        self.relu = nn.ReLU()
        self.two = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.one.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.5, 1.0, -2.0]]))
            self.two.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.two(self.relu(self.one(x[:, :, 0, 0])))


def test_lrp0_by_hand_on_two_layers() -> None:
    # x = (1, 0.5, 0.25): z1 = (1.75, 0.5), logits = (1.25, 4.0); target 1, R = 4.0.
    # R1_j = a1_j w2_1j = (3.5, 0.5); R0_i = x_i sum_j w1_ji R1_j / z1_j = x_i (2 w1_0i + w1_1i)
    # = (2.5, 1.5, 0.0), summing to 4.0
    loaded = plain(Mlp2(), size=8, labels=None)
    x = torch.full((1, 3, 8, 8), 0.75, dtype=torch.float64)
    x[0, :, 0, 0] = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    maps = LRP(loaded, composite="epsilon", epsilon=0.0)(x, 1)
    expected = torch.zeros_like(x)  # the other pixels are not read: no relevance
    expected[0, :, 0, 0] = torch.tensor([2.5, 1.5, 0.0], dtype=torch.float64)
    torch.testing.assert_close(maps, expected)


class ReluNet(nn.Module):
    """conv(3->4, 3x3) -> BN -> ReLU -> conv(4->4) -> ReLU -> max pool -> average pool ->
    flatten -> linear(4->5); no biases, the BatchNorm's shift is zero (so merged, no bias)."""

    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        self.functional = functional
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(4, 5, bias=False)
        with torch.no_grad():  # hand-set: a fixed pattern of signs and sizes
            for p in (self.conv1.weight, self.conv2.weight, self.head.weight):
                n = p.numel()
                pattern = ((torch.arange(n) * 7) % 11 - 4).double() / 6 + 0.1
                p.copy_(pattern.view(p.shape))
            self.bn.running_mean.zero_()
            self.bn.running_var.fill_(4.0)
            self.bn.weight.fill_(1.5)
            self.bn.bias.zero_()
        self.double().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv1(x))
        x = torch.relu(x) if self.functional else self.relu(x)
        x = self.conv2(x)
        x = torch.nn.functional.relu(x) if self.functional else self.relu2(x)
        return self.head(self.flat(self.pool(self.maxpool(x))))


def _images(batch: int = 2, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(batch, 3, size, size, generator=g, dtype=torch.float64)


def _target_logits(module: nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x).gather(1, t.view(-1, 1)).squeeze(1)


@pytest.mark.parametrize("composite", list(LRP_COMPOSITES))
def test_relevance_is_conserved_on_a_bias_free_relu_net(composite: str) -> None:
    net = ReluNet()
    loaded = plain(net, size=8)
    x = _images()
    t = torch.tensor([0, 3])
    logits = _target_logits(net, x, t)
    maps = LRP(loaded, composite=composite)(x, t)
    assert maps.shape == x.shape and maps.dtype == torch.float64
    torch.testing.assert_close(maps.sum((1, 2, 3)), logits, rtol=CONSERVED, atol=1e-9)


def test_epsilon_to_zero_is_gradient_times_input() -> None:
    net = ReluNet()
    loaded = plain(net, size=8)
    x = _images()
    t = torch.tensor([1, 4])
    lrp = LRP(loaded, composite="epsilon", epsilon=0.0)(x, t)
    gradient = Saliency(loaded)(x, t)
    torch.testing.assert_close(lrp, gradient * x, rtol=1e-6, atol=1e-9)
    # a large epsilon absorbs relevance: the sum falls below the logit, still the same sign
    absorbed = LRP(loaded, composite="epsilon", epsilon=10.0)(x, t).sum((1, 2, 3))
    logits = _target_logits(net, x, t)
    assert torch.all(absorbed.abs() < logits.abs()) and torch.all(absorbed * logits > 0)


class Residual(nn.Module):
    """Modules or functional calls, a layer scale and a residual sum: the rules vizcnn adds
    (activations as identity, constant scales as identity, sums split in proportion) must
    give the functional form the relevance the module form gets through zennit's own rules."""

    def __init__(self, functional: bool) -> None:
        super().__init__()
        self.functional = functional
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.act = nn.SiLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                n = p.numel()
                p.copy_((((torch.arange(n) * 5) % 9 - 3).double() / 5 + 0.05).view(p.shape))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        silu = torch.nn.functional.silu if self.functional else self.act
        branch = silu(self.conv(x))
        x = x + branch * 1.0 if self.functional else x + branch
        return self.head(self.pool(silu(x)).flatten(1))


def test_functional_activations_and_sums_get_the_module_rules() -> None:
    x = _images(size=8)
    t = torch.tensor([2, 0])
    modules = LRP(plain(Residual(False), size=8), composite="epsilon")(x, t)
    functional = LRP(plain(Residual(True), size=8), composite="epsilon")(x, t)
    torch.testing.assert_close(functional, modules)
    net = Residual(True)
    logits = _target_logits(net, x, t)
    torch.testing.assert_close(modules.sum((1, 2, 3)), logits, rtol=CONSERVED, atol=1e-9)
    # and not the plain gradient x input, which SiLU's derivative and the sum would give
    gradient = Saliency(plain(net, size=8))(x, t) * x
    assert not torch.allclose(gradient, modules, rtol=1e-3, atol=1e-6)


class SqueezeExcite(nn.Module):
    """conv -> ReLU -> x * sigmoid(fc(pool x)) -> pool -> linear: a squeeze-excitation gate."""

    def __init__(self, detach_gate: bool = False) -> None:
        super().__init__()
        self.detach_gate = detach_gate
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.fc = nn.Conv2d(4, 4, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                n = p.numel()
                p.copy_((((torch.arange(n) * 3) % 7 - 2).double() / 4 + 0.1).view(p.shape))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.fc(self.pool(x)))
        gate = gate.detach() if self.detach_gate else gate
        return self.head(self.pool(x * gate).flatten(1))


def test_squeeze_excitation_gate_takes_no_relevance() -> None:
    # signal-take-all: the product's relevance all goes to x, none into the squeeze branch, so
    # LRP-0 equals gradient x input of the same net with the gate detached (a constant scale)
    x = _images()
    t = torch.tensor([0, 1])
    net = SqueezeExcite()
    maps = LRP(plain(net), composite="epsilon", epsilon=0.0)(x, t)
    frozen = plain(SqueezeExcite(detach_gate=True))
    torch.testing.assert_close(maps, Saliency(frozen)(x, t) * x, rtol=1e-6, atol=1e-9)
    logits = _target_logits(net, x, t)
    torch.testing.assert_close(maps.sum((1, 2, 3)), logits, rtol=CONSERVED, atol=1e-9)
    # the plain gradient would send relevance through the gate too
    assert not torch.allclose(maps, Saliency(plain(net))(x, t) * x, rtol=1e-3, atol=1e-6)


def test_bad_options_are_one_line_errors() -> None:
    loaded = plain(ReluNet(), size=8)
    with pytest.raises(VizError, match="epsilon-plus-flat") as caught:
        LRP(loaded, composite="epsilonn")
    assert "\n" not in str(caught.value)
    with pytest.raises(VizError, match="must be >= 0"):
        LRP(loaded, epsilon=-1.0)
    with pytest.raises(VizError, match="channels"):
        LRP(loaded)(torch.rand(1, 2, 8, 8, dtype=torch.float64))


def test_lrp_is_registered_and_takes_shared_options() -> None:
    assert METHODS["lrp"] is LRP
    loaded = plain(ReluNet(), size=8)
    (method,) = make_methods(loaded, ["lrp"], composite="gamma", steps=5)
    assert isinstance(method, LRP) and method.composite == "gamma"
    result = attribute(loaded, _images(), ["lrp", "saliency"])
    assert result.maps["lrp"].shape == (2, 3, 8, 8)


def _real_models() -> list[Any]:
    from vizcnn.models.loading import load_model

    return [
        pytest.param(lambda: load_model("resnet18", weights="none", size=32), id="resnet18"),
        pytest.param(
            lambda: load_model("timm:convnext_atto", weights="none", size=32), id="convnext"
        ),
        pytest.param(
            lambda: load_model("timm:efficientnet_b0", weights="none", size=32),
            id="timm-efficientnet",
        ),
    ]


def _runs_and_leaves_the_model(loaded: Any, composite: str) -> tuple[torch.Tensor, torch.Tensor]:
    before = model_state(loaded.module)
    x = torch.rand(2, 3, *loaded.input_size, generator=torch.Generator().manual_seed(0))
    maps = LRP(loaded, composite=composite)(x)
    assert_same_state(before, model_state(loaded.module))
    assert maps.shape == x.shape and torch.isfinite(maps).all() and maps.abs().sum() > 0
    return x, maps


def test_lrp_on_lite0(lite0: Any) -> None:
    x, maps = _runs_and_leaves_the_model(lite0, "epsilon-plus-flat")
    # ReLU6 everywhere: not the gradient, nor gradient x input
    gradient = Saliency(lite0)(x)
    assert not torch.allclose(maps, gradient) and not torch.allclose(maps, gradient * x)


@pytest.mark.parametrize("make", _real_models())
def test_lrp_on_torchvision_and_timm(make: Any) -> None:
    pytest.importorskip("timm")
    loaded = make()
    for composite in ("epsilon-plus-flat", "gamma"):
        _runs_and_leaves_the_model(loaded, composite)


def test_cli_lrp_composite_equals_the_library(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vizcnn.cli.main import app
    from vizcnn.data.datasets import preprocess
    from vizcnn.data.samples import sample_image
    from vizcnn.models.loading import load_model

    args = ["attribute", "sample:coffee", "-m", "lenet5_digits", "--method", "lrp",
            "--lrp-composite", "alpha-beta", "--target", "2", "-q", "-o", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    loaded = load_model("lenet5_digits")
    image = preprocess(sample_image("coffee", 1), loaded.input_size)[None]
    expected = LRP(loaded, composite="alpha-beta")(image, 2)
    saved = torch.load(tmp_path / "coffee.pt")
    torch.testing.assert_close(saved["lrp"], expected[0])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["provenance"]["options"]["lrp.composite"] == "alpha-beta"
    bad = CliRunner().invoke(app, [*args[:6], "--lrp-composite", "nope", "-o", str(tmp_path)])
    assert bad.exit_code != 0 and "nope" in bad.output


class InPlaceGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = x.clone().mul_(torch.sigmoid(x.mean((2, 3), keepdim=True)))
        return self.head(x.mean((2, 3)))


def test_what_the_relevance_rule_cannot_rule_is_refused_in_one_line() -> None:
    loaded = plain(InPlaceGate(), labels=None)
    before = model_state(loaded.module)
    with pytest.raises(VizError, match="in-place product with a gate") as caught:
        LRP(loaded, composite="epsilon")(_images())
    assert "\n" not in str(caught.value)
    assert_same_state(before, model_state(loaded.module))


def test_a_score_target_starts_from_its_share_of_each_output() -> None:
    # a score that is one logit gives that class's LRP; a sum of two logits, the sum of theirs
    net = ReluNet()
    loaded = plain(net)
    x = _images()
    lrp = LRP(loaded, composite="epsilon")
    one = lrp(x, lambda out: out[:, 3])
    torch.testing.assert_close(one, lrp(x, 3))
    pair = lrp(x, lambda out: out[:, 1] + out[:, 3])
    torch.testing.assert_close(pair, lrp(x, 1) + lrp(x, 3), rtol=1e-6, atol=1e-9)
