"""`LoadedModel`: a network plus what techniques need to feed it; `describe` wraps a bare module.

Every technique accepts either a `LoadedModel` or a bare `nn.Module` (as captum and lucent do);
`as_loaded` turns the latter into the former with ImageNet normalization and the module's own
device and dtype, each overridable.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import chain
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vizcnn.core.errors import VizError, did_you_mean

if TYPE_CHECKING:
    from vizcnn.models.structure import LayerChoice

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ResizeCrop:
    """How the model's own evaluation pipeline brings an image to its input size (timm's
    `pretrained_cfg`): resize the shorter side to `input_size / crop_pct` with `interpolation`,
    then crop `input_size` out of it. Every technique that prepares images for the model
    follows it (`vizcnn.data.datasets.preprocess`); it is recorded in provenance."""

    interpolation: str  # resampling filter: bilinear, bicubic, nearest, ...
    crop_pct: float  # fraction of the resized image the crop keeps (1.0: no margin)
    crop_mode: str = "center"  # where the crop is taken: center, squash, border


@dataclass
class LoadedModel:
    """A network ready for visualization: eval mode, parameters frozen, with its preprocessing."""

    name: str  # the spec it was loaded from
    module: nn.Module  # eval mode, requires_grad False everywhere
    mean: tuple[float, ...]  # per-channel normalization applied to [0, 1] images
    std: tuple[float, ...]
    input_size: tuple[int, int]  # (H, W) the model was trained at
    labels: list[str]  # class names, index = logit
    default_layers: dict[str, list[str]] = field(default_factory=dict)  # technique -> layers
    weights: str = ""  # where the weights came from, for manifests
    # False when mean/std are `default_normalization`'s guess, not the model's known statistics
    stats_given: bool = True
    # `load_model`'s arguments (spec, weights, ...) as given, so a run can record how to load
    # this model again; None for a module described, not loaded by spec
    load_options: dict[str, Any] | None = None
    # the stages `choose_layers` found, keyed by (module id, input size, channels)
    stages_cache: dict[Any, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # the model's own resize and crop (timm models); None: not known, vizcnn's own is used
    resize_crop: ResizeCrop | None = None
    # `preflight` checks this model passed (size, layers, output, device, dtype, labels)
    checked: set[tuple[Any, ...]] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.module = unwrap(self.module)

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def normalization(self) -> dict[str, object]:
        """The preprocessing record of provenance blocks: mean, std and whether defaulted (and
        the model's own resize and crop where known: `resize_crop`)."""
        record: dict[str, object] = {
            "mean": list(self.mean),
            "std": list(self.std),
            "default": not self.stats_given,
        }
        if self.resize_crop is not None:
            record["interpolation"] = self.resize_crop.interpolation
            record["crop_pct"] = self.resize_crop.crop_pct
            record["crop_mode"] = self.resize_crop.crop_mode
        return record

    def normalization_note(self) -> str | None:
        """One line for a model run on a guessed normalization (3 channels, no mean/std given)."""
        if self.stats_given or self.channels != 3:
            return None
        return (
            f"{self.name}: no mean/std given; normalizing with ImageNet's mean {self.mean} and "
            f"std {self.std} (give the statistics the model was trained with: "
            "describe(module, mean=..., std=...) or load_model(..., mean=..., std=...))"
        )

    @property
    def device(self) -> torch.device:
        """Where the module's first parameter (or buffer) lives; CPU for a module with neither."""
        for tensor in chain(self.module.parameters(), self.module.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The module's floating-point dtype (float32 for a module without floating parameters)."""
        for tensor in chain(self.module.parameters(), self.module.buffers()):
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def to(self, device: torch.device | str) -> LoadedModel:
        self.module.to(device)
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map `(B, C, H, W)` images in [0, 1] to the model's input: normalized, in its dtype.

        This is where images enter the network, so it casts them to the model's dtype (a
        float64 or bfloat16 model takes float64 or bfloat16 input); everything before it
        (parameterization, optimizer, transforms) stays in the images' own dtype, and the cast
        passes gradients back to them.
        """
        mean, std = self._stats(images)
        inputs = (images - mean) / std
        dtype = self.dtype
        return inputs if inputs.dtype == dtype else inputs.to(dtype)

    def denormalize(self, inputs: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`."""
        mean, std = self._stats(inputs)
        return inputs * std + mean

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if like.shape[1] != self.channels:
            raise VizError(
                f"{self.name} takes {self.channels}-channel images, got {like.shape[1]} channels"
            )
        mean = torch.tensor(self.mean, device=like.device, dtype=like.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=like.device, dtype=like.dtype).view(1, -1, 1, 1)
        return mean, std

    def layers_for(self, technique: str) -> list[str]:
        """Default layers for a technique (`dream`, `render`, `mine`, `report`, `gradcam`)."""
        return list(self.layer_choice(technique).layers)

    def layer_choice(self, technique: str) -> LayerChoice:
        """The default layers for a technique and why: the model's own, else its stage outputs
        (`vizcnn.models.default_layers.choose_layers`); `.note()` is one line to show."""
        from vizcnn.models.default_layers import choose_layers

        return choose_layers(self, technique)

    def class_index(self, label: str | int) -> int:
        """A class by index or by (case-insensitive) name, e.g. `"espresso"` or `967`."""
        if isinstance(label, int) or str(label).strip().lstrip("-").isdigit():
            index = int(label)
            if not self.labels and index >= 0:  # no names known: the logits check the range
                return index
            if not 0 <= index < len(self.labels):
                raise VizError(
                    f"class {index} out of range; {self.name} has 0..{len(self.labels) - 1}"
                )
            return index
        if not self.labels:
            raise VizError(
                f"class {str(label)!r} given by name but {self.name} has no class names; give "
                "the class by index, or the names (describe(labels=...) or load_model(labels=FILE))"
            )
        wanted = str(label).strip().lower()
        lowered = [name.lower() for name in self.labels]
        if wanted in lowered:
            return lowered.index(wanted)
        raise VizError(did_you_mean(str(label), self.labels, "class"))


def default_normalization(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The one default mean/std of a model whose statistics are not given, everywhere (the CLI's
    `package.module:factory`, `describe`, a bare module): ImageNet's for 3 channels (what
    torchvision's, timm's and most RGB CNNs are trained with), 0 and 1 for other channel counts.
    """
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.0,) * channels, (1.0,) * channels


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside `nn.DataParallel`, `DistributedDataParallel` and `torch.compile`'s
    `OptimizedModule` wrappers (nested ones too), which vizcnn runs eagerly on one device:
    layer names are then the unwrapped network's (`features.0`, not `module.features.0`).

    Example:
        >>> unwrap(nn.DataParallel(net)) is net
        True
    """
    while True:
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            module = module.module
        elif type(module).__name__ == "OptimizedModule" and isinstance(
            getattr(module, "_orig_mod", None), nn.Module
        ):
            # torch._dynamo's wrapper, recognized by name: importing torch._dynamo costs 1.5 s
            module = module._orig_mod  # type: ignore[assignment]
        else:
            return module


def input_channels(module: nn.Module) -> int:
    """The channel count of the module's first `nn.Conv2d` (3 when it has none)."""
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: what every technique here wants."""
    module.eval()
    module.requires_grad_(False)
    return module


@functools.cache
def _imagenet_classes() -> tuple[str, ...]:
    text = resources.files("vizcnn.models").joinpath("imagenet_classes.txt").read_text("utf-8")
    return tuple(text.splitlines())


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, torchvision's list (a test checks they are equal).

    Read from a copy in this package rather than from torchvision: importing torchvision costs
    about 1.5 s of start-up (it pulls in torch._dynamo), more than the rest of a short render.
    """
    return list(_imagenet_classes())


# what every technique's `model` argument takes
ModelLike = LoadedModel | nn.Module


def describe(
    module: nn.Module,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    input_size: int | tuple[int, int] = 224,
    labels: Sequence[str] | None = None,
    name: str | None = None,
    default_layers: dict[str, list[str]] | None = None,
) -> LoadedModel:
    """Describe a bare `nn.Module` for vizcnn: its preprocessing, input size and class names.

    Args:
        module: any CNN taking `(B, C, H, W)`; it is not moved, copied, frozen or put in eval mode
            (every technique does that for the duration of its call and restores it).
        mean, std: per-channel normalization of [0, 1] images (default: `default_normalization`,
            ImageNet's for 3 input channels, 0 and 1 otherwise; the provenance says it was a
            default).
        input_size: `(H, W)` or a side length the model was trained at.
        labels: class names, index = logit (default: none; classes are then named by index).
        name: shown in manifests (default: the module's class name).

    Example:
        >>> net = torchvision.models.resnet18(weights=None)
        >>> loaded = describe(net, input_size=224)
    """
    default_mean, default_std = default_normalization(input_channels(module))
    mean_t = tuple(float(v) for v in (mean if mean is not None else default_mean))
    std_t = tuple(float(v) for v in (std if std is not None else default_std))
    if len(mean_t) != len(std_t) or any(not v > 0 for v in std_t):
        raise VizError(f"mean {mean_t} and std {std_t} must have equal lengths, std > 0")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 8:
        raise VizError(f"input size {input_size} invalid; give (H, W) of at least 8 pixels")
    return LoadedModel(
        name=name or type(module).__name__,
        module=module,
        mean=mean_t,
        std=std_t,
        input_size=(int(size[0]), int(size[1])),
        labels=[str(label) for label in labels] if labels is not None else [],
        default_layers=dict(default_layers or {}),
        weights="user module",
        stats_given=mean is not None or std is not None,
    )


def as_loaded(model: ModelLike) -> LoadedModel:
    """A `LoadedModel` as is; a bare `nn.Module` described with `describe`'s defaults."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, nn.Module):
        return describe(model)
    raise VizError(f"expected a torch.nn.Module or vizcnn.LoadedModel, got {type(model).__name__}")
