"""Layers whose outputs are non-negative by construction (ReLU / ReLU6 module calls), and the
one-line refusal of a layer that is not (NMF concepts need a non-negative map).

Here, not in `vizcnn.concepts`, because the report's data pass (`vizcnn.mining.layers`) refuses a
sampled layer with negative activations the same way and mining must not import concepts.
"""

from __future__ import annotations

import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.hooks import Layer, capture, layer_name, model_guard
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded

__all__ = ["negative_layer_error", "nonnegative_layers"]

_RELUS = (nn.ReLU, nn.ReLU6)  # outputs that are non-negative by construction


def nonnegative_layers(model: ModelLike, near: Layer | None = None, count: int = 4) -> list[str]:
    """Layer specs whose outputs are non-negative by construction (ReLU / ReLU6 module calls),
    in forward order; with `near`, the `count` inside or right after that layer first.

    Example:
        >>> nonnegative_layers(load_model("efficientnet_lite0"), near="_blocks.6")
        ['_blocks.6._swish', '_blocks.6._swish#1', '_blocks.7._swish', '_blocks.7._swish#1']
    """
    loaded = as_loaded(model)
    names = [name for name, module in loaded.module.named_modules() if isinstance(module, _RELUS)]
    if not names:
        return []
    near_name = layer_name(loaded.module, near) if near is not None else None
    probe = torch.zeros(
        1, loaded.channels, *loaded.input_size, device=loaded.device, dtype=loaded.dtype
    )

    def fired(specs: list[str]) -> tuple[list[str], dict[str, int]]:
        wanted = [*specs, near_name] if near_name is not None else specs
        with capture(loaded.module, wanted, detach=True, strict=False) as acts:
            acts.run(loaded.normalize(probe))
            return list(acts.outputs), dict(acts.calls)

    with model_guard(loaded.module), torch.no_grad():
        _first, calls = fired(names)  # how often each module runs in one pass
        every = [f"{n}#{c}" if c else n for n in names for c in range(calls.get(n, 0))]
        order, _ = fired(every)  # every call, in the order they fire
    specs = [spec for spec in order if spec != near_name]
    if near_name is None:
        return specs
    inside = [s for s in specs if s.startswith(near_name + ".")]
    after = [s for s in order[order.index(near_name) + 1 :]] if near_name in order else []
    chosen = list(dict.fromkeys([*inside, *after]))
    return chosen[:count] or specs[:count]


def negative_layer_error(loaded: LoadedModel, layer: str, minimum: float) -> VizError:
    """The one-line refusal of `layer` (whose activations reached `minimum` < 0), naming the
    non-negative layers near it."""
    fits = nonnegative_layers(loaded, near=layer)
    hint = (
        f"layers that fit (ReLU / ReLU6 outputs): {', '.join(fits)}, ..."
        if fits
        else "the model has no ReLU / ReLU6 module whose output could be taken"
    )
    return VizError(
        f"layer {layer!r} has negative activations (minimum {minimum:.3g}); NMF concepts need "
        f"a non-negative layer: {hint}"
    )
