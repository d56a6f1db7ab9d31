"""One cheap forward pass before any work: the input size, the layers and the output checked.

Every technique calls `preflight` right after it has its `LoadedModel`, so a model that cannot
take its input size, a layer that never runs (an unused branch, GoogLeNet's `aux1` in eval mode)
and an output with no tensor in it (or fewer classes than labels) are one line each, the same
line from every technique, before a step of optimization or a batch of data.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from vizcnn.core.errors import VizError
from vizcnn.core.outputs import require_output_tensor
from vizcnn.hooks import (
    Captured,
    Layer,
    LayerRef,
    capture,
    layer_names,
    model_guard,
    parse_layer,
)
from vizcnn.models.base import LoadedModel

# sizes tried, in order, for a "size that works" hint when the one given fails
_SIZES = (224, 32, 64, 96, 128, 256, 299, 28, 48)


def _probe(loaded: LoadedModel, size: tuple[int, int]) -> torch.Tensor:
    """A mid-grey `(1, C, H, W)` input in the model's normalized space, device and dtype."""
    grey = torch.full((1, loaded.channels, *size), 0.5, device=loaded.device)
    return loaded.normalize(grey)


def _runs_at(loaded: LoadedModel, size: tuple[int, int]) -> bool:
    try:
        with model_guard(loaded.module), torch.no_grad():
            loaded.module(_probe(loaded, size))
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


def _size_error(loaded: LoadedModel, size: tuple[int, int], exc: Exception) -> VizError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    works = next((s for s in _SIZES if (s, s) != size and _runs_at(loaded, (s, s))), None)
    if size == loaded.input_size:  # the model's own size: name the setting that gave it
        what = f"input_size {size[0]}x{size[1]}"
        hint = (
            f"input_size={works} works"
            if works is not None
            else "give the input_size the model was trained at"
        )
    else:  # a size the technique was asked for (a render's size, an image's)
        what = f"a {size[0]}x{size[1]} input"
        hint = (
            f"use pictures of at least {works}x{works} pixels"
            if works is not None and works > max(size)
            else f"{works}x{works} works"
            if works is not None
            else "use the model's input size"
        )
    return VizError(
        f"{loaded.name} cannot take {what} ({loaded.channels} channels): {reason}; {hint}"
    )


def _check_fired(
    loaded: LoadedModel, refs: list[LayerRef], acts: Captured, size: tuple[int, int]
) -> None:
    for ref in refs:
        if ref.spec in acts.fired:
            continue
        ran = acts.calls.get(ref.name, 0)
        if ran > ref.call:
            raise VizError(
                f"layer {ref.spec} of {loaded.name} returns no tensor; pick another layer"
            )
        why = (
            f"module ran {ran} time(s) in the last pass; valid: "
            + ", ".join(LayerRef(ref.name, k).spec for k in range(min(ran, 6)))
            if ran
            else "an unused branch, or a module run only in train mode"
        )
        raise VizError(
            f"layer {ref.spec} never ran during the forward pass of {loaded.name} at input "
            f"{size[0]}x{size[1]} ({why}); pick a layer that runs (see `vizcnn layers`)"
        )


def preflight(
    loaded: LoadedModel,
    layers: Sequence[Layer] = (),
    *,
    output: bool = False,
    size: Sequence[int] | None = None,
) -> None:
    """Run the model once on one grey image and refuse, in one line, what would fail later.

    Checks that the model takes `size` (default `loaded.input_size`; the message names a size
    that works when one of a few common sizes does), that every one of `layers` runs in the
    forward pass, and with `output` that the output holds a tensor (`vizcnn.core.outputs`) whose
    class count matches `loaded.labels` when labels are given. Without `output` the pass stops
    after the last of `layers`, so a fixed-size head after them does not constrain the size.
    A check that passed is remembered on `loaded`, so repeated calls cost nothing.

    Args:
        loaded: the model; it is left as found (`model_guard`).
        layers: layer names or submodules the technique will hook.
        output: the technique reads the model's output (logits).
        size: `(H, W)` the technique feeds the model.

    Example:
        >>> preflight(loaded, ["layer4"], output=True)  # VizError if anything would fail
    """
    size = (int(size[0]), int(size[1])) if size is not None else loaded.input_size
    names = tuple(layer_names(loaded.module, layers))
    key = (size, names, output, str(loaded.device), str(loaded.dtype), len(loaded.labels))
    if key in loaded.checked:
        return
    probe = _probe(loaded, size)
    hooks = capture(loaded.module, names, stop_early=not output, detach=True, strict=False)
    with model_guard(loaded.module), torch.no_grad():
        try:
            with hooks if names else nullcontext() as acts:
                result = loaded.module(probe) if acts is None else acts.run(probe)
        except VizError:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise _size_error(loaded, size, exc) from None
    if acts is not None:
        _check_fired(loaded, [parse_layer(name) for name in names], acts, size)
    if output:
        logits = require_output_tensor(result, loaded.name)
        classes = int(logits.shape[1]) if logits.dim() == 2 else None
        if loaded.labels and classes is not None and classes != len(loaded.labels):
            raise VizError(
                f"{len(loaded.labels)} labels given but {loaded.name} has {classes} outputs; "
                f"give {classes} class names, one per output (labels=...)"
            )
    loaded.checked.add(key)
