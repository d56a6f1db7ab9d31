"""Tiny models with hand-set weights for the activation-maximization tests."""

from __future__ import annotations

import torch
from torch import nn

from vizcnn.models.loading import LoadedModel


class Tiny(nn.Module):
    """conv(C->4, 3x3) -> ReLU(inplace) -> conv(4->3, 3x3) -> ReLU -> pool -> linear(3->3).

    Weights are fixed (seeded) so every test sees the same network; `features.0` has 4 channels
    and `features.2` 3.
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(1234)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 3, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class Tripwire(nn.Module):
    """Fails if called: placed after the target layer it proves the forward pass stopped early."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the forward pass went past the target layer")


def tiny_loaded(channels: int = 3, size: int = 16, frozen: bool = True) -> LoadedModel:
    """`Tiny` wrapped as a LoadedModel with labels cat, Dog, espresso."""
    module = Tiny(channels)
    if frozen:
        module.eval().requires_grad_(False)
    return LoadedModel(
        name="tiny",
        module=module,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        input_size=(size, size),
        labels=["cat", "Dog", "espresso"],
    )


def hooks_left(module: nn.Module) -> int:
    """How many hooks of any kind remain on `module` and its children."""
    total = 0
    for sub in module.modules():
        for name in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
            "_forward_pre_hooks_with_kwargs",
        ):
            total += len(getattr(sub, name, {}))
    return total
