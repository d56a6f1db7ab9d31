"""Matplotlib figures of the features techniques, drawn headless and returned as PIL images.

Only `matplotlib.figure.Figure` with the Agg canvas is used (no pyplot): no global state, no
display needed, safe in threads and on servers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from vizcnn.features.equivariance import EquivarianceResult
from vizcnn.features.featuremaps import LayerMaps
from vizcnn.features.filters import FilterGrid
from vizcnn.features.kernels import displayable
from vizcnn.features.probes import ProbeResult
from vizcnn.io.imaging import resize


def figure_image(figure: Figure, dpi: int = 100) -> Image.Image:
    """Render a matplotlib figure to an RGB PIL image."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _hwc(image: torch.Tensor) -> np.ndarray:
    array = image.detach().float().clamp(0, 1).cpu()
    if array.shape[0] == 1:
        return array[0].numpy()
    return array.permute(1, 2, 0).numpy()


def filters_figure(grid: FilterGrid, title: str = "") -> Image.Image:
    """The filter grid with each tile labelled by its filter index (and input channel if split)."""
    picture = _hwc(grid.grid)
    height, width = picture.shape[:2]
    inches = max(4.0, min(16.0, width / 60))
    figure = Figure(figsize=(inches, inches * height / width + 0.6))
    axes = figure.add_subplot()
    axes.imshow(picture, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    out_ch, in_ch, kh, kw = grid.weight_shape
    rows = math.ceil(len(grid.tiles) / grid.columns)
    cell_h, cell_w = (height - 1) / rows, (width - 1) / grid.columns
    font = max(5.0, min(9.0, cell_w / 8))
    if grid.mode == "split":
        axes.set_yticks([cell_h * (r + 0.5) for r in range(rows)], [f"#{i}" for i in grid.order])
        axes.set_xticks(
            [cell_w * (c + 0.5) for c in range(in_ch)], [f"in {c}" for c in range(in_ch)]
        )
        axes.tick_params(labelsize=font, length=0)
    else:
        for position, index in enumerate(grid.order):
            row, col = divmod(position, grid.columns)
            axes.text(
                col * cell_w + 2,
                row * cell_h + 2,
                str(index),
                fontsize=font,
                color="white",
                va="top",
                ha="left",
                bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "linewidth": 0},
            )
    axes.set_title(
        title or f"{grid.layer}: {out_ch} filters {kh}x{kw}x{in_ch} ({grid.mode})", fontsize=10
    )
    return figure_image(figure)


def _overlay(image: torch.Tensor, fmap: torch.Tensor, cmap: Any, vmax: float) -> np.ndarray:
    upsampled = resize(fmap.view(1, 1, *fmap.shape).float(), (image.shape[-2], image.shape[-1]))[
        0, 0
    ]
    heat = cmap((upsampled / max(vmax, 1e-8)).clamp(0, 1).numpy())[..., :3]
    base = _hwc(image if image.shape[0] == 3 else image.expand(3, -1, -1))
    return 0.45 * base + 0.55 * heat


def featuremaps_figure(
    image: torch.Tensor, maps: LayerMaps, overlay: bool = False, cmap: str = "viridis"
) -> Image.Image:
    """One layer's top channels as a grid of colour-mapped maps (optionally over the image).

    Each map is scaled from 0 to the largest activation shown, so maps compare within the figure.
    """
    import matplotlib

    colormap = matplotlib.colormaps[cmap]
    count = len(maps.channels)
    columns = min(count, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / columns)
    vmax = float(maps.maps.max()) if maps.maps.numel() else 1.0
    vmin = min(0.0, float(maps.maps.min())) if maps.maps.numel() else 0.0
    figure = Figure(figsize=(1.9 * columns, 2.0 * rows + 0.4))
    for position, (channel, mean) in enumerate(zip(maps.channels, maps.means, strict=True)):
        axes = figure.add_subplot(rows, columns, position + 1)
        if overlay:
            axes.imshow(_overlay(image, maps.maps[position], colormap, vmax))
        else:
            axes.imshow(maps.maps[position].numpy(), cmap=colormap, vmin=vmin, vmax=vmax)
        axes.set_title(f"ch {channel}  mean {mean:.2f}", fontsize=8)
        axes.set_xticks([])
        axes.set_yticks([])
    shape = "x".join(str(v) for v in maps.shape)
    figure.suptitle(f"{maps.layer} ({shape}): top {count} channels by mean activation", fontsize=10)
    figure.tight_layout()
    return figure_image(figure)


