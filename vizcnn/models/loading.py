"""Loading: turn a spec string into a `LoadedModel` (module + preprocessing + labels + defaults).

Specs:
    efficientnet_lite0          the default; ImageNet weights from the installed weights package
    efficientnet_lite1, _lite2  240 and 260 px; weights from the extra `vizcnn[models]`
    <torchvision name>          e.g. alexnet, vgg16, googlenet, resnet50 (weights via torchvision)
    lenet5_digits               LeNet-5 trained on scikit-learn's digits (1 channel, 32 px)
    timm:NAME                   a timm architecture (`pip install "vizcnn[timm]"`), e.g.
                                timm:convnext_tiny; preprocessing and class names from its
                                pretrained_cfg, weights from `weights=PATH` or `none` (nothing
                                downloads; see `timm_models`)
    package.module:factory      the user's own CNN (describe it with mean/std/size/labels;
                                unset mean/std default to ImageNet's for 3 channels); weights
                                from `weights=PATH`; the current folder is searched too
    path/to/checkpoint.pt       with `arch=` a state dict for a torchvision architecture

The loaders live beside this module: `efficientnet_lite`, `torchvision_models`, `lenet`,
`timm_models`, `factory`, `checkpoints` (reading and fitting state dicts), `random_init` (seeded weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vizcnn.core.devices import resolve_device
from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.models.base import LoadedModel, freeze
from vizcnn.models.checkpoints import looks_like_checkpoint
from vizcnn.models.efficientnet_lite import LITE, lite_present
from vizcnn.models.torchvision_models import (
    input_size_of,
    load_state_dict_checkpoint,
    load_torchvision,
    torchvision_names,
    weights_file,
)

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "available_models",
    "load_model",
    "torchvision_names",
    "weights_file",
]

DEFAULT_MODEL = "efficientnet_lite0"
BUNDLED = ("lenet5_digits",)


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    weights: str | None = None,
    arch: str | None = None,
    trust_checkpoint: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: int | Sequence[int] | None = None,
    labels: Sequence[str] | str | None = None,
    device: torch.device | str = "auto",
    seed: int | None = 0,
) -> LoadedModel:
    """Load a model by spec (see the module docstring), frozen and in eval mode.

    Args:
        spec: model name, `timm:NAME`, `package.module:factory`, or a checkpoint path (with
            `arch`).
        weights: `DEFAULT`, a torchvision enum name such as `IMAGENET1K_V1`, `none` (random
            weights drawn from `seed`), or a path to a state dict (also nested in a training
            checkpoint under `model`, `state_dict`, ...; `.safetensors` too), loaded strictly
            (every key and shape must fit) for every kind of spec, a factory's included. For a
            factory, `none` and `DEFAULT` mean the network as the factory returns it; for
            `timm:NAME`, `DEFAULT` (and None) are timm's pretrained weights if already in the
            local Hugging Face cache, else an error saying which file to get.
        arch: torchvision architecture for a checkpoint given as `spec` or `weights`.
        trust_checkpoint: allow unpickling a whole saved module (can run arbitrary code).
        mean, std, size, labels: describe a custom model's preprocessing; override defaults
            (unset mean/std of a factory: `default_normalization`, ImageNet's for 3 channels).
            `size` is a side or `(H, W)`; `labels` (names or a file, one per line) must have
            one name per output of the model (checked by one forward pass).
        device: where to put the module: `auto` (CUDA, then MPS, then CPU, as the CLI), `cpu`,
            `cuda:1`, ...
        seed: random weights (`weights="none"`, a factory's own initialization) are drawn from
            this seed, leaving torch's global RNG as it was; None draws from the global RNG.

    Example:
        >>> loaded = load_model("efficientnet_lite0", device="cpu")
        >>> loaded.module(loaded.normalize(images)).argmax(1)
        >>> random = load_model("resnet18", weights="none", seed=3)  # the same weights every time
    """
    target = resolve_device(device)  # a bad device fails before any loading
    spec = spec.strip()
    loaded = _load(spec, weights, arch, trust_checkpoint, seed)
    if mean is not None or std is not None:
        new_mean = tuple(float(v) for v in (mean if mean is not None else loaded.mean))
        new_std = tuple(float(v) for v in (std if std is not None else loaded.std))
        if len(new_mean) != len(new_std) or any(not v > 0 for v in new_std):
            raise VizError(f"mean {new_mean} and std {new_std} must have equal lengths, std > 0")
        loaded.mean, loaded.std = new_mean, new_std
        loaded.stats_given = True
    if size is not None:
        shape = (size, size) if isinstance(size, int) else tuple(int(v) for v in size)
        if len(shape) != 2 or min(shape) < 8:
            raise VizError(f"input size {size} invalid; give (H, W) or a side of at least 8 pixels")
        loaded.input_size = (int(shape[0]), int(shape[1]))
    if labels is not None:
        loaded.labels = _read_labels(labels)
    freeze(loaded.module)
    loaded.load_options = {
        "spec": spec,
        "weights": weights,
        "arch": arch,
        "trust_checkpoint": trust_checkpoint,
        "mean": None if mean is None else [float(v) for v in mean],
        "std": None if std is None else [float(v) for v in std],
        "size": size if size is None or isinstance(size, int) else [int(v) for v in size],
        "labels": labels if labels is None or isinstance(labels, str) else list(labels),
        "seed": seed,
    }
    loaded.to(target)
    if labels is not None:  # a label count that does not fit the head: one line, now
        from vizcnn.models.preflight import preflight

        preflight(loaded, output=True)
    return loaded


def _load(
    spec: str, weights: str | None, arch: str | None, trust: bool, seed: int | None
) -> LoadedModel:
    if spec in LITE:
        from vizcnn.models.efficientnet_lite import load_lite

        return load_lite(spec, weights, trust=trust, seed=seed)
    if spec in BUNDLED:
        from vizcnn.models.lenet import load_lenet

        return load_lenet(weights, trust=trust, seed=seed)
    if spec.startswith("timm:"):
        from vizcnn.models.timm_models import load_timm

        return load_timm(spec, weights, trust=trust, seed=seed)
    if ":" in spec and not Path(spec).exists():
        from vizcnn.models.factory import load_factory

        return load_factory(spec, seed, weights, trust)
    if looks_like_checkpoint(spec):
        return load_state_dict_checkpoint(spec, arch, trust)
    if spec in torchvision_names():
        return load_torchvision(spec, weights, trust=trust, seed=seed)
    choices = [*LITE, *BUNDLED, *torchvision_names()]
    raise VizError(
        did_you_mean(spec, choices, "model") + " (or timm:NAME, or package.module:factory)"
    )


def _read_labels(labels: Sequence[str] | str) -> list[str]:
    if isinstance(labels, str):
        path = Path(labels)
        if not path.is_file():
            raise VizError(
                f"labels file {labels!r} not found; give a text file, one class per line"
            )
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [str(label) for label in labels]


def available_models() -> list[dict[str, Any]]:
    """One row per known model: name, kind, whether its weights are on disk (offline use), and
    how to get them when they are not. timm's zoo is one row, `timm:NAME` (input size None: each
    model's own; weights_present None: weights come from a file the user gives)."""
    from torchvision.models import get_model_weights

    from vizcnn.models import lenet

    rows: list[dict[str, Any]] = []
    for name, spec in LITE.items():
        rows.append(
            {
                "name": name,
                "kind": "default" if name == DEFAULT_MODEL else "offline",
                "input_size": spec.size,
                "weights_present": lite_present(name),
                "get_weights": spec.install,
            }
        )
    rows.append(
        {
            "name": "lenet5_digits",
            "kind": "bundled",
            "input_size": 32,
            "weights_present": lenet.WEIGHTS_PATH.is_file(),
            "get_weights": "trained on first use (seconds)",
        }
    )
    rows.append(_timm_row())
    for name in torchvision_names():
        size = input_size_of(name)
        try:
            crop = getattr(get_model_weights(name).DEFAULT.transforms(), "crop_size", [size])  # type: ignore[attr-defined]
            size = int(crop[0])
            present = weights_file(name).is_file()
        except (ValueError, KeyError, VizError):
            present = False
        rows.append(
            {
                "name": name,
                "kind": "torchvision",
                "input_size": size,
                "weights_present": present,
                "get_weights": "downloaded on first use",
            }
        )
    return rows


def _timm_row() -> dict[str, Any]:
    """The `timm:NAME` row of `available_models`: usable when timm is installed (not imported)."""
    from vizcnn.models.timm_models import INSTALL, timm_version

    version = timm_version()
    return {
        "name": "timm:NAME",
        "kind": "timm",
        "input_size": None,
        "weights_present": None if version else False,
        "get_weights": (
            f"any timm {version} CNN: weights=PATH, or weights='none' (nothing downloads)"
            if version
            else INSTALL
        ),
    }
