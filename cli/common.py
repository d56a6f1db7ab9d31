"""Helpers shared by every command: run options (device, seed, quiet), errors, warnings."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import torch
from PIL import Image

from vizcnn.core.devices import resolve_device
from vizcnn.core.errors import VizError
from vizcnn.core.interrupt import sigterm_as_interrupt

from .flags import as_flags

F = TypeVar("F", bound=Callable[..., Any])


def run_options(func: F) -> F:
    """--device, --seed and --quiet: on every command that computes."""
    options = [
        click.option(
            "--device",
            default="auto",
            show_default=True,
            help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps.",
        ),
        click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Random seed (also of the random network of --weights none); same seed and device give the same result.",
        ),
        click.option(
            "-q", "--quiet", is_flag=True, help="No progress bar; print only the summary line."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def device_from(options: dict[str, Any]) -> torch.device:
    return resolve_device(options.get("device", "auto"))


def friendly_errors(func: F) -> F:
    """Turn VizError (and missing files) into a one-line `Error: ...` with exit code 1.

    While the command runs, SIGTERM (what torchrun, schedulers and `kill` send) stops it like
    Ctrl-C does, so the library's save-on-interrupt paths run; with `-q`, Pillow's warnings
    are silenced. An interrupted command exits with code 130 and says "interrupted", adding
    that finished files are kept where it writes files (every such command takes `-o/--output`;
    `layers` and `models` only print).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with sigterm_as_interrupt(), warnings.catch_warnings():
                if kwargs.get("quiet"):
                    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
                    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
                return func(*args, **kwargs)
        except VizError as exc:
            raise click.ClickException(as_flags(str(exc))) from None
        except FileNotFoundError as exc:
            raise click.ClickException(f"file not found: {exc.filename}") from None
        except KeyboardInterrupt:
            click.echo(interrupted_message(kwargs), err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def interrupted_message(options: dict[str, Any]) -> str:
    """What an interrupted command says: file-writing commands name their files by `output`."""
    if options.get("output") is not None:
        return "interrupted; finished files are kept"
    return "interrupted"


def progress_enabled(options: dict[str, Any]) -> bool:
    return not options.get("quiet", False)


@contextmanager
def echo_warnings() -> Iterator[list[str]]:
    """Show the library's warnings (e.g. fewer octaves in a dream) as plain `warning:` lines, once each."""
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield seen
    for item in caught:
        message = str(item.message)
        if message not in seen:
            seen.append(message)
            click.echo(f"warning: {as_flags(message)}", err=True)
