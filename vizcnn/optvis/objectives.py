"""Objectives for activation maximization: differentiable scores to maximize, one value per image.

An `Objective` maps an `ObjectiveContext` (the captured layer outputs, the model's logits when
needed, and the images before transforms) to a `(B,)` tensor. Objectives compose with `+`, `-`
and `*` / `/` by a number (the algebra lives in `composition`); a string in the unit grammar
(`"_blocks.9:3"`, see `vizcnn.core.units`) stands for `channel(layer, channel)`, and so does a
`(layer, channel)` pair. Every objective that takes a layer takes its dotted name or the submodule
itself (`channel(model.layer4, 3)`); a submodule is resolved to its name (`vizcnn.hooks.layer_name`)
when the objective is bound to the model, which `render` does.

Example:
    >>> obj = channel("_blocks.9", 3) - 0.1 * total_variation()
    >>> obj = as_objective("_blocks.9:3") + 2 * class_logit("espresso")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

import torch
import torch.nn.functional as F
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.units import parse_unit
from vizcnn.hooks import Layer, layer_name
from vizcnn.optvis.composition import (
    LOGITS,
    Objective,
    ObjectiveContext,
    _Position,
    constant,
)

__all__ = [
    "LOGITS",
    "Objective",
    "Unit",
    "ObjectiveContext",
    "as_objective",
    "channel",
    "class_logit",
    "constant",
    "direction",
    "diversity",
    "l1",
    "l2",
    "layer_l2",
    "neuron",
    "stack",
    "total_variation",
    "unit_objectives",
]

if TYPE_CHECKING:
    from vizcnn.models.loading import LoadedModel

# One unit of a render request: an objective, a unit string `LAYER[#k]:CHANNEL[@WEIGHT]`, or a
# `(layer, channel)` pair whose layer is a dotted name or a submodule (`(model.layer4, 3)`).
Unit: TypeAlias = Objective | str | tuple[Layer, int]


def _by_module(layer: nn.Module, make: Callable[[str], Objective], what: str) -> Objective:
    """`make(name)` once bound to a model, `name` being `layer`'s dotted name there."""
    name = f"{type(layer).__name__} {what}"

    def unbound(_ctx: ObjectiveContext) -> torch.Tensor:
        raise VizError(
            f"objective {name!r} names its layer by module: bind it to the model first "
            "(objective.bind(loaded); render does)"
        )

    return Objective(
        unbound, (), name, binder=lambda loaded: make(layer_name(loaded.module, layer)).bind(loaded)
    )


def _check_channel(acts: torch.Tensor, layer: str, index: int | torch.Tensor) -> None:
    if acts.dim() < 2:
        raise VizError(f"layer {layer!r} output has shape {tuple(acts.shape)}, no channel axis")
    count = acts.shape[1]
    top = int(index.max()) if isinstance(index, torch.Tensor) else int(index)
    low = int(index.min()) if isinstance(index, torch.Tensor) else int(index)
    if low < 0 or top >= count:
        bad = top if top >= count else low
        raise VizError(f"channel {bad} out of range for layer {layer!r}; valid: 0..{count - 1}")


