"""A model passed in train mode: techniques run it in eval mode and leave it exactly as found."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from vizcnn import RenderConfig, describe, render

CONFIG = RenderConfig(steps=3, size=32, transforms=())


def _statistics_set(net: nn.Module) -> nn.Module:
    """Running statistics far from any batch's, so that train-mode BatchNorm would show."""
    generator = torch.Generator().manual_seed(3)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return net


def _state(net: nn.Module) -> tuple[dict[str, bool], dict[str, bool], dict[str, torch.Tensor]]:
    return (
        {name: m.training for name, m in net.named_modules()},
        {name: p.requires_grad for name, p in net.named_parameters()},
        {name: b.clone() for name, b in net.named_buffers()},
    )


def _render(net: nn.Module) -> torch.Tensor:
    return render(describe(net, input_size=64), ["layer2:1", "layer3.0:2"], CONFIG).images


def test_render_in_train_mode_gives_the_eval_mode_pictures_and_leaves_the_model() -> None:
    torch.manual_seed(0)
    net = _statistics_set(torchvision.models.resnet18(weights=None)).train()
    net.layer1.eval()  # a child in another mode than its parent stays so
    reference = copy.deepcopy(net).eval()
    training, grads, buffers = _state(net)
    assert training[""] and not training["layer1"]
    pictures = _render(net)
    assert torch.equal(pictures, _render(reference))
    after_training, after_grads, after_buffers = _state(net)
    assert after_training == training and after_grads == grads
    assert after_buffers.keys() == buffers.keys()
    for name, value in buffers.items():  # BatchNorm statistics and num_batches_tracked
        assert torch.equal(after_buffers[name], value), name


def test_stochastic_depth_is_off_while_rendering() -> None:
    # timm's drop path is random in train mode: the same seed would give other pictures
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, drop_path_rate=0.5)
    assert net.training
    reference = copy.deepcopy(net).eval()
    pictures = render(describe(net, input_size=64), "layer3:0", CONFIG).images
    assert torch.equal(
        pictures, render(describe(reference, input_size=64), "layer3:0", CONFIG).images
    )
    assert net.training and all(m.training for m in net.modules())
