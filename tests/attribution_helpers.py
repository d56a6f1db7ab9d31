"""Tiny float64 networks for the attribution tests."""

from __future__ import annotations

import torch
from torch import nn

from vizcnn.models.base import LoadedModel, describe


class SmallNet(nn.Module):
    """conv(3->4) -> ReLU(inplace) -> conv(4->4) -> ReLU -> global mean -> linear(4->5)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 5)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


LABELS = ["tabby", "espresso", "daisy", "tiger cat", "volcano"]


def plain(
    module: nn.Module, channels: int = 3, size: int = 8, labels: list[str] | None = LABELS
) -> LoadedModel:
    """Describe `module` with no normalization (mean 0, std 1) and the five `LABELS` (None for a
    head of another size: a label count that does not fit the head is refused)."""
    return describe(
        module,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        input_size=size,
        labels=labels,
        name="small",
    )


def images(batch: int = 2, channels: int = 3, size: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=g, dtype=torch.float64)
