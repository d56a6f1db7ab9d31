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

import warnings
from dataclasses import replace

import torch

from vizcnn.core.devices import Seed, as_generator, deterministic_algorithms
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.precision import choose_precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.deepdream.config import DreamConfig
from vizcnn.deepdream.images import as_batch
from vizcnn.deepdream.octaves import check_memory, dream_memory, octave_sizes
from vizcnn.deepdream.targets import (
    LayerTarget,
    dream_objective,
    guide_features,
    named_target,
    parse_layer_target,
)
from vizcnn.deepdream.tiling import add_image, enlarge, rolled_gradient, row_bands
from vizcnn.hooks import capture, model_guard
from vizcnn.io.imaging import resize
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight

# the pieces used to live here; these names stay importable from this module
__all__ = [
    "DreamConfig",
    "LayerTarget",
    "check_memory",
    "dream",
    "dream_memory",
    "dream_objective",
    "guide_features",
    "octave_sizes",
    "parse_layer_target",
]


def dream(
    model: ModelLike,
    image: torch.Tensor,
    config: DreamConfig | None = None,
    *,
    guide: torch.Tensor | None = None,
    seed: Seed = 0,
    progress: ProgressCallback | None = None,
    run: RunOptions | None = None,
) -> torch.Tensor:
    """DeepDream `image`: the same size back, with what the chosen layers see amplified.

    Args:
        model: a `LoadedModel` or a bare `nn.Module` (see `describe`); left exactly as found.
        image: `(C, H, W)` or `(B, C, H, W)`, float in [0, 1] or uint8 (a quarter of the memory
            for big images; a uint8 image dreams exactly as its float `image / 255`); a colour
            image for a one-channel model is turned to luminance.
        config: parameters (`DreamConfig()` = the model's default layers, 4 octaves x 10 steps);
            its layers may be submodules (`DreamConfig(layers=(model.layer3,))`), dreamed as
            their dotted names (`vizcnn.hooks.layer_name`).
        guide: `(C, H', W')` image in [0, 1] for guided dreaming, or None.
        seed: source of the random rolls: an int seeds a CPU generator (`vizcnn dream --seed`,
            the same rolls on every device, so the CLI's dream for the same image), a
            `torch.Generator` is drawn from and advanced (`dream(..., seed=s)` equals
            `seed=torch.Generator().manual_seed(s)`). torch's global generator is never read.
            The rolls are shared by a batch, so image i of a batch dreams as it would alone.
        progress: `progress(done, total, message)` after every step (octaves x steps in all).
        run: how it runs (`RunOptions`; None: its defaults): `amp` picks the network's
            precision (it changes the dream), `deterministic` the kernels on CUDA.

    Returns:
        The dream, same shape as `image`, float in [0, 1], on `image`'s device.

    Example:
        >>> loaded = load_model("efficientnet_lite0")
        >>> out = dream(loaded, sample_image("coffee"), DreamConfig(layers=("_blocks.9",)))
    """
    loaded = as_loaded(model)
    config = config or DreamConfig()
    named = tuple(named_target(s, loaded.module) for s in config.layers)
    config = replace(config, layers=named)
    preflight(loaded, [parse_layer_target(target).layer for target in named])
    warn_if_normalized(image)
    if guide is not None:
        warn_if_normalized(guide)
    run = as_run_options(run)
    generator = as_generator(seed, "cpu")  # CPU rolls: same seed, same rolls on any device
    with model_guard(loaded.module), deterministic_algorithms(run.deterministic):
        return _dream(loaded, image, config, run, guide, generator, progress or no_progress)


def _dream(
    loaded: LoadedModel,
    image: torch.Tensor,
    config: DreamConfig,
    run: RunOptions,
    guide: torch.Tensor | None,
    generator: torch.Generator,
    report: ProgressCallback,
) -> torch.Tensor:
    batch = as_batch(image, loaded)
    targets = config.targets(loaded)
    layers = list(dict.fromkeys(t.name for t in targets))
    guides = guide_features(loaded, guide, targets) if guide is not None else None
    full = (batch.shape[-2], batch.shape[-1])
    sizes = octave_sizes(loaded, full, config)
    dtype = batch.dtype if batch.is_floating_point() else loaded.dtype
    mean = torch.tensor(loaded.mean, device=batch.device, dtype=dtype).view(1, -1, 1, 1)
    std = torch.tensor(loaded.std, device=batch.device, dtype=dtype).view(1, -1, 1, 1)
    low, high = (0 - mean) / std, (1 - mean) / std
    step = (config.step_size / 255.0) / std  # pixel units -> the model's normalized units
    device = batch.device
    precision = choose_precision(device, run.amp)
    if precision.note:
        warnings.warn(precision.note, stacklevel=3)
    autocast = precision.autocast()
    total = len(sizes) * config.steps
    done = 0

    with capture(loaded.module, layers, stop_early=True) as acts:
        layout = torch.channels_last if precision.channels_last else torch.contiguous_format

        def gradient(piece: torch.Tensor) -> torch.Tensor:
            with autocast:
                acts.run(piece.contiguous(memory_format=layout))
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
                # No absolute epsilon: random-weight networks give gradients near 1e-10, which a
                # fixed `+ 1e-8` swamped (the dream silently returned its input); an image whose
                # gradient is exactly zero keeps its pixels.
                spread = spread.to(dtype).view(-1, 1, 1, 1)
                factor = step / torch.where(spread > 0, spread, torch.ones_like(spread))
                for band in row_bands(shape[0]):
                    x[:, :, band].addcmul_(grad[:, :, band], factor)
                del grad
                torch.maximum(torch.minimum(x, high, out=x), low, out=x)
                done += 1
                report(
                    done,
                    total,
                    f"octave {level + 1}/{len(sizes)} ({shape[1]}x{shape[0]}) "
                    f"step {index + 1}/{config.steps}",
                )
            if level < len(sizes) - 1:  # keep only the detail: x - base
                add_image(x.mul_(std), batch, -1.0).add_(mean).div_(std)
    assert x is not None
    result = x.mul_(std).add_(mean).clamp_(0, 1)
    if tuple(result.shape[-2:]) != full:
        result = resize(result, full).clamp_(0, 1)
    result = result.to(device=image.device)
    return result[0] if image.dim() == 3 else result
