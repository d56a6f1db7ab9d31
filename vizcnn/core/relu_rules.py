"""Backward rules for activations: guided backpropagation and deconvnet, for modules and calls.

With `x` an activation's forward input, `g` the gradient arriving from above and `f'` the
activation's own derivative, every activation gets one of two rules (docs/attribute.md has the
table and the sources):

- **rectifiers** (ReLU, ReLU6, `hardtanh(x, 0, t)`, LeakyReLU, PReLU, RReLU in eval mode, ELU,
  CELU, SELU, SiLU/Swish, GELU (exact and tanh), Hardswish, Mish, Softplus, Threshold and timm's
  `Swish`, `Mish`, `HardSwish`, `QuickGELU`, `HardMish` and their `*Me` forms):
  guided `f'(x) * max(g, 0)` (Springenberg et al. 2015, whose ReLU mask `x > 0` is ReLU's `f'`,
  generalised to any activation); deconvnet `max(g, 0)`, the forward ignored (Zeiler & Fergus 2014);
- **gates** (sigmoid, tanh, hardsigmoid, `hardtanh(x, a, b)` with `a != 0`, log-sigmoid,
  softsign, GLU, timm's `Sigmoid`, `Tanh`, `HardSigmoid`): the plain gradient `f'(x) * g` under both rules, as captum does: a gate
  scales a signal by a bounded factor (a squeeze-excitation gate), it rectifies nothing.

Hooks on `nn.ReLU` modules (captum's way) miss functional calls (`F.relu` in torchvision's
GoogLeNet, `F.gelu` / `F.silu` inside a timm block). `relu_rule` instead installs a
`torch.overrides.TorchFunctionMode` for the block that replaces every covered call with a custom
autograd Function; `nn.SiLU.forward` itself calls `F.silu`, so one mechanism covers modules and
functional calls, in-place or not. Activations that timm composes from primitives
(`x.mul(x.sigmoid())`) are recognised by their module class instead. What the rule cannot see is
refused with a one-line VizError, never passed as the plain gradient: a custom autograd Function
(its backward is its own), a TorchScript submodule, `x * sigmoid(x)` written out in a forward, a
forward pass with gates but no rectifier, RReLU in training mode, the shrink functions.

`relevance_rule` is the same mode for LRP (`vizcnn.attribution.lrp_adapter`): activations pass
relevance unchanged, a product with a gate or a constant gives it all to the signal, residual
sums split it by magnitude, normalizations pass it unchanged (docs/attribute.md, "LRP").
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from vizcnn.core._activation_calls import ADD, COVERED, DIVIDE, MULTIPLY, NORMALIZE, Fn, composed
from vizcnn.core.errors import VizError

Rule = Literal["guided", "deconv"]
RULES: tuple[str, ...] = ("guided", "deconv")
# the relevance rule of `relevance_rule` (LRP): not a projection `RULES` offers elsewhere
_RELEVANCE = "lrp"


class _RuledActivation(torch.autograd.Function):
    """`fn(x)` forward; backward by `mode`: guided, deconv, or plain (a gate)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, fn: Fn, mode: str, inplace: bool
    ) -> torch.Tensor:
        y = fn(x)
        ctx.fn, ctx.mode = fn, mode
        if mode not in ("deconv", _RELEVANCE):
            ctx.save_for_backward(x.clone() if inplace else x)
        if inplace:
            ctx.mark_dirty(x)
            return x.copy_(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        if ctx.mode == _RELEVANCE:  # relevance passes an element-wise activation unchanged
            return grad, None, None, None
        passed = grad if ctx.mode == "plain" else grad.clamp(min=0)
        if ctx.mode != "deconv":
            # f'(x) * passed as the vector-Jacobian product of the same elementwise call: exact,
            # with torch's own derivative; the mode must not see (and rule) this call
            (x,) = ctx.saved_tensors
            with torch._C.DisableTorchFunction(), torch.enable_grad():
                leaf = x.detach().requires_grad_(True)
                (passed,) = torch.autograd.grad(ctx.fn(leaf), leaf, passed)
        return passed, None, None, None


# autograd Functions whose backward is known: ours, and torch's own (e.g. the identity that full
# backward hooks wrap module inputs and outputs in: captum hooks nn.ReLU modules that way)
# and zennit's, whose identity Functions carry its LRP rules (`vizcnn.attribution.lrp_adapter`)
def _known_function(cls: type) -> bool:
    return cls in (
        _RuledActivation,
        _SignalTakesAll,
        _ProportionalSum,
    ) or cls.__module__.startswith(("torch.", "zennit."))


class _SignalTakesAll(torch.autograd.Function):
    """`signal * gate` forward; backward: all the product's relevance to the signal, none to
    the gate (the "signal-take-all" rule of Arras et al. 2017 for multiplicative gates: a
    squeeze-excitation scale is treated as a constant of the forward pass)."""

    @staticmethod
    def forward(ctx: Any, signal: torch.Tensor, gate: Any) -> torch.Tensor:  # type: ignore[override]
        ctx.gate_shape = gate.shape if isinstance(gate, torch.Tensor) else None
        ctx.signal_shape = signal.shape
        return signal * gate

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        signal = _sum_to(grad, ctx.signal_shape)
        return signal, None if ctx.gate_shape is None else grad.new_zeros(ctx.gate_shape)


class _ProportionalSum(torch.autograd.Function):
    """`a + b` forward; backward: the sum's relevance split in proportion to each term's
    magnitude (zennit's `Norm` rule on its `Sum` module, which its ResNet canonizer inserts, where
    the terms have one sign), so a residual sum neither doubles nor drops relevance."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a, b)
        return a + b

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        # shares by magnitude: for terms of one sign, zennit's Norm rule (a / (a + b)); for
        # terms that nearly cancel, Norm's 1 / (a + b) explodes (relevance of 1e29 on lite0 under
        # the gamma composite), magnitudes keep both shares in [0, 1] and still add up to one
        size_a, size_b = a.abs(), b.abs()
        total = (size_a + size_b).clamp(min=torch.finfo(a.dtype).tiny)
        half = torch.full_like(total, 0.5)
        share = torch.where(size_a + size_b > 0, size_a / total, half)
        return grad * share, grad * (1 - share)


def _constant(value: Any) -> bool:
    """A number, or a tensor that carries no gradient (a layer scale, a mask, a constant)."""
    if isinstance(value, torch.Tensor):
        return not value.requires_grad
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _no_wider(factor: Any, signal: torch.Tensor) -> bool:
    """The factor broadcasts to the signal without widening it (the product has its shape)."""
    if not isinstance(factor, torch.Tensor):
        return True
    try:
        return torch.broadcast_shapes(factor.shape, signal.shape) == signal.shape
    except RuntimeError:
        return False


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`grad` summed over the dimensions a broadcast expanded to it from `shape`."""
    extra = grad.dim() - len(shape)
    grad = grad.sum(dim=tuple(range(extra))) if extra > 0 else grad
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


def _tensors(args: Sequence[Any]) -> Iterator[torch.Tensor]:
    for arg in args:
        if isinstance(arg, torch.Tensor):
            yield arg
        elif isinstance(arg, (list, tuple)):
            yield from (a for a in arg if isinstance(a, torch.Tensor))


class _ActivationRuleMode(TorchFunctionMode):
    """Swaps every covered activation call for `_RuledActivation` while the mode is active."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.ruled: Counter[str] = Counter()  # rectifiers the rule was applied to
        self.gates: Counter[str] = Counter()  # gates seen (plain gradient)
        self.inside = 0  # > 0 while a recognised timm activation module runs
        self._gated: dict[int, tuple[weakref.ref[torch.Tensor], weakref.ref[torch.Tensor]]] = {}
        self.products = 0  # products with a gate given to the signal (relevance rule only)
        self.sums = 0  # residual sums split in proportion (relevance rule only)
        self.passed = 0  # normalizations and divisions passed unchanged (relevance rule only)

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if self.inside or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        self._refuse_custom_functions(args)
        parse = COVERED.get(func)
        call = None if parse is None else parse(args, kwargs)
        if call is None or not call.x.requires_grad:
            if func in MULTIPLY:
                if self.rule == _RELEVANCE:
                    return self._gated_product(func, args, kwargs)
                self._refuse_self_gating(args)
            elif self.rule == _RELEVANCE:
                return self._relevance_call(func, args, kwargs)
            return func(*args, **kwargs)
        if call.fn is None:
            self.gates[call.name] += 1
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                self._gated[id(out)] = (weakref.ref(out), weakref.ref(call.x))
            return out
        self.ruled[call.name] += 1
        return _RuledActivation.apply(call.x, call.fn, self.rule, call.inplace)

    def _refuse_custom_functions(self, args: Sequence[Any]) -> None:
        for t in _tensors(args):
            node = t.grad_fn
            if isinstance(node, torch.autograd.function.BackwardCFunction):
                cls = node._forward_cls  # type: ignore[attr-defined]
                if not _known_function(cls):
                    raise VizError(
                        f"the {self.rule} rule cannot reach inside the custom autograd Function "
                        f"{cls.__module__}.{cls.__qualname__} in the forward pass (its backward "
                        "is its own); build the model with torch activation modules (nn.ReLU, "
                        "nn.SiLU, nn.GELU, ...) or use another attribution method"
                    )

    def _is_gate(self, t: Any) -> bool:
        seen = self._gated.get(id(t)) if isinstance(t, torch.Tensor) else None
        return seen is not None and seen[0]() is t

    def _gated_product(self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """`signal * gate` with a gate's output (squeeze-excitation, `x * sigmoid(x)`): the
        signal takes all the relevance (`_SignalTakesAll`); any other product as it is."""
        if len(args) == 2 and not kwargs:
            for signal, gate in ((args[0], args[1]), (args[1], args[0])):
                if not isinstance(signal, torch.Tensor) or not signal.requires_grad:
                    continue
                if self._is_gate(gate) or (_constant(gate) and _no_wider(gate, signal)):
                    if func is torch.Tensor.mul_:
                        raise VizError(
                            "the lrp rule found an in-place product with a gate (x.mul_(gate)) "
                            "in the forward pass; write it out of place (x * gate)"
                        )
                    self.products += 1
                    return _SignalTakesAll.apply(signal, gate)
        return func(*args, **kwargs)

    def _relevance_call(self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """A residual sum, a normalization or a division by a constant under the relevance
        rule; any other call as it is."""
        if func in ADD:
            return self._residual_sum(func, args, kwargs)
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or not x.requires_grad:
            return func(*args, **kwargs)
        if func in NORMALIZE or (func in DIVIDE and len(args) == 2 and _constant(args[1])):
            # element-wise rescaling (LayerNorm, GroupNorm, x / c): relevance passes unchanged,
            # zennit's Pass rule for BatchNorm, extended to the norms it has no rule for
            self.passed += 1
            rest = args[1:]
            return _RuledActivation.apply(x, lambda t: func(t, *rest, **kwargs), _RELEVANCE, False)
        return func(*args, **kwargs)

    def _residual_sum(self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """`a + b` of two same-shape tensors that both carry gradient (a residual sum): split
        in proportion (`_ProportionalSum`); a bias or constant added as it is."""
        if len(args) == 2 and not kwargs:
            a, b = args
            if (
                isinstance(a, torch.Tensor)
                and isinstance(b, torch.Tensor)
                and a.requires_grad
                and b.requires_grad
                and a.shape == b.shape
                and a.is_floating_point()
            ):
                self.sums += 1
                return _ProportionalSum.apply(a, b)
        return func(*args, **kwargs)

    def _refuse_self_gating(self, args: Sequence[Any]) -> None:
        if len(args) < 2:
            return
        for a, b in ((args[0], args[1]), (args[1], args[0])):
            seen = self._gated.get(id(b))
            if seen is not None and seen[0]() is b and seen[1]() is a:
                raise VizError(
                    f"the {self.rule} rule found x * sigmoid(x) (or x * tanh(x)) written out in "
                    "the forward pass, a Swish-like activation it can only see as a gate; use "
                    "nn.SiLU / F.silu (or nn.Mish, nn.Hardswish), which it covers"
                )

    def entercomposed(self) -> None:
        self.inside += 1

    def leavecomposed(self, module: nn.Module, x: torch.Tensor, out: Any) -> Any:
        self.inside -= 1
        known = composed(module)
        if (
            out is None
            or self.inside
            or known is None
            or not torch.is_grad_enabled()
            or not x.requires_grad
        ):
            return out
        name, rectifier = known
        (self.ruled if rectifier else self.gates)[name] += 1
        # recomputed by the module's own forward: the same values, one ruled autograd node
        mode = self.rule if rectifier else "plain"
        ruled = _RuledActivation.apply(x, module.forward, mode, False)
        if not rectifier and self.rule == _RELEVANCE:  # a gate module: its product is ruled
            self._gated[id(ruled)] = (weakref.ref(ruled), weakref.ref(x))
        return ruled


def _refuse_scripted(model: nn.Module, rule: str) -> None:
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule):
            where = f"module {name!r}" if name else "the model"
            raise VizError(
                f"the {rule} rule cannot see the activations inside TorchScript ({where} is "
                "scripted); use the eager (unscripted) model"
            )


@contextmanager
def relu_rule(model: nn.Module, rule: Rule) -> Iterator[nn.Module]:
    """Make every activation's backward follow `rule` while the block runs `model`.

    `"guided"`: a rectifier passes `f'(x) * max(g, 0)` (guided backpropagation; for ReLU, the
    gradient where the input was positive and the gradient is positive). `"deconv"`: it passes
    `max(g, 0)` whatever the forward input was (deconvnet). Gates (sigmoid, tanh, hardsigmoid)
    pass the plain gradient. Covers modules and functional calls alike (see the module
    docstring for the list). The model's `inplace` flags are switched off for the block and
    restored afterwards; the hooks on timm's composed activation modules are removed. Forward
    values are unchanged.

    Raises:
        VizError: (one line) where the rule cannot act and the result would be the plain
            gradient: a custom autograd Function or TorchScript module in the forward pass,
            `x * sigmoid(x)` written out, RReLU in training mode, or a forward pass that ran
            gates but no rectifier (raised when the block ends).

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
    with _ruled(model, rule):
        yield model


@contextmanager
def relevance_rule(model: nn.Module) -> Iterator[nn.Module]:
    """LRP's rules for what module hooks (zennit's) cannot reach, while the block runs `model`.

    For `vizcnn.attribution.lrp_adapter`: the forward pass run in the block records, and the
    backward taken after it follows,

    - every element-wise activation, module or functional call (ReLU, ReLU6, SiLU/Swish, GELU,
      Hardswish, Mish, ... as `relu_rule` covers them): relevance passes unchanged (identity),
      zennit's `Pass` rule for the activation modules it knows, extended to all of them;
    - a product with a gate's output (a squeeze-excitation scale `x * sigmoid(s)`, or a
      written-out `x * sigmoid(x)`): the signal takes all the relevance, the gate none;
    - a sum of two same-shape tensors that both carry gradient (a residual connection): the
      relevance is split in proportion to each term (zennit's `Norm` rule on `Sum`).

    Raises:
        VizError: (one line) a custom autograd Function or TorchScript module in the forward
            pass, an in-place product with a gate, or a forward pass with gates and no
            rectifier, as `relu_rule`.
    """
    with _ruled(model, _RELEVANCE):
        yield model


@contextmanager
def _ruled(model: nn.Module, rule: str) -> Iterator[None]:
    _refuse_scripted(model, rule)
    saved = {m: m.inplace for m in model.modules() if isinstance(getattr(m, "inplace", None), bool)}
    mode = _ActivationRuleMode(rule)
    handles = []
    try:
        for module in saved:
            module.inplace = False  # type: ignore[assignment]
        for module in model.modules():
            if composed(module) is not None:
                handles.append(module.register_forward_pre_hook(lambda m, i: mode.entercomposed()))
                handles.append(
                    module.register_forward_hook(
                        lambda m, i, o: mode.leavecomposed(m, i[0], o), always_call=True
                    )
                )
        with mode:
            yield
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in saved.items():
            module.inplace = flag  # type: ignore[assignment]
    if mode.gates and not mode.ruled:
        gates = ", ".join(sorted(mode.gates))
        raise VizError(
            f"the {rule} rule found only gates ({gates}) and no rectifier in the forward pass: "
            "gates pass the plain gradient, so the map would be the plain gradient; use saliency "
            "for that, or a model (or layer) with ReLU, SiLU, GELU, ... activations"
        )
