"""DeepDream: amplify what chosen layers see, octave by octave, on images of any size.

The algorithm of the original notebook (google/deepdream, 2015), in the model's normalized space:
an octave pyramid from the smallest size up, carrying only the dreamed detail to the next size;
each step rolls the image by a random shift, takes the gradient of 0.5*||a||^2 summed over the
chosen layers (weighted, optionally over a channel subset), normalizes it by its mean |g| (or std),
steps, undoes the roll and clamps to the valid pixel range. Beyond the original: the gradient is
computed in tiles (memory bounded by the tile), the network only runs up to the deepest dream
layer, small images get fewer octaves instead of a shape error, and guided dreaming.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch

from vizcnn.core.channels import parse_channels
from vizcnn.core.devices import make_generator
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.deepdream.tiling import (
    add_image,
    as_unit,
    enlarge,
    rolled_gradient,
    row_bands,
    tile_shapes,
)
from vizcnn.hooks import capture, forward_to, technique
from vizcnn.io.imaging import resize
from vizcnn.models.loading import LoadedModel

# Luminance weights (ITU-R 601) for feeding a colour image to a one-channel model.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class LayerTarget:
    """One term of the dream objective: `weight * 0.5 * ||a[:, channels]||^2` at `layer`."""

    layer: str  # dotted module path, optionally `name#k` for the k-th call of a reused module
    channels: tuple[int, ...] | None = None  # channel subset; None = all channels
    weight: float = 1.0  # multiplier of this layer's term

    @property
    def spec(self) -> str:
        """Back to the `LAYER[:CHANNELS][@WEIGHT]` text form."""
        text = self.layer
        if self.channels is not None:
            text += ":" + ",".join(str(c) for c in self.channels)
        if self.weight != 1.0:
            text += f"@{self.weight:g}"
        return text


def parse_layer_target(spec: str | LayerTarget) -> LayerTarget:
    """Parse `LAYER[:CHANNELS][@WEIGHT]`, e.g. `_blocks.9:0-15@2` or `inception4c:3,7,9-11`.

    Example:
        >>> parse_layer_target("_blocks.9:0-2@2")
        LayerTarget(layer='_blocks.9', channels=(0, 1, 2), weight=2.0)
    """
    if isinstance(spec, LayerTarget):
        return spec
    text = spec.strip()
    weight = 1.0
    head, at, tail = text.rpartition("@")
    if at:
        try:
            weight = float(tail)
        except ValueError:
            raise VizError(
                f"bad weight {tail!r} in layer {spec!r}; write LAYER[:CHANNELS][@WEIGHT], e.g. _blocks.9@2"
            ) from None
        if not math.isfinite(weight):
            raise VizError(f"weight in layer {spec!r} must be a finite number")
        text = head
    layer, colon, channel_text = text.partition(":")
    channels = parse_channels(channel_text, None) if colon else None
    if not layer:
        raise VizError(f"no layer name in {spec!r}; write LAYER[:CHANNELS][@WEIGHT]")
    return LayerTarget(layer, channels, weight)


@dataclass(frozen=True)
class DreamConfig:
    """Every parameter of a dream; the CLI options map one to one onto these fields."""

    layers: tuple[str | LayerTarget, ...] = ()  # LAYER[:CHANNELS][@WEIGHT]; () = model defaults
    octaves: int = 4  # pyramid levels (fewer, with a warning, if the image is too small)
    octave_scale: float = 1.4  # size ratio between consecutive octaves
    steps: int = 10  # gradient steps per octave
    step_size: float = 1.5  # step length in 0..255 pixel units, after gradient normalization
    jitter: int = 32  # random roll of up to +-jitter pixels on both axes, undone each step
    tile: int = 512  # largest tile side for the gradient (memory bound); 0 = never tile
    grad_norm: Literal["mean", "std"] = "mean"  # divide the gradient by mean |g| or by its std
    amp: bool = False  # bfloat16 autocast for the network (CUDA only)

    def __post_init__(self) -> None:
        checks = [
            (self.octaves >= 1, f"octaves must be >= 1, got {self.octaves}"),
            (self.octave_scale > 1.0, f"octave scale must be > 1, got {self.octave_scale}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.step_size > 0, f"step size must be > 0, got {self.step_size}"),
            (self.jitter >= 0, f"jitter must be >= 0 pixels, got {self.jitter}"),
            (self.tile >= 0, f"tile must be >= 0 pixels (0 = no tiling), got {self.tile}"),
            (
                self.grad_norm in ("mean", "std"),
                f"unknown gradient normalization {self.grad_norm!r}; use mean or std",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise VizError(message)

    def targets(self, loaded: LoadedModel) -> list[LayerTarget]:
        """The parsed layer targets, or the model's default dream layers."""
        specs = self.layers or tuple(loaded.layers_for("dream"))
        return [parse_layer_target(spec) for spec in specs]


