"""Option types and option helpers that several commands share (finite numbers, old spellings)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vizcnn.core.errors import VizError

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


def check_writable(path: Path, folder: bool) -> None:
    """Fail with a one-line error before any work if `path` (a folder, or a file in one) cannot
    be written; creates the folder."""
    where = path if folder else path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VizError(f"cannot create output folder {where}: {exc.strerror}") from None
    if not os.access(where, os.W_OK | os.X_OK):
        raise VizError(f"output folder {where} is not writable; choose another -o")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise VizError(f"{path} is not writable; choose another -o")
