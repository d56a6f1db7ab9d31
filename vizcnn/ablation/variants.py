"""Ablation variants: `name=layer,layer` removals, `LAYER:CHANNELS` unit zeroing, built-in sets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.hooks import Layer, layer_name, layer_names

CONTROL = "control"
ORIGINAL = "original"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+:,@-]*$")


@dataclass(frozen=True)
class Variant:
    """One ablation: layers to remove and/or channels to zero, under a short name."""

    name: str  # shown in the table and chart
    remove: tuple[Layer, ...] = ()  # layers taken out of the network: dotted names or submodules
    units: tuple[tuple[Layer, str], ...] = ()  # (layer, channel selection) pairs zeroed
    description: str = ""  # what it corresponds to, e.g. "Z&F: removed layer 7"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or self.name in (CONTROL, ORIGINAL):
            raise VizError(
                f"bad variant name {self.name!r}; use letters, digits and _ . + : , @ -, "
                f"and not {CONTROL!r} or {ORIGINAL!r}"
            )
        if not self.remove and not self.units:
            raise VizError(f"variant {self.name!r} removes nothing; write NAME=LAYER[,LAYER...]")

    def named(self, model: nn.Module) -> Variant:
        """This variant with its layers as dotted names in `model` (`vizcnn.hooks.layer_name`)."""
        return replace(
            self,
            remove=tuple(layer_names(model, self.remove)),
            units=tuple((layer_name(model, layer), c) for layer, c in self.units),
        )


def parse_variant(text: str) -> Variant:
    """`"no-fc7=classifier.4,classifier.5"` -> a Variant removing those two layers.

    Example:
        >>> parse_variant("no-fc2=classifier.3,classifier.4").remove
        ('classifier.3', 'classifier.4')
    """
    name, sep, layers = text.partition("=")
    if not sep:
        raise VizError(
            f"bad variant {text!r}; write NAME=LAYER[,LAYER...], e.g. no-fc7=classifier.4"
        )
    parts = tuple(p.strip() for p in layers.split(",") if p.strip())
    if not parts:
        raise VizError(f"variant {name.strip()!r} names no layer; write NAME=LAYER[,LAYER...]")
    return Variant(name.strip(), remove=parts)


def parse_units(text: str) -> Variant:
    """`"features.3:0,5,9"` -> a Variant zeroing those channels of `features.3` (checked later
    against the layer's channel count).

    Example:
        >>> parse_units("features.3:0,5").units
        (('features.3', '0,5'),)
    """
    layer, sep, channels = text.partition(":")
    if not sep or not layer.strip() or not channels.strip():
        raise VizError(f"bad units {text!r}; write LAYER:CHANNELS, e.g. features.3:0,5,9")
    name = f"{layer.strip()}:{channels.strip()}"
    return Variant(name, units=((layer.strip(), channels.strip()),))


def check_names(variants: Sequence[Variant]) -> None:
    seen: set[str] = set()
    for variant in variants:
        if variant.name in seen:
            raise VizError(f"two variants are named {variant.name!r}; give each its own name")
        seen.add(variant.name)


# LeNet-5's analogue of Zeiler & Fergus's Table 3 (AlexNet): fc7 -> the last hidden FC,
# fc6+fc7 -> both hidden FC, conv3+conv4 -> the middle (second) convolution, and all of them.
# Each removal takes the layer's ReLU with it, so depth really drops (an adapter is linear).
DIGITS_VARIANTS = (
    Variant(
        "no-fc2",
        ("classifier.3", "classifier.4"),
        description="drop the last hidden FC (Z&F: removed layer 7)",
    ),
    Variant(
        "no-fc",
        ("classifier.1", "classifier.2", "classifier.3", "classifier.4"),
        description="drop both hidden FC (Z&F: removed layers 6,7)",
    ),
    Variant(
        "no-conv2",
        ("features.3", "features.4"),
        description="drop the middle convolution (Z&F: removed layers 3,4)",
    ),
    Variant(
        "no-conv2-fc",
        (
            "features.3",
            "features.4",
            "classifier.1",
            "classifier.2",
            "classifier.3",
            "classifier.4",
        ),
        description="drop both (Z&F: removed layers 3,4,6,7)",
    ),
)

# Zeiler & Fergus 2013, Table 3: error % (train top-1, val top-1, val top-5), REFERENCE.md
ZF_TABLE3 = {
    "control": (35.1, 40.5, 18.1),
    "no-fc2": (27.4, 40.0, 18.4),
    "no-fc": (27.4, 44.8, 22.4),
    "no-conv2": (41.8, 45.4, 22.1),
    "no-conv2-fc": (71.1, 71.3, 50.1),
}


@dataclass(frozen=True)
class Block:
    """A candidate for the lesion study: one block of a network."""

    name: str  # dotted name
    index: int  # position in depth order among the blocks
    container: str  # the ModuleList/Sequential holding it
    params: int = field(default=0)


def find_blocks(module: nn.Module) -> list[Block]:
    """The blocks of a network: children of the outermost `ModuleList`/`Sequential` containers
    whose children are themselves composite modules (ResNet's `layerN.k`, EfficientNet's
    `_blocks.k`), in definition order (the forward order for these architectures).

    Example:
        >>> [b.name for b in find_blocks(torchvision.models.resnet18())][:2]
        ['layer1.0', 'layer1.1']
    """
    found: list[Block] = []
    taken: list[str] = []
    for name, container in module.named_modules():
        if not isinstance(container, (nn.ModuleList, nn.Sequential)):
            continue
        if any(name.startswith(t + ".") for t in taken):
            continue
        children = list(container.named_children())
        if not children or not all(any(True for _ in c.children()) for _, c in children):
            continue
        taken.append(name)
        for child_name, child in children:
            full = f"{name}.{child_name}" if name else child_name
            params = sum(p.numel() for p in child.parameters())
            found.append(Block(full, len(found), name, params))
    return found
