"""Random geometric transforms that make activation-maximization pictures robust (lucid's recipe).

Each step of rendering moves the images through pad, jitter, scale and rotate before the model
sees them. Every image in the batch gets its own random draw, taken from a `torch.Generator`.
The chain is composed into one affine map per image and applied with a single `grid_sample`,
which also resizes to the model's input size: one resampling instead of five, and exact
sub-pixel shifts in both directions.

Semantics (pixel units of the image being transformed, all about the centre):
    Pad(p, fill)   grow the canvas by p on every side, filled with `fill`
    Jitter(d)      crop d pixels off the canvas at a random offset: the content moves by a
                   uniform shift in [-d/2, d/2] on each axis (lucid's random crop, centred)
    Scale(fs)      zoom the content by a factor drawn from `fs` (canvas unchanged)
    Rotate(deg)    rotate the content by a uniform angle in [-deg, deg] degrees
    Crop(lo, hi)   show a random square box of side s * canvas (s uniform in [lo, hi]), placed
                   uniformly inside the canvas, enlarged to fill the canvas (MACO's random crops)
    Noise(sd)      add Gaussian noise of `sd` (in model-input units) after everything else

Example:
    >>> out = apply_transforms(images, standard_transforms(), (224, 224), generator)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import resize


@dataclass(frozen=True)
class Pad:
    """Grow the canvas by `pixels` on every side, filled with `fill`."""

    pixels: int = 12  # added on each side
    fill: float = 0.5  # value of the new border (and of anything rotated in from outside)


@dataclass(frozen=True)
class Jitter:
    """Random crop of `pixels` off the canvas: content shifts by up to pixels/2 either way."""

    pixels: int = 8  # total crop; the shift is uniform in [-pixels/2, pixels/2] per axis


@dataclass(frozen=True)
class Scale:
    """Zoom the content by a factor drawn uniformly from `factors`."""

    factors: tuple[float, ...] = tuple(round(0.9 + 0.02 * i, 2) for i in range(11))


@dataclass(frozen=True)
class Rotate:
    """Rotate the content by a uniform angle in [-degrees, degrees]."""

    degrees: float = 10.0


@dataclass(frozen=True)
class Crop:
    """A random box of side `s` x the canvas (s uniform in [low, high]) enlarged to fill it."""

    low: float = 0.5  # smallest box side, as a fraction of the canvas side
    high: float = 1.0  # largest box side (1: the whole canvas)


@dataclass(frozen=True)
class Noise:
    """Gaussian noise added to the model's input (after normalization), standard deviation `sd`."""

    sd: float = 0.05


Transform = Pad | Jitter | Scale | Rotate | Crop | Noise


def standard_transforms() -> tuple[Transform, ...]:
    """lucid's chain: pad 12, jitter 8, scale 0.90..1.10, rotate +-10 degrees, jitter 4."""
    return (Pad(12), Jitter(8), Scale(), Rotate(10.0), Jitter(4))


def crop_transforms() -> tuple[Transform, ...]:
    """The `maco` recipe's chain: random crops of 40-100 % of the side, rotate +-10, noise 0.05.

    Wider and multi-scale where lucid's chain is narrow (scales 0.9-1.1): each step the network
    sees a part of the picture at up to 2.5x magnification, so every part of it has to show the
    class at several scales (Fel et al. 2023 use crops of 25-30 % of a 1280 px image).
    """
    return (Pad(4), Crop(0.4, 1.0), Rotate(10.0), Noise(0.05))


@dataclass(frozen=True)
class Draw:
    """One draw of a transform chain for a batch."""

    matrices: torch.Tensor  # (B, 3, 3) source pixel coords (centred) -> canvas pixel coords
    canvas: tuple[int, int]  # (H, W) of the transformed image before resizing
    fill: float  # value outside the source image


def _translation(shift: torch.Tensor) -> torch.Tensor:
    matrix = torch.eye(3, dtype=shift.dtype, device=shift.device).repeat(shift.shape[0], 1, 1)
    matrix[:, :2, 2] = shift
    return matrix


