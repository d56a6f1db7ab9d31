"""Backward rules for rectifiers: guided backpropagation and deconvnet, for module and functional ReLUs.

Guided backpropagation (Springenberg et al. 2015) lets a gradient through a ReLU only where the
forward input was positive AND the gradient is positive; the deconvnet rule (Zeiler & Fergus 2014)
lets it through wherever the gradient is positive, ignoring the forward mask.

Hooks on `nn.ReLU` modules (captum's way) miss functional calls: torchvision's GoogLeNet and
Inception v3 call `F.relu` inside their blocks, and there guided backprop silently equals the plain
gradient. `relu_rule` instead installs a `torch.overrides.TorchFunctionMode` for the block that
replaces every rectifier call with a custom autograd Function. `nn.ReLU.forward` itself calls
`F.relu`, so one mechanism covers modules and functional calls alike, and nothing is attached to
the model. Covered: `nn.ReLU`, `F.relu`, `torch.relu`, `torch.relu_`, `Tensor.relu`,
`Tensor.relu_`, the same with `inplace=True`, and the clipped rectifiers `nn.ReLU6`, `F.relu6` and
`F.hardtanh(x, 0, t)` (EfficientNet-Lite's activation), whose forward mask is `0 < x < t`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from vizcnn.core.errors import VizError
from vizcnn.core.torch_calls import call_argument

Rule = Literal["guided", "deconv"]
RULES: tuple[str, ...] = ("guided", "deconv")


class _RuledRectifier(torch.autograd.Function):
    """`clamp(x, lo, hi)` forward; the guided or deconvnet rule backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, lo: float, hi: float | None, guided: bool, inplace: bool
    ) -> torch.Tensor:
        if guided:
            mask = x > lo if hi is None else (x > lo) & (x < hi)
            ctx.save_for_backward(mask)
        ctx.guided = guided
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(min=lo, max=hi)
        return x.clamp(min=lo, max=hi)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        # clamp, not relu: the mode is still active during backward and must not see this call
        passed = grad.clamp(min=0)
        if ctx.guided:
            (mask,) = ctx.saved_tensors
            passed = passed * mask
        return passed, None, None, None, None


def _bound(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


# Each covered callable -> (input, lower bound, upper bound or None, in-place) from its arguments.
_Parsed = tuple[torch.Tensor, float, "float | None", bool]


def _parse_relu(args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Parsed:
    return args[0], 0.0, None, bool(call_argument(args, kwargs, 1, "inplace", False))


def _parse_relu6(args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Parsed:
    return args[0], 0.0, 6.0, bool(call_argument(args, kwargs, 1, "inplace", False))


def _parse_hardtanh(args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Parsed | None:
    lo = _bound(call_argument(args, kwargs, 1, "min_val", -1.0))
    if lo != 0.0:  # a true hardtanh (negative slope region is not a rectifier): leave it alone
        return None
    hi = _bound(call_argument(args, kwargs, 2, "max_val", 1.0))
    return args[0], 0.0, hi, bool(call_argument(args, kwargs, 3, "inplace", False))


def _inplace(parse: Callable[..., _Parsed]) -> Callable[..., _Parsed]:
    def parsed(args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Parsed:
        x, lo, hi, _ = parse(args, kwargs)
        return x, lo, hi, True

    return parsed


_COVERED: dict[Any, Callable[[Sequence[Any], Mapping[str, Any]], _Parsed | None]] = {
    F.relu: _parse_relu,
    torch.relu: _parse_relu,
    torch.Tensor.relu: _parse_relu,
    torch.relu_: _inplace(_parse_relu),
    torch.Tensor.relu_: _inplace(_parse_relu),
    F.relu_: _inplace(_parse_relu),
    F.relu6: _parse_relu6,
    F.hardtanh: _parse_hardtanh,
}


class _RectifierRuleMode(TorchFunctionMode):
    """Swaps every covered rectifier call for `_RuledRectifier` while the mode is active."""

    def __init__(self, guided: bool) -> None:
        super().__init__()
        self.guided = guided

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        parse = _COVERED.get(func)
        if parse is not None and torch.is_grad_enabled():
            parsed = parse(args, kwargs)
            if parsed is not None and isinstance(parsed[0], torch.Tensor):
                x, lo, hi, inplace = parsed
                if x.requires_grad:
                    return _RuledRectifier.apply(x, lo, hi, self.guided, inplace)
        return func(*args, **kwargs)


@contextmanager
def relu_rule(model: nn.Module, rule: Rule) -> Iterator[nn.Module]:
    """Make every rectifier's backward follow `rule` while the block runs `model`.

    `"guided"`: the gradient passes where the forward input was positive and the gradient is
    positive (guided backpropagation). `"deconv"`: it passes where the gradient is positive,
    whatever the forward input was (deconvnet). Covers `nn.ReLU` modules and functional calls
    (`F.relu`, `torch.relu`, `Tensor.relu`, their in-place forms) plus ReLU6 / `hardtanh(x, 0, t)`.
    The model's `inplace` flags are switched off for the block and restored afterwards; no hook
    or attribute is left on the model. Forward values are unchanged.

    Args:
        model: any `nn.Module`; only its `inplace` flags are touched, and restored.
        rule: `"guided"` or `"deconv"`.

    Example:
        >>> x = images.requires_grad_()  # (B, C, H, W)
        >>> with relu_rule(model, "guided"):
        ...     model(x)[:, 281].sum().backward()
        >>> guided = x.grad  # (B, C, H, W)
    """
    if rule not in RULES:
        raise VizError(f"unknown ReLU rule {rule!r}; valid rules: {', '.join(RULES)}")
    saved = {m: m.inplace for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)}
    try:
        for module in saved:
            module.inplace = False  # type: ignore[assignment]
        with _RectifierRuleMode(guided=rule == "guided"):
            yield model
    finally:
        for module, flag in saved.items():
            module.inplace = flag  # type: ignore[assignment]
