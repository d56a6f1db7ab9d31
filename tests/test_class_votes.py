"""`class_votes`: the logit falls equal a brute-force ablation, one channel and one image at a time."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mine_helpers import loaded_tiny, random_images
from vizcnn.ablation.surgery import ZeroChannels
from vizcnn.ablation.votes import class_votes
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.models.base import LoadedModel
from vizcnn.models.loading import freeze


class SkipNet(nn.Module):
    """conv1 -> ReLU -> conv2, plus conv1's output added after conv2: a skip around conv2."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Linear(6, 4)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv1(x)
        return self.head((self.conv2(self.relu(first)) + first).mean(dim=(2, 3)))


def skip_loaded() -> LoadedModel:
    return LoadedModel(
        name="skip",
        module=freeze(SkipNet()),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        input_size=(16, 16),
        labels=["a", "b", "c", "d"],
    )


def brute_force(
    loaded: LoadedModel, images: torch.Tensor, layer: str, channel: int
) -> torch.Tensor:
    """Mean logit fall over the images, the network rebuilt with the channel zeroed, float64."""
    intact = loaded.module.double()
    ablated = copy.deepcopy(intact)
    parent, _, child = layer.rpartition(".")
    owner = ablated.get_submodule(parent) if parent else ablated
    setattr(owner, child, ZeroChannels(getattr(owner, child), [channel]))
    falls = []
    with torch.no_grad():
        for image in images:
            x = loaded.normalize(image[None]).double()
            falls.append(intact(x)[0] - ablated(x)[0])
    loaded.module.float()
    return torch.stack(falls).mean(0)


@pytest.mark.parametrize(
    ("make", "layer", "channels", "how"),
    [
        (loaded_tiny, "conv2", (0, 3, 7, 11), "batched after the layer"),
        (skip_loaded, "conv2", (0, 2, 5), "input repeated"),
    ],
)
def test_votes_equal_brute_force_ablation(make, layer, channels, how) -> None:  # type: ignore[no-untyped-def]
    loaded = make()
    size = loaded.input_size[0]
    images = random_images(7, size=size, seed=9)
    votes = class_votes(loaded, TensorImages(images), layer, channels, run=RunOptions(batch=3))
    assert votes.how == how and votes.images == 7 and votes.channels == channels
    hooks = [m._forward_hooks or m._forward_pre_hooks for m in loaded.module.modules()]
    assert not any(hooks)  # the model is left as found
    for row, channel in enumerate(channels):
        expected = brute_force(loaded, images, layer, channel)
        torch.testing.assert_close(votes.drops[row], expected, rtol=1e-4, atol=1e-5)
        order = expected.argsort(descending=True)[:3].tolist()
        assert [k for k, _ in votes.top(row, 3)] == order


def test_limit_and_bad_channels() -> None:
    loaded = loaded_tiny()
    data = TensorImages(random_images(9, seed=2))
    votes = class_votes(loaded, data, "act3", (1,), limit=4)
    assert votes.images == 4
    with pytest.raises(VizError, match="0..15"):
        class_votes(loaded, data, "act3", (16,))
    with pytest.raises(VizError, match="limit"):
        class_votes(loaded, data, "act3", (1,), limit=0)