def _precise(device: torch.device) -> torch.dtype:
    """float64 for the small matrices, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def draw(
    transforms: Sequence[Transform],
    batch: int,
    size: tuple[int, int],
    generator: torch.Generator | None = None,
) -> Draw:
    """Draw random parameters for each of `batch` images of `size` = (H, W).

    The draws happen on the generator's device (in float64 where it has it), so results depend
    only on the seed and that device.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    dtype = _precise(device)
    matrices = torch.eye(3, dtype=dtype, device=device).repeat(batch, 1, 1)
    height, width = int(size[0]), int(size[1])
    fill: float | None = None

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)

    for step in transforms:
        if isinstance(step, Pad):
            if step.pixels < 0:
                raise VizError(f"pad must be >= 0 pixels, got {step.pixels}")
            height, width = height + 2 * step.pixels, width + 2 * step.pixels
            fill = step.fill if fill is None else fill
        elif isinstance(step, Jitter):
            if not 0 <= step.pixels < min(height, width):
                raise VizError(f"jitter {step.pixels} does not fit a {height}x{width} image")
            shift = (uniform(batch, 2) - 0.5) * step.pixels  # (x, y), both directions
            matrices = _translation(-shift) @ matrices
            height, width = height - step.pixels, width - step.pixels
        elif isinstance(step, Scale):
            if not step.factors or min(step.factors) <= 0:
                raise VizError(f"scale factors must be positive, got {step.factors}")
            factors = torch.tensor(step.factors, dtype=dtype, device=device)
            choice = torch.randint(len(factors), (batch,), generator=generator, device=device)
            zoom = torch.eye(3, dtype=dtype, device=device).repeat(batch, 1, 1)
            zoom[:, 0, 0] = zoom[:, 1, 1] = factors[choice]
            matrices = zoom @ matrices
        elif isinstance(step, Rotate):
            angle = (uniform(batch) * 2 - 1) * math.radians(step.degrees)
            cos, sin = angle.cos(), angle.sin()
            turn = torch.eye(3, dtype=dtype, device=device).repeat(batch, 1, 1)
            turn[:, 0, 0], turn[:, 0, 1] = cos, -sin
            turn[:, 1, 0], turn[:, 1, 1] = sin, cos
            matrices = turn @ matrices
        elif isinstance(step, Crop):
            if not 0 < step.low <= step.high <= 1:
                raise VizError(f"crop sides must satisfy 0 < low <= high <= 1, got {step}")
            side = step.low + (step.high - step.low) * uniform(batch)
            room = torch.tensor([width, height], dtype=dtype, device=device)
            centre = (uniform(batch, 2) - 0.5) * (1 - side)[:, None] * room  # box stays inside
            zoom = torch.eye(3, dtype=dtype, device=device).repeat(batch, 1, 1)
            zoom[:, 0, 0] = zoom[:, 1, 1] = 1 / side
            matrices = zoom @ _translation(-centre) @ matrices
        elif isinstance(step, Noise):
            if not step.sd >= 0:
                raise VizError(f"noise sd must be >= 0, got {step.sd}")
        else:
            raise VizError(
                f"unknown transform {step!r}; use Pad, Jitter, Scale, Rotate, Crop or Noise"
            )
    return Draw(matrices=matrices, canvas=(height, width), fill=0.5 if fill is None else fill)


def sampling_grid(
    drawn: Draw,
    images: torch.Tensor,
    out_size: tuple[int, int],
) -> torch.Tensor:
    """The `(B, h, w, 2)` `grid_sample` grid with which `apply_draw` resamples `images`
    `(B, C, H, W)` through `drawn` (h, w: `out_size`, or the canvas when that is larger)."""
    batch, _, height, width = images.shape
    canvas_h, canvas_w = drawn.canvas
    sample_h, sample_w = out_size
    if out_size[0] < canvas_h or out_size[1] < canvas_w:
        sample_h, sample_w = canvas_h, canvas_w
    # affine_grid maps output coords in [-1, 1] (x, y order) to input coords in [-1, 1].
    matrices = drawn.matrices
    to_canvas = torch.diag(torch.tensor([canvas_w / 2, canvas_h / 2, 1.0], dtype=matrices.dtype))
    from_source = torch.diag(torch.tensor([2 / width, 2 / height, 1.0], dtype=matrices.dtype))
    theta = (
        from_source.to(matrices.device) @ torch.linalg.inv(matrices) @ to_canvas.to(matrices.device)
    )
    theta = theta[:, :2].to(device=images.device, dtype=images.dtype)
    return affine_grid(theta, (sample_h, sample_w))


