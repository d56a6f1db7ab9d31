"""A CNN's stages, and the default layers chosen from them for a model the zoo does not know.

A stage is a run of blocks at one resolution; its output is the output of its last block, where
the block's residual sum and activation have happened (`layer4` of a ResNet, `stages.3` of a
ConvNeXt), never a conv, norm or activation inside a block. Stages come from timm's
`feature_info` when the module has it (no forward pass), else from the network's structure:
one forward pass records every module's output shape; the trunk is the module whose children
give the most distinct spatial sizes (the root of a ResNet, `features` of a VGG or DenseNet), and
each run of its children at one spatial size ends in a stage output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vizcnn.hooks import capture, model_guard

# the probe's input side at most (fewer pixels, same stages: only the map sizes shrink)
_PROBE_SIDE = 128
# a stage fit to mine has a stride of at most this fraction of the input side (224 px: 16)
_MINE_STRIDE_FRACTION = 14
# a network whose structure gives fewer stages than this is too flat to choose from
MIN_STAGES = 3
# modules that pass a map on unchanged, or pool it to one pixel: never a stage output
_PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)

TECHNIQUES = ("gradcam", "render", "dream", "mine", "report")


@dataclass(frozen=True)
class Stage:
    """One stage of a CNN: where its output is and what it looks like at the model's input."""

    name: str  # dotted module path of the stage's output (its last block)
    channels: int  # output channels
    reduction: int  # input pixels per output pixel (the stage's nominal stride)
    # (H, W) of the output at the model's input size (scaled from the probe's or from the
    # reduction where no pass ran at that size: approximate for unpadded convs)
    size: tuple[int, int]
    source: str  # "feature_info" (timm's metadata) or "structure" (one forward pass)


@dataclass(frozen=True)
class LayerChoice:
    """The default layers of one technique on one model, and why they were chosen."""

    technique: str  # gradcam, render, dream, mine or report
    layers: tuple[str, ...]
    reason: str  # e.g. "the last stage with a spatial map (7x7, stride 32; timm's feature_info)"
    source: str  # zoo, given (describe's default_layers), feature_info, structure or fallback
    model: str = ""

    def note(self) -> str:
        """`layer: layer4 (default for resnet50: ...)`, one line."""
        return f"layer: {', '.join(self.layers)} (default for {self.model}: {self.reason})"


def stages(model: Any, input_size: int | tuple[int, int] | None = None) -> list[Stage]:
    """The stages of `model` (a `LoadedModel` or an `nn.Module`), shallowest first.

    Args:
        model: a `LoadedModel`, or an `nn.Module` taking 3-channel images.
        input_size: `(H, W)` the sizes are given at (default: the model's, 224 for a module).

    A module with timm's `feature_info` costs nothing; any other runs one forward pass on zeros
    (at most 128 px a side) in eval mode without gradients, and is left exactly as found. May
    return fewer than `MIN_STAGES` stages (a flat or tiny network), or none.

    Example:
        >>> [s.name for s in stages(torchvision.models.resnet18(weights=None))]
        ['relu', 'layer1', 'layer2', 'layer3', 'layer4']
    """
    from vizcnn.models.base import as_loaded

    loaded = as_loaded(model)
    size = _size(input_size) if input_size is not None else loaded.input_size
    found = _from_feature_info(loaded.module, size)
    if found is not None:
        return found
    return _from_structure(loaded.module, loaded.channels, size)


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _nominal(ratio: float) -> int:
    """The power of two nearest a measured stride (inception's 299/35 is 8)."""
    return 2 ** max(0, round(math.log2(ratio))) if ratio > 0 else 1


