"""What a dream amplifies: layer targets in the unit grammar, the objective, guide features.

A target is one term `weight * 0.5 * ||a[:, channels]||^2` at a layer (or, guided, the dot
product with the guide's best-matching features), written `LAYER[#k][:CHANNELS][@WEIGHT]` as
everywhere in vizcnn (`vizcnn.core.units`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.units import is_closed, parse_unit
from vizcnn.deepdream.images import as_batch
from vizcnn.deepdream.tiling import as_unit
from vizcnn.hooks import Layer, forward_to, layer_name, layer_output_shape, model_guard
from vizcnn.io.imaging import resize
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded


@dataclass(frozen=True)
class LayerTarget:
    """One term of the dream objective: `weight * 0.5 * ||a[:, channels]||^2` at `layer`."""

    # dotted module path (`name#k` for the k-th call of a reused module) or the submodule
    # itself; `dream` replaces a submodule by its dotted name (`named_target`)
    layer: Layer
    channels: tuple[int, ...] | None = None  # channel subset; None = all channels
    weight: float = 1.0  # multiplier of this layer's term

    @property
    def name(self) -> str:
        """The layer's dotted name (a target on a submodule: once resolved, `named_target`)."""
        if not isinstance(self.layer, str):
            raise VizError(
                f"dream target on a {type(self.layer).__name__} module has no name until "
                "resolved against the model (dream and DreamConfig.targets do it)"
            )
        return self.layer

    @property
    def spec(self) -> str:
        """This target as unit-grammar text: `LAYER:CHANNELS@WEIGHT` (the parts it has)."""
        text = self.name
        if self.channels is not None:
            text += ":" + ",".join(str(c) for c in self.channels)
        if self.weight != 1.0:
            text += f"@{self.weight:g}"
        return text


def named_target(spec: str | LayerTarget | nn.Module, model: nn.Module) -> str | LayerTarget:
    """`spec` with its layer as a dotted name: a submodule becomes its name (the whole layer),
    a `LayerTarget` on a submodule the same target on its name (`vizcnn.hooks.layer_name`)."""
    if isinstance(spec, nn.Module):
        return layer_name(model, spec)
    if isinstance(spec, LayerTarget) and not isinstance(spec.layer, str):
        return replace(spec, layer=layer_name(model, spec.layer))
    return spec


def parse_layer_target(spec: str | LayerTarget, count: int | None = None) -> LayerTarget:
    """Parse the unit grammar `LAYER[#k][:CHANNELS][@WEIGHT]` (`vizcnn.core.units.parse_unit`).

    No CHANNELS means the whole layer. `count` (the layer's channel count) is needed only for
    open selections such as `8:` or `all`, and checks ranges when given.

    Example:
        >>> parse_layer_target("_blocks.9:0-2@2")
        LayerTarget(layer='_blocks.9', channels=(0, 1, 2), weight=2.0)
        >>> parse_layer_target("_blocks.9:0:3").channels  # the same channels render takes
        (0, 1, 2)
    """
    if isinstance(spec, LayerTarget):
        return spec
    unit = parse_unit(spec)
    return LayerTarget(unit.layer_spec, unit.channels(count, default=None), unit.weight)


def resolve_target(spec: str | LayerTarget | nn.Module, loaded: LoadedModel) -> LayerTarget:
    """A target on a dotted layer name whose open channel selection (`8:`, `all`) is resolved
    with one probe pass; a submodule is the whole layer."""
    spec = named_target(spec, loaded.module)
    if isinstance(spec, LayerTarget):
        return spec
    unit = parse_unit(spec)
    # no channels (the whole layer, the dream default) needs no count: no probe pass
    if unit.channels_text is None or is_closed(unit):
        return parse_layer_target(spec)
    layer = unit.layer_spec
    with model_guard(loaded.module):
        shape = layer_output_shape(loaded.module, (loaded.channels, *loaded.input_size), layer)
    return parse_layer_target(spec, shape[0] if shape else None)


def dream_objective(
    activations: Mapping[str, torch.Tensor],
    targets: Sequence[LayerTarget],
    guides: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """The scalar to maximize: sum over targets of `weight * term(a)`, summed over the batch.

    Plain: `term = 0.5 * ||a||^2`. Guided: `term = sum_p <a_p, y*_p>` where `y*_p` is the guide
    feature vector with the largest dot product with `a_p` (held constant), so the gradient at
    every position p is that guide vector, as in the original notebook.

    Args:
        activations: layer spec -> `(B, C, h, w)` output.
        targets: the terms; channel subsets index dim 1.
        guides: per target, the guide's features `(C', N)` (channels already selected).
    """
    total: torch.Tensor | None = None
    for index, target in enumerate(targets):
        acts = _select_channels(_wide(activations[target.name]), target)
        if guides is None:
            term = 0.5 * acts.square().sum()
        else:
            term = _guided_term(acts, guides[index].to(acts.dtype))
        total = target.weight * term if total is None else total + target.weight * term
    if total is None:
        raise VizError("no dream layer given")
    return total


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """Sum the objective in float32 at least (autocast may hand back bfloat16 activations)."""
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def _select_channels(acts: torch.Tensor, target: LayerTarget) -> torch.Tensor:
    if target.channels is None:
        return acts
    count = acts.shape[1]
    bad = [c for c in target.channels if c >= count]
    if bad:
        raise VizError(
            f"channel {bad[0]} out of range for layer {target.layer!r} ({count} channels: 0..{count - 1})"
        )
    index = torch.tensor(target.channels, device=acts.device)
    return acts.index_select(1, index)


def _guided_term(acts: torch.Tensor, guide: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    flat = acts.flatten(2)  # (B, C, P)
    if guide.shape[0] != flat.shape[1]:
        raise VizError(f"guide has {guide.shape[0]} channels, the layer {flat.shape[1]}")
    with torch.no_grad():
        # Chunks over positions bound the (N, P) dot-product matrix for big tiles.
        best = torch.cat(
            [
                torch.einsum("cn,bcp->bnp", guide, part).argmax(dim=1)
                for part in flat.split(chunk, dim=2)
            ],
            dim=1,
        )  # (B, P): index of the best guide vector per position
        chosen = guide.t()[best].permute(0, 2, 1)  # (B, C, P)
    return (flat * chosen).sum()


def guide_features(
    model: ModelLike, guide: torch.Tensor, targets: Sequence[LayerTarget]
) -> list[torch.Tensor]:
    """Per target, the guide image's features `(C', N)` at the model's input scale.

    Args:
        guide: `(C, H, W)` or `(1, C, H, W)` in [0, 1]; resized so its shorter side is the
            model's input size.
    """
    loaded = as_loaded(model)
    targets = [resolve_target(t, loaded) for t in targets]
    image = as_unit(as_batch(guide, loaded), loaded.dtype)
    height, width = image.shape[-2:]
    scale = min(loaded.input_size) / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    layers = list(dict.fromkeys(t.name for t in targets))
    with torch.no_grad():
        acts = forward_to(loaded.module, loaded.normalize(resize(image, size)), layers, detach=True)
    return [_select_channels(_wide(acts[t.name]), t)[0].flatten(1) for t in targets]
