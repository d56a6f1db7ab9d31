"""Figures for attribution results, as matplotlib `Figure`s (no pyplot: headless, thread-safe).

The library only builds the figures; callers save them (`figure_png_bytes` gives PNG bytes).
Every heat map uses one rule, so panels compare: the per-pixel sum over channels of |attribution|,
divided by that map's 99th percentile and clipped to [0, 1], on one colour map and one colour bar.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from vizcnn.attribution.deletion import Curves
from vizcnn.attribution.sanity import SanityResult

CMAP = "inferno"


def heat(attribution: torch.Tensor, percentile: float = 99.0) -> np.ndarray:
    """`(C, H, W)` attribution -> `(H, W)` in [0, 1]: sum |.| over channels / its percentile."""
    magnitude = attribution.detach().abs().sum(0).float().cpu().numpy()
    scale = float(np.percentile(magnitude, percentile))
    if scale <= 0:
        scale = float(magnitude.max()) or 1.0
    return np.clip(magnitude / scale, 0.0, 1.0)


def _image(image: torch.Tensor) -> np.ndarray:
    array = image.detach().float().clamp(0, 1).cpu().permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array[..., :3]


def attribution_figure(
    image: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    top5: Sequence[tuple[str, float]],
    target: str,
    title: str = "",
) -> Figure:
    """One row: the input with its top-5 predictions, then one heat map per method.

    Args:
        image: `(C, H, W)` in [0, 1].
        maps: method -> `(C', H, W)` attribution of that image.
        top5: (label, probability) pairs, most probable first.
        target: the class the maps explain (shown in the title).
    """
    panels = len(maps) + 1
    fig = Figure(figsize=(2.3 * panels + 0.6, 3.9), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    gray = image.shape[0] == 1
    axes[0].imshow(_image(image), cmap="gray" if gray else None, vmin=0, vmax=1)
    axes[0].set_title("input", fontsize=9)
    text = "\n".join(f"{p:5.1%} {label[:18]}" for label, p in top5)
    axes[0].set_xlabel(text, fontsize=7, family="monospace", loc="left")
    shown = None
    for axis, (name, attribution) in zip(axes[1:], maps.items(), strict=True):
        shown = axis.imshow(heat(attribution), cmap=CMAP, vmin=0, vmax=1)
        axis.set_title(name, fontsize=9)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    if shown is not None:
        bar = fig.colorbar(shown, ax=list(axes[1:]), shrink=0.8, pad=0.01)
        bar.set_label("|attribution| / 99th pct", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}  target: {target}".strip(), fontsize=10)
    return fig


def curves_figure(curves: Mapping[str, Curves]) -> Figure:
    """Deletion and insertion curves per method (mean over images), areas in the legend."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    for name, curve in curves.items():
        x = curve.fractions.numpy()
        left.plot(
            x, curve.deletion.mean(0).numpy(), label=f"{name} ({curve.deletion_area.mean():.3f})"
        )
        right.plot(
            x, curve.insertion.mean(0).numpy(), label=f"{name} ({curve.insertion_area.mean():.3f})"
        )
    left.set_title("deletion (lower area = better)", fontsize=10)
    right.set_title("insertion (higher area = better)", fontsize=10)
    for axis in (left, right):
        axis.set_xlabel("share of pixels removed / inserted, most attributed first")
        axis.set_ylabel("target probability")
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    return fig


def sanity_figure(result: SanityResult) -> Figure:
    """Spearman, SSIM and HOG similarity per method as the layers are randomized from the top."""
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    stages = ["trained", *result.stages]
    for axis, (title, values) in zip(
        axes,
        (("Spearman |attr|", result.spearman), ("SSIM", result.ssim), ("HOG Pearson", result.hog)),
        strict=True,
    ):
        for method, series in values.items():
            style = "--" if method in result.flagged else "-"
            axis.plot(range(len(stages)), [1.0, *series], style, marker="o", ms=3, label=method)
        axis.set_xticks(range(len(stages)), stages, rotation=60, ha="right", fontsize=7)
        axis.set_title(title, fontsize=10)
        axis.axhline(0, color="gray", lw=0.5)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("similarity to the trained model's maps")
    axes[0].legend(fontsize=7)
    fig.suptitle("cascading randomization, top layer first (dashed: failed the test)", fontsize=10)
    return fig


def figure_png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (for an atomic write)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
