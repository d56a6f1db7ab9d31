"""The objective algebra: `Objective` (a `(B,)` score per image) and what it is evaluated on.

Objectives compose with `+`, `-` and `*` / `/` by a number; `vizcnn.optvis.objectives` holds the
catalogue (channel, neuron, class logit, ...) and re-exports these names.

Example:
    >>> obj = Objective(lambda ctx: ctx.images.mean((1, 2, 3)), (), "brightness") * 2
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

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
