"""Helpers for the mining tests: a tiny random-weight CNN (with ReLU6 and in-place ReLUs) and data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from vizcnn.models.loading import LoadedModel, freeze


class TinyMiner(nn.Module):
    """conv s2 -> ReLU6 -> conv -> ReLU(inplace) -> maxpool -> conv -> ReLU6(inplace) -> head."""

    def __init__(self, seed: int = 0, scale: float = 0.4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act1 = nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.act2 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(12, 16, 3, padding=1)
        self.act3 = nn.ReLU6(inplace=True)
        self.head = nn.Linear(16, 5)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act2(self.conv2(self.act1(self.conv1(x)))))
        x = self.act3(self.conv3(x))
        return self.head(x.mean(dim=(2, 3)))


def tiny_miner() -> nn.Module:
    """Factory for `-m mine_helpers:tiny_miner` in CLI tests."""
    return TinyMiner()


def loaded_tiny(size: int = 32, seed: int = 0, scale: float = 0.4) -> LoadedModel:
    return LoadedModel(
        name="tiny_miner",
        module=freeze(TinyMiner(seed, scale)),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        input_size=(size, size),
        labels=[str(i) for i in range(5)],
    )


def random_images(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(count, 3, size, size) in [0, 1], quantized to 8 bits so PNG round trips are exact."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 3, size, size, generator=generator)
    return images.mul(255).round().div(255)


def write_pngs(folder: Path, images: torch.Tensor, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        array = image.mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        path = folder / f"{prefix}{index:03d}.png"
        Image.fromarray(np.ascontiguousarray(array)).save(path)
        paths.append(path)
    return paths


class Reuse(nn.Module):
    """One ReLU module called twice per pass: projections cannot hook it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(self.act(x)))


def reuse_net() -> nn.Module:
    """Factory for `-m mine_helpers:reuse_net` in CLI tests."""
    return Reuse()


def huge_png(path: Path, width: int = 14000, height: int = 14000) -> Path:
    """A 1-bit PNG over Pillow's decompression-bomb limit (small on disk: all zeros)."""
    Image.new("1", (width, height)).save(path)
    return path
