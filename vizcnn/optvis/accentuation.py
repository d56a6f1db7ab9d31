"""Feature accentuation: push a unit up starting from a real photograph, staying close to it.

After Hamblin, Fel et al. 2024 ("Feature Accentuation: Revealing 'What' Features Respond to in
Natural Images"; reference code: the `faccent` and `horama` packages). The photograph is the
starting point of an activation maximization in a Fourier *phase* parameterization
(`ImagePhaseParam`: the photograph's amplitude spectrum fixed, its phases optimized), with
random crops and a little noise as transforms; a regularizer keeps the activations of an
*earlier* layer close to the photograph's own, so the picture changes only where (and as far
as) the unit needs: it shows what in *this* image the unit responds to.

Each step, per image: `crops` random square crops (the same boxes and noise for the optimized
image and for the photograph), resized to the model's input; one forward pass of the optimized
crops gives both the unit's activation and the regularized layer's (the regularized layer is
earlier, so the pass is hooked at both); a truncated, gradient-free forward of the
photograph's crops, stopped at the regularized layer, gives the target. The regularizer is the
per-position Euclidean distance of the two activation vectors (or of their unit-normalized
vectors, `distance="cosine"`), averaged over positions and crops and divided by the
photograph's mean activation norm (a relative distance: 0.1 = moved 10 %). The unit reads all
`crops` crops; the regularizer reads the first `reg_crops` of them (default 2): a Monte Carlo
estimate of the same mean distance from fewer crops, which spares most of the photograph's
pass (that pass costs about a fifth of the network's forward+backward when it takes every
crop); the step that balances the two terms reads every crop. The regularizer's
parts (its default layer, the paired crops, the distance, the balance) are in
`vizcnn.optvis.accent_regularizer`.

The loss of image i is `-unit_i + reg_weight * balance_i * reg_i`. `balance_i` makes
`reg_weight` mean the same thing for every unit and layer (faccent's balanced alpha): it is the
ratio of the L1 norms of the two terms' gradients on the image's parameters, measured once at
step 2 (step 1 is the unit's alone: the photograph is its own target, so the regularizer's
gradient is zero there). With `reg_weight=1` both pulls start equal; `reg_weight=0` is plain
activation maximization from the photograph.

Example:
    >>> result = accentuate(loaded, photos, "_blocks.9:3", steps=100)
    >>> result.images.shape, result.activation[-1]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from vizcnn.core.adam import Adam
from vizcnn.core.devices import Seed, deterministic_algorithms, draw_seed, make_generator
from vizcnn.core.errors import VizError
from vizcnn.core.precision import choose_precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.hooks import Layer, capture, layer_name, model_guard
from vizcnn.io.display import MAX_TILES, ContactSheet
from vizcnn.io.imaging import labeled_sheet, resize
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight
from vizcnn.optvis.accent_regularizer import (
    DISTANCES,
    balanced_backward,
    check_reg_layer,
    default_reg_layer,
    layer_distance,
    transform_pair,
)
from vizcnn.optvis.config import CHUNK_SEED_STRIDE
from vizcnn.optvis.objectives import LOGITS, Objective, ObjectiveContext, Unit, stack
from vizcnn.optvis.param import ImagePhaseParam
from vizcnn.optvis.rendering import _forward, _mean_over_crops, expand_units
from vizcnn.optvis.transforms import Crop, Noise, Transform

DEFAULT_STEPS = 100  # faccent's (it records steps 0..98)
DEFAULT_LR = 0.05  # faccent's Adam rate, on phases in radians
DEFAULT_CROPS = 8  # crops per image and step; faccent takes 16 (half the cost here)
DEFAULT_REG_WEIGHT = 1.0  # faccent's alpha: the two pulls balanced at the start
# crops per image whose regularizer is evaluated each step (the first ones; the balancing step
# reads all): the photograph's truncated pass is the step's largest cost beyond the network's
# own forward+backward; with 2 of 8 crops the unit's gain and the distance held move by under
# 2 % on average (per unit up to 4 %) from those with all 8 (RESULTS.md)
DEFAULT_REG_CROPS = 2
ACCENT_BATCH = 4  # images per chunk where RunOptions.batch is None (x crops per forward)
# faccent crops 5-99 % of a 512 px canvas; at the model's input size a 5 % crop is an 11 px
# blur, so the smallest box here is 20 % of the side. Noise: faccent's sd 0.02.
ACCENT_CROP = Crop(0.2, 1.0)
ACCENT_NOISE = Noise(0.02)
_BALANCE_STEP = 1  # 0-based step at which the regularizer's weight is balanced


def accent_transforms() -> tuple[Transform, ...]:
    """The default transforms: one random square crop (20-100 % of the side) and noise 0.02."""
    return (ACCENT_CROP, ACCENT_NOISE)


@dataclass
class AccentuationResult(ContactSheet):
    """Accentuated images and how the unit and the regularizer went, step by step.

    In a notebook it shows itself as a contact sheet of the images with their units.
    """

    images: torch.Tensor  # (B, C, H, W) in [0, 1] on the CPU, the photographs' size
    activation: torch.Tensor  # (steps, B) the unit's objective at each step (mean over crops)
    # (steps, B) the relative distance at the reg layer, each step: the mean over that step's
    # first `reg_crops` crops (every crop at the balancing step, step 2)
    regularizer: torch.Tensor
    values: torch.Tensor  # (B,) the unit's objective on the final, untransformed image
    start_values: torch.Tensor  # (B,) the same on the photograph (parameterized), before any step
    balance: torch.Tensor  # (B,) the regularizer's balancing factor (0 where reg_weight is 0)
    units: list[str] = field(default_factory=list)  # unit name of each image
    settings: dict[str, Any] = field(default_factory=dict)  # every option, as it ran

    def contact_sheet(self) -> Image.Image:
        """The accentuated images (the first `MAX_TILES`), each labelled with its unit."""
        shown = range(min(len(self.images), MAX_TILES))
        labels = [self.units[i] if i < len(self.units) else str(i) for i in shown]
        return labeled_sheet([self.images[i] for i in shown], labels)


def _check_images(images: torch.Tensor, channels: int) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise VizError(
            f"image must be a tensor (B, C, H, W) in [0, 1], got {type(images).__name__}"
        )
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[0] < 1:
        raise VizError(f"image must be (B, C, H, W) or (C, H, W), got shape {tuple(images.shape)}")
    if images.shape[1] != channels:
        raise VizError(
            f"image has {images.shape[1]} channels but the model takes {channels}; "
            f"give (B, {channels}, H, W)"
        )
    if min(images.shape[-2:]) < 8:
        raise VizError(f"image {tuple(images.shape[-2:])} too small; use at least 8 x 8 pixels")
    if images.dtype == torch.uint8:  # 8-bit pictures as a file gives them
        images = images.float() / 255
    if not images.is_floating_point():
        raise VizError(f"image must be floating point in [0, 1] (or uint8), got {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise VizError("image has NaN or inf values; give finite values in [0, 1]")
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise VizError(
            f"image values span [{low:.3g}, {high:.3g}]; give them in [0, 1] (not normalized)"
        )
    return images


def regularized_crops(reg_crops: int | None, crops: int) -> int:
    """The number of crops the regularizer reads per step: `reg_crops`, checked against
    `crops`, or the default `min(DEFAULT_REG_CROPS, crops)` for None (`crops` checked too)."""
    if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
        raise VizError(f"crops must be an int of at least 1, got {crops!r}")
    if reg_crops is None:
        return min(DEFAULT_REG_CROPS, crops)
    if isinstance(reg_crops, bool) or not isinstance(reg_crops, int) or not 1 <= reg_crops <= crops:
        raise VizError(f"reg_crops must be an int from 1 to crops ({crops}), got {reg_crops!r}")
    return reg_crops


def _check_number(name: str, value: float, low: float, strict: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise VizError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise VizError(f"{name} must be {'>' if strict else '>='} {low}, got {value}")


def _unit_objectives(
    loaded: LoadedModel, unit: Unit | Sequence[Unit], count: int
) -> list[Objective]:
    objectives = expand_units(loaded, unit)
    if len(objectives) == 1:
        return objectives * count
    if len(objectives) != count:
        raise VizError(
            f"{len(objectives)} units for {count} images; give one unit for all images or "
            "one per image"
        )
    return objectives


def accentuate(
    model: ModelLike,
    image: torch.Tensor,
    unit: Unit | Sequence[Unit],
    *,
    reg_layer: Layer | None = None,
    reg_weight: float = DEFAULT_REG_WEIGHT,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    crops: int = DEFAULT_CROPS,
    reg_crops: int | None = None,
    distance: str = "l2",
    transforms: Sequence[Transform] | None = None,
    seed: Seed = 0,
    run: RunOptions | None = None,
    progress: ProgressCallback | None = None,
    observe: Callable[[int, torch.Tensor], None] | None = None,
) -> AccentuationResult:
    """Accentuate a unit in photographs: push it up while the early activations stay close.

    Args:
        model: a `LoadedModel` or a bare `nn.Module` (see `describe`); left as found.
        image: `(B, C, H, W)` (or `(C, H, W)`) photographs in [0, 1] (uint8: 0..255);
            the results have their size, and the crops are resized to the model's input size.
        unit: one unit for every image, or one per image: a unit string of the grammar
            (`"_blocks.9:3"`), a `(layer, channel)` pair, or any objective
            (`objectives.neuron(...)`, `class_logit("espresso")`, `direction(layer, vector)`
            for a concept).
        reg_layer: the layer whose activations stay close to the photograph's (name or
            submodule); it must run before the unit's layer. None: `default_reg_layer` (an
            early stage output, `_blocks.2` on lite0).
        reg_weight: strength of the regularizer relative to the unit (balanced at step 2, see
            the module docstring): 0 is plain activation maximization from the photograph,
            large values keep the photograph.
        steps, lr: Adam steps and learning rate (on phases, radians).
        crops: random crops of each image per step, the objective averaged over them.
        reg_crops: how many of each image's crops (the first ones) the regularizer reads per
            step, 1 to `crops`; None: `min(DEFAULT_REG_CROPS, crops)` (2). The balancing step
            reads all `crops`. `reg_crops=crops` is faccent's (the photograph's pass takes
            every crop: 8-13 % more time per step at 8 crops on lite0).
        distance: `l2` (Euclidean distance per position, faccent's) or `cosine` (of the
            unit-normalized activation vectors: ignores how strongly, keeps what).
        transforms: per-crop transforms (None: `accent_transforms()`, a random 20-100 % crop
            and noise 0.02); the same draw is applied to the photograph for the target.
        seed: chunk n of `run.batch` images draws from a generator on the model's device seeded
            `seed + n * CHUNK_SEED_STRIDE` (as `render`); a `torch.Generator` stands for the int
            it draws first. torch's global generator is never read.
        run: how it runs (`RunOptions`): `batch` images per chunk (default `ACCENT_BATCH`, each
            with `crops` crops in one forward), `amp`, `deterministic`, `check_every`.
        progress: `progress(done, total, message)` over images x steps.
        observe: `observe(step, images)` after every step with the chunk's images.

    Returns:
        `AccentuationResult`: images, the unit's activation and the regularizer per step.

    Example:
        >>> photo = vizcnn.data.samples.sample_image("coffee")[None]
        >>> result = accentuate(loaded, resize(photo, (224, 224)), "_blocks.9:3", steps=50)
    """
    loaded = as_loaded(model)
    run = as_run_options(run)
    progress = no_progress if progress is None else progress
    images = _check_images(image, loaded.channels)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise VizError(f"steps must be an int of at least 1, got {steps!r}")
    reg_crops = regularized_crops(reg_crops, crops)
    _check_number("reg_weight", reg_weight, 0.0, strict=False)
    _check_number("lr", lr, 0.0, strict=True)
    if distance not in DISTANCES:
        raise VizError(f"unknown distance {distance!r}; valid: {', '.join(DISTANCES)}")
    chain = tuple(accent_transforms() if transforms is None else transforms)
    objectives = _unit_objectives(loaded, unit, images.shape[0])
    unit_layers = sorted({layer for obj in objectives for layer in obj.layers})
    need_logits = LOGITS in unit_layers
    inner = [layer for layer in unit_layers if layer != LOGITS]
    preflight(loaded, inner, output=need_logits, size=loaded.input_size)
    if reg_layer is None or reg_layer == "":
        reg = default_reg_layer(loaded, unit_layers)
    else:
        reg = layer_name(loaded.module, reg_layer)
        preflight(loaded, [reg], size=loaded.input_size)
        check_reg_layer(loaded, reg, unit_layers)

    settings: dict[str, Any] = {
        "reg_layer": reg,
        "reg_weight": float(reg_weight),
        "steps": steps,
        "lr": float(lr),
        "crops": crops,
        "reg_crops": reg_crops,
        "distance": distance,
        "transforms": [repr(t) for t in chain],
        "param": "phase",
    }
    batch = run.batch_or(ACCENT_BATCH)
    count = images.shape[0]
    chunks = [list(range(s, min(count, s + batch))) for s in range(0, count, batch)]
    total = count * steps
    base = draw_seed(seed)
    parts: list[_Chunk] = []
    for number, chunk in enumerate(chunks):
        done_before = chunk[0] * steps

        def report(done: int, message: str, offset: int = done_before) -> None:
            progress(offset + done, total, message)

        generator = make_generator(base + CHUNK_SEED_STRIDE * number, loaded.device)
        label = _label(chunk, count)
        with deterministic_algorithms(run.deterministic):
            parts.append(
                _accentuate_chunk(
                    loaded,
                    images[chunk].to(loaded.device),
                    [objectives[i] for i in chunk],
                    reg,
                    float(reg_weight),
                    steps,
                    float(lr),
                    crops,
                    reg_crops,
                    distance,
                    chain,
                    run,
                    generator,
                    report,
                    label,
                    observe,
                )
            )
    return AccentuationResult(
        images=torch.cat([p.images for p in parts]),
        activation=torch.cat([p.activation for p in parts], dim=1),
        regularizer=torch.cat([p.regularizer for p in parts], dim=1),
        values=torch.cat([p.values for p in parts]),
        start_values=torch.cat([p.start_values for p in parts]),
        balance=torch.cat([p.balance for p in parts]),
        units=[obj.name for obj in objectives],
        settings=settings,
    )


def _label(chunk: list[int], total: int) -> str:
    first, last = chunk[0] + 1, chunk[-1] + 1
    return f"image {first} of {total}" if first == last else f"images {first}-{last} of {total}"


@dataclass
class _Chunk:
    images: torch.Tensor
    activation: torch.Tensor
    regularizer: torch.Tensor
    values: torch.Tensor
    start_values: torch.Tensor
    balance: torch.Tensor


def _per_image(rows: torch.Tensor, crops: int) -> torch.Tensor:
    """`(crops * B,)` crop-major values to the `(B,)` mean over each image's crops."""
    return rows.view(crops, -1).mean(0)


