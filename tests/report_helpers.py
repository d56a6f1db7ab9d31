"""A tiny report fixture: a hand-set network whose layer name and labels contain markup, tiny
PNG data (one file named with markup) and the fastest options, so a whole site builds in seconds.

A tiny real site from the shell (e.g. for a browser test), about 10-20 s on 2 cores:

    vizcnn report -m lenet5_digits --layers features.0,features.3 --units-per-layer 2 \
        --steps 4 --limit 16 --crops 1 --images sample:coffee --dream-octaves 1 \
        --dream-steps 2 --methods saliency,gradcam -q -o SITE/
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from vizcnn.deepdream.config import DreamConfig
from vizcnn.io.imaging import save_png
from vizcnn.models.base import LoadedModel
from vizcnn.report import ReportConfig

TINY_CLI_ARGS = [
    "-m", "lenet5_digits", "--layers", "features.0,features.3", "--units-per-layer", "2",
    "--steps", "4", "--limit", "16", "--crops", "1", "--images", "sample:coffee",
    "--dream-octaves", "1", "--dream-steps", "2", "--methods", "saliency,gradcam", "-q",
]  # fmt: skip

EVIL = "<script>alert(1)</script>"  # a layer name, a label and a file name contain it


class MarkupNet(nn.Module):
    """conv(3->4) named with markup -> ReLU -> conv(4->3) -> ReLU -> global mean -> linear(3->3)."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(7)
        self.add_module(EVIL, nn.Conv2d(3, 4, 3, padding=1))
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = getattr(self, EVIL)
        x = self.relu(self.conv2(torch.relu(first(x))))
        return self.head(x.mean(dim=(2, 3)))


def markup_loaded() -> LoadedModel:
    module = MarkupNet().eval().requires_grad_(False)
    return LoadedModel(
        name="markup",
        module=module,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        input_size=(16, 16),
        labels=[f"{EVIL} cat", "dog & co", "espresso"],
    )


def write_data(folder: Path, count: int = 6) -> Path:
    """`count` seeded 20x20 noise PNGs; the first is named with markup."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(3)
    for index in range(count):
        name = f"{EVIL}.png" if index == 0 else f"img{index}.png"
        save_png(torch.rand(3, 20, 20, generator=gen), folder / name)
    return folder


TINY_RENDER = replace(ReportConfig().render, steps=3, size=16)  # the report's recipe, shorter
TINY_MINE = replace(ReportConfig().mine, k=2)
TINY_DREAM = DreamConfig(octaves=1, steps=2)


def tiny_config(data: Path, **changes: object) -> ReportConfig:
    """The fastest report of `markup_loaded()`: 2 layers, 2 units, 3 steps, 1 image, 1 method."""
    options: dict[str, object] = {
        "layers": (EVIL, "conv2"),
        "units_per_layer": 2,
        "render": TINY_RENDER,
        "data": str(data),
        "mine": TINY_MINE,
        "images": (str(data / f"{EVIL}.png"),),
        "methods": ("saliency",),
        "dream": TINY_DREAM,
    }
    options.update(changes)
    return ReportConfig(**options)  # type: ignore[arg-type]
