"""Activation maximization: optimize images so that units of a network respond strongly.

Many units render as one batch (image i optimizes unit i), in chunks of `RunOptions.batch`
images (default `DEFAULT_BATCH`); the forward pass stops at the deepest layer the objectives read, and the model's
parameters stay frozen. Two recipes, both 128 px upsampled to the model's input and optimized
with Adam: `fft` (lucid's: 1/f-scaled Fourier with decorrelated colour, pad/jitter/scale/rotate,
lr 0.05 constant) and `maco` (phase-only Fourier with a fixed natural-image amplitude, random
crops of 40-100 %, rotation, noise, lr 0.2 cosine-decayed; after Fel et al. 2023: class renders
that a second network recognizes more often, but lower channel objectives). The default,
`param="auto"`, is maco for class-only requests and fft otherwise (`resolve_param`). `crops`
averages the objective over several transformed copies per step.

Reproducible by construction: chunks are fixed by unit position and chunk n draws from its own
generator seeded `seed + n * CHUNK_SEED_STRIDE`, so `render(..., seed=s)`, the CLI with
`--seed s`, and a resumed run that skips finished units all give the same pictures. A
`torch.Generator` as the seed stands for the int it draws first (`core.devices.draw_seed`).

Example:
    >>> loaded = load_model("efficientnet_lite0")
    >>> result = render(loaded, ["_blocks.9:3", "_blocks.9:17"], RenderConfig(steps=256))
    >>> result.images.shape, result.values
    (torch.Size([2, 3, 128, 128]), tensor([...]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from PIL import Image

from vizcnn.core.adam import Adam, cosine_lr
from vizcnn.core.devices import Seed, deterministic_algorithms, draw_seed, make_generator
from vizcnn.core.errors import VizError
from vizcnn.core.outputs import require_output_tensor
from vizcnn.core.precision import choose_precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.hooks import Captured, Layer, capture, layer_name, layer_output_shape, model_guard
from vizcnn.io.display import MAX_TILES, ContactSheet
from vizcnn.io.imaging import labeled_sheet, resize
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight
from vizcnn.optvis.config import (
    CHUNK_SEED_STRIDE,
    DEFAULT_BATCH,
    RenderConfig,
)
from vizcnn.optvis.objectives import (
    LOGITS,
    Objective,
    ObjectiveContext,
    Unit,
    diversity,
    stack,
    unit_objectives,
)
from vizcnn.optvis.param import ImageParam
from vizcnn.optvis.transforms import (
    apply_transforms,
)


@dataclass
class RenderResult(ContactSheet):
    """Rendered images and how strongly each one drives its unit.

    In a notebook it shows itself as a labelled contact sheet (`contact_sheet()`).
    """

    images: torch.Tensor  # (N, C, H, W) in [0, 1] on the CPU; N = units x diversity
    values: torch.Tensor  # (N,) each image's unit objective, on the untransformed image
    units: list[str] = field(default_factory=list)  # unit name of each image
    unit_index: list[int] = field(default_factory=list)  # position of its unit in the request
    copy: list[int] = field(default_factory=list)  # which diversity copy (0..diversity-1)

    def contact_sheet(self) -> Image.Image:
        """The images (the first `MAX_TILES`) with their unit names, one row per unit."""
        shown = range(min(len(self.images), MAX_TILES))
        labels = [self.units[i] if i < len(self.units) else str(i) for i in shown]
        if any(self.copy):
            labels = [f"{label} #{self.copy[i]}" for i, label in zip(shown, labels, strict=True)]
        diversity = max(self.copy, default=0) + 1
        columns = diversity if diversity > 1 else None
        return labeled_sheet([self.images[i] for i in shown], labels, columns=columns)


def layer_channels(model: ModelLike, layer: Layer) -> int:
    """The channel count of `layer`'s output (name or submodule; one small forward pass)."""
    loaded = as_loaded(model)
    with model_guard(loaded.module):
        shape = layer_output_shape(loaded.module, (loaded.channels, *loaded.input_size), layer)
    if not shape:
        raise VizError(f"layer {layer!r} output has no channel dimension")
    return shape[0]


