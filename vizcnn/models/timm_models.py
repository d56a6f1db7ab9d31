"""timm's model zoo behind the `timm:NAME` spec: architecture, preprocessing and class names from
timm, weights from a local file (or timm's own cache), never from the network.

This is the only module that imports `timm` (lazily: it is the optional extra `vizcnn[timm]`).
`NAME` is any architecture `timm.list_models()` knows, optionally with a pretrained tag
(`resnet18.a1_in1k`), whose `pretrained_cfg` then gives the preprocessing. Models are always
built with `pretrained=False`; weights come from:

    weights=PATH          a state dict (`.pt`, `.pth`, `.bin`, `.safetensors`, also nested in a
                          training checkpoint), loaded strictly; a head of another class count
                          is built to fit the file
    weights="none"        timm's own random initialization drawn from `seed`
    weights=None, DEFAULT timm's pretrained weights when already in the local Hugging Face cache;
                          otherwise a one-line error saying which file to fetch and where from
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.models.base import LoadedModel, ResizeCrop, imagenet_labels
from vizcnn.models.checkpoints import (
    fit_state_dict,
    looks_like_checkpoint,
    read_checkpoint,
    unwrap_state_dict,
)
from vizcnn.models.random_init import build_random, describe_random

PREFIX = "timm:"
INSTALL = 'pip install "vizcnn[timm]"'
# the files timm looks for in a model's Hugging Face repository, in its order
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
_PRETRAINED = {"default", "pretrained"}


def timm_version() -> str | None:
    """The installed timm's version, or None when it is not installed (timm is not imported)."""
    if importlib.util.find_spec("timm") is None:
        return None
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return "unknown version"


def _import_timm(spec: str) -> ModuleType:
    try:
        import timm
        import timm.data
    except ImportError as exc:
        raise VizError(f"model spec {spec!r} needs timm: {INSTALL}") from exc
    return timm


def load_timm(
    spec: str, weights: str | None, *, trust: bool = False, seed: int | None = 0
) -> LoadedModel:
    """timm's architecture `spec` (`timm:NAME`) with `weights`; see the module docstring.

    Every check that needs no network (the name, the weights choice, the file) runs before the
    model is built, and nothing is downloaded: the model is built with `pretrained=False`.

    Example:
        >>> loaded = load_timm("timm:convnext_tiny", "convnext_tiny.safetensors")
        >>> random = load_timm("timm:resnet18", "none", seed=3)
    """
    name = spec[len(PREFIX) :].strip() if spec.startswith(PREFIX) else spec.strip()
    timm = _import_timm(spec)
    cfg = _pretrained_cfg(timm, name, spec)
    choice = (weights if weights is not None else "DEFAULT").strip()
    state: dict[str, torch.Tensor] | None = None
    path = ""
    if choice.lower() == "none":
        source = describe_random(seed)
    else:
        if choice.lower() in _PRETRAINED:
            path = _cached_pretrained(cfg, spec, given=weights is not None)
            source = f"timm pretrained {cfg.get('hf_hub_id')} (local cache)"
        elif looks_like_checkpoint(choice):
            path = choice
            source = f"state dict {Path(choice).name}"
        else:
            raise VizError(
                f"weights {choice!r} for {spec}: give a state-dict file (weights=PATH), 'none' "
                "(seeded random) or 'DEFAULT' (timm's pretrained weights, from the local cache)"
            )
        state, where = unwrap_state_dict(read_checkpoint(path, trust), path)
        source += where
        seed = 0  # the random init the file replaces must not move the caller's global RNG
    kwargs: dict[str, Any] = {"pretrained": False}
    classes = _head_classes(state, cfg)
    if classes is not None:
        kwargs["num_classes"] = classes
    channels = _input_channels(state, cfg)
    if channels is not None:
        kwargs["in_chans"] = channels
    try:
        module = build_random(lambda: timm.create_model(name, **kwargs), seed)
    except Exception as exc:  # timm's model code: any exception can come out
        first = (str(exc).strip().splitlines() or [""])[0]
        raise VizError(f"timm could not build {name!r}: {type(exc).__name__}: {first}") from exc
    _check_convolutional(module, spec)
    if state is not None:
        hint = f"is it a checkpoint of another architecture? give one saved from timm {name}"
        fit_state_dict(module, state, path, spec, hint)
    return _loaded(timm, spec, module, source)


def _pretrained_cfg(timm: ModuleType, name: str, spec: str) -> dict[str, Any]:
    """The `pretrained_cfg` of `name` (architecture[.tag]) as a dict; one line for a bad name."""
    arch, _, tag = name.partition(".")
    if not arch or not timm.is_model(arch):
        raise VizError(did_you_mean(arch or name, timm.list_models(), "timm model") + f" ({spec})")
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError as exc:  # an unknown pretrained tag
        tags = timm.list_pretrained(f"{arch}.*")
        raise VizError(did_you_mean(name, tags, "timm model") + f" ({spec})") from exc
    return cfg.to_dict() if cfg is not None else {}


