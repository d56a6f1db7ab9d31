"""Activation maximization: optimize images so that units of a network respond strongly.

Many units render as one batch (image i optimizes unit i), in chunks of `RenderConfig.batch`
images; the forward pass stops at the deepest layer the objectives read, and the model's
parameters stay frozen. The recipe (Fourier parameterization with decorrelated colour, 128 px
upsampled to the model's input, Adam at lr 0.05, pad/jitter/scale/rotate) follows lucid.

Example:
    >>> loaded = load_model("efficientnet_lite0")
    >>> result = render(loaded, ["_blocks.9:3", "_blocks.9:17"], RenderConfig(steps=256))
    >>> result.images.shape, result.values
    (torch.Size([2, 3, 128, 128]), tensor([...]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from vizcnn.core.devices import make_generator
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.hooks import Captured, capture, layer_output_shape, model_guard
from vizcnn.io.imaging import resize
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.optvis.objectives import (
    LOGITS,
    Objective,
    ObjectiveContext,
    as_objective,
    diversity,
    stack,
)
from vizcnn.optvis.param import PARAMS, ImageParam
from vizcnn.optvis.transforms import Transform, apply_transforms, standard_transforms

DEFAULT_SIZE = 128  # lucid's image size; smaller models render at their own input size


@dataclass(frozen=True)
class RenderConfig:
    """Settings of one render; the `vizcnn render` options map onto these fields."""

    steps: int = 512  # optimizer steps per batch
    size: int | tuple[int, int] | None = (
        None  # rendered image (H, W); None: 128, or the input size if smaller
    )
    param: str = "fft"  # parameterization: fft (Fourier, 1/f scaled) or pixel
    decorrelate: bool = True  # build RGB images in decorrelated colour space
    lr: float = 0.05  # Adam learning rate
    batch: int = 16  # images optimized together
    diversity: int = 1  # images per unit; above 1 they are pushed apart (Gram similarity)
    diversity_weight: float = 1e2  # weight of the diversity penalty (lucid's 1e2)
    diversity_layer: str | None = None  # layer whose Gram matrices are compared; None: the unit's
    transforms: tuple[Transform, ...] | None = None  # None: lucid's pad/jitter/scale/rotate chain
    input_size: tuple[int, int] | None = None  # what the model sees; None: its input size
    init_sd: float = 0.01  # spread of the random initial parameters
    amp: bool = False  # bfloat16 autocast (CUDA only; ignored on other devices)
    channels_last: bool = True  # channels-last inputs (CUDA only)
    check_every: int = 16  # steps between non-finite loss checks on CUDA (every step elsewhere)

    def image_size(self, loaded: LoadedModel) -> tuple[int, int]:
        """The (H, W) of the rendered images for `loaded`."""
        if self.size is None:
            return (
                min(DEFAULT_SIZE, loaded.input_size[0]),
                min(DEFAULT_SIZE, loaded.input_size[1]),
            )
        if isinstance(self.size, int):
            return (self.size, self.size)
        return (int(self.size[0]), int(self.size[1]))

    def validate(self) -> None:
        if self.steps < 1:
            raise VizError(f"steps must be at least 1, got {self.steps}")
        if self.param not in PARAMS:
            raise VizError(f"unknown parameterization {self.param!r}; valid: {', '.join(PARAMS)}")
        if not self.lr > 0:
            raise VizError(f"learning rate must be positive, got {self.lr}")
        if self.batch < 1:
            raise VizError(f"batch must be at least 1, got {self.batch}")
        if self.diversity < 1:
            raise VizError(f"diversity must be at least 1 image per unit, got {self.diversity}")
        size = self.size if not isinstance(self.size, int) else (self.size, self.size)
        if size is not None and min(size) < 8:
            raise VizError(f"image size {size} too small; use at least 8 pixels")


@dataclass
class RenderResult:
    """Rendered images and how strongly each one drives its unit."""

    images: torch.Tensor  # (N, C, H, W) in [0, 1] on the CPU; N = units x diversity
    values: torch.Tensor  # (N,) each image's unit objective, on the untransformed image
    units: list[str] = field(default_factory=list)  # unit name of each image
    unit_index: list[int] = field(default_factory=list)  # position of its unit in the request


def layer_channels(model: ModelLike, layer: str) -> int:
    """The channel count of `layer`'s output (one small forward pass)."""
    loaded = as_loaded(model)
    with model_guard(loaded.module):
        shape = layer_output_shape(loaded.module, (loaded.channels, *loaded.input_size), layer)
    if not shape:
        raise VizError(f"layer {layer!r} output has no channel dimension")
    return shape[0]


def _forward(
    loaded: LoadedModel,
    inputs: torch.Tensor,
    layers: list[str],
    need_logits: bool,
    acts: Captured | None,
) -> dict[str, torch.Tensor]:
    if acts is not None:
        output = acts.run(inputs)
        found = dict(acts.outputs)
    else:
        output = loaded.module(inputs)
        found = {}
    if need_logits:
        if not isinstance(output, torch.Tensor):
            raise VizError(f"{loaded.name} returns {type(output).__name__}, not a logits tensor")
        found[LOGITS] = output
    return found


def _diversity_layer(config: RenderConfig, loaded: LoadedModel, unit: Objective) -> str:
    if config.diversity_layer:
        return config.diversity_layer
    layers = [layer for layer in unit.layers if layer != LOGITS]
    return layers[0] if layers else loaded.layers_for("render")[0]