def _single_unit(units: Sequence[Unit] | Unit) -> bool:
    """True for one unit given alone (not in a list); a `(layer, channel)` pair is one unit."""
    if isinstance(units, (Objective, str)):
        return True
    return (
        isinstance(units, tuple)
        and len(units) == 2
        and isinstance(units[0], (str, torch.nn.Module))
        and isinstance(units[1], int)
    )


def expand_units(loaded: LoadedModel, units: Sequence[Unit] | Unit) -> list[Objective]:
    """The bound objectives of a render request, one per unit, in order.

    A string in the unit grammar (`vizcnn.core.units`) that selects several channels
    (`"_blocks.9:0-3"`) stands for one unit per channel; one without channels for the first
    `DEFAULT_CHANNELS`. A `(layer, channel)` pair is one channel unit; its layer may be the
    submodule itself (`(model.layer4, 3)`), named by `layer_name`.
    """
    specs: list[Unit] = [units] if _single_unit(units) else list(units)  # type: ignore[list-item, arg-type]
    counts: dict[str, int] = {}

    def count(layer: str) -> int:
        if layer not in counts:
            counts[layer] = layer_channels(loaded, layer)
        return counts[layer]

    objectives = [obj.bind(loaded) for spec in specs for obj in unit_objectives(spec, count)]
    if not objectives:
        raise VizError("no units to render")
    return objectives


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
        found[LOGITS] = require_output_tensor(output, loaded.name)
    return found


def _diversity_layer(config: RenderConfig, loaded: LoadedModel, unit: Objective) -> str:
    if config.diversity_layer is not None and config.diversity_layer != "":
        return layer_name(loaded.module, config.diversity_layer)
    layers = [layer for layer in unit.layers if layer != LOGITS]
    return layers[0] if layers else loaded.layers_for("render")[0]


def _label(chunk: list[int], total: int) -> str:
    first, last = chunk[0] + 1, chunk[-1] + 1
    return f"unit {first} of {total}" if first == last else f"units {first}-{last} of {total}"


def render_iter(
    model: ModelLike,
    units: Sequence[Unit] | Unit,
    config: RenderConfig = RenderConfig(),
    *,
    seed: Seed = 0,
    skip: Collection[int] = (),
    progress: ProgressCallback = no_progress,
    observe: Callable[[int, torch.Tensor], None] | None = None,
    run: RunOptions | None = None,
) -> Iterator[RenderResult]:
    """Like `render`, but yield each chunk's result as soon as it is done (for resumable runs).

    Args:
        seed: as for `render`.
        skip: unit positions not wanted (already rendered). A chunk whose units are all skipped
            is not run; one with some skipped runs whole (its pictures depend on the whole
            chunk) and yields only the wanted rows.
        observe: `observe(step, images)` after every step, as in `render`.
        run: how it runs, as in `render`.

    Each yielded `RenderResult.unit_index` says which of the (expanded) units its images belong
    to; the images equal those of an uninterrupted `render` with the same seed.
    """
    loaded = as_loaded(model)
    run = as_run_options(run)
    objectives = expand_units(loaded, units)
    config = config.resolved(objectives)
    if config.diversity_layer is not None and config.diversity_layer != "":
        config = replace(config, diversity_layer=layer_name(loaded.module, config.diversity_layer))
    hooked = {layer for obj in objectives for layer in obj.layers if layer != LOGITS}
    if config.diversity > 1 and isinstance(config.diversity_layer, str) and config.diversity_layer:
        hooked.add(config.diversity_layer)
    preflight(
        loaded,
        sorted(hooked),
        output=any(LOGITS in obj.layers for obj in objectives),
        size=config.input_size or loaded.input_size,
    )
    skipped = set(skip)
    plan = [
        (number, chunk)
        for number, chunk in enumerate(config.chunks(len(objectives), run.batch_or(DEFAULT_BATCH)))
        if not skipped.issuperset(chunk)
    ]
    total = sum(len(chunk) for _, chunk in plan) * config.steps
    base = draw_seed(seed)
    finished = 0
    for number, chunk in plan:

        def report(done: int, message: str, offset: int = finished) -> None:
            progress(offset + done, total, message)

        generator = make_generator(base + CHUNK_SEED_STRIDE * number, loaded.device)
        with deterministic_algorithms(run.deterministic):
            result = _render_chunk(
                loaded, objectives, chunk, config, run, generator, report, len(objectives), observe
            )
        finished += len(chunk) * config.steps
        keep = [row for row, unit in enumerate(result.unit_index) if unit not in skipped]
        yield RenderResult(
            images=result.images[keep],
            values=result.values[keep],
            units=[result.units[row] for row in keep],
            unit_index=[result.unit_index[row] for row in keep],
            copy=[result.copy[row] for row in keep],
        )


