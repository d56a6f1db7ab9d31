"""Warnings on the result: all-zero maps and guided / deconv maps equal to the plain gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attribution_helpers import SmallNet, images, plain
from vizcnn.attribution import METHODS, attribute, make_methods
from vizcnn.attribution.checks import MapChecks, join_warnings
from vizcnn.core.run_options import RunOptions


def dark_off_net() -> nn.Module:
    """conv(1->2, 3x3 ones, bias -2) -> ReLU -> mean -> linear(2->3, all ones).

    A pixel's 3x3 sum stays below 2 on an image of 0.1s (at most 0.9), so every conv output is
    negative, the ReLU blocks the whole gradient, and Grad-CAM at the conv is exactly zero; on an
    image of 0.9s the corner sums are 3.6 and the map is positive.
    """
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2, 3, bias=False),
    )
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(-2.0)
        net[4].weight.fill_(1.0)
    return net.double()


def test_a_zero_gradcam_map_is_a_warning_naming_the_images_and_layer() -> None:
    x = torch.stack([torch.full((1, 8, 8), 0.1), torch.full((1, 8, 8), 0.9)]).double()
    result = attribute(
        plain(dark_off_net(), channels=1, labels=None), x, ["saliency", "gradcam"], targets=0
    )
    # the oracle: image 0's maps are zero (no gradient passes the ReLU), image 1's are not
    for name in ("saliency", "gradcam"):
        assert torch.equal(result.maps[name][0], torch.zeros_like(result.maps[name][0]))
        assert result.maps[name][1].abs().sum() > 0
    assert [(w.kind, w.methods, w.images) for w in result.warnings] == [
        ("zero", ("saliency",), (0,)),
        ("zero", ("gradcam",), (0,)),
    ]
    message = str(result.warnings[1])
    assert message.startswith("gradcam: the map is zero for image 0 at layer '0' (")
    assert "try a later layer" in message and "\n" not in message


class SiluNet(nn.Module):
    """conv -> activation -> conv -> mean -> linear: nothing for the guided or deconv rule."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = activation
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.act(self.conv1(x))).mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("activation", "named"), [(nn.Softmax2d(), "Softmax2d"), (nn.Identity(), "")]
)
def test_guided_and_deconv_equal_to_saliency_without_relus_are_warnings(
    activation: nn.Module, named: str
) -> None:
    methods = ["saliency", "guided", "deconv"]
    result = attribute(plain(SiluNet(activation)), images(3), methods)
    # the oracle: with no rectifier the rules have nothing to act on, the maps are the gradient
    assert torch.equal(result.maps["guided"], result.maps["saliency"])
    assert torch.equal(result.maps["deconv"], result.maps["saliency"])
    assert [(w.kind, w.methods, w.images) for w in result.warnings] == [
        ("equal", ("guided", "saliency"), (0, 1, 2)),
        ("equal", ("deconv", "saliency"), (0, 1, 2)),
    ]
    message = str(result.warnings[0])
    assert message.startswith("guided equals saliency on every image (the guided rule changed")
    assert ("activation modules: Softmax2d" in message) == bool(named)


def test_a_relu_net_gives_no_warnings() -> None:
    loaded = plain(SmallNet())
    methods = make_methods(loaded, list(METHODS), steps=4, samples=2)
    result = attribute(loaded, images(3), methods, run=RunOptions(batch=2))
    assert not torch.equal(result.maps["guided"], result.maps["saliency"])
    assert result.warnings == []


def test_warnings_do_not_depend_on_the_batch_layout() -> None:
    x = torch.stack([torch.full((1, 8, 8), v) for v in (0.1, 0.9, 0.1, 0.05, 0.9)]).double()
    loaded = plain(dark_off_net(), channels=1, labels=None)
    whole = attribute(loaded, x, "gradcam", targets=1).warnings
    assert [w.images for w in whole] == [(0, 2, 3)]
    assert attribute(loaded, x, "gradcam", targets=1, run=RunOptions(batch=2)).warnings == whole
    parts = [
        attribute(loaded, x[:2], "gradcam", targets=1).warnings,
        attribute(loaded, x[2:], "gradcam", targets=1).warnings,
    ]
    assert join_warnings(parts, [2, 3]) == whole
    assert (
        whole[0]
        .message(["a", "b", "c", "d", "e"])
        .startswith("gradcam: the map is zero for images a, c, d at layer '0'")
    )


def test_equality_tolerates_summation_noise_but_not_a_rule_that_acts() -> None:
    gradient = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    noisy = gradient * (1 + 1e-6)  # what reordered float32 sums on a GPU look like
    guided = torch.stack([gradient[0].clamp(min=0), gradient[1]])  # the rule acts on image 0
    checks = MapChecks(("guided", "saliency"), "", nn.Identity())
    checks.add({"saliency": gradient, "guided": noisy})
    checks.add({"saliency": gradient, "guided": guided})
    assert [(w.kind, w.images) for w in checks.warnings()] == [("equal", (0, 1, 3))]