def kernels_figure(
    image: torch.Tensor, kernels: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]
) -> Image.Image:
    """A row per kernel: the kernel matrix with its numbers, then the filtered image."""
    names = list(kernels)
    columns = 2
    pairs = math.ceil(len(names) / columns)
    aspect = image.shape[-1] / image.shape[-2]
    figure = Figure(figsize=(columns * (1.7 + 2.4 * aspect), 2.5 * pairs))
    grid = figure.add_gridspec(pairs, 2 * columns, width_ratios=[1.0, 1.4 * aspect] * columns)
    for index, name in enumerate(names):
        row, col = divmod(index, columns)
        kernel = kernels[name].double()
        matrix = figure.add_subplot(grid[row, 2 * col])
        limit = float(kernel.abs().max()) or 1.0
        matrix.imshow(kernel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        for (y, x), value in np.ndenumerate(kernel.numpy()):
            text = f"{value:g}" if float(value).is_integer() else _fraction(value)
            matrix.text(x, y, text, ha="center", va="center", fontsize=8)
        matrix.set_xticks([])
        matrix.set_yticks([])
        matrix.set_title(name, fontsize=9)
        shown = figure.add_subplot(grid[row, 2 * col + 1])
        shown.imshow(_hwc(displayable(outputs[name], kernels[name])), cmap="gray", vmin=0, vmax=1)
        shown.set_xticks([])
        shown.set_yticks([])
    figure.tight_layout()
    return figure_image(figure)


def _fraction(value: float) -> str:
    for denominator in (9, 16, 256, 8, 4, 2):
        numerator = value * denominator
        if abs(numerator - round(numerator)) < 1e-5:
            return f"{round(numerator)}/{denominator}"
    return f"{value:.3f}"


def equivariance_figure(results: Mapping[str, EquivarianceResult], title: str = "") -> Image.Image:
    """Relative error against depth, one line per model: mean over odd and even shifts.

    Equivariant layers sit near 0; stride and pooling show as jumps of the odd-shift line.
    """
    figure = Figure(figsize=(7.5, 4.0))
    axes = figure.add_subplot()
    for index, (name, result) in enumerate(results.items()):
        colour = f"C{index}"
        depth = [row.depth for row in result.rows]
        for parity, style, label in ((1, "-", "odd shifts"), (0, "--", "even shifts")):
            if not any(s % 2 == parity for s in result.shifts):
                continue
            values = [max(row.mean(parity), 1e-8) for row in result.rows]
            axes.plot(depth, values, style, color=colour, marker=".", label=f"{name}, {label}")
        strided = [row.depth for row in result.rows if row.stride is None]
        if strided:
            axes.axvline(strided[0] - 0.5, color=colour, alpha=0.25, linewidth=4)
    axes.set_yscale("log")
    axes.set_xlabel("depth (layer index in the forward pass; shaded: vectors from here on)")
    axes.set_ylabel("relative error ||f(Tx) - Tf(x)|| / ||Tf(x)||")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title or "translation equivariance by depth", fontsize=10)
    return figure_image(figure)


def neighbors_figure(
    queries: Sequence[torch.Tensor],
    query_names: Sequence[str],
    neighbours: Sequence[Sequence[torch.Tensor]],
    neighbour_names: Sequence[Sequence[str]],
    dist: torch.Tensor,
    metric: str = "l2",
) -> Image.Image:
    """A row per query: the query, then its k nearest data images with their distances."""
    rows, k = len(queries), dist.shape[1]
    figure = Figure(figsize=(1.8 * (k + 1), 2.3 * rows))
    for row in range(rows):
        axes = figure.add_subplot(rows, k + 1, row * (k + 1) + 1)
        axes.imshow(_hwc(queries[row]), cmap="gray")
        axes.set_title(f"query: {query_names[row]}"[:28], fontsize=8, fontweight="bold")
        axes.axis("off")
        for col in range(k):
            axes = figure.add_subplot(rows, k + 1, row * (k + 1) + col + 2)
            axes.imshow(_hwc(neighbours[row][col]), cmap="gray")
            name = str(neighbour_names[row][col]).removeprefix("sample:")
            axes.set_title(f"{name}"[:22] + f"\n{metric} {float(dist[row, col]):.3g}", fontsize=7)
            axes.axis("off")
    figure.tight_layout()
    return figure_image(figure)


def probes_figure(result: ProbeResult, title: str = "") -> Image.Image:
    """Held-out accuracy of each layer's linear probe against depth, with the model's own
    accuracy and chance as horizontal lines (train accuracy dotted)."""
    figure = Figure(figsize=(max(6.0, 0.9 * len(result.layers) + 2.5), 4.2))
    axes = figure.add_subplot()
    depth = [probe.depth for probe in result.layers]
    axes.plot(
        depth,
        [probe.test_accuracy for probe in result.layers],
        marker="o",
        color="C0",
        label=f"probe, held out ({result.test_images} images)",
    )
    axes.plot(
        depth,
        [probe.train_accuracy for probe in result.layers],
        ":",
        marker=".",
        color="C0",
        alpha=0.6,
        label=f"probe, train ({result.train_images} images)",
    )
    if result.model_accuracy is not None:
        axes.axhline(
            result.model_accuracy,
            color="C2",
            linestyle="--",
            label=f"model's own, held out ({result.model_accuracy:.3f})",
        )
    axes.axhline(
        result.chance,
        color="grey",
        linestyle="-.",
        label=f"chance, majority class ({result.chance:.3f})",
    )
    for probe in result.layers:
        axes.annotate(
            f"{probe.test_accuracy:.2f}",
            (probe.depth, probe.test_accuracy),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=7,
        )
    axes.set_xticks(depth, [f"{p.layer}\n({p.features})" for p in result.layers], fontsize=7)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel("layer in forward order (feature dimension after global average pooling)")
    axes.set_ylabel("accuracy")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    axes.set_title(title or f"{result.model} on {result.data}: linear probes by depth", fontsize=10)
    figure.tight_layout()
    return figure_image(figure)