def dream_objective(
    activations: Mapping[str, torch.Tensor],
    targets: Sequence[LayerTarget],
    guides: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The scalar to maximize: sum over targets of `weight * term(a)`, summed over the batch.

    Plain: `term = 0.5 * ||a||^2`. Guided: `term = sum_p <a_p, y*_p>` where `y*_p` is the guide
    feature vector with the largest dot product with `a_p` (held constant), so the gradient at
    every position p is that guide vector, as in the original notebook.

    Args:
        activations: layer spec -> `(B, C, h, w)` output.
        targets: the terms; channel subsets index dim 1.
        guides: per target, the guide's features `(C', N)` (channels already selected).
    """
    total: torch.Tensor | None = None
    for index, target in enumerate(targets):
        acts = _select_channels(_wide(activations[target.layer]), target)
        if guides is None:
            term = 0.5 * acts.square().sum()
        else:
            term = _guided_term(acts, guides[index].to(acts.dtype))
        total = target.weight * term if total is None else total + target.weight * term
    if total is None:
        raise VizError("no dream layer given")
    return total


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Sum the objective in float32 at least (autocast may hand back bfloat16 activations)."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def _select_channels(acts: torch.Tensor, target: LayerTarget) -> torch.Tensor:
    if target.channels is None:
        return acts
    count = acts.shape[1]
    bad = [c for c in target.channels if c >= count]
    if bad:
        raise VizError(
            f"channel {bad[0]} out of range for layer {target.layer!r} ({count} channels: 0..{count - 1})"
        )
    index = torch.tensor(target.channels, device=acts.device)
    return acts.index_select(1, index)


def _guided_term(acts: torch.Tensor, guide: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    flat = acts.flatten(2)  # (B, C, P)
    if guide.shape[0] != flat.shape[1]:
        raise VizError(f"guide has {guide.shape[0]} channels, the layer {flat.shape[1]}")
    with torch.no_grad():
        # Chunks over positions bound the (N, P) dot-product matrix for big tiles.
        best = torch.cat(
            [
                torch.einsum("cn,bcp->bnp", guide, part).argmax(dim=1)
                for part in flat.split(chunk, dim=2)
            ],
            dim=1,
        )  # (B, P): index of the best guide vector per position
        chosen = guide.t()[best].permute(0, 2, 1)  # (B, C, P)
    return (flat * chosen).sum()


def guide_features(
    loaded: LoadedModel, guide: torch.Tensor, targets: Sequence[LayerTarget]
) -> list[torch.Tensor]:
    """Per target, the guide image's features `(C', N)` at the model's input scale.

    Args:
        guide: `(C, H, W)` or `(1, C, H, W)` in [0, 1]; resized so its shorter side is the
            model's input size.
    """
    image = as_unit(_as_batch(guide, loaded), _float_dtype(loaded))
    height, width = image.shape[-2:]
    scale = min(loaded.input_size) / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    layers = list(dict.fromkeys(t.layer for t in targets))
    with torch.no_grad():
        acts = forward_to(loaded.module, loaded.normalize(resize(image, size)), layers, detach=True)
    return [_select_channels(_wide(acts[t.layer]), t)[0].flatten(1) for t in targets]


def _float_dtype(loaded: LoadedModel) -> torch.dtype:
    param = next(loaded.module.parameters(), None)
    return param.dtype if param is not None and param.is_floating_point() else torch.float32


def _as_batch(image: torch.Tensor, loaded: LoadedModel) -> torch.Tensor:
    """`(B, C, H, W)` on the model's device with the model's channels; uint8 stays uint8."""
    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.dim() != 4:
        raise VizError(f"expected a (C, H, W) or (B, C, H, W) image, got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        image = image.to(loaded.device)  # converted octave by octave: 1 byte per value, not 4
    else:
        image = image.to(device=loaded.device, dtype=_float_dtype(loaded))
        if image.min() < 0 or image.max() > 1:  # clamp only when needed: no extra full copy
            image = image.clamp(0, 1)
    have, want = image.shape[1], loaded.channels
    if have == want:
        return image
    if want == 1 and have == 3:
        image = as_unit(image, _float_dtype(loaded))
        luma = torch.tensor(_LUMA, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        return (image * luma).sum(1, keepdim=True)
    if have == 1:
        return image.expand(-1, want, -1, -1)
    raise VizError(f"{loaded.name} takes {want}-channel images, got {have} channels")


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
    layers = list(dict.fromkeys(t.layer for t in config.targets(loaded)))
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
                f"tile {config.tile} is too small for {loaded.name} at {layers[-1]}; use a larger --tile"
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


@technique  # as_loaded + model_guard around the whole call
def dream(
    loaded: LoadedModel,
    image: torch.Tensor,
    config: DreamConfig | None = None,
    *,
    guide: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """DeepDream `image`: the same size back, with what the chosen layers see amplified.

    Args:
        loaded: the model (left exactly as found).
        image: `(C, H, W)` or `(B, C, H, W)`, float in [0, 1] or uint8 (a quarter of the memory
            for big images); a colour image for a one-channel model is turned to luminance.
        config: parameters (`DreamConfig()` = the model's default layers, 4 octaves x 10 steps).
        guide: `(C, H', W')` image in [0, 1] for guided dreaming, or None.
        generator: source of the random rolls (same seed, same dream); default seed 0.
        progress: `progress(done, total, message)` after every step (octaves x steps in all).

    Returns:
        The dream, same shape as `image`, float in [0, 1], on `image`'s device.

    Example:
        >>> loaded = load_model("efficientnet_lite0")
        >>> out = dream(loaded, sample_image("coffee"), DreamConfig(layers=("_blocks.9",)))
    """
    config = config or DreamConfig()
    report = progress or no_progress
    generator = generator or make_generator(0, "cpu")
    batch = _as_batch(image, loaded)
    targets = config.targets(loaded)
    layers = list(dict.fromkeys(t.layer for t in targets))
    guides = guide_features(loaded, guide, targets) if guide is not None else None
    full = (batch.shape[-2], batch.shape[-1])
    sizes = octave_sizes(loaded, full, config)
    dtype = batch.dtype if batch.is_floating_point() else _float_dtype(loaded)
    mean = torch.tensor(loaded.mean, device=batch.device, dtype=dtype).view(1, -1, 1, 1)
    std = torch.tensor(loaded.std, device=batch.device, dtype=dtype).view(1, -1, 1, 1)
    low, high = (0 - mean) / std, (1 - mean) / std
    step = (config.step_size / 255.0) / std  # pixel units -> the model's normalized units
    device = batch.device
    if config.amp and device.type != "cuda":
        warnings.warn(
            f"amp (bfloat16 autocast) applies on CUDA only; {device.type} runs float32",
            stacklevel=2,
        )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if config.amp and device.type == "cuda"
        else nullcontext()
    )
    total = len(sizes) * config.steps
    done = 0

    with capture(loaded.module, layers, stop_early=True) as acts:

        def gradient(piece: torch.Tensor) -> torch.Tensor:
            with autocast:
                acts.run(piece)
            objective = dream_objective(acts, targets, guides)
            (grad,) = torch.autograd.grad(objective, piece)
            return grad

        # Memory: no base image is kept. The base is folded in and out of x in place, so the
        # largest octave holds only x and the gradient at full size (plus the caller's image).
        x: torch.Tensor | None = None  # the current octave's dream; between octaves, its detail
        for level, shape in enumerate(sizes):
            if x is None:
                x = torch.zeros(batch.shape[0], batch.shape[1], *shape, device=device, dtype=dtype)
            else:  # the detail carried over, upsampled, goes onto the new base
                x = enlarge(x, shape).mul_(std)
            add_image(x, batch, 1.0).sub_(mean).div_(std)
            torch.maximum(torch.minimum(x, high, out=x), low, out=x)
            # A tiled image is a big one: keep its one full-size temporary, the gradient, in
            # bfloat16 (half the memory). The rounding, 2^-9 of a step of about 1.5/255, is far
            # below an 8-bit output's 1/255; the normalization is summed from exact tile grads.
            tiled = 0 < config.tile < max(shape) and dtype == torch.float32
            buffer = torch.bfloat16 if tiled else dtype
            for index in range(config.steps):
                shift = torch.randint(
                    -config.jitter,
                    config.jitter + 1,
                    (2,),
                    generator=generator,
                    device=generator.device,
                ).tolist()
                grad, stats = rolled_gradient(
                    x, (shift[0], shift[1]), config.tile, gradient, buffer
                )
                spread = stats.mean_abs() if config.grad_norm == "mean" else stats.std()
                factor = step / (spread.to(dtype).view(-1, 1, 1, 1) + 1e-8)
                for band in row_bands(shape[0]):
                    x[:, :, band].addcmul_(grad[:, :, band], factor)
                del grad
                torch.maximum(torch.minimum(x, high, out=x), low, out=x)
                done += 1
                report(
                    done,
                    total,
                    f"octave {level + 1}/{len(sizes)} ({shape[0]}x{shape[1]}) step {index + 1}/{config.steps}",
                )
            if level < len(sizes) - 1:  # keep only the detail: x - base
                add_image(x.mul_(std), batch, -1.0).add_(mean).div_(std)
    assert x is not None
    result = x.mul_(std).add_(mean).clamp_(0, 1)
    if tuple(result.shape[-2:]) != full:
        result = resize(result, full).clamp_(0, 1)
    result = result.to(device=image.device)
    return result[0] if image.dim() == 3 else result
