"""The model-state guard: every vizcnn technique and probe runs a user's model inside it.

`model_guard` puts the model in eval mode with frozen parameters for a block and restores, per
module, what the block could change: training flags, `requires_grad`, `inplace` flags, buffers.
Each entry point opens it explicitly in its body (after `as_loaded`, where it takes a
`LoadedModel`), so this floor needs nothing from the models package. Re-exported by
`vizcnn.hooks`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@contextmanager
def inplace_off(model: nn.Module) -> Iterator[nn.Module]:
    """Switch every module's `inplace` flag off for the block; restore each flag afterwards."""
    saved = {m: m.inplace for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)}
    try:
        for module in saved:
            module.inplace = False  # type: ignore[assignment]
        yield model
    finally:
        for module, flag in saved.items():
            module.inplace = flag  # type: ignore[assignment]


@dataclass
class _SavedState:
    """Everything about a model that running a technique could change, per module."""

    training: dict[nn.Module, bool]
    requires_grad: dict[nn.Parameter, bool]
    inplace: dict[nn.Module, bool]
    buffers: dict[str, tuple[torch.Tensor, int, torch.Tensor]]  # name -> (buffer, version, copy)
    hooks: dict[nn.Module, tuple[int, int, int, int]]  # module -> counts of its hook dicts


def _hook_counts(module: nn.Module) -> tuple[int, int, int, int]:
    return (
        len(module._forward_hooks),
        len(module._forward_pre_hooks),
        len(module._backward_hooks),
        len(getattr(module, "_backward_pre_hooks", {})),
    )


def _save_state(model: nn.Module) -> _SavedState:
    return _SavedState(
        training={m: m.training for m in model.modules()},
        requires_grad={p: p.requires_grad for p in model.parameters()},
        inplace={
            m: bool(m.inplace)
            for m in model.modules()
            if isinstance(getattr(m, "inplace", None), bool)
        },
        # a copy of each buffer (BatchNorm statistics: small next to the parameters) so that a
        # forward pass that slipped into training mode cannot leave changed statistics behind
        buffers={
            name: (buf, buf._version, buf.detach().clone()) for name, buf in model.named_buffers()
        },
        hooks={m: _hook_counts(m) for m in model.modules()},
    )


def _restore_state(saved: _SavedState) -> None:
    for module, flag in saved.training.items():
        module.training = flag
    for parameter, flag in saved.requires_grad.items():
        parameter.requires_grad_(flag)
    for module, flag in saved.inplace.items():
        module.inplace = flag  # type: ignore[assignment]
    with torch.no_grad():
        for buffer, version, copy in saved.buffers.values():
            if buffer._version != version:
                buffer.copy_(copy)


@contextmanager
def model_guard(
    model: nn.Module, *, eval_mode: bool = True, freeze: bool = True
) -> Iterator[nn.Module]:
    """Run the block on `model` in eval mode with frozen parameters; leave it exactly as found.

    Saves and restores, per module: the training flag, each parameter's `requires_grad`, every
    `inplace` flag, and the buffers (BatchNorm running statistics, `num_batches_tracked`); checks
    that no hook was left behind. Every vizcnn technique and probe runs inside it, also when the
    block raises (KeyboardInterrupt included). Nesting is fine.

    Args:
        model: any `nn.Module`, in any mode (a child may be in another mode than its parent).
        eval_mode: put every module in eval mode for the block.
        freeze: switch `requires_grad` off for every parameter for the block.

    Example:
        >>> with model_guard(net):
        ...     net(images)  # BatchNorm uses its running statistics and does not update them
    """
    saved = _save_state(model)
    try:
        if eval_mode:
            model.eval()
        if freeze:
            model.requires_grad_(False)
        yield model
    finally:
        _restore_state(saved)
    leaked = [m for m, counts in saved.hooks.items() if _hook_counts(m) != counts]
    if leaked:
        raise RuntimeError(f"vizcnn left hooks on {type(leaked[0]).__name__}: a vizcnn bug")
