"""The model-state guard: every vizcnn technique and probe runs a user's model inside it.

`model_guard` puts the model in eval mode with frozen parameters for a block and restores, per
module, what the block could change: training flags, `requires_grad`, `inplace` flags, buffers.
`technique` and `guarded` wrap a whole entry point in it (`technique` also accepts a bare
`nn.Module` where a `LoadedModel` is expected). Re-exported by `vizcnn.hooks`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import torch
from torch import nn

if TYPE_CHECKING:
    from vizcnn.models.base import LoadedModel, ModelLike

P = ParamSpec("P")
R = TypeVar("R")


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


def guarded(function: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run `function` inside `model_guard` of its first argument's module.

    The first argument is an `nn.Module` or anything with a `.module` (a `LoadedModel`); other
    values pass through untouched so that the function reports them itself. The guard spans the
    whole call, so a probe, a forward pass or an error anywhere in it leaves the model as found.

    Example:
        >>> @guarded
        ... def probe(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        ...     return model(x)  # eval mode, frozen parameters; restored on return
    """

    first_name = next(iter(inspect.signature(function).parameters))

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        first = args[0] if args else kwargs.get(first_name)
        module = first if isinstance(first, nn.Module) else getattr(first, "module", None)
        if not isinstance(module, nn.Module):
            return function(*args, **kwargs)
        with model_guard(module):
            return function(*args, **kwargs)

    return wrapper


def technique(
    function: Callable[Concatenate[LoadedModel, P], R],
) -> Callable[Concatenate[ModelLike, P], R]:
    """Decorator for an entry point whose first argument is the model.

    The model may be a `LoadedModel` or a bare `nn.Module` (turned into one by
    `vizcnn.models.as_loaded`), and the whole call runs inside `model_guard`, so the model is
    left exactly as found, also when the call raises.

    Example:
        >>> @technique
        ... def logits(loaded: LoadedModel, images: torch.Tensor) -> torch.Tensor:
        ...     return loaded.module(loaded.normalize(images))
        >>> logits(torchvision.models.resnet18(), torch.rand(1, 3, 224, 224))
    """
    first_name = next(iter(inspect.signature(function).parameters))

    @functools.wraps(function)
    def wrapper(model: ModelLike, /, *args: P.args, **kwargs: P.kwargs) -> R:
        from vizcnn.models.base import as_loaded  # models import hooks' users: import late

        loaded = as_loaded(model)
        with model_guard(loaded.module):
            return function(loaded, *args, **kwargs)

    wrapper.__signature__ = inspect.signature(function).replace(  # type: ignore[attr-defined]
        parameters=[
            parameter.replace(annotation="ModelLike") if parameter.name == first_name else parameter
            for parameter in inspect.signature(function).parameters.values()
        ]
    )
    return wrapper
