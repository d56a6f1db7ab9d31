"""Default layers per architecture and technique, chosen because they give good pictures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.models.structure import LayerChoice, choose, stages

if TYPE_CHECKING:
    from vizcnn.models.base import LoadedModel

# technique -> layers; a technique missing here falls back to `choose_layers`' conv rules.
_DEFAULTS: dict[str, dict[str, list[str]]] = {
    "efficientnet_lite0": {
        "dream": ["_blocks.9", "_blocks.11"],  # eyes and fur; checked on coffee/chelsea
        "render": ["_blocks.9"],
        # a 115 px field (object parts) inside the 224 px input; _blocks.9's 275 px field is
        # larger than the image, so every mined patch would be the whole photo, padded
        "mine": ["_blocks.6"],
        # `vizcnn report`'s pages: edges and colours, textures and parts, object parts
        "report": ["_blocks.2", "_blocks.6", "_blocks.9"],
    },
    # lite1 and lite2 have 21 blocks in the same 7 stages (lite0: 16); the same stage positions
    # as lite0's choices: stage 5's second block, stage 6's first, stage 4's second
    "efficientnet_lite1": {
        "dream": ["_blocks.12", "_blocks.15"],
        "render": ["_blocks.12"],
        "mine": ["_blocks.8"],
    },
    "efficientnet_lite2": {
        "dream": ["_blocks.12", "_blocks.15"],
        "render": ["_blocks.12"],
        "mine": ["_blocks.8"],
    },
    "lenet5_digits": {
        "dream": ["features.3"],
        "render": ["features.3"],
        "mine": ["features.3"],
    },
    "googlenet": {
        "dream": ["inception4c"],  # the original notebook's inception_4c/output
        "gradcam": ["inception5b"],  # the last block's output, as the CAM papers use
        "render": ["inception4a"],
        "mine": ["inception4a"],
    },
    "inception_v3": {
        "dream": ["Mixed_6a", "Mixed_6c"],  # TF tutorial's Keras mixed3 + mixed5
        "gradcam": ["Mixed_7c"],
        "render": ["Mixed_5d"],
        "mine": ["Mixed_5d"],
    },
    "vgg16": {
        "dream": ["features.22"],  # relu4_3, as in pytorch-deepdream
        "gradcam": ["features.30"],  # pool5: pytorch-grad-cam's `model.features[-1]`
        "render": ["features.22"],
        "mine": ["features.22"],
    },
    "resnet50": {
        "dream": ["layer3"],  # stride 16 like inception_4c
        "gradcam": ["layer4"],  # pytorch-grad-cam's `model.layer4[-1]`: the same tensor
        "render": ["layer3.2"],
        "mine": ["layer3.2"],
    },
    "alexnet": {
        "dream": ["features.9"],  # relu after conv4: textures, not noise
        "gradcam": ["features.12"],  # pool5, `model.features[-1]`, after conv5's ReLU
        "render": ["features.8"],
        "mine": ["features.10"],
    },
}


def default_layers(arch: str) -> dict[str, list[str]]:
    """The per-technique default layers of `arch` (empty when unknown)."""
    return {technique: list(layers) for technique, layers in _DEFAULTS.get(arch, {}).items()}


def choose_layers(loaded: LoadedModel, technique: str) -> LayerChoice:
    """The default layers of `technique` (gradcam, render, dream, mine, report) on `loaded`.

    The model's own choice first (the zoo's above, or `describe(default_layers=...)`). A model
    with none at all gets stage outputs chosen from its structure (`vizcnn.models.stages`:
    timm's `feature_info`, else one forward pass), never a conv inside a block. A model with
    choices for other techniques, or whose stages cannot be found, keeps the conv rules: its
    last Conv2d for Grad-CAM, a Conv2d two thirds deep for the rest, and for the report a
    Conv2d a third deep plus the mine and render layers.

    Example:
        >>> choose_layers(describe(timm.create_model("resnet50")), "gradcam").layers
        ('layer4',)
    """
    given = loaded.default_layers.get(technique)
    if given:
        source = "zoo" if loaded.name in _DEFAULTS else "given"
        why = "chosen for this model" if source == "zoo" else "given with the model"
        return LayerChoice(technique, tuple(given), why, source, loaded.name)
    why = "the model's own defaults are for other techniques"
    if not loaded.default_layers:
        key = (id(loaded.module), loaded.input_size, loaded.channels)
        if loaded.stages_cache.get(key) is None:
            loaded.stages_cache.clear()
            loaded.stages_cache[key] = stages(loaded)
        found = loaded.stages_cache[key]
        chosen = choose(found, technique, loaded.input_size, loaded.name)
        if chosen is not None:
            return chosen
        why = f"its structure gives {len(found)} stage(s), too few to choose from"
    return _conv_fallback(loaded, technique, why)


def _conv_fallback(loaded: LoadedModel, technique: str, why: str) -> LayerChoice:
    convs = [n for n, m in loaded.module.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        what = {
            "gradcam": "no Conv2d layer for Grad-CAM; give the method a layer",
            "report": "no Conv2d layer; name layers with ReportConfig.layers",
        }
        detail = what.get(technique, "no Conv2d layer; name a layer (layer=...)")
        raise VizError(f"{loaded.name} has {detail}")
    if technique == "gradcam":
        return LayerChoice(
            technique, (convs[-1],), f"its last Conv2d ({why})", "fallback", loaded.name
        )
    if technique == "report":
        picks = [
            convs[len(convs) // 3],
            *choose_layers(loaded, "mine").layers,
            *choose_layers(loaded, "render").layers,
        ]
        reason = f"a Conv2d a third deep and the mine and render layers ({why})"
        return LayerChoice(technique, tuple(dict.fromkeys(picks)), reason, "fallback", loaded.name)
    pick = convs[(2 * len(convs)) // 3]
    return LayerChoice(
        technique, (pick,), f"a Conv2d two thirds deep ({why})", "fallback", loaded.name
    )