def render_iter(
    model: ModelLike,
    units: Sequence[Objective | str] | Objective | str,
    config: RenderConfig = RenderConfig(),
    *,
    generator: torch.Generator | None = None,
    progress: ProgressCallback = no_progress,
) -> Iterator[RenderResult]:
    """Like `render`, but yield each chunk's result as soon as it is done (for resumable runs).

    Each yielded `RenderResult.unit_index` says which of `units` its images belong to.
    """
    loaded = as_loaded(model)
    config.validate()
    objectives = [
        as_objective(unit).bind(loaded)
        for unit in ([units] if isinstance(units, (Objective, str)) else units)
    ]
    if not objectives:
        raise VizError("no units to render")
    generator = generator if generator is not None else make_generator(0)
    device = loaded.device
    cuda = device.type == "cuda"
    size = config.image_size(loaded)
    input_size = config.input_size or loaded.input_size
    transforms = standard_transforms() if config.transforms is None else config.transforms
    copies = config.diversity
    per_chunk = max(1, config.batch // copies)
    total = len(objectives) * config.steps

    for start in range(0, len(objectives), per_chunk):
        chunk = list(range(start, min(len(objectives), start + per_chunk)))
        rows = [u for u in chunk for _ in range(copies)]
        unit_obj = stack([objectives[u] for u in rows])
        objective = unit_obj
        if copies > 1:
            layer = _diversity_layer(config, loaded, objectives[chunk[0]])
            objective = unit_obj - config.diversity_weight * diversity(layer)
        layers = [layer for layer in objective.layers if layer != LOGITS]
        need_logits = LOGITS in objective.layers
        groups = torch.tensor(rows, device=device)
        param = ImageParam(
            config.param,
            len(rows),
            loaded.channels,
            size,
            decorrelate=config.decorrelate,
            sd=config.init_sd,
            generator=generator,
            device=device,
        )
        # the fused kernel is several times faster than the per-op loop on one large tensor
        fused = device.type in {"cpu", "cuda"}
        optimizer = torch.optim.Adam(param.parameters(), lr=config.lr, fused=fused)
        losses = torch.zeros(config.steps, device=device)
        checked = 0  # losses before this step are known to be finite
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if config.amp and cuda
            else contextlib.nullcontext()
        )
        label = f"units {chunk[0] + 1}-{chunk[-1] + 1} of {len(objectives)}"
        hooks = (
            capture(loaded.module, layers, stop_early=not need_logits)
            if layers
            else contextlib.nullcontext()
        )
        with model_guard(loaded.module), hooks as acts:
            for step in range(config.steps):
                optimizer.zero_grad(set_to_none=True)
                images = param()
                inputs = apply_transforms(
                    images, transforms, input_size, generator, then=loaded.normalize
                )
                if cuda and config.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with autocast:
                    found = _forward(loaded, inputs, layers, need_logits, acts)
                    values = objective(ObjectiveContext(found, images, groups))
                loss = -values.float().sum()
                loss.backward()
                optimizer.step()
                losses[step] = loss.detach()
                if not cuda or (step + 1) % config.check_every == 0 or step + 1 == config.steps:
                    _check_finite(losses, checked, step + 1, label)
                    checked = step + 1
                done = start * config.steps + (step + 1) * len(chunk)
                progress(done, total, f"{label}, step {step + 1}/{config.steps}")
            with torch.no_grad():
                images = param().detach()
                inputs = loaded.normalize(resize(images, input_size))
                found = _forward(loaded, inputs, layers, need_logits, acts)
                final = unit_obj(ObjectiveContext(found, images, groups)).float()
        yield RenderResult(
            images=images.float().cpu(),
            values=final.cpu(),
            units=[objectives[u].name for u in rows],
            unit_index=rows,
        )


def _check_finite(losses: torch.Tensor, begin: int, end: int, label: str) -> None:
    bad = ~torch.isfinite(losses[begin:end])
    if bool(bad.any()):
        step = begin + int(bad.nonzero()[0, 0]) + 1
        raise VizError(
            f"loss became non-finite ({float(losses[step - 1])}) at step {step} ({label}); "
            "lower --lr, or check the objective and the model for inf/nan"
        )


def render(
    model: ModelLike,
    units: Sequence[Objective | str] | Objective | str,
    config: RenderConfig = RenderConfig(),
    *,
    generator: torch.Generator | None = None,
    progress: ProgressCallback = no_progress,
) -> RenderResult:
    """Render images that maximize each unit: one image per unit (`config.diversity` per unit).

    Args:
        model: a `LoadedModel` or a bare `nn.Module` (see `describe`); left as found.
        units: objectives or `"layer:channel"` strings; image i optimizes unit i.
        config: steps, size, parameterization, learning rate, batch, diversity, transforms.
        generator: random source for initial values and transforms (default: seed 0 on CPU).
        progress: `progress(done, total, message)` over units x steps.

    Returns:
        `RenderResult` with images `(N, C, H, W)` in [0, 1] and their objective values `(N,)`.

    Example:
        >>> from vizcnn.optvis import objectives as obj
        >>> result = render(loaded, [obj.class_logit("espresso")], RenderConfig(steps=128))
    """
    parts = list(render_iter(model, units, config, generator=generator, progress=progress))
    return RenderResult(
        images=torch.cat([p.images for p in parts]),
        values=torch.cat([p.values for p in parts]),
        units=[name for p in parts for name in p.units],
        unit_index=[i for p in parts for i in p.unit_index],
    )
