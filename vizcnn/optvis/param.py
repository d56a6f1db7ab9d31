"""Image parameterizations: the tensors the optimizer changes, and how they become images.

Three kinds, all giving a batch of independent `(B, C, H, W)` images in [0, 1] for any channel
count and size:

- `pixel`: one free value per pixel and channel.
- `fft`: a Fourier spectrum per image, each frequency scaled by 1 / max(f, 1 / max(H, W)) and the
  result divided by 4 (lucid's recipe): gradient steps favour low frequencies, so pictures come
  out smooth instead of noisy.
- `maco`: magnitude-constrained Fourier (Fel et al. 2023, "Unlocking feature visualization for
  deeper networks with magnitude constrained optimization"): only the phase of each frequency is
  optimized; its amplitude is fixed to a natural-image spectrum, so the picture keeps natural
  image statistics (contrast at every scale) whatever the objective does. The amplitude is a
  power law k_c / max(f, 1 / max(H, W)) ** `MACO_DECAY` fitted to the bundled sample photographs
  (`spectrum_fit`; no stored spectrum is downloaded, unlike horama), scaled so that the image
  before colour mapping has unit variance, with no DC term (mean colour grey).

With `decorrelate`, three-channel images are built in a decorrelated colour space (the square
root of ImageNet's colour covariance, as lucid) and mapped back to RGB; then a sigmoid keeps
values in [0, 1]. Other channel counts have no colour correlation to undo and skip that step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vizcnn.core.errors import VizError

# sqrt of the ImageNet RGB colour covariance (via SVD), from lucid; columns scaled below.
COLOR_CORRELATION_SVD_SQRT = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)
PARAMS = ("maco", "fft", "pixel")
# Power law of the amplitude spectrum of natural images, in lucid's decorrelated colour space:
# `spectrum_fit` on 13 of the bundled samples (photographs and textures: astronaut, coffee,
# chelsea, rocket, motorcycle_left, china, flower, brick, grass, gravel, coins, camera, moon),
# each cut square and resized to 128 px, over 0.015 < f < 0.25 cycles/pixel: amplitude
# ~ f ** -1.36 and the decorrelated channels' mean amplitudes in the ratio 1 : 0.77 : 0.55.
MACO_DECAY = 1.36
MACO_CHANNEL_WEIGHTS = (1.0, 0.77, 0.55)


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


def _frequencies(height: int, width: int) -> torch.Tensor:
    """|f| in cycles per pixel of each `rfft2` bin, `(H, W // 2 + 1)` float64."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64).view(-1, 1)
    fx = torch.fft.rfftfreq(width, dtype=torch.float64).view(1, -1)
    return (fx * fx + fy * fy).sqrt()


def spectrum_fit(
    images: torch.Tensor, band: tuple[float, float] = (0.015, 0.25)
) -> tuple[float, tuple[float, ...]]:
    """Fit amplitude ~ k_c * f ** -decay to the mean amplitude spectrum of `(N, C, H, W)` images.

    Three-channel images are first mapped into lucid's decorrelated colour space (the inverse
    of `color_matrix`). Returns the decay (one for all channels) and each channel's mean
    amplitude over `band` relative to the first channel's. This is where `MACO_DECAY` and
    `MACO_CHANNEL_WEIGHTS` come from.
    """
    data = images.double()
    if data.shape[1] == 3:
        matrix = color_matrix(dtype=torch.float64)
        data = torch.linalg.solve(matrix, data.flatten(2)).view_as(data)
    data = data - data.mean((2, 3), keepdim=True)
    amplitude = torch.fft.rfft2(data, norm="ortho").abs().mean(0)  # (C, H, W // 2 + 1)
    freqs = _frequencies(data.shape[2], data.shape[3])
    inside = (freqs > band[0]) & (freqs < band[1])
    log_f = freqs[inside].log()
    log_a = amplitude.mean(0)[inside].log()
    centred = log_f - log_f.mean()
    slope = float((centred * (log_a - log_a.mean())).sum() / (centred * centred).sum())
    means = amplitude[:, inside].mean(1)
    return -slope, tuple(float(m / means[0]) for m in means)


