"""torchvision architectures: by name with their weights enum, random weights from a seed, or a
state-dict checkpoint (`--arch`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.models.base import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, imagenet_labels
from vizcnn.models.checkpoints import (
    fit_state_dict,
    looks_like_checkpoint,
    read_checkpoint,
    unwrap_state_dict,
)
from vizcnn.models.default_layers import default_layers
from vizcnn.models.random_init import build_random, describe_random

_AUX = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}  # auxiliary heads


def torchvision_names() -> list[str]:
    """Every classification architecture torchvision can build, sorted."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def input_size_of(arch: str) -> int:
    return 299 if arch == "inception_v3" else 224


def imagenet_loaded(name: str, module: nn.Module, source: str, size: int = 224) -> LoadedModel:
    """A `LoadedModel` with ImageNet preprocessing, labels and its default layers (`default_layers`)."""
    return LoadedModel(
        name=name,
        module=module,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(size, size),
        labels=imagenet_labels(),
        default_layers=default_layers(name),
        weights=source,
    )


def build_arch(
    arch: str, *, num_classes: int = 1000, aux: bool = False, seed: int | None = 0
) -> nn.Module:
    """torchvision's `arch` with random weights drawn from `seed` (the global RNG untouched).

    Example:
        >>> net = build_arch("resnet18", seed=1)
    """
    from torchvision.models import get_model

    if arch not in torchvision_names():
        raise VizError(did_you_mean(arch, torchvision_names(), "architecture"))
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if arch in _AUX:
        # init_weights=True is torchvision's own (truncated normal) init for these two
        kwargs.update(aux_logits=aux, init_weights=True)
    return build_random(lambda: get_model(arch, **kwargs), seed)


def torchvision_weights(arch: str, weights: str) -> Any:
    """The weights enum value named `weights` (`DEFAULT` or e.g. `IMAGENET1K_V1`) of `arch`."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    names = [w.name for w in enum]
    if weights.upper() == "DEFAULT":
        return enum.DEFAULT  # type: ignore[attr-defined]
    if weights in names:
        return enum[weights]
    raise VizError(did_you_mean(weights, ["DEFAULT", "none", *names], f"weights for {arch}"))


def weights_file(arch: str, weights: str = "DEFAULT") -> Path:
    """Where torchvision keeps (or would download) the weights file of `arch`."""
    enum_value = torchvision_weights(arch, weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(enum_value.url).name


def load_torchvision(
    arch: str, weights: str | None, *, trust: bool = False, seed: int | None = 0
) -> LoadedModel:
    """torchvision's `arch` with `weights`: DEFAULT, an enum name, `none` (random from `seed`),
    or a state-dict path."""
    from torchvision.models import get_model

    choice = weights if weights is not None else "DEFAULT"
    size = input_size_of(arch)
    if choice.lower() == "none":
        return imagenet_loaded(arch, build_arch(arch, seed=seed), describe_random(seed), size)
    if looks_like_checkpoint(choice):
        return load_state_dict_checkpoint(choice, arch, trust)
    enum_value = torchvision_weights(arch, choice)
    target = weights_file(arch, enum_value.name)
    kwargs: dict[str, Any] = {"aux_logits": False, "init_weights": False} if arch in _AUX else {}
    try:
        # the random init before the weights arrive must not move the caller's global RNG
        module = build_random(lambda: get_model(arch, weights=enum_value, **kwargs), 0)
    except Exception as exc:  # network errors come in many types
        if target.is_file():
            raise
        raise VizError(
            f"could not download weights for {arch} ({type(exc).__name__}); offline, put "
            f"{target.name} (from {enum_value.url}) into {target.parent}"
        ) from exc
    transforms = enum_value.transforms()
    crop = getattr(transforms, "crop_size", [size])
    crop_size = int(crop[0]) if isinstance(crop, (list, tuple)) else int(crop)
    loaded = imagenet_loaded(arch, module, f"torchvision {arch} {enum_value.name}", crop_size)
    meta_labels = enum_value.meta.get("categories")
    if meta_labels:
        loaded.labels = list(meta_labels)
    return loaded


def _classes(state: Mapping[str, torch.Tensor]) -> int:
    """The class count of a classifier state dict: rows of its last 2-D weight (the head)."""
    heads = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return int(heads[-1].shape[0]) if heads else 1000


def load_state_dict_checkpoint(path_text: str, arch: str | None, trust: bool) -> LoadedModel:
    """A checkpoint file: a state dict for torchvision's `arch`, or (trusted) a whole module."""
    path = Path(path_text)
    saved = read_checkpoint(path, trust)
    if isinstance(saved, nn.Module):
        return imagenet_loaded(arch or path.stem, saved, f"whole module {path.name}")
    state, where = unwrap_state_dict(saved, path_text)
    if arch is None:
        raise VizError(
            f"{path_text} is a state dict; say which architecture with arch=... (e.g. resnet18)"
        )
    aux = any(k.startswith(_AUX.get(arch, ("\0",))) for k in state)
    classes = _classes(state)
    module = build_arch(arch, num_classes=classes, aux=aux, seed=0)
    hint = "is it another architecture? name the one it was saved from with arch=..."
    fit_state_dict(module, state, path_text, arch, hint)
    loaded = imagenet_loaded(arch, module, f"state dict {path.name}{where}", input_size_of(arch))
    if classes != 1000:
        loaded.labels = [str(i) for i in range(classes)]
    return loaded