def _render_chunk(
    loaded: LoadedModel,
    objectives: list[Objective],
    chunk: list[int],
    config: RenderConfig,
    run: RunOptions,
    generator: torch.Generator,
    report: Callable[[int, str], None],
    count: int,
    observe: Callable[[int, torch.Tensor], None] | None = None,
) -> RenderResult:
    """Optimize one chunk's images together; `report(steps done x units, message)`."""
    if config.param == "auto" or config.lr is None or config.lr_schedule is None:
        raise ValueError("render a resolved config (RenderConfig.resolved)")
    lr = config.lr
    device = loaded.device
    cuda = device.type == "cuda"
    size = config.image_size(loaded)
    input_size = config.input_size or loaded.input_size
    transforms = config.transform_chain()
    copies = config.diversity
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
    optimizer = Adam(param.parameters(), lr=lr)
    crops = config.crops
    losses = torch.zeros(config.steps, device=device)
    checked = 0  # losses before this step are known to be finite
    # bfloat16 for the network only (CUDA, and CPUs with native bf16); parameterization,
    # transforms, optimizer and objective values stay float32
    precision = choose_precision(device, run.amp)
    autocast = precision.autocast()
    channels_last = run.channels_last and (cuda or precision.channels_last)
    label = _label(chunk, count)
    hooks = (
        capture(loaded.module, layers, stop_early=not need_logits)
        if layers
        else contextlib.nullcontext()
    )
    with model_guard(loaded.module), hooks as acts:
        for step in range(config.steps):
            optimizer.zero_grad()
            if config.lr_schedule == "cosine":
                optimizer.lr = cosine_lr(lr, step, config.steps)
            images = param()
            # crop-major: copy k of every image sits in rows k*B..(k+1)*B, each its own draw
            inputs = apply_transforms(
                images if crops == 1 else images.repeat(crops, 1, 1, 1),
                transforms,
                input_size,
                generator,
                then=loaded.normalize,
            )
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with autocast:
                found = _forward(loaded, inputs, layers, need_logits, acts)
                values = _mean_over_crops(objective, found, images, groups, crops)
            loss = -values.float().sum()
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            if not cuda or (step + 1) % run.check_every == 0 or step + 1 == config.steps:
                _check_finite(losses, checked, step + 1, label)
                checked = step + 1
            report((step + 1) * len(chunk), f"{label}, step {step + 1}/{config.steps}")
            if observe is not None:
                observe(step + 1, images.detach())
        with torch.no_grad():
            images = param().detach()
            inputs = loaded.normalize(resize(images, input_size))
            found = _forward(loaded, inputs, layers, need_logits, acts)
            final = unit_obj(ObjectiveContext(found, images, groups)).float()
    return RenderResult(
        images=images.float().cpu(),
        values=final.cpu(),
        units=[objectives[u].name for u in rows],
        unit_index=rows,
        copy=[row % copies for row in range(len(rows))],
    )


