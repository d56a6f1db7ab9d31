"""Objectives for activation maximization: differentiable scores to maximize, one value per image.

An `Objective` maps an `ObjectiveContext` (the captured layer outputs, the model's logits when
needed, and the images before transforms) to a `(B,)` tensor. Objectives compose with `+`, `-`
and `*` / `/` by a number; a string `"layer:channel"` stands for `channel(layer, channel)`.

Example:
    >>> obj = channel("_blocks.9", 3) - 0.1 * total_variation()
    >>> obj = as_objective("_blocks.9:3") + 2 * class_logit("espresso")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vizcnn.core.errors import VizError

if TYPE_CHECKING:
    from vizcnn.models.loading import LoadedModel

# Key of the model's output (logits) in `ObjectiveContext.acts`; not a valid module path.
LOGITS = "<logits>"


@dataclass
class ObjectiveContext:
    """What an objective sees at one optimization step."""

    acts: Mapping[str, torch.Tensor]  # layer spec -> (B, C, H, W); LOGITS -> (B, classes)
    images: torch.Tensor  # (B, C, H, W) in [0, 1]: the parameterized images, before transforms
    groups: torch.Tensor  # (B,) int64: images with the same id render the same unit (diversity)

    def layer(self, name: str) -> torch.Tensor:
        if name not in self.acts:
            raise VizError(f"objective needs layer {name!r}, which was not captured")
        return self.acts[name]


# (kind, layer, position) and index: units sharing the key are scored with one gather.
_Position = tuple[int | None, int | None]
_Selector = tuple[str, str, _Position, int]


class Objective:
    """A score to maximize, `(B,)` per image, composable with `+`, `-`, `*` and `/` by numbers.

    Args:
        fn: `ObjectiveContext -> (B,)` tensor.
        layers: layer specs `fn` reads (`LOGITS` for the model's output).
        name: short description, used in labels and manifests.
        binder: resolves model-dependent parts (class names) given a `LoadedModel`.
        selector: lets `stack` score many single-index units of one kind with one gather.

    Example:
        >>> obj = Objective(lambda ctx: ctx.images.mean((1, 2, 3)), (), "brightness")
    """

    def __init__(
        self,
        fn: Callable[[ObjectiveContext], torch.Tensor],
        layers: Iterable[str] = (),
        name: str = "objective",
        *,
        binder: Callable[[LoadedModel], Objective] | None = None,
        selector: _Selector | None = None,
    ) -> None:
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name
        self._binder = binder
        self.selector = selector

    def __call__(self, ctx: ObjectiveContext) -> torch.Tensor:
        value = self.fn(ctx)
        batch = ctx.images.shape[0]
        if value.dim() == 0:
            value = value.expand(batch)
        if value.shape != (batch,):
            raise VizError(
                f"objective {self.name!r} gave shape {tuple(value.shape)}; it must give ({batch},)"
            )
        return value

    def bind(self, loaded: LoadedModel) -> Objective:
        """This objective with model-dependent parts (class names) resolved for `loaded`."""
        return self._binder(loaded) if self._binder is not None else self

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    # Composition -------------------------------------------------------------------------
    def _combine(
        self,
        other: Objective,
        op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        symbol: str,
    ) -> Objective:
        left, right = self, other
        return Objective(
            lambda ctx: op(left(ctx), right(ctx)),
            (*left.layers, *right.layers),
            f"{left.name} {symbol} {right.name}",
            binder=lambda loaded: left.bind(loaded)._combine(right.bind(loaded), op, symbol),
        )

    def _scaled(self, factor: float) -> Objective:
        inner = self
        return Objective(
            lambda ctx: factor * inner(ctx),
            inner.layers,
            f"{factor:g} * ({inner.name})",
            binder=lambda loaded: inner.bind(loaded)._scaled(factor),
        )

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            if other == 0:
                return self  # lets sum([...]) start from 0
            return self._combine(constant(float(other)), torch.add, "+")
        if not isinstance(other, Objective):
            return NotImplemented
        return self._combine(other, torch.add, "+")

    def __radd__(self, other: Objective | float) -> Objective:
        return self.__add__(other)

    def __sub__(self, other: Objective | float) -> Objective:
        if isinstance(other, (int, float)):
            return self + (-float(other))
        if not isinstance(other, Objective):
            return NotImplemented
        return self._combine(other, torch.sub, "-")

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __neg__(self) -> Objective:
        return self._scaled(-1.0)

    def __mul__(self, factor: float) -> Objective:
        if not isinstance(factor, (int, float)):
            return NotImplemented  # products of objectives are not linear scores
        return self._scaled(float(factor))

    def __rmul__(self, factor: float) -> Objective:
        return self.__mul__(factor)

    def __truediv__(self, divisor: float) -> Objective:
        if not isinstance(divisor, (int, float)) or divisor == 0:
            raise VizError(f"an objective can only be divided by a non-zero number, not {divisor}")
        return self._scaled(1.0 / float(divisor))


def constant(value: float) -> Objective:
    """The same number for every image (useful only inside sums)."""
    return Objective(
        lambda ctx: torch.full(
            (ctx.images.shape[0],), value, device=ctx.images.device, dtype=ctx.images.dtype
        ),
        (),
        f"{value:g}",
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


def channel(layer: str, index: int) -> Objective:
    """Mean activation of channel `index` of `layer` over all positions.

    Example:
        >>> channel("_blocks.9", 3)
    """
    index = int(index)

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


def neuron(layer: str, index: int, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel `index` of `layer` at one position (the centre unless `y`, `x` given).

    Example:
        >>> neuron("_blocks.9", 3)            # centre of the 14 x 14 map: (7, 7)
        >>> neuron("_blocks.9", 3, y=2, x=5)
    """
    index = int(index)

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


def layer_l2(layer: str) -> Objective:
    """Mean squared activation of a whole layer: the DeepDream objective.

    Example:
        >>> layer_l2("_blocks.9")
    """
    return Objective(lambda ctx: _spatial_mean(ctx.layer(layer).pow(2)), (layer,), f"{layer} L2")


def direction(layer: str, vector: torch.Tensor | Sequence[float]) -> Objective:
    """Cosine similarity between each position's activation vector and `vector` `(C,)`, averaged.

    Example:
        >>> direction("_blocks.9", torch.randn(112))
    """
    target = torch.as_tensor(vector, dtype=torch.float32).flatten()

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


def diversity(layer: str) -> Objective:
    """Similarity of each image's Gram matrix at `layer` to the other images of its group.

    A penalty: subtract it (`channel(...) - w * diversity(...)`) to push the images of one unit
    apart (lucid's diversity). Image i scores sum over j != i in its group of <G_i, G_j> with
    unit-norm Gram matrices G, so the value lies in [0, group size - 1].

    Example:
        >>> obj = channel("_blocks.9", 3) - 100 * diversity("_blocks.9")
    """

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


def as_objective(spec: Objective | str) -> Objective:
    """An objective from itself or from the shorthand `"layer:channel"` (e.g. `"_blocks.9:3"`)."""
    if isinstance(spec, Objective):
        return spec
    layer, sep, index = str(spec).strip().rpartition(":")
    if not sep or not layer or not index.strip().isdigit():
        raise VizError(f"bad objective {spec!r}; write layer:channel, e.g. _blocks.9:3")
    return channel(layer, int(index))


def stack(units: Sequence[Objective | str]) -> Objective:
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