def _spatial_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over every axis after the first (a 1-D unit is its own mean)."""
    return tensor.flatten(1).mean(1) if tensor.dim() > 1 else tensor


def channel(layer: Layer, index: int) -> Objective:
    """Mean activation of channel `index` of `layer` over all positions.

    Args:
        layer: dotted name (`name#k` for the k-th call) or the submodule itself.

    Example:
        >>> channel("_blocks.9", 3)
        >>> channel(model.layer4, 3)  # resolved to "layer4" when bound to `model`
    """
    index = int(index)
    if isinstance(layer, nn.Module):
        return _by_module(layer, lambda name: channel(name, index), f":{index}")

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        acts = ctx.layer(layer)
        _check_channel(acts, layer, index)
        return _spatial_mean(acts[:, index])

    return Objective(
        fn, (layer,), f"{layer}:{index}", selector=("channel", layer, (None, None), index)
    )


def _center(acts: torch.Tensor, y: int | None, x: int | None, layer: str) -> tuple[int, int]:
    if acts.dim() != 4:
        raise VizError(
            f"neuron objective needs a (B, C, H, W) layer; {layer!r} gives {acts.dim()}-D"
        )
    height, width = acts.shape[-2:]
    row = height // 2 if y is None else y
    col = width // 2 if x is None else x
    if not (0 <= row < height and 0 <= col < width):
        raise VizError(
            f"position (y={row}, x={col}) outside layer {layer!r}; valid: y 0..{height - 1}, "
            f"x 0..{width - 1}"
        )
    return row, col


def neuron(layer: Layer, index: int, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel `index` of `layer` at one position (the centre unless `y`, `x` given).

    `layer` is a dotted name or the submodule itself (resolved when bound to the model).

    Example:
        >>> neuron("_blocks.9", 3)            # centre of the 14 x 14 map: (7, 7)
        >>> neuron("_blocks.9", 3, y=2, x=5)
    """
    index = int(index)
    if isinstance(layer, nn.Module):
        return _by_module(layer, lambda name: neuron(name, index, y, x), f"neuron {index}")

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        acts = ctx.layer(layer)
        _check_channel(acts, layer, index)
        row, col = _center(acts, y, x, layer)
        return acts[:, index, row, col]

    where = "" if y is None and x is None else f"@{y},{x}"
    return Objective(
        fn, (layer,), f"{layer}:{index}{where}", selector=("neuron", layer, (y, x), index)
    )


def class_logit(label: str | int) -> Objective:
    """The model's output logit for a class, by index or (case-insensitive) name.

    A name is resolved when the objective is bound to a model (`render` does that); an unknown
    name gives a VizError listing the closest class names.

    Example:
        >>> class_logit("espresso")
        >>> class_logit(967)
    """
    if isinstance(label, int) or str(label).strip().lstrip("-").isdigit():
        return _class_index(int(label), f"class {int(label)}")

    def bind(loaded: LoadedModel) -> Objective:
        index = loaded.class_index(label)
        return _class_index(index, f"class {index} ({loaded.labels[index]})")

    def unbound(_ctx: ObjectiveContext) -> torch.Tensor:
        raise VizError(f"class {label!r} given by name: bind the objective to a model first")

    return Objective(unbound, (LOGITS,), f"class {label}", binder=bind)


def _class_index(index: int, name: str) -> Objective:
    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        logits = ctx.layer(LOGITS)
        if logits.dim() != 2:
            raise VizError(f"class objective needs (B, classes) logits, got {tuple(logits.shape)}")
        if not 0 <= index < logits.shape[1]:
            raise VizError(f"class {index} out of range; valid: 0..{logits.shape[1] - 1}")
        return logits[:, index]

    return Objective(fn, (LOGITS,), name, selector=("class", LOGITS, (None, None), index))


def layer_l2(layer: Layer) -> Objective:
    """Mean squared activation of a whole layer (dotted name or submodule): DeepDream's objective.

    Example:
        >>> layer_l2("_blocks.9")
    """
    if isinstance(layer, nn.Module):
        return _by_module(layer, layer_l2, "L2")
    return Objective(lambda ctx: _spatial_mean(ctx.layer(layer).pow(2)), (layer,), f"{layer} L2")