def maco_amplitude(
    channels: int, height: int, width: int, decay: float = MACO_DECAY
) -> torch.Tensor:
    """The fixed amplitude `(C, H, W // 2 + 1)` of the `maco` parameterization.

    k_c / max(f, 1 / max(H, W)) ** decay with no DC term, scaled so that the real image it
    makes (any phases that keep the spectrum Hermitian) has mean 0 and variance 1 per pixel
    (Parseval, with `norm="ortho"`). k_c is `MACO_CHANNEL_WEIGHTS` for 3 channels, else 1.
    """
    freqs = _frequencies(height, width)
    amplitude = 1.0 / freqs.clamp(min=1.0 / max(height, width)) ** decay
    amplitude[0, 0] = 0.0
    weights = MACO_CHANNEL_WEIGHTS if channels == 3 else (1.0,) * channels
    amplitude = torch.stack([w * amplitude for w in weights])
    # energy over the full spectrum: rfft columns other than 0 and Nyquist stand for two bins
    counts = torch.full((width // 2 + 1,), 2.0, dtype=torch.float64)
    counts[0] = 1.0
    if width % 2 == 0:
        counts[-1] = 1.0
    energy = (amplitude.square() * counts).sum()
    return (amplitude * (channels * height * width / energy).sqrt()).float()


def hermitian_phase(phase: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Make `(..., H, W // 2 + 1)` phases odd where `rfft2` stores both k and -k of a column.

    In column 0 (and the Nyquist column of an even width) bin (k, j) and bin (-k, j) are complex
    conjugates in the spectrum of a real image. Averaging phi(k) and -phi(-k) makes the phases
    consistent, so `irfft2` keeps every bin's amplitude exactly (self-conjugate bins get phase 0).
    """
    columns = [0] + ([width // 2] if width % 2 == 0 and width > 1 else [])
    mirror = (-torch.arange(height, device=phase.device)) % height
    fixed = phase.clone()
    for j in columns:
        column = phase[..., j]
        fixed[..., j] = (column - column[..., mirror]) / 2
    return fixed


class ImageParam(nn.Module):
    """A batch of images `(B, C, H, W)` in [0, 1] made from learnable tensors.

    Args:
        kind: `maco`, `fft` or `pixel`.
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
    amplitude: torch.Tensor  # (C, H, W // 2 + 1) the fixed amplitude of `maco`
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
        elif kind == "maco":
            shape = (batch, channels, height, width // 2 + 1)
        else:
            shape = (batch, channels, height, width)
        if kind == "maco":  # phases: uniform on the circle (sd does not apply)
            init = (torch.rand(shape, generator=generator, device=draw_device) * 2 - 1) * math.pi
        else:
            init = torch.randn(shape, generator=generator, device=draw_device) * sd
        self.values = nn.Parameter(init.to(device))
        # lucid divides the image by 4; folding it into the scale saves a pass per step
        self.register_buffer("scale", fft_scale(height, width).to(device) / 4, persistent=False)
        self.register_buffer("colors", color_matrix(device), persistent=False)
        amplitude = maco_amplitude(channels, height, width) if kind == "maco" else torch.zeros(0)
        self.register_buffer("amplitude", amplitude.to(device), persistent=False)

    def raw(self) -> torch.Tensor:
        """The images before colour mapping and sigmoid, `(B, C, H, W)`."""
        if self.kind == "pixel":
            return self.values
        if self.kind == "maco":
            phase = hermitian_phase(self.values, *self.size)
            spectrum = torch.polar(self.amplitude.expand_as(phase), phase)
            return torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
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


# images are clamped this far inside (0, 1) before the logit, so black and white stay finite
IMAGE_LOGIT_EPS = 1e-4


class ImagePhaseParam(nn.Module):
    """Images `(B, C, H, W)` in [0, 1] that start as given photographs; only phases change.

    The photographs are taken back through `ImageParam`'s pipeline (logit, lucid's colour
    decorrelation for 3 channels, `rfft2`): each frequency's amplitude is kept fixed and its
    phase is the parameter (faccent's `fourier_phase` seeded with an image, the parameterization
    of feature accentuation, Hamblin et al. 2024). So the picture keeps the photograph's
    spectrum, contrast at every scale and mean colour, whatever the objective does, and before
    any step it *is* the photograph (up to the `IMAGE_LOGIT_EPS` clamp and float rounding).

    Args:
        images: `(B, C, H, W)` in [0, 1], H and W at least 2.
        decorrelate: build 3-channel images in decorrelated colour space (as `ImageParam`).

    Example:
        >>> param = ImagePhaseParam(photos)       # param() ~= photos
        >>> Adam(param.parameters(), lr=0.05)
    """

    amplitude: torch.Tensor  # (B, C, H, W // 2 + 1) signed where a bin is real (DC, Nyquist)
    colors: torch.Tensor  # (3, 3) decorrelated colour -> RGB

    def __init__(self, images: torch.Tensor, *, decorrelate: bool = True) -> None:
        super().__init__()
        if images.dim() != 4 or min(images.shape[-2:]) < 2:
            raise VizError(f"need images (B, C, H, W) of at least 2x2, got {tuple(images.shape)}")
        batch, channels, height, width = images.shape
        self.size = (height, width)
        self.decorrelate = bool(decorrelate) and channels == 3
        data = images.detach().float()
        colors = color_matrix(data.device)
        self.register_buffer("colors", colors, persistent=False)
        raw = torch.logit(data.clamp(IMAGE_LOGIT_EPS, 1 - IMAGE_LOGIT_EPS))
        if self.decorrelate:
            raw = torch.linalg.solve(colors, raw.reshape(batch, channels, -1)).view_as(raw)
        spectrum = torch.fft.rfft2(raw, norm="ortho")
        # bins whose conjugate is themselves (DC, the Nyquist row/column) are real: their sign
        # lives in the amplitude and their phase stays 0, so `hermitian_phase` cannot flip it
        real = torch.zeros(height, width // 2 + 1, dtype=torch.bool, device=data.device)
        rows = [0] + ([height // 2] if height % 2 == 0 else [])
        cols = [0] + ([width // 2] if width % 2 == 0 else [])
        for r in rows:
            for c in cols:
                real[r, c] = True
        amplitude = torch.where(real, spectrum.real, spectrum.abs())
        phase = torch.where(real, torch.zeros_like(amplitude), spectrum.angle())
        self.register_buffer("amplitude", amplitude, persistent=False)
        self.values = nn.Parameter(phase)

    def raw(self) -> torch.Tensor:
        """The images before colour mapping and sigmoid, `(B, C, H, W)`."""
        phase = hermitian_phase(self.values, *self.size)
        spectrum = torch.complex(self.amplitude * phase.cos(), self.amplitude * phase.sin())
        return torch.fft.irfft2(spectrum, s=self.size, norm="ortho")

    def forward(self) -> torch.Tensor:
        images = self.raw()
        if self.decorrelate:
            batch, channels, height, width = images.shape
            flat = self.colors.to(images.dtype) @ images.reshape(batch, channels, -1)
            images = flat.view(batch, channels, height, width)
        return torch.sigmoid(images)