def _cached_pretrained(cfg: dict[str, Any], spec: str, given: bool) -> str:
    """The file of timm's pretrained weights in the local Hugging Face cache (no network), or a
    one-line error saying where to get it."""
    hub_id = cfg.get("hf_hub_id")
    files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else list(HUB_FILES)
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            pass
        else:
            for filename in files:
                found = try_to_load_from_cache(hub_id, filename)
                if isinstance(found, str) and Path(found).is_file():
                    return found
    why = "" if given else "no weights given and "
    random = "or weights='none' for a seeded random network"
    if hub_id:
        where = f"download {files[0]} from https://huggingface.co/{hub_id}"
    elif cfg.get("url"):
        where = f"download {cfg['url']}"
    else:
        raise VizError(
            f"{spec}: {why}timm has no pretrained weights for it; give a state dict with "
            f"weights=PATH, {random}"
        )
    raise VizError(
        f"{spec}: {why}timm's pretrained weights are not on this machine (vizcnn downloads "
        f"nothing): {where} on a machine with network and give it as weights=PATH, {random}"
    )


def _input_channels(state: dict[str, torch.Tensor] | None, cfg: dict[str, Any]) -> int | None:
    """The input channels of the file's first convolution when they are not 3 (a network trained
    on grey or multispectral images), so the network is built to fit it; None otherwise."""
    first = cfg.get("first_conv")
    names = [first] if isinstance(first, str) else list(first or [])
    if state is None or not names:
        return None
    key = f"{names[0]}.weight"
    found = next((v for k, v in state.items() if k == key or k.endswith(f".{key}")), None)
    if found is None or found.dim() != 4:
        return None
    channels = int(found.shape[1])
    return None if channels == 3 else channels


def _head_classes(state: dict[str, torch.Tensor] | None, cfg: dict[str, Any]) -> int | None:
    """The class count of the file's classifier head when it differs from the architecture's
    default (a fine-tuned checkpoint), so the network is built to fit it; None otherwise."""
    head = cfg.get("classifier")
    if state is None or not isinstance(head, str):
        return None
    key = f"{head}.weight"
    found = next((v for k, v in state.items() if k == key or k.endswith(f".{key}")), None)
    if found is None or found.dim() < 2:
        return None
    classes = int(found.shape[0])
    return None if classes == cfg.get("num_classes") else classes


def _check_convolutional(module: nn.Module, spec: str) -> None:
    """Refuse a transformer or MLP network: at most one convolution (a patch embedding)."""
    convs = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if len(convs) < 2:
        only = f" ({convs[0]})" if convs else ""
        raise VizError(
            f"{spec} is not a convolutional network: {len(convs)} Conv2d layer{only}; vizcnn "
            "visualizes CNNs (e.g. timm:resnet50, timm:convnext_tiny)"
        )


def _loaded(timm: ModuleType, spec: str, module: nn.Module, source: str) -> LoadedModel:
    """A `LoadedModel` with the preprocessing and class names timm records for `module`."""
    config = timm.data.resolve_model_data_config(module)
    channels, height, width = (int(v) for v in config["input_size"])
    # a network built for other input channels (`_input_channels`) keeps its cfg's RGB size
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    channels = int(first.in_channels) if first is not None else channels
    mean = tuple(float(v) for v in config["mean"])
    std = tuple(float(v) for v in config["std"])
    if len(mean) != channels:  # grey: the RGB statistics' average; else one for every channel
        take = sum(mean) / len(mean), sum(std) / len(std)
        mean, std = (take[0],) * channels, (take[1],) * channels
    return LoadedModel(
        name=spec,
        module=module,
        mean=mean,
        std=std,
        input_size=(height, width),
        labels=timm_labels(timm, module),
        default_layers={},
        weights=source,
        resize_crop=ResizeCrop(
            interpolation=str(config.get("interpolation", "bilinear")),
            crop_pct=float(config.get("crop_pct", 1.0)),
            crop_mode=str(config.get("crop_mode", "center")),
        ),
    )


def timm_labels(timm: ModuleType, module: nn.Module) -> list[str]:
    """Class names of a timm model's head: its `pretrained_cfg`'s own, ImageNet's for 1000
    classes (torchvision's list, the one every ImageNet model here uses: the same order as
    timm's, with `crane bird` and `maillot tank suit` told apart), timm's ImageNet-12k/22k
    synsets for those heads; none (classes named by index) otherwise."""
    classes = int(getattr(module, "num_classes", 0) or 0)
    cfg = getattr(module, "pretrained_cfg", {}) or {}
    names = cfg.get("label_descriptions") or cfg.get("label_names")
    if isinstance(names, (list, tuple)) and len(names) == classes:
        return [str(v) for v in names]
    subset = timm.data.infer_imagenet_subset(module) if classes else None
    if subset is None:
        return []
    if subset == "imagenet-1k":
        return imagenet_labels()
    info = timm.data.ImageNetInfo(subset)
    first = [info.index_to_description(i).split(",")[0].strip() for i in range(classes)]
    repeated = {n for n, count in Counter(first).items() if count > 1}
    return [info.index_to_description(i) if n in repeated else n for i, n in enumerate(first)]