def direction(layer: Layer, vector: torch.Tensor | Sequence[float]) -> Objective:
    """Cosine similarity between each position's activation vector and `vector` `(C,)`, averaged.

    `layer` is a dotted name or the submodule itself (resolved when bound to the model).

    Example:
        >>> direction("_blocks.9", torch.randn(112))
    """
    target = torch.as_tensor(vector, dtype=torch.float32).flatten()
    if isinstance(layer, nn.Module):
        return _by_module(layer, lambda name: direction(name, target), "direction")

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        acts = ctx.layer(layer)
        if acts.shape[1] != target.numel():
            raise VizError(
                f"direction has {target.numel()} entries but layer {layer!r} has "
                f"{acts.shape[1]} channels"
            )
        shape = (1, -1) + (1,) * (acts.dim() - 2)
        vec = target.to(device=acts.device, dtype=acts.dtype).view(shape)
        return _spatial_mean(F.cosine_similarity(acts, vec, dim=1, eps=1e-8))

    return Objective(fn, (layer,), f"{layer} direction")


def _gram(acts: torch.Tensor) -> torch.Tensor:
    """Per-image channel Gram matrices `(B, C, C)`, each scaled to unit Frobenius norm."""
    flat = acts.flatten(2)  # (B, C, HW)
    grams = flat @ flat.transpose(1, 2)
    return F.normalize(grams.flatten(1), dim=1, eps=1e-10)


def diversity(layer: Layer) -> Objective:
    """Similarity of each image's Gram matrix at `layer` to the other images of its group.

    `layer` is a dotted name or the submodule itself (resolved when bound to the model).

    A penalty: subtract it (`channel(...) - w * diversity(...)`) to push the images of one unit
    apart (lucid's diversity). Image i scores sum over j != i in its group of <G_i, G_j> with
    unit-norm Gram matrices G, so the value lies in [0, group size - 1].

    Example:
        >>> obj = channel("_blocks.9", 3) - 100 * diversity("_blocks.9")
    """
    if isinstance(layer, nn.Module):
        return _by_module(layer, diversity, "diversity")

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        grams = _gram(ctx.layer(layer).float())
        similarity = grams @ grams.T  # (B, B)
        same = ctx.groups.view(-1, 1) == ctx.groups.view(1, -1)
        same.fill_diagonal_(False)
        return (similarity * same).sum(1).to(ctx.images.dtype)

    return Objective(fn, (layer,), f"{layer} diversity")


def total_variation() -> Objective:
    """Mean absolute difference between neighbouring pixels (a smoothness penalty: subtract it)."""

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        images = ctx.images
        dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
        dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
        return dy + dx

    return Objective(fn, (), "TV")


def l1(center: float = 0.5) -> Objective:
    """Mean |image - center| over pixels (a penalty: subtract it)."""
    return Objective(lambda ctx: (ctx.images - center).abs().flatten(1).mean(1), (), "L1")


def l2(center: float = 0.5) -> Objective:
    """Mean (image - center)^2 over pixels (a penalty: subtract it)."""
    return Objective(lambda ctx: (ctx.images - center).pow(2).flatten(1).mean(1), (), "L2")


def _weighted(objective: Objective, weight: float) -> Objective:
    return objective if weight == 1.0 else weight * objective


