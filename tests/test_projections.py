"""Deconvnet and guided-backprop projections: functional ReLUs get the rule too (GoogLeNet)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.hooks import capture
from vizcnn.mining.patches import project
from vizcnn.models.base import describe


class FunctionalNet(nn.Module):
    """conv -> F.relu -> conv -> Tensor.relu -> conv: no nn.ReLU module anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv3 = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(F.relu(self.conv1(x))).relu())


@pytest.mark.parametrize("method", ["guided", "deconv"])
def test_functional_relu_rule_matches_hand_oracle(method: str) -> None:
    torch.manual_seed(0)  # weights only
    net = FunctionalNet().double().eval()
    loaded = describe(net, mean=(0.0, 0.0), std=(1.0, 1.0), input_size=9)
    images = torch.rand(2, 2, 9, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    units = torch.tensor([[0, 4, 4], [1, 0, 8]])
    got = project(loaded, images, "conv3", units, method)

    # the oracle, by hand: one-hot at each image's unit, conv backward = conv_transpose2d,
    # each rectifier lets a positive gradient through (guided: also only where its input > 0)
    pre1 = net.conv1(images)
    pre2 = net.conv2(pre1.clamp(min=0))
    grad = torch.zeros(2, 2, 9, 9, dtype=torch.float64)
    grad[torch.arange(2), units[:, 0], units[:, 1], units[:, 2]] = 1.0
    for pre, conv in ((pre2, net.conv3), (pre1, net.conv2)):
        grad = F.conv_transpose2d(grad, conv.weight, padding=1)
        grad = grad.clamp(min=0) * ((pre > 0) if method == "guided" else 1.0)
    expected = F.conv_transpose2d(grad, net.conv1.weight, padding=1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # the plain gradient differs: the rule was really applied to the functional calls
    x = images.clone().requires_grad_(True)
    plain = torch.autograd.grad(
        net(x)[torch.arange(2), units[:, 0], units[:, 1], units[:, 2]].sum(), x
    )[0]
    assert not torch.allclose(got, plain)


def _googlenet() -> nn.Module:
    return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)


def _inception() -> nn.Module:
    return torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)


@pytest.mark.parametrize(
    "build,layer,size",
    [
        (_googlenet, "inception3a", 64),
        pytest.param(_inception, "Mixed_5b", 96, marks=pytest.mark.slow),
    ],
    ids=["googlenet", "inception_v3"],
)
def test_functional_relu_networks_projections_are_not_the_plain_gradient(
    build, layer: str, size: int
) -> None:
    # torchvision's GoogLeNet and Inception v3 apply F.relu inside BasicConv2d: no nn.ReLU
    torch.manual_seed(0)  # weights only
    net = build().eval()
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    loaded = describe(net, input_size=size)
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), capture(net, [layer], stop_early=True) as probe:
        probe.run(loaded.normalize(images))
    # each image's most active channel at a unit (a dead unit would project to zero)
    channels = probe[layer][:, :, 1, 2].argmax(1)
    units = torch.stack([channels, torch.ones(2, dtype=torch.int64), torch.full((2,), 2)], 1)
    before = model_state(net)
    guided = project(loaded, images, layer, units, "guided")
    deconv = project(loaded, images, layer, units, "deconv")
    assert_same_state(before, model_state(net))

    x = loaded.normalize(images).requires_grad_(True)
    with torch.enable_grad(), capture(net, [layer], stop_early=True) as acts:
        acts.run(x)
        chosen = acts[layer][torch.arange(2), units[:, 0], units[:, 1], units[:, 2]]
        (plain,) = torch.autograd.grad(chosen.sum(), x)
    assert plain.abs().sum() > 0 and guided.abs().sum() > 0
    assert not torch.allclose(guided, plain, atol=1e-6)
    assert not torch.allclose(deconv, plain, atol=1e-6)
    assert not torch.allclose(guided, deconv, atol=1e-6)
    # each image's projection depends on its own unit only (one backward, batched)
    single = project(loaded, images[1:], layer, units[1:], "guided")
    torch.testing.assert_close(single, guided[1:], rtol=1e-4, atol=1e-6)
