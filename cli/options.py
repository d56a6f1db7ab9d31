"""Option types and option helpers that several commands share (finite numbers, old spellings)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class FiniteFloat(click.ParamType):
    """A float option that rejects inf and nan (click's FLOAT accepts both) with a usage error."""

    name = "number"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


# Use for every float option: `--step-size inf` would otherwise write a pure 0/255 image.
FINITE_FLOAT = FiniteFloat()
