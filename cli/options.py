"""Option types and the option groups that several commands share: run options (precision,
batch, workers), data (--limit, --crops), output (-o, --overwrite), one option per config field.

Every default reads the library's (a config field, `RunOptions`, a technique's default batch),
so the CLI and the library cannot drift apart."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from vizcnn.core.run_options import RunOptions

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


def _stack(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def shown(*names: str, default: Any, help: str, **kwargs: Any) -> Callable[[F], F]:
    """An option whose default (a library default: one source) `--help` shows."""
    return click.option(*names, default=default, show_default=True, help=help, **kwargs)


def field_options(config: type, helps: dict[str, str], *, given: bool = False) -> Callable[[F], F]:
    """One option `--field-name` per config field, its default the field's (`given`: None
    unless given, for a config that is made only when one of its options is)."""
    options: list[Callable[[F], F]] = []
    for name, text in helps.items():
        default = getattr(config, name)
        kind: Any = FINITE_FLOAT if isinstance(default, float) else type(default)
        if name == "grad_norm":
            kind = click.Choice(["mean", "std"])
        settings: dict[str, Any] = {"default": default, "show_default": True, "help": text}
        if given:
            settings = {"help": f"{text}  [default: {default:g}]", "default": None}
        options.append(click.option("--" + name.replace("_", "-"), type=kind, **settings))
    return _stack(options)


def precision_options(what: str) -> Callable[[F], F]:
    """--amp/--no-amp and --deterministic (`RunOptions.amp`, `RunOptions.deterministic`);
    `what` is what the same seed gives again ("images", "dream")."""
    return _stack(
        [
            click.option(
                "--amp/--no-amp",
                default=None,  # neither flag: RunOptions.amp ("auto")
                help="bfloat16 autocast for the network (what is optimized stays float32). "
                "Default (neither flag): auto, on where the hardware runs bf16 natively (CPUs "
                "with AVX512-BF16 or AMX, CUDA Ampere+), float32 elsewhere. --amp forces it (a "
                "note where it cannot run); --no-amp forces float32.",
            ),
            click.option(
                "--deterministic",
                is_flag=True,
                default=RunOptions.deterministic,
                help=f"Deterministic kernels, so that the same seed gives the same {what} on "
                "CUDA too (slower; torch warns about any op without one). CPU runs are "
                "deterministic anyway.",
            ),
        ]
    )


def batch_option(default: int, help: str = "Images per forward pass.") -> Callable[[F], F]:
    """--batch (`RunOptions.batch`) with the technique's own default (`RunOptions.batch=None`)."""
    return shown("--batch", type=int, default=default, help=help)


def workers_option(func: F) -> F:
    """--workers (`RunOptions.workers`)."""
    return shown(
        "--workers",
        type=int,
        default=RunOptions.workers,
        help="Image-decoding worker processes (0: in this process; 2-4 speed up large folders "
        "of JPEGs).",
    )(func)


def data_options(crops: int, limit: int | None = None, what: str = "images") -> Callable[[F], F]:
    """--limit N and --crops N (crops per bundled photo of `samples`), library defaults."""
    limit_default: dict[str, Any] = (
        {"default": limit, "show_default": True} if limit is not None else {}
    )
    return _stack(
        [
            click.option(
                "--limit", type=int, help=f"Use only the first N {what}.", **limit_default
            ),
            shown("--crops", type=int, default=crops, help="samples: crops per bundled photo."),
        ]
    )


def output_options(
    help: str, *, default: str | None = None, overwrite: str | None = None, **kwargs: Any
) -> Callable[[F], F]:
    """-o/--output (required unless it has a default) and, given its help, --overwrite."""
    where: dict[str, Any] = (
        {"default": default, "show_default": True} if default is not None else {"required": True}
    )
    options = [click.option("-o", "--output", help=help, **where, **kwargs)]
    if overwrite is not None:
        options.append(click.option("--overwrite", is_flag=True, help=overwrite))
    return _stack(options)


def run_from(options: dict[str, Any]) -> RunOptions:
    """The `RunOptions` of parsed options (those a command has: amp, batch, workers,
    deterministic). cuBLAS's workspace setting for --deterministic is the library's
    (`core.devices.deterministic_algorithms`: cuBLAS reads it at its first call, not when the
    model moves to the GPU)."""
    amp = options.get("amp")
    deterministic = bool(options.get("deterministic", RunOptions.deterministic))
    return RunOptions(
        amp=RunOptions.amp if amp is None else amp,
        batch=options.get("batch"),
        workers=options.get("workers", RunOptions.workers),
        deterministic=deterministic,
    )
