"""A small CNN of "your own" for `plot_own_model.py`: scikit-learn's digits, 1 channel, 32 px.

Three blocks of conv 3x3 -> BatchNorm -> ReLU -> max-pool 2 (32 -> 16 -> 8 -> 4 px), global
average pooling and a 10-class linear head: the shape of most small CNNs people train. vizcnn
loads it as `own_cnn:build` (the factory takes no arguments) with your trained weights:

    cd gallery
    vizcnn layers -m own_cnn:build --weights out/own_cnn.pt --input-size 32

`own_cnn:described` is the same network with its preprocessing attached (`vizcnn.describe`), so
the CLI needs no `--mean/--std/--input-size/--labels`:

    vizcnn layers -m own_cnn:described --weights out/own_cnn.pt

Layer names are the dotted `named_modules()` paths: `block1` .. `block3` (each block's output),
`block2.conv`, `block2.bn`, `block2.relu`, `pool`, `head`.
"""

from __future__ import annotations

import torch
from torch import nn

import vizcnn

# the training digits' mean and std, rounded (plot_own_model.py computes them from the data)
MEAN = 0.305
STD = 0.324
LABELS = [str(digit) for digit in range(10)]


class ConvBlock(nn.Sequential):
    """conv 3x3 (padding 1, no bias) -> BatchNorm -> ReLU -> max-pool 2: halves the size."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)


class OwnCNN(nn.Module):
    """`(B, 1, 32, 32)` normalized digits -> `(B, 10)` logits."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.block1 = ConvBlock(1, width)  # 16 px, receptive field 4 px
        self.block2 = ConvBlock(width, 2 * width)  # 8 px, 10 px
        self.block3 = ConvBlock(2 * width, 4 * width)  # 4 px, 22 px
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.head(self.pool(x).flatten(1))


def build() -> OwnCNN:
    """The factory vizcnn calls (`-m own_cnn:build`): no arguments, an untrained network."""
    return OwnCNN()


def described() -> vizcnn.LoadedModel:
    """`build()` described: its normalization, 32 px input and class names travel with it."""
    return vizcnn.describe(build(), mean=[MEAN], std=[STD], input_size=32, labels=LABELS)