def _from_feature_info(module: nn.Module, size: tuple[int, int]) -> list[Stage] | None:
    info = getattr(module, "feature_info", None)
    info = getattr(info, "info", info)  # timm's FeatureInfo object (features_only models)
    if not isinstance(info, list) or not info:
        return None
    names = {name for name, _ in module.named_modules()}
    keys = {"module", "reduction", "num_chs"}
    if not all(isinstance(d, Mapping) and keys <= d.keys() and d["module"] in names for d in info):
        return None
    return [
        Stage(
            name=str(d["module"]),
            channels=int(d["num_chs"]),
            reduction=int(d["reduction"]),
            size=(-(-size[0] // int(d["reduction"])), -(-size[1] // int(d["reduction"]))),
            source="feature_info",
        )
        for d in info
    ]


def _probe(
    module: nn.Module, channels: int, size: tuple[int, int]
) -> tuple[tuple[int, int], dict[str, tuple[int, ...]], dict[str, int]]:
    """Every module's first output shape, in the order the calls ended, and the call counts."""
    names = [name for name, _ in module.named_modules() if name]
    tensor = next(iter(module.parameters()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")
    dtype = tensor.dtype if tensor is not None and tensor.is_floating_point() else torch.float32
    small = (min(size[0], _PROBE_SIDE), min(size[1], _PROBE_SIDE))
    tries = [small] if small == size else [small, size]  # a model that takes only its own size
    for index, probe in enumerate(tries):
        inputs = torch.zeros(1, channels, *probe, device=device, dtype=dtype)
        try:
            with (
                model_guard(module),
                torch.no_grad(),
                capture(module, names, detach=True, strict=False) as acts,
            ):
                acts.run(inputs)
        except Exception:
            if index == len(tries) - 1:
                raise
            continue
        shapes = {name: tuple(out.shape) for name, out in acts.outputs.items()}
        return probe, shapes, dict(acts.calls)
    raise AssertionError("unreachable")


def _from_structure(module: nn.Module, channels: int, size: tuple[int, int]) -> list[Stage]:
    try:
        probe, shapes, calls = _probe(module, channels, size)
    except Exception:  # a model this probe cannot run: no stages, the conv fallback
        return []
    modules = dict(module.named_modules())
    order = {name: i for i, name in enumerate(shapes)}

    def spatial_children(parent: str) -> list[str]:
        prefix = f"{parent}." if parent else ""
        found = [
            f"{prefix}{child}"
            for child, sub in modules[parent].named_children()
            if _is_block(f"{prefix}{child}", sub, shapes, calls)
        ]
        return sorted(found, key=order.__getitem__)

    def sizes(parent: str) -> int:
        return len({shapes[name][2:] for name in spatial_children(parent)})

    # the shallowest module whose children give the most spatial sizes (named_modules: parents
    # before children, so `max` keeps the first of equals)
    trunk = max(modules, key=sizes)
    outputs: list[str] = []
    for name in spatial_children(trunk):
        if outputs and shapes[outputs[-1]][2:] == shapes[name][2:]:
            outputs[-1] = name  # the run at this size goes on: its last block is the output
        else:
            outputs.append(name)
    return [_stage(name, shapes[name], probe, size) for name in outputs]


def _is_block(
    name: str, sub: nn.Module, shapes: Mapping[str, tuple[int, ...]], calls: Mapping[str, int]
) -> bool:
    """A child that can end a stage: ran once, gives a (B, C, H, W) map, is no pass-through."""
    shape = shapes.get(name)
    if shape is None or len(shape) != 4 or calls.get(name, 0) != 1:
        return False
    if isinstance(sub, _PASS_THROUGH):
        return False
    # a global pool (to one pixel) belongs to the head
    return not ("Pool" in type(sub).__name__ and shape[2] * shape[3] == 1)


def _stage(
    name: str, shape: tuple[int, ...], probe: tuple[int, int], size: tuple[int, int]
) -> Stage:
    height, width = shape[2], shape[3]
    if probe != size:  # the probe was smaller than the model's input: scale the map up
        height = max(1, round(height * size[0] / probe[0]))
        width = max(1, round(width * size[1] / probe[1]))
    return Stage(
        name=name,
        channels=int(shape[1]),
        reduction=_nominal(probe[0] / shape[2]),
        size=(height, width),
        source="structure",
    )


def choose(
    found: list[Stage], technique: str, input_size: tuple[int, int], model: str = ""
) -> LayerChoice | None:
    """The default layers of `technique` among `found` stages (None: too few to choose from).

    Grad-CAM: the last stage whose map is larger than one pixel (the anchors' "last conv block
    output", `model.layer4[-1]` of a ResNet). Render and dream: a stage about two thirds deep.
    Mine: the deepest stage up to that one whose stride is at most 1/14 of the input side (a
    proxy for a receptive field inside the image: stride 16 at 224 px). Report: the three
    stages ending at the render stage.
    """
    spatial = [s for s in found if s.size[0] * s.size[1] > 1]
    if not spatial or (found[0].source == "structure" and len(found) < MIN_STAGES):
        return None
    whence = "timm's feature_info" if found[0].source == "feature_info" else "its structure"
    last = len(spatial) - 1
    deep = round(2 * last / 3)

    def where(stage: Stage) -> str:
        number = found.index(stage) + 1
        return (
            f"stage {number} of {len(found)}, {stage.size[0]}x{stage.size[1]}, stride "
            f"{stage.reduction}; stages from {whence}"
        )

    picks: list[Stage]
    if technique == "gradcam":
        picks = [spatial[last]]
        reason = f"the last stage output with a spatial map ({where(picks[0])})"
    elif technique in ("render", "dream"):
        picks = [spatial[deep]]
        reason = f"a stage output two thirds deep ({where(picks[0])})"
    elif technique == "mine":
        side = min(input_size)
        fits = [s for s in spatial[: deep + 1] if s.reduction * _MINE_STRIDE_FRACTION <= side]
        picks = [fits[-1] if fits else spatial[0]]
        reason = (
            f"the deepest stage output at most two thirds deep with a stride of at most "
            f"1/{_MINE_STRIDE_FRACTION} of the input ({where(picks[0])})"
        )
    elif technique == "report":
        picks = spatial[max(0, deep - 2) : deep + 1]
        strides = ", ".join(str(s.reduction) for s in picks)
        reason = f"stage outputs up to two thirds deep (strides {strides}; stages from {whence})"
    else:
        return None
    return LayerChoice(technique, tuple(s.name for s in picks), reason, found[0].source, model)


def stages_view(model: Any) -> dict[str, Any]:
    """The stages of `model` and each technique's default layers, as plain data (JSON-ready).

    Example:
        >>> view = stages_view(describe(timm.create_model("resnet50")))
        >>> view["defaults"]["gradcam"]["layers"]
        ['layer4']
    """
    from vizcnn.core.errors import VizError
    from vizcnn.models.base import as_loaded

    loaded = as_loaded(model)
    found = stages(loaded)
    defaults: dict[str, dict[str, Any]] = {}
    for technique in TECHNIQUES:
        try:
            choice = loaded.layer_choice(technique)
        except VizError as exc:
            defaults[technique] = {"layers": [], "reason": str(exc), "source": "none"}
            continue
        defaults[technique] = {
            "layers": list(choice.layers),
            "reason": choice.reason,
            "source": choice.source,
        }
    rows = [
        {
            "name": s.name,
            "channels": s.channels,
            "reduction": s.reduction,
            "size": list(s.size),
            "source": s.source,
            "default_for": [t for t in TECHNIQUES if s.name in defaults[t]["layers"]],
        }
        for s in found
    ]
    return {
        "model": loaded.name,
        "input_size": list(loaded.input_size),
        "stages": rows,
        "defaults": defaults,
    }


def format_stages(view: Mapping[str, Any]) -> str:
    """`stages_view`'s data as a table of stages and one line per technique's defaults."""
    rows = [("stage", "output", "channels", "stride", "size", "default for")]
    for number, row in enumerate(view["stages"], 1):
        size = "x".join(str(v) for v in row["size"])
        used = ", ".join(row["default_for"])
        rows.append(
            (str(number), row["name"], str(row["channels"]), str(row["reduction"]), size, used)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    height, width = view["input_size"]
    if not view["stages"]:
        lines = [f"{view['model']}: no stages found at input {height}x{width}"]
    lines.append("")
    for technique, choice in view["defaults"].items():
        layers = ", ".join(choice["layers"]) or "-"
        lines.append(f"{technique}: {layers} ({choice['reason']})")
    return "\n".join(lines)