def _accentuate_chunk(
    loaded: LoadedModel,
    photos: torch.Tensor,
    objectives: list[Objective],
    reg: str,
    reg_weight: float,
    steps: int,
    lr: float,
    crops: int,
    reg_crops: int,
    distance: str,
    transforms: tuple[Transform, ...],
    run: RunOptions,
    generator: torch.Generator,
    report: Callable[[int, str], None],
    label: str,
    observe: Callable[[int, torch.Tensor], None] | None,
) -> _Chunk:
    device = loaded.device
    cuda = device.type == "cuda"
    count = photos.shape[0]
    input_size = loaded.input_size
    objective = stack(objectives)
    layers = sorted({reg, *(layer for layer in objective.layers if layer != LOGITS)})
    need_logits = LOGITS in objective.layers
    groups = torch.arange(count, device=device)
    param = ImagePhaseParam(photos.float())
    optimizer = Adam(param.parameters(), lr=lr)
    with torch.no_grad():
        start_images = param()  # the photographs as the parameterization makes them
        # crop-major copies of the photographs, the same every step
        originals = start_images if crops == 1 else start_images.repeat(crops, 1, 1, 1)
    precision = choose_precision(device, run.amp)
    autocast = precision.autocast()
    channels_last = run.channels_last and (cuda or precision.channels_last)
    activation = torch.zeros(steps, count, device=device)
    regularizer = torch.zeros(steps, count, device=device)
    balance = torch.zeros(count, device=device)
    losses = torch.zeros(steps, device=device)
    checked = 0

    def layout(inputs: torch.Tensor) -> torch.Tensor:
        return inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs

    with (
        model_guard(loaded.module),
        capture(loaded.module, layers, stop_early=not need_logits) as acts,
        capture(loaded.module, [reg], stop_early=True, detach=True) as targets,
    ):
        for step in range(steps):
            optimizer.zero_grad()
            images = param()
            many = images if crops == 1 else images.repeat(crops, 1, 1, 1)
            # the regularizer reads the first `regularized` crops of each image (crop-major
            # rows); the step that balances it reads them all, so that the balance (a ratio of
            # gradient norms, which a noisier estimate inflates) is the same as with every crop
            regularized = crops if step == _BALANCE_STEP else reg_crops
            paired = regularized * count
            inputs, target_inputs = transform_pair(
                many, originals[:paired], transforms, input_size, generator, then=loaded.normalize
            )
            # the photograph's crops first: this truncated pass also starts a new pass of
            # `acts`, which the optimized crops' pass below then fills
            with torch.no_grad(), autocast:
                targets.run(layout(target_inputs))
                target = targets[reg]
            with autocast:
                found = _forward(loaded, layout(inputs), layers, need_logits, acts)
                values = _mean_over_crops(objective, found, images, groups, crops)
            gaps = _per_image(layer_distance(found[reg][:paired], target, distance), regularized)
            unit_loss = -values.float().sum()
            if reg_weight == 0 or step < _BALANCE_STEP:
                # at step 1 the photograph is its own target: nothing to pull back yet
                unit_loss.backward()
                loss = unit_loss
            else:
                if step == _BALANCE_STEP:
                    balance = balanced_backward(param, unit_loss, gaps, reg_weight)
                loss = unit_loss + reg_weight * (balance * gaps).sum()
                if step != _BALANCE_STEP:
                    loss.backward()
            optimizer.step()
            activation[step] = values.detach().float()
            regularizer[step] = gaps.detach()
            losses[step] = loss.detach()
            if not cuda or (step + 1) % run.check_every == 0 or step + 1 == steps:
                _check_finite(losses, checked, step + 1, label)
                checked = step + 1
            report((step + 1) * count, f"{label}, step {step + 1}/{steps}")
            if observe is not None:
                observe(step + 1, images.detach())
        with torch.no_grad():
            final = param().detach()
            ends = []
            for batch in (final, start_images):
                whole = loaded.normalize(resize(batch, input_size))
                found = _forward(loaded, whole, layers, need_logits, acts)
                ends.append(objective(ObjectiveContext(found, batch, groups)).float())
    return _Chunk(
        images=final.float().cpu(),
        activation=activation.cpu(),
        regularizer=regularizer.cpu(),
        values=ends[0].cpu(),
        start_values=ends[1].cpu(),
        balance=balance.cpu(),
    )


def _check_finite(losses: torch.Tensor, begin: int, end: int, label: str) -> None:
    bad = ~torch.isfinite(losses[begin:end])
    if bool(bad.any()):
        step = begin + int(bad.nonzero()[0, 0]) + 1
        raise VizError(
            f"loss became non-finite ({float(losses[step - 1])}) at step {step} ({label}); "
            "lower lr, or check the unit and the model for inf/nan"
        )
