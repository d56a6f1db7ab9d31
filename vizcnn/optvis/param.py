"""Image parameterizations: the tensors the optimizer changes, and how they become images.

Two kinds, both giving a batch of independent `(B, C, H, W)` images in [0, 1] for any channel
count and size:

- `pixel`: one free value per pixel and channel.
- `fft`: a Fourier spectrum per image, each frequency scaled by 1 / max(f, 1 / max(H, W)) and the
  result divided by 4 (lucid's recipe): gradient steps favour low frequencies, so pictures come
  out smooth instead of noisy.

With `decorrelate`, three-channel images are built in a decorrelated colour space (the square
root of ImageNet's colour covariance, as lucid) and mapped back to RGB; then a sigmoid keeps
values in [0, 1]. Other channel counts have no colour correlation to undo and skip that step.
"""

from __future__ import annotations

import torch
from torch import nn

from vizcnn.core.errors import VizError

# sqrt of the ImageNet RGB colour covariance (via SVD), from lucid; columns scaled below.
COLOR_CORRELATION_SVD_SQRT = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)
PARAMS = ("fft", "pixel")


def color_matrix(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The `(3, 3)` decorrelated-to-RGB colour matrix, scaled so its largest column norm is 1."""
    matrix = torch.tensor(COLOR_CORRELATION_SVD_SQRT, device=device, dtype=dtype)
    return matrix / matrix.norm(dim=0).max()


def fft_scale(height: int, width: int, decay_power: float = 1.0) -> torch.Tensor:
    """Per-frequency scale `(H, W // 2 + 1)` of the Fourier parameterization: 1 / max(f, 1/max(H, W))."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.rfftfreq(width, dtype=torch.float64).view(1, -1)
    freqs = (fx * fx + fy * fy).sqrt()
    scale = 1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay_power
    return scale.float()


class ImageParam(nn.Module):
    """A batch of images `(B, C, H, W)` in [0, 1] made from learnable tensors.

    Args:
        kind: `fft` or `pixel`.
        batch, channels, size: the images' shape; `size` is `(H, W)`.
        decorrelate: build 3-channel images in decorrelated colour space.
        sd: standard deviation of the random initial values.
        generator: draws the initial values (reproducible); its device is used for the draw.
        device: where the parameters live.

    Example:
        >>> param = ImageParam("fft", 4, 3, (128, 128), generator=make_generator(0))
        >>> images = param()          # (4, 3, 128, 128) in [0, 1]
        >>> torch.optim.Adam(param.parameters(), lr=0.05)
    """

    scale: torch.Tensor  # (H, W // 2 + 1) Fourier amplitude scale, lucid's / 4 included
    colors: torch.Tensor  # (3, 3) decorrelated colour -> RGB

    def __init__(
        self,
        kind: str,
        batch: int,
        channels: int,
        size: tuple[int, int],
        *,
        decorrelate: bool = True,
        sd: float = 0.01,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if kind not in PARAMS:
            raise VizError(f"unknown parameterization {kind!r}; valid: {', '.join(PARAMS)}")
        height, width = int(size[0]), int(size[1])
        if height < 2 or width < 2 or batch < 1 or channels < 1:
            raise VizError(f"cannot make {batch} images of {channels}x{height}x{width}")
        self.kind = kind
        self.size = (height, width)
        self.decorrelate = bool(decorrelate) and channels == 3
        draw_device = generator.device if generator is not None else torch.device("cpu")
        if kind == "fft":
            shape: tuple[int, ...] = (batch, channels, height, width // 2 + 1, 2)
        else:
            shape = (batch, channels, height, width)
        init = torch.randn(shape, generator=generator, device=draw_device) * sd
        self.values = nn.Parameter(init.to(device))
        # lucid divides the image by 4; folding it into the scale saves a pass per step
        self.register_buffer("scale", fft_scale(height, width).to(device) / 4, persistent=False)
        self.register_buffer("colors", color_matrix(device), persistent=False)

    def raw(self) -> torch.Tensor:
        """The images before colour mapping and sigmoid, `(B, C, H, W)`."""
        if self.kind == "pixel":
            return self.values
        spectrum = torch.view_as_complex(self.values) * self.scale
        # "ortho" keeps the magnitude independent of the size (lucid scales by sqrt(HW) instead).
        return torch.fft.irfft2(spectrum, s=self.size, norm="ortho")

    def forward(self) -> torch.Tensor:
        images = self.raw()
        if self.decorrelate:
            batch, channels, height, width = images.shape
            flat = self.colors.to(images.dtype) @ images.reshape(batch, channels, -1)
            images = flat.view(batch, channels, height, width)
        return torch.sigmoid(images)