def as_objective(spec: Unit) -> Objective:
    """An objective from itself, from one unit of the grammar `LAYER[#k]:CHANNEL[@WEIGHT]`, or
    from a `(layer, channel)` pair (layer: dotted name or submodule).

    The string must select exactly one channel (`"_blocks.9:3"`, `"_blocks.9:3@2"`); a string
    that selects several (`"_blocks.9:0-3"`) is a list of units: use `unit_objectives`, or
    pass it to `render`, which expands it.
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, tuple):
        layer, index = _pair(spec)
        return channel(layer, index)
    unit = parse_unit(spec)
    if unit.channels_text is None:
        raise VizError(
            f"objective {spec!r} names no channel; write LAYER:CHANNEL, e.g. _blocks.9:3"
        )
    try:
        (index,) = unit.channels(None)  # type: ignore[misc]
    except ValueError:
        raise VizError(
            f"objective {spec!r} selects several channels; one objective is one channel "
            "(render expands such a spec into one unit per channel)"
        ) from None
    return _weighted(channel(unit.layer_spec, index), unit.weight)


def _pair(spec: tuple[Layer, int]) -> tuple[Layer, int]:
    """A `(layer, channel)` unit, checked."""
    if (
        len(spec) != 2
        or not isinstance(spec[0], (str, nn.Module))
        or isinstance(spec[1], bool)
        or not isinstance(spec[1], int)
    ):
        raise VizError(
            f"a unit pair is (layer, channel) with a layer name or module and an int channel, "
            f"got {spec!r}"
        )
    return spec[0], spec[1]


def unit_objectives(spec: Unit, count: Callable[[str], int]) -> list[Objective]:
    """The units a spec stands for: an objective itself, or one channel objective per channel.

    Args:
        spec: an `Objective`, a `(layer, channel)` pair, or `LAYER[#k][:CHANNELS][@WEIGHT]`
            (no CHANNELS: the first `vizcnn.core.units.DEFAULT_CHANNELS`).
        count: the channel count of a layer (called only for string specs).

    Example:
        >>> unit_objectives("_blocks.9:0:4", lambda layer: 112)  # channels 0, 1, 2, 3
    """
    if isinstance(spec, (Objective, tuple)):
        return [as_objective(spec)]
    unit = parse_unit(spec)
    channels = unit.channels(count(unit.layer_spec)) or ()
    return [_weighted(channel(unit.layer_spec, c), unit.weight) for c in channels]


def stack(units: Sequence[Unit]) -> Objective:
    """One objective for a batch in which image i is scored by `units[i]`.

    Units of one kind on one layer (channels, neurons at one position, class logits) are scored
    with a single gather; any other unit is evaluated on the whole batch and its row i taken
    (so a unit that compares images, such as diversity, still sees the whole batch).

    Example:
        >>> obj = stack([channel("_blocks.9", c) for c in range(16)])  # for a batch of 16
    """
    parts = [as_objective(unit) for unit in units]
    if not parts:
        raise VizError("no units to render")
    groups: dict[tuple[str, str, _Position], list[tuple[int, int]]] = {}
    others: list[int] = []
    for row, part in enumerate(parts):
        if part.selector is None:
            others.append(row)
        else:
            kind, layer, position, index = part.selector
            groups.setdefault((kind, layer, position), []).append((row, index))

    def fn(ctx: ObjectiveContext) -> torch.Tensor:
        batch = ctx.images.shape[0]
        if batch != len(parts):
            raise VizError(f"{len(parts)} units but a batch of {batch} images")
        values = torch.zeros(batch, device=ctx.images.device, dtype=torch.float32)
        for (kind, layer, (y, x)), members in groups.items():
            acts = ctx.layer(layer)
            rows = torch.tensor([r for r, _ in members], device=acts.device)
            index = torch.tensor([i for _, i in members], device=acts.device)
            if kind == "class":
                if acts.dim() != 2:
                    raise VizError(
                        f"class objective needs (B, classes) logits, got {tuple(acts.shape)}"
                    )
                if int(index.max()) >= acts.shape[1] or int(index.min()) < 0:
                    raise VizError(
                        f"class {int(index.max())} out of range; valid: 0..{acts.shape[1] - 1}"
                    )
                picked = acts[rows, index]
            else:
                _check_channel(acts, layer, index)
                picked = acts[rows, index]  # (k, H, W) for a conv layer
                if kind == "neuron":
                    row, col = _center(acts, y, x, layer)
                    picked = picked[:, row, col]
                else:
                    picked = _spatial_mean(picked)
            values = values.index_put((rows,), picked.float())
        for row in others:
            rows = torch.tensor([row], device=values.device)
            values = values.index_put((rows,), parts[row](ctx)[row : row + 1].float())
        return values

    def bind(loaded: LoadedModel) -> Objective:
        return stack([part.bind(loaded) for part in parts])

    layers = [layer for part in parts for layer in part.layers]
    return Objective(fn, layers, f"{len(parts)} units", binder=bind)
