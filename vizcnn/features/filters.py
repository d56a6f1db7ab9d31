"""First-layer filter grids (Krizhevsky et al.'s AlexNet figure): a convolution's weights as tiles.

A 3-input-channel filter is shown as one RGB tile; a filter of another input width as one grayscale
tile per input channel (a row per filter) or as the mean over its input channels. Normalization is
min-max: global keeps colours comparable between filters, per-filter shows each filter's shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.hooks import Layer, find_module, layer_name, parse_layer
from vizcnn.io.imaging import make_grid
from vizcnn.models.base import ModelLike, as_loaded

Normalize = Literal["global", "per-filter"]
Sort = Literal["norm", "none"]
Inputs = Literal["auto", "rgb", "split", "mean"]


@dataclass(frozen=True)
class FilterConfig:
    """How to draw a convolution's filters."""

    # a Conv2d by dotted name or the module itself; None = the first Conv2d of the model
    layer: Layer | None = None
    normalize: Normalize = "global"  # min-max over all filters, or over each filter alone
    sort: Sort = "none"  # "norm": largest L2 norm first; "none": the layer's order
    inputs: Inputs = "auto"  # auto: rgb for 3 input channels, mean for 1, else split
    scale: int = 8  # each weight becomes a scale x scale block of pixels
    padding: int = 1  # pixels between tiles in the grid (times 1, not scaled)

    def __post_init__(self) -> None:
        if self.normalize not in ("global", "per-filter"):
            raise VizError(f"normalize {self.normalize!r} invalid; use global or per-filter")
        if self.sort not in ("norm", "none"):
            raise VizError(f"sort {self.sort!r} invalid; use norm or none")
        if self.inputs not in ("auto", "rgb", "split", "mean"):
            raise VizError(f"inputs {self.inputs!r} invalid; use auto, rgb, split or mean")
        if not 1 <= self.scale <= 64:
            raise VizError(f"scale must be 1..64 pixels per weight, got {self.scale}")
        if self.padding < 0:
            raise VizError(f"padding must be >= 0, got {self.padding}")


@dataclass
class FilterGrid:
    """The tiles and the assembled grid of one convolution's filters."""

    layer: str  # the Conv2d's dotted name
    weight_shape: tuple[int, int, int, int]  # (out, in / groups, kh, kw)
    mode: str  # "rgb", "split" or "mean"
    tiles: torch.Tensor  # (N, 3 or 1, kh, kw) in [0, 1]; split: N = filters x inputs
    grid: torch.Tensor  # (3 or 1, H, W) in [0, 1], tiles scaled and laid out with padding
    order: list[int]  # filter index shown at each position (after sorting)
    norms: list[float]  # L2 norm of each filter, in the layer's order
    columns: int  # tiles per row of the grid
    value_range: list[tuple[float, float]] = field(default_factory=list)  # min, max per filter

    def to_dict(self) -> dict[str, object]:
        """The numbers for a JSON sidecar."""
        return {
            "layer": self.layer,
            "weight_shape": list(self.weight_shape),
            "mode": self.mode,
            "order": self.order,
            "norms": [round(v, 6) for v in self.norms],
            "columns": self.columns,
            "grid_size": [int(self.grid.shape[-2]), int(self.grid.shape[-1])],
        }


def conv_layers(model: nn.Module) -> list[str]:
    """Dotted names of every `nn.Conv2d` in `model`, in registration order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def find_conv(model: nn.Module, layer: Layer | None) -> tuple[str, nn.Conv2d]:
    """The named Conv2d (or the first one), with a one-line error naming the valid choices.

    `layer` may be the Conv2d itself; its dotted name (`vizcnn.hooks.layer_name`) comes back.
    """
    convs = conv_layers(model)
    if layer is not None:
        layer = layer_name(model, layer)
    if layer is None:
        if not convs:
            raise VizError("the model has no Conv2d layer to draw filters of")
        layer = convs[0]
    module = find_module(model, parse_layer(layer).name)
    if not isinstance(module, nn.Conv2d):
        shown = ", ".join(convs[:6]) + (", ..." if len(convs) > 6 else "")
        raise VizError(f"layer {layer!r} is a {type(module).__name__}, not a Conv2d; try {shown}")
    return parse_layer(layer).name, module


def _minmax(values: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    low = values.amin(dim=dims, keepdim=True)
    high = values.amax(dim=dims, keepdim=True)
    span = high - low
    # a constant filter has no shape to show: mid-grey rather than a division by zero
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (values - low) / safe, torch.full_like(values, 0.5))


def filter_grid(model: ModelLike, config: FilterConfig | None = None) -> FilterGrid:
    """Lay out a convolution's weights as a grid of tiles.

    Args:
        model: a `LoadedModel` or any `nn.Module` with a Conv2d.
        config: layer, normalization, sorting, how to show non-RGB inputs, scale.

    Returns:
        A `FilterGrid`: `tiles` `(N, 3|1, kh, kw)` after normalization and `grid` `(3|1, H, W)`.

    Example:
        >>> grid = filter_grid(torchvision.models.alexnet(weights=None))
        >>> grid.tiles.shape  # 64 filters of 11x11x3
        torch.Size([64, 3, 11, 11])
    """
    config = config or FilterConfig()
    loaded = as_loaded(model)
    name, conv = find_conv(loaded.module, config.layer)
    weight = conv.weight.detach().to("cpu", torch.float32)
    out_ch, in_ch, kh, kw = (int(v) for v in weight.shape)
    mode = config.inputs
    if mode == "auto":  # one input channel: its own grey tile per filter, in a square grid
        mode = "rgb" if in_ch == 3 else "mean" if in_ch == 1 else "split"
    if mode == "rgb" and in_ch != 3:
        raise VizError(f"{name} takes {in_ch} input channels, not 3; use split or mean")
    norms = weight.flatten(1).norm(dim=1)
    order = list(range(out_ch))
    if config.sort == "norm":
        order = sorted(order, key=lambda i: -float(norms[i]))
    if mode == "mean":
        weight = weight.mean(dim=1, keepdim=True)
    if config.normalize == "global":
        shown = _minmax(weight, (0, 1, 2, 3))
    else:
        shown = _minmax(weight, (1, 2, 3))
    shown = shown[order]
    if mode == "split":
        tiles = shown.reshape(out_ch * in_ch, 1, kh, kw)
        columns = in_ch
    else:
        tiles = shown
        columns = _grid_columns(out_ch)
    scaled = tiles.repeat_interleave(config.scale, dim=-2).repeat_interleave(config.scale, dim=-1)
    grid = make_grid(list(scaled), columns=columns, padding=config.padding, background=1.0)
    ranges = [(float(weight[i].min()), float(weight[i].max())) for i in range(out_ch)]
    return FilterGrid(
        layer=name,
        weight_shape=(out_ch, in_ch, kh, kw),
        mode=mode,
        tiles=tiles,
        grid=grid,
        order=order,
        norms=[float(v) for v in norms],
        columns=columns,
        value_range=ranges,
    )


def _grid_columns(count: int) -> int:
    """Columns of a near-square grid, wider than tall (AlexNet's 96 filters: 12 x 8)."""
    return max(1, min(count, math.ceil(math.sqrt(count * 1.5))))
