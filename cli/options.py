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


def deprecated_alias(old: str, new: str, dest: str, type: Any = None) -> Callable[[F], F]:
    """A hidden option `old` that sets `dest` like `new` does, with a one-line warning on use.

    The command reads it from `**options` under `"_" + dest` and merges it with `resolve_alias`.
    """

    def warn(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None:
            click.echo(f"warning: {old} is deprecated; use {new}", err=True)
        return value

    return click.option(old, f"_{dest}", type=type, default=None, hidden=True, callback=warn)


def resolve_alias(options: dict[str, Any], dest: str, new: str, old: str) -> None:
    """Fold the hidden alias's value into `options[dest]` (giving both is a usage error)."""
    value = options.pop(f"_{dest}", None)
    if value is None:
        return
    if options.get(dest) is not None:
        raise click.UsageError(f"give {new} only ({old} is its old name)")
    options[dest] = value
