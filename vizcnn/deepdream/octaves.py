"""The octave pyramid: which sizes the truncated network accepts, and what a size costs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vizcnn.core.devices import available_memory
from vizcnn.core.errors import VizError
from vizcnn.deepdream.config import DreamConfig
from vizcnn.deepdream.tiling import tile_shapes, tile_spans
from vizcnn.hooks import forward_to, model_guard
from vizcnn.models.loading import LoadedModel


def _accepts(loaded: LoadedModel, layers: Sequence[str], shape: tuple[int, int]) -> bool:
    """Whether the truncated network runs on a `shape` input (probe with zeros)."""
    probe = torch.zeros(1, loaded.channels, *shape, device=loaded.device)
    param = next(loaded.module.parameters(), None)
    if param is not None and param.is_floating_point():
        probe = probe.to(param.dtype)
    try:
        with torch.no_grad():
            forward_to(loaded.module, probe, layers, detach=True)
    except RuntimeError:  # torch reports too-small inputs as RuntimeError (conv, pool, view)
        return False
    return True


def octave_sizes(
    loaded: LoadedModel, size: tuple[int, int], config: DreamConfig
) -> list[tuple[int, int]]:
    """The `(h, w)` of each octave, smallest first, that the truncated network accepts.

    Octaves (or tiles) the network rejects are dropped with a warning; if even the full size is
    rejected, the single octave is the smallest accepted enlargement (dream resizes back).

    Example:
        >>> octave_sizes(loaded, (480, 640), DreamConfig())
        [(175, 233), (245, 327), (343, 457), (480, 640)]
    """
    layers = list(dict.fromkeys(t.name for t in config.targets(loaded)))
    # Networks reject inputs well below their training size (inception_v3: under 75 of 299);
    # bigger shapes are not probed, which keeps the probes cheap.
    limit = 2 * max(loaded.input_size) // 3
    cache: dict[tuple[int, int], bool] = {}

    def fits(shape: tuple[int, int]) -> bool:
        for piece in tile_shapes(shape, config.tile):
            if min(piece) > limit:
                continue
            if piece not in cache:
                cache[piece] = _accepts(loaded, layers, piece)
            if not cache[piece]:
                return False
        return True

    height, width = size
    if not fits(size):
        if config.tile and max(size) > config.tile:
            raise VizError(
                f"tile {config.tile} is too small for {loaded.name} at {layers[-1]}; use a larger DreamConfig.tile"
            )
        for grow in range(1, 40):
            factor = 1.2**grow
            bigger = (math.ceil(height * factor), math.ceil(width * factor))
            if fits(bigger):
                warnings.warn(
                    f"image {width}x{height} (WxH) is smaller than {loaded.name} accepts at "
                    f"{layers[-1]}; dreaming at {bigger[1]}x{bigger[0]} (1 octave) and resizing back",
                    stacklevel=2,
                )
                return [bigger]
        raise VizError(f"{loaded.name} rejects every input size tried up to {bigger}")
    sizes: list[tuple[int, int]] = [size]
    for level in range(1, config.octaves):
        factor = config.octave_scale**level
        shape = (max(1, round(height / factor)), max(1, round(width / factor)))
        if not fits(shape):
            warnings.warn(
                f"image {width}x{height} (WxH) is small for {loaded.name} at {', '.join(layers)}: using "
                f"{level} of {config.octaves} octaves (the network rejects {shape[1]}x{shape[0]})",
                stacklevel=2,
            )
            break
        sizes.append(shape)
    return sizes[::-1]


@dataclass(frozen=True)
class MemoryEstimate:
    """What dreaming one size costs, roughly (within a factor of about 2 on CPU and CUDA)."""

    bytes_per_pixel: float  # autograd-saved activations of the truncated net per input pixel
    tile_pixels: int  # pixels of the largest tile fed to the network (the image with tile 0)
    image_bytes: int  # the dream, its gradient and the input image at the largest octave
    total: int  # peak bytes: activations of one tile (forward + backward) plus the images


def dream_memory(
    loaded: LoadedModel, size: tuple[int, int], config: DreamConfig, batch: int = 1
) -> MemoryEstimate:
    """Estimate the peak memory of dreaming `batch` images of `size` = (H, W) before doing it.

    The activation bytes per pixel are measured once, with one forward pass at the model's
    input size (what autograd saves for the backward pass), and scaled to the largest tile of
    the largest octave; `config.tile` bounds it.

    Example:
        >>> dream_memory(loaded, (4096, 4096), DreamConfig(tile=0)).total / 2**30  # GiB
    """
    layers = list(dict.fromkeys(t.name for t in config.targets(loaded)))
    probe = loaded.input_size
    dtype = loaded.dtype
    saved: dict[int, int] = {}  # storage pointer -> bytes: views of one tensor count once
    resident = {t.untyped_storage().data_ptr() for t in loaded.module.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in resident:  # weights are there anyway, at any image size
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    inputs = torch.zeros(1, loaded.channels, *probe, device=loaded.device, dtype=dtype)
    with model_guard(loaded.module), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward_to(loaded.module, inputs.requires_grad_(True), layers, detach=False)
    per_pixel = sum(saved.values()) / (probe[0] * probe[1])
    height, width = size
    rows = max(b - a for a, b in tile_spans(height, config.tile))
    cols = max(b - a for a, b in tile_spans(width, config.tile))
    tile_pixels = rows * cols
    element = torch.empty((), dtype=dtype).element_size()
    image_bytes = batch * loaded.channels * height * width * (2 * element + 1)
    # backward frees saved activations as it goes: the peak is about them plus a quarter
    total = int(1.25 * per_pixel * tile_pixels * batch) + image_bytes
    return MemoryEstimate(per_pixel, tile_pixels, image_bytes, total)


def check_memory(
    loaded: LoadedModel, size: tuple[int, int], config: DreamConfig, batch: int = 1
) -> str | None:
    """Refuse a dream that cannot fit in free memory; a warning text when it needs over half.

    Raises:
        VizError: one line with the estimate, the free memory and the `DreamConfig.tile` to set.

    Returns:
        None, or a one-line warning for the caller to show.
    """
    estimate = dream_memory(loaded, size, config, batch).total
    free = available_memory(loaded.device)
    if free is None or estimate < free // 2:
        return None
    height, width = size
    need = f"dreaming {width}x{height} at DreamConfig.tile={config.tile} needs about {estimate / 2**30:.1f} GiB"
    big = config.tile == 0 or config.tile > 512
    hint = "set DreamConfig.tile=512 (or smaller) to bound it" if big else "lower DreamConfig.tile"
    where = loaded.device.type
    if estimate > free:
        raise VizError(f"{need}, {free / 2**30:.1f} GiB free on {where}; {hint}")
    return f"{need} of {free / 2**30:.1f} GiB free on {where}; {hint} if it runs out"
