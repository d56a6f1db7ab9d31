"""Second pass of mining: boxes hold the unit's whole gradient support; projections (ReLU rules)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torchvision
from captum.attr import NeuronDeconvolution, NeuronGuidedBackprop
from torch import nn

from conftest import assert_same_state, model_state
from mine_helpers import loaded_tiny, random_images
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.hooks import capture
from vizcnn.mining.patches import (
    channel_grid,
    cut_box,
    layer_sheet,
    mine_patches,
    project,
)
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.models.loading import LoadedModel, freeze


def gradient_support(loaded: LoadedModel, image: torch.Tensor, layer: str, unit) -> torch.Tensor:
    """The oracle: input pixels with a non-zero gradient from unit (c, y, x), in float64."""
    model = copy.deepcopy(loaded.module).double()
    # normalize for the float64 copy (loaded.normalize would cast to the float32 original's dtype)
    x = dataclasses.replace(loaded, module=model).normalize(image[None].double())
    x = x.requires_grad_(True)
    with torch.enable_grad(), capture(model, [layer], stop_early=True) as acts:
        acts.run(x)
    c, y, xx = unit
    (grad,) = torch.autograd.grad(acts[layer][0, c, y, xx], x)
    return grad[0].abs().sum(0) > 0


def assert_boxes_hold_gradients(
    loaded: LoadedModel, images: torch.Tensor, layer: str, channels, k: int
) -> int:
    data = TensorImages(images)
    top = mine_topk(loaded, data, MineConfig(layer, channels, k=k), run=RunOptions(batch=8))
    mined = mine_patches(loaded, data, top, thumbnail_size=16)
    checked = 0
    height, width = loaded.input_size
    assert list(mined.hits) == list(top.channels)
    for row, (channel, hits) in enumerate(mined.hits.items()):
        assert [(h.value, h.image_id, *h.position) for h in hits] == top.hits(row)
        assert [h.rank for h in hits] == list(range(len(hits)))
        for hit in hits:
            support = gradient_support(
                loaded, images[hit.image_id], layer, (channel, *hit.position)
            )
            top_, left, bottom, right = hit.box
            inside = torch.zeros(height, width, dtype=torch.bool)
            inside[max(top_, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
            assert not (support & ~inside).any(), (channel, hit.position, hit.box)
            checked += int(support.any())
    return checked


def test_every_hit_box_contains_its_gradient_support_tiny() -> None:
    loaded = loaded_tiny()
    assert assert_boxes_hold_gradients(loaded, random_images(12, seed=8), "conv3", (0, 5, 9), 4) > 0


def test_every_hit_box_contains_its_gradient_support_resnet() -> None:
    module = freeze(torchvision.models.resnet18(weights=None))
    loaded = LoadedModel("resnet18", module, (0.5,) * 3, (0.25,) * 3, (48, 48), [])
    assert (
        assert_boxes_hold_gradients(
            loaded, random_images(6, size=48, seed=9), "layer2.0", (0, 7), 3
        )
        > 0
    )


def test_cut_box_pads_outside_and_thumbnails_are_sized() -> None:
    image = torch.arange(2 * 4 * 5, dtype=torch.float32).view(2, 4, 5) / 40
    patch = cut_box(image, (-1, 3, 3, 7), fill=0.25)
    assert patch.shape == (2, 4, 4)
    torch.testing.assert_close(patch[:, 1:, :2], image[:, 0:3, 3:5])
    assert (patch[:, 0] == 0.25).all() and (patch[:, :, 2:] == 0.25).all()
    loaded = loaded_tiny()
    data = TensorImages(random_images(4))
    top = mine_topk(loaded, data, MineConfig("conv3", (1,), k=9))
    mined = mine_patches(loaded, data, top, thumbnail_size=20)
    hits = mined.hits[1]
    assert len(hits) == 4  # fewer images than k: fewer tiles
    assert all(max(hit.patch.shape[1:]) == 20 for hit in hits)
    assert channel_grid(hits).shape[0] == 3
    assert layer_sheet(mined).size[0] > 0


def relu_copy(module: nn.Module) -> nn.Module:
    """A copy of the network with every ReLU6 replaced by a genuine nn.ReLU (the oracle)."""
    clone = copy.deepcopy(module)
    for parent in list(clone.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.ReLU6, nn.ReLU)):
                setattr(parent, name, nn.ReLU())
    return clone


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")  # the captum oracle's
@pytest.mark.parametrize("method", ["deconv", "guided"])
def test_projection_treats_relu6_as_relu_and_restores_the_model(method: str) -> None:
    # Small weights keep every activation below 6, where ReLU6 and ReLU agree: so the
    # projection must equal captum's on a copy whose activations are real nn.ReLU modules.
    loaded = loaded_tiny(scale=0.15)
    images = random_images(3, seed=10)
    units = torch.tensor([[2, 3, 4], [0, 7, 7], [5, 1, 6]])
    inputs = loaded.normalize(images)
    with torch.no_grad():
        assert forward_max(loaded.module, inputs) < 6
    before = model_state(loaded.module)
    modules_before = list(loaded.module.modules())
    got = project(loaded, images, "conv3", units, method)
    assert_same_state(before, model_state(loaded.module))
    assert all(a is b for a, b in zip(modules_before, loaded.module.modules(), strict=True))

    oracle_model = relu_copy(loaded.module)
    algorithm = NeuronDeconvolution if method == "deconv" else NeuronGuidedBackprop
    expected = torch.cat(
        [
            algorithm(oracle_model, oracle_model.conv3).attribute(
                inputs[i : i + 1].clone().requires_grad_(True),
                neuron_selector=tuple(units[i].tolist()),
            )
            for i in range(3)
        ]
    )
    torch.testing.assert_close(got, expected)
    # ... and not the plain gradient: the ReLU rule was really applied.
    plain = torch.cat(
        [plain_gradient(loaded.module, inputs[i : i + 1], units[i]) for i in range(3)]
    )
    assert not torch.allclose(got, plain)


def forward_max(model: nn.Module, inputs: torch.Tensor) -> float:
    with capture(model, ["conv1", "conv2", "conv3"]) as acts:
        acts.run(inputs)
    return max(float(acts[name].max()) for name in ("conv1", "conv2", "conv3"))


def forward_unit(model: nn.Module, inputs: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    with capture(model, ["conv3"], stop_early=True) as acts:
        acts.run(inputs)
    return acts["conv3"][0, unit[0], unit[1], unit[2]]


def plain_gradient(model: nn.Module, inputs: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    x = inputs.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(forward_unit(model, x, unit), x)
    return grad


def test_mine_patches_with_projections_leaves_the_model_as_found() -> None:
    loaded = loaded_tiny()
    data = TensorImages(random_images(6, seed=11))
    top = mine_topk(loaded, data, MineConfig("conv2", (0, 1), k=3))
    before = model_state(loaded.module)
    mined = mine_patches(loaded, data, top, projections="guided", thumbnail_size=16)
    assert_same_state(before, model_state(loaded.module))
    assert all(
        hit.projection is not None and hit.projection.shape == hit.patch.shape
        for hits in mined.hits.values()
        for hit in hits
    )
    bare = [dataclasses.replace(hit, projection=None) for hit in mined.hits[0]]
    assert channel_grid(mined.hits[0]).shape[2] > 2 * channel_grid(bare).shape[2]


class Reuse(nn.Module):
    """x -> act -> conv -> act: one ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.act(x)))


