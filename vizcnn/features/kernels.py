"""The hand-made kernels of the lecture slides, applied to an image with `conv2d`.

Like every deep-learning "convolution", `conv2d` computes a cross-correlation (the kernel is not
flipped): output[y, x] = sum_ij kernel[i, j] * image[y + i - r, x + j - r]. Each colour channel is
filtered alone with the same kernel (a depthwise convolution, `groups=C`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from vizcnn.core.errors import VizError, did_you_mean

Padding = Literal["replicate", "zeros", "valid"]

# name -> rows of the kernel matrix (the usual textbook / Wikipedia "Kernel (image processing)" set)
_CLASSIC: dict[str, tuple[tuple[float, ...], ...]] = {
    "identity": ((0, 0, 0), (0, 1, 0), (0, 0, 0)),
    "edge (diagonal)": ((1, 0, -1), (0, 0, 0), (-1, 0, 1)),
    "edge (4-neighbour)": ((0, -1, 0), (-1, 4, -1), (0, -1, 0)),
    "edge (8-neighbour)": ((-1, -1, -1), (-1, 8, -1), (-1, -1, -1)),
    "sharpen": ((0, -1, 0), (-1, 5, -1), (0, -1, 0)),
    "box blur": tuple(tuple(1 / 9 for _ in range(3)) for _ in range(3)),
    "gaussian blur": tuple(tuple(v / 16 for v in row) for row in ((1, 2, 1), (2, 4, 2), (1, 2, 1))),
}


def classic_kernels(
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """The seven lecture kernels by name, each `(3, 3)`: identity, three edge detectors, sharpen,
    box blur and Gaussian blur.

    Example:
        >>> classic_kernels()["sharpen"]
        tensor([[ 0., -1.,  0.], [-1.,  5., -1.], [ 0., -1.,  0.]])
    """
    return {name: torch.tensor(rows, dtype=dtype, device=device) for name, rows in _CLASSIC.items()}


def pick_kernels(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """Validate kernel names (None or empty: all of them, in the lecture's order)."""
    if not names:
        return list(_CLASSIC)
    for name in names:
        if name not in _CLASSIC:
            raise VizError(did_you_mean(name, list(_CLASSIC), "kernel"))
    return list(names)


@dataclass(frozen=True)
class KernelConfig:
    """Which classic kernels to apply to an image, and how (`vizcnn.runs.kernels_file`)."""

    kernels: tuple[str, ...] = ()  # names from `classic_kernels`, in this order; () = all seven
    padding: Padding = "replicate"  # how conv2d treats the border: replicate, zeros or valid
    size: int = 256  # resize so the shorter side has this many pixels first (0 = as it is)
    gray: bool = False  # convert the image to grayscale first

    def __post_init__(self) -> None:
        pick_kernels(self.kernels)
        if self.padding not in ("replicate", "zeros", "valid"):
            raise VizError(f"padding {self.padding!r} invalid; use replicate, zeros or valid")
        if self.size < 0:
            raise VizError(f"size must be >= 0 pixels (0 = as it is), got {self.size}")

    def names(self) -> list[str]:
        """The kernels to apply, in order."""
        return pick_kernels(self.kernels)


def apply_kernel(
    images: torch.Tensor, kernel: torch.Tensor, padding: Padding = "replicate"
) -> torch.Tensor:
    """Filter each channel of `images` with one 2-D `kernel` through `conv2d`.

    Args:
        images: `(B, C, H, W)` or `(C, H, W)`.
        kernel: `(kh, kw)`, odd sizes.
        padding: `replicate` (edge pixels repeated: no dark frame), `zeros`, or `valid` (no
            padding: the output is smaller by kh-1, kw-1).

    Returns:
        Same layout as `images`; same size unless `valid`. Values are not clipped.

    Example:
        >>> edges = apply_kernel(image, classic_kernels()["edge (8-neighbour)"])
    """
    if padding not in ("replicate", "zeros", "valid"):
        raise VizError(f"padding {padding!r} invalid; use replicate, zeros or valid")
    single = images.dim() == 3
    batch = images.unsqueeze(0) if single else images
    if batch.dim() != 4:
        raise VizError(f"images must be (B, C, H, W) or (C, H, W), got {tuple(images.shape)}")
    kh, kw = (int(v) for v in kernel.shape)
    if kh % 2 == 0 or kw % 2 == 0:
        raise VizError(f"kernel sides must be odd, got {kh}x{kw}")
    channels = batch.shape[1]
    weight = kernel.to(device=batch.device, dtype=batch.dtype).expand(channels, 1, kh, kw)
    if padding == "replicate":
        batch = F.pad(batch, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate")
        out = F.conv2d(batch, weight, groups=channels)
    elif padding == "zeros":
        out = F.conv2d(batch, weight, padding=(kh // 2, kw // 2), groups=channels)
    else:
        out = F.conv2d(batch, weight, groups=channels)
    return out[0] if single else out


def apply_kernels(
    image: torch.Tensor,
    kernels: Mapping[str, torch.Tensor] | None = None,
    padding: Padding = "replicate",
) -> dict[str, torch.Tensor]:
    """Every kernel applied to one image: name -> filtered `(C, H', W')`, unclipped.

    Args:
        image: `(C, H, W)` in [0, 1].
        kernels: name -> `(kh, kw)` (default: `classic_kernels()`).
    """
    kernels = kernels if kernels is not None else classic_kernels(image.dtype, image.device)
    return {name: apply_kernel(image, k, padding) for name, k in kernels.items()}


def displayable(output: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """A kernel's output mapped to [0, 1] for display.

    Kernels whose weights sum to 1 (identity, sharpen, blurs) keep the image's brightness: clipped.
    Zero-sum kernels (edge detectors) give signed responses around 0: the magnitude, scaled so its
    99.5th percentile is white.
    """
    if abs(float(kernel.sum())) > 1e-6:
        return output.clamp(0, 1)
    magnitude = output.abs().mean(dim=-3, keepdim=True).expand_as(output)
    top = torch.quantile(
        magnitude.flatten().float()[:: max(1, magnitude.numel() // 1_000_000)], 0.995
    )
    return (magnitude / top.clamp_min(1e-8)).clamp(0, 1)