def _mean_over_crops(
    objective: Objective,
    found: dict[str, torch.Tensor],
    images: torch.Tensor,
    groups: torch.Tensor,
    crops: int,
) -> torch.Tensor:
    """`(B,)` objective averaged over the `crops` transformed copies (crop-major rows).

    Each copy is scored as a batch of its own, so batch-wise terms (diversity) compare the
    images of a unit with each other, never an image with its own other crops.
    """
    if crops == 1:
        return objective(ObjectiveContext(found, images, groups))
    total = torch.zeros((), device=images.device, dtype=images.dtype)
    for k in range(crops):
        part = {name: act.chunk(crops)[k] for name, act in found.items()}
        total = total + objective(ObjectiveContext(part, images, groups))
    return total / crops


def _check_finite(losses: torch.Tensor, begin: int, end: int, label: str) -> None:
    bad = ~torch.isfinite(losses[begin:end])
    if bool(bad.any()):
        step = begin + int(bad.nonzero()[0, 0]) + 1
        raise VizError(
            f"loss became non-finite ({float(losses[step - 1])}) at step {step} ({label}); "
            "lower RenderConfig.lr, or check the objective and the model for inf/nan"
        )


def render(
    model: ModelLike,
    units: Sequence[Unit] | Unit,
    config: RenderConfig = RenderConfig(),
    *,
    seed: Seed = 0,
    progress: ProgressCallback = no_progress,
    observe: Callable[[int, torch.Tensor], None] | None = None,
    run: RunOptions | None = None,
) -> RenderResult:
    """Render images that maximize each unit: one image per unit (`config.diversity` per unit).

    Args:
        model: a `LoadedModel` or a bare `nn.Module` (see `describe`); left as found.
        units: objectives or unit specs `LAYER[#k][:CHANNELS][@WEIGHT]` (`"_blocks.9:3"`,
            `"_blocks.9:0-15"`: one unit per channel), or `(layer, channel)` pairs whose layer
            may be the submodule itself (`(model.layer4, 3)`); image i optimizes unit i.
        config: the recipe: steps, size, parameterization, learning rate, diversity, transforms.
        seed: chunk n draws its initial values and transforms from a generator on the model's
            device seeded `seed + n * CHUNK_SEED_STRIDE`; the CLI's `--seed` is the same seed.
            A `torch.Generator` is drawn from once (`draw_seed`: one int in [0, 2**62)) and
            stands for that int: `render(..., seed=g)` equals `render(..., seed=draw_seed(h))`
            for `h` a copy of `g`. torch's global generator is never read.
        progress: `progress(done, total, message)` over units x steps.
        observe: `observe(step, images)` after every step with the chunk's current images
            `(B, C, H, W)` (detached; e.g. to plot how a picture develops).
        run: how it runs (`RunOptions`; None: its defaults). `run.batch` images are optimized
            together (None: `DEFAULT_BATCH`); it fixes which units share a chunk and so the
            chunk seeds: another batch gives other pictures. `run.amp` picks the network's
            precision; `deterministic`, `channels_last` and `check_every` change no result.

    Returns:
        `RenderResult` with images `(N, C, H, W)` in [0, 1] and their objective values `(N,)`.

    Example:
        >>> from vizcnn.optvis import objectives as obj
        >>> result = render(loaded, [obj.class_logit("espresso")], RenderConfig(steps=128))
    """
    parts = list(
        render_iter(model, units, config, seed=seed, progress=progress, observe=observe, run=run)
    )
    return RenderResult(
        images=torch.cat([p.images for p in parts]),
        values=torch.cat([p.values for p in parts]),
        units=[name for p in parts for name in p.units],
        unit_index=[i for p in parts for i in p.unit_index],
        copy=[k for p in parts for k in p.copy],
    )