def affine_grid(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.affine_grid(theta, [B, C, *size], align_corners=False)` (equal up to float rounding),
    built as a sum of a per-row and a per-column term instead of a `(B, h*w, 3) @ (B, 3, 2)`
    batched product: an affine map of pixel-centre coordinates is separable that way, and the
    product (a long, thin `bmm`) costs more than the resampling it feeds on the CPU."""
    height, width = size
    # pixel centres in [-1, 1] (align_corners=False)
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    along_x = theta[:, :, 0, None] * xs  # (B, 2, w)
    along_y = theta[:, :, 1, None] * ys + theta[:, :, 2, None]  # (B, 2, h)
    grid = along_x[:, :, None, :] + along_y[:, :, :, None]  # (B, 2, h, w)
    return grid.permute(0, 2, 3, 1).contiguous()


def apply_draw(
    images: torch.Tensor,
    drawn: Draw,
    out_size: tuple[int, int],
    then: Callable[[torch.Tensor], torch.Tensor] | None = None,
    grid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Resample `(B, C, H, W)` images through `drawn` into `(B, C, *out_size)`.

    Upsampling happens in the one `grid_sample`; when the output is smaller than the canvas the
    sampling is done at canvas resolution and then shrunk with antialiasing. `then` is a
    per-channel affine map (such as a model's normalization) to apply to the result: it is
    applied to the small input and to the fill instead, which gives the same result (the
    interpolation weights sum to one) for less work. `grid`: `sampling_grid(drawn, images,
    out_size)` computed already (it costs about as much as the sampling: reuse it for a second
    batch resampled through the same draw).
    """
    canvas_h, canvas_w = drawn.canvas
    shrink = out_size[0] < canvas_h or out_size[1] < canvas_w
    if grid is None:
        grid = sampling_grid(drawn, images, out_size)
    fill = torch.full(
        (1, images.shape[1], 1, 1), drawn.fill, device=images.device, dtype=images.dtype
    )
    if then is not None:
        images, fill = then(images), then(fill)
    # `then` may cast to the model's dtype (float64, bfloat16): sample in the grid's dtype (a
    # bfloat16 grid would misplace pixels), hand the result over in `then`'s
    out_dtype, images, fill = images.dtype, images.to(grid.dtype), fill.to(grid.dtype)
    # Zero padding of (image - fill) is constant padding with `fill`.
    if images.is_cuda and torch.are_deterministic_algorithms_enabled():
        out = bilinear_gather(images - fill, grid)  # grid_sample's CUDA backward uses atomics
    else:
        out = F.grid_sample(
            images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    out = out + fill
    return (resize(out, out_size) if shrink else out).to(out_dtype)


def bilinear_gather(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`F.grid_sample(images, grid, "bilinear", "zeros", align_corners=False)` by gathers.

    Its backward is a scatter-add that torch makes deterministic under
    `torch.use_deterministic_algorithms`, unlike grid_sample's CUDA backward.

    Args:
        images: `(B, C, H, W)`.
        grid: `(B, h, w, 2)` sampling positions (x, y) in [-1, 1].
    """
    batch, channels, height, width = images.shape
    x = ((grid[..., 0] + 1) * width - 1) / 2  # (B, h, w) source pixel coordinates
    y = ((grid[..., 1] + 1) * height - 1) / 2
    x0, y0 = x.floor(), y.floor()
    flat = images.flatten(2)  # (B, C, H*W)
    out = torch.zeros(
        batch, channels, grid.shape[1] * grid.shape[2], device=images.device, dtype=images.dtype
    )
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            index = (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).long()
            picked = flat.gather(2, index.flatten(1)[:, None].expand(-1, channels, -1))
            out = out + picked * (weight * inside).flatten(1)[:, None].to(images.dtype)
    return out.view(batch, channels, grid.shape[1], grid.shape[2])


def apply_transforms(
    images: torch.Tensor,
    transforms: Sequence[Transform],
    out_size: tuple[int, int],
    generator: torch.Generator | None = None,
    then: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Transform each image of `(B, C, H, W)` with its own random draw and resize to `out_size`.

    `then`: a per-channel affine map applied to the result (see `apply_draw`), e.g. the model's
    normalization.

    Example:
        >>> gen = make_generator(0)
        >>> apply_transforms(images, standard_transforms(), (224, 224), gen).shape
        torch.Size([B, C, 224, 224])
    """
    geometric = [t for t in transforms if not isinstance(t, Noise)]
    if not geometric:
        resized = resize(images, out_size)  # before `then`, which may cast to the model's dtype
        out = then(resized) if then is not None else resized
    else:
        drawn = draw(geometric, images.shape[0], (images.shape[-2], images.shape[-1]), generator)
        out = apply_draw(images, drawn, out_size, then)
    for step in transforms:
        if isinstance(step, Noise) and not step.sd >= 0:
            raise VizError(f"noise sd must be >= 0, got {step.sd}")
        if isinstance(step, Noise) and step.sd > 0:
            device = generator.device if generator is not None else torch.device("cpu")
            noise = torch.randn(out.shape, generator=generator, device=device, dtype=torch.float32)
            out = out + (step.sd * noise).to(device=out.device, dtype=out.dtype)
    return out