@pytest.mark.parametrize("method", ["deconv", "guided"])
def test_projection_of_a_reused_modules_second_call_matches_hand_oracle(method: str) -> None:
    torch.manual_seed(3)  # weights only
    module = freeze(Reuse()).double()
    reused = LoadedModel("reuse", module, (0.5,) * 3, (0.25,) * 3, (12, 12), [])
    images = random_images(2, size=12, seed=12).double()
    units = torch.tensor([[1, 4, 5], [2, 0, 11]])
    got = project(reused, images, "act#1", units, method)
    # the oracle by hand: one-hot at the unit, rule at act#1, conv backward, rule at act
    x = reused.normalize(images)
    pre = module.conv(x.clamp(min=0))
    grad = torch.zeros_like(pre)
    grad[torch.arange(2), units[:, 0], units[:, 1], units[:, 2]] = 1.0
    grad = grad.clamp(min=0) * ((pre > 0) if method == "guided" else 1)
    grad = torch.nn.functional.conv_transpose2d(grad, module.conv.weight, padding=1)
    expected = grad.clamp(min=0) * ((x > 0) if method == "guided" else 1)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # mining goes through the same path (float32: a reused module's later call is projectable)
    reused = dataclasses.replace(reused, module=copy.deepcopy(module).float())
    data = TensorImages(random_images(4, size=12, seed=13))
    top = mine_topk(reused, data, MineConfig("act#1", (0,), k=2))
    mined = mine_patches(reused, data, top, projections=method, thumbnail_size=8)
    assert all(hit.projection is not None for hit in mined.hits[0])
