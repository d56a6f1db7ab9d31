"""Default layers per architecture and technique, chosen because they give good pictures."""

from __future__ import annotations

# technique -> layers; a technique missing here falls back to a conv two thirds deep.
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
        "render": ["inception4a"],
        "mine": ["inception4a"],
    },
    "inception_v3": {
        "dream": ["Mixed_6a", "Mixed_6c"],  # TF tutorial's Keras mixed3 + mixed5
        "render": ["Mixed_5d"],
        "mine": ["Mixed_5d"],
    },
    "vgg16": {
        "dream": ["features.22"],  # relu4_3, as in pytorch-deepdream
        "render": ["features.22"],
        "mine": ["features.22"],
    },
    "resnet50": {
        "dream": ["layer3"],  # stride 16 like inception_4c
        "render": ["layer3.2"],
        "mine": ["layer3.2"],
    },
    "alexnet": {
        "dream": ["features.9"],  # relu after conv4: textures, not noise
        "render": ["features.8"],
        "mine": ["features.10"],
    },
}


def default_layers(arch: str) -> dict[str, list[str]]:
    """The per-technique default layers of `arch` (empty when unknown)."""
    return {technique: list(layers) for technique, layers in _DEFAULTS.get(arch, {}).items()}
