"""Big images in bounded memory: gradients tile by tile after a random roll, banded updates.

The roll is never materialized: each tile of the rolled image is copied from the unrolled one
by at most four plain slices, and its gradient is copied straight back to the unrolled positions, so
undoing the roll costs nothing and only one full-size buffer (the gradient) is allocated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vizcnn.io.imaging import resize

# grad_fn(piece) -> d objective / d piece, both (B, C, h, w); piece is a leaf requiring grad.
GradientFn = Callable[[torch.Tensor], torch.Tensor]


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """Split `range(length)` into the fewest near-equal spans no longer than `tile` (0: one span).

    Near-equal spans (rather than full tiles plus a sliver) keep every tile at least about
    `tile / 2` long, so no tile falls below the size the network accepts.

    Example:
        >>> tile_spans(1100, 512)
        [(0, 367), (367, 733), (733, 1100)]
    """
    if length <= 0:
        return []
    count = 1 if tile <= 0 else math.ceil(length / tile)
    bounds = [round(i * length / count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(count)]


def tile_shapes(size: tuple[int, int], tile: int) -> set[tuple[int, int]]:
    """The distinct `(h, w)` tile shapes `rolled_gradient` feeds the network for an image `size`."""
    rows = {b - a for a, b in tile_spans(size[0], tile)}
    cols = {b - a for a, b in tile_spans(size[1], tile)}
    return {(h, w) for h in rows for w in cols}


@dataclass
class GradientStats:
    """Per-image running sums over a gradient, accumulated tile by tile (float64; MPS: float32)."""

    count: int  # elements per image (C * H * W)
    abs_sum: torch.Tensor  # (B,) sum |g|
    total: torch.Tensor  # (B,) sum g
    squares: torch.Tensor  # (B,) sum g^2

    def mean_abs(self) -> torch.Tensor:
        """(B,) mean |g| per image."""
        return self.abs_sum / self.count

    def std(self) -> torch.Tensor:
        """(B,) standard deviation of g per image."""
        mean = self.total / self.count
        return (self.squares / self.count - mean * mean).clamp_min(0).sqrt()


def rolled_gradient(
    x: torch.Tensor,
    shift: tuple[int, int],
    tile: int,
    grad_fn: GradientFn,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, GradientStats]:
    """The gradient of `grad_fn`'s objective at `torch.roll(x, shift, (2, 3))`, rolled back.

    Every pixel lies in exactly one tile, so every pixel gets a gradient; with `tile` >= the image
    (or 0) this is exactly the untiled gradient. Tile seams move with the random `shift`.

    Args:
        x: `(B, C, H, W)` images in the model's input space (not modified).
        shift: `(dy, dx)` roll applied before tiling.
        tile: largest tile side in pixels; 0 for one tile.
        grad_fn: returns the objective's gradient for one `(B, C, h, w)` tile.
        dtype: of the returned gradient (default x's); the sums always use the exact tile grads.

    Returns:
        The gradient `(B, C, H, W)` in `x`'s (unrolled) coordinates and its per-image sums.

    Example:
        >>> g, stats = rolled_gradient(x, (5, -3), 512, grad_fn)
    """
    batch, _, height, width = x.shape
    grad = torch.empty_like(x, dtype=dtype)
    # float64 sums where the device has float64; MPS has none, and float32 sums of |g| over a
    # tile stay far more precise than the bfloat16 buffer the gradient may be kept in
    wide_dtype = torch.float32 if x.device.type == "mps" else torch.float64
    zeros = torch.zeros(batch, dtype=wide_dtype, device=x.device)
    stats = GradientStats(x[0].numel(), zeros.clone(), zeros.clone(), zeros.clone())
    dims = (1, 2, 3)
    for y0, y1 in tile_spans(height, tile):
        rows = wrapped_spans(y0, y1, shift[0], height)
        for x0, x1 in tile_spans(width, tile):
            cols = wrapped_spans(x0, x1, shift[1], width)
            # The rolled tile is at most 4 plain rectangles of x (the roll wraps once per
            # axis): copied by slicing straight to the tile, no (B, C, h, W) band, and several
            # times faster than a gather with wrapped index tensors.
            piece = x.new_empty(batch, x.shape[1], y1 - y0, x1 - x0)
            with torch.no_grad():
                for (dst_r, src_r), (dst_c, src_c) in itertools.product(rows, cols):
                    piece[:, :, dst_r, dst_c] = x[:, :, src_r, src_c]
            piece_grad = grad_fn(piece.requires_grad_(True)).detach()
            for (dst_r, src_r), (dst_c, src_c) in itertools.product(rows, cols):
                grad[:, :, src_r, src_c] = piece_grad[:, :, dst_r, dst_c]
            stats.abs_sum += piece_grad.abs().sum(dim=dims, dtype=wide_dtype)
            stats.total += piece_grad.sum(dim=dims, dtype=wide_dtype)
            stats.squares += piece_grad.square().sum(dim=dims, dtype=wide_dtype)
    return grad, stats


def wrapped_spans(start: int, stop: int, shift: int, length: int) -> list[tuple[slice, slice]]:
    """`(tile slice, source slice)` pairs of `roll(range(length), shift)[start:stop]`.

    Position i of the rolled axis holds source `(i - shift) % length`; a span of at most
    `length` positions wraps at most once, so one or two plain slices cover it.

    Example:
        >>> wrapped_spans(0, 5, 2, 10)
        [(slice(0, 2, None), slice(8, 10, None)), (slice(2, 5, None), slice(0, 3, None))]
    """
    first = (start - shift) % length
    count = stop - start
    head = min(count, length - first)
    spans = [(slice(0, head), slice(first, first + head))]
    if head < count:
        spans.append((slice(head, count), slice(0, count - head)))
    return spans


def as_unit(batch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Values in [0, 1] as floating point (uint8 is divided by 255)."""
    return batch.to(dtype).div_(255) if batch.dtype == torch.uint8 else batch


def row_bands(height: int, rows: int = 256) -> list[slice]:
    """Row bands for in-place updates: mixed-dtype ops on a band need only band-sized buffers."""
    return [slice(top, min(top + rows, height)) for top in range(0, height, rows)]


def enlarge(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear enlargement of `(B, C, h, w)`, as `F.interpolate(align_corners=False)`, in bands.

    `F.interpolate` needs about twice its output in temporaries; sampling band by band needs
    only the output, which matters when carrying a big octave's detail to a bigger one.
    """
    batch, channels = x.shape[:2]
    height, width = shape
    out = torch.empty(batch, channels, height, width, dtype=x.dtype, device=x.device)
    # Pixel centres in normalized coordinates; grid_sample maps them back to source pixel
    # (i + 0.5) * h / height - 0.5 and clamps at the border, exactly as interpolate does.
    across = (torch.arange(width, device=x.device, dtype=x.dtype) + 0.5) / width * 2 - 1
    for band in row_bands(height):
        rows = torch.arange(band.start, band.stop, device=x.device, dtype=x.dtype)
        down = (rows + 0.5) / height * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(across[None, :], down[:, None]), dim=-1)
        out[:, :, band] = F.grid_sample(
            x,
            grid.expand(batch, -1, -1, -1),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
    return out


def add_image(x: torch.Tensor, batch: torch.Tensor, alpha: float) -> torch.Tensor:
    """`x += alpha * batch` in [0, 1] units at x's size, in place and without a full-size copy."""
    if tuple(batch.shape[-2:]) != tuple(x.shape[-2:]):
        return x.add_(resize(as_unit(batch, x.dtype), (x.shape[-2], x.shape[-1])), alpha=alpha)
    for band in row_bands(x.shape[-2]):
        # uint8 band by band as `as_unit` converts it (a band-sized float copy): a uint8 image
        # then dreams bit for bit as its float `image / 255`, which is what the CLI feeds
        x[:, :, band].add_(as_unit(batch[:, :, band], x.dtype), alpha=alpha)
    return x
