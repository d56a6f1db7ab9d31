"""Which torch calls and modules are activations, and how each is called out of place.

The table behind `vizcnn.core.relu_rules`: every covered callable (`F.silu`, `torch.relu_`,
`Tensor.sigmoid`, ...) maps to a parser that reads the call's input, its other arguments and
its in-place flag, and says whether it is a rectifier (with its out-of-place form, which the rule
differentiates) or a gate (called as it is). docs/attribute.md has the same table for users.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.torch_calls import call_argument

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Call:
    """A covered call, read from its arguments."""

    name: str  # the activation, in messages
    x: torch.Tensor  # its input
    fn: Fn | None  # the out-of-place activation, other arguments bound; None: a gate
    inplace: bool


_Parser = Callable[[Sequence[Any], Mapping[str, Any]], "Call | None"]


def _plain(value: Any) -> Any:
    return value.detach() if isinstance(value, torch.Tensor) else value


def _form(
    name: str,
    op: Callable[..., torch.Tensor] | None,
    params: tuple[tuple[str, Any], ...] = (),
    inplace: bool | None = False,
) -> _Parser:
    """A parser for `f(x, *params[, inplace])`; `op(x, **params)` is its out-of-place form.

    `inplace`: False reads an `inplace` argument after the params, True for the `f_` forms,
    None for calls that have none. `op` None: a gate, called as it is.
    """

    def parse(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Call | None:
        x = call_argument(args, kwargs, 0, "input", None)
        if not isinstance(x, torch.Tensor):
            return None
        values = {
            k: _plain(call_argument(args, kwargs, i + 1, k, d)) for i, (k, d) in enumerate(params)
        }
        if inplace is None:
            in_place = False
        else:
            in_place = inplace or bool(
                call_argument(args, kwargs, len(params) + 1, "inplace", False)
            )
        fn = None if op is None else (lambda t: op(t, **values))
        return Call(name, x, fn, in_place)

    return parse


def _hardtanh(inplace: bool) -> _Parser:
    rectifier = _form("ReLU6", F.hardtanh, (("min_val", -1.0), ("max_val", 1.0)), inplace)
    gate = _form("Hardtanh", None, (("min_val", -1.0), ("max_val", 1.0)), inplace)

    def parse(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Call | None:
        low = _plain(call_argument(args, kwargs, 1, "min_val", -1.0))
        return (rectifier if float(low) == 0.0 else gate)(args, kwargs)

    return parse


def _rrelu(inplace: bool) -> _Parser:
    def parse(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Call | None:
        lower = float(call_argument(args, kwargs, 1, "lower", 1.0 / 8))
        upper = float(call_argument(args, kwargs, 2, "upper", 1.0 / 3))
        if call_argument(args, kwargs, 3, "training", False):
            raise VizError(
                "RReLU in training mode draws a random slope per call, so no guided or deconv "
                "rule can repeat it; put the model in eval mode (model.eval())"
            )
        x = call_argument(args, kwargs, 0, "input", None)
        if not isinstance(x, torch.Tensor):
            return None
        in_place = inplace or bool(call_argument(args, kwargs, 4, "inplace", False))
        return Call("RReLU", x, lambda t: F.leaky_relu(t, (lower + upper) / 2), in_place)

    return parse


def _refused(name: str) -> _Parser:
    def parse(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Call | None:
        raise VizError(
            f"{name} is neither a rectifier nor a gate, and guided backprop and deconvnet have "
            "no stated rule for it (docs/attribute.md lists the covered activations); use "
            "saliency or integrated gradients"
        )

    return parse


_SLOPE = (("negative_slope", 0.01),)
_ALPHA = (("alpha", 1.0),)
_T = torch.Tensor

# Every covered callable -> its parser. Both spellings of a call that torch exposes twice (F.x and
# torch.x) are listed; `is` identity makes duplicates harmless.
COVERED: dict[Any, _Parser] = {
    F.relu: _form("ReLU", F.relu),
    torch.relu: _form("ReLU", F.relu, inplace=None),
    _T.relu: _form("ReLU", F.relu, inplace=None),
    torch.relu_: _form("ReLU", F.relu, inplace=True),
    _T.relu_: _form("ReLU", F.relu, inplace=True),
    F.relu_: _form("ReLU", F.relu, inplace=True),
    F.relu6: _form("ReLU6", F.relu6),
    F.hardtanh: _hardtanh(False),
    F.hardtanh_: _hardtanh(True),
    F.leaky_relu: _form("LeakyReLU", F.leaky_relu, _SLOPE),
    F.leaky_relu_: _form("LeakyReLU", F.leaky_relu, _SLOPE, True),
    F.prelu: _form("PReLU", F.prelu, (("weight", None),), None),
    F.rrelu: _rrelu(False),
    F.rrelu_: _rrelu(True),
    F.elu: _form("ELU", F.elu, _ALPHA),
    F.elu_: _form("ELU", F.elu, _ALPHA, True),
    F.celu: _form("CELU", F.celu, _ALPHA),
    F.celu_: _form("CELU", F.celu, _ALPHA, True),
    F.selu: _form("SELU", F.selu),
    torch.selu: _form("SELU", F.selu, inplace=None),
    torch.selu_: _form("SELU", F.selu, inplace=True),
    F.silu: _form("SiLU", F.silu),
    F.gelu: _form("GELU", F.gelu, (("approximate", "none"),), None),
    F.hardswish: _form("Hardswish", F.hardswish),
    F.mish: _form("Mish", F.mish),
    F.softplus: _form("Softplus", F.softplus, (("beta", 1.0), ("threshold", 20.0)), None),
    F.threshold: _form("Threshold", F.threshold, (("threshold", 0.0), ("value", 0.0))),
    torch.threshold_: _form("Threshold", F.threshold, (("threshold", 0.0), ("value", 0.0)), True),
    # gates: counted, called as they are
    torch.sigmoid: _form("Sigmoid", None, inplace=None),
    torch.sigmoid_: _form("Sigmoid", None, inplace=None),
    _T.sigmoid: _form("Sigmoid", None, inplace=None),
    _T.sigmoid_: _form("Sigmoid", None, inplace=None),
    F.sigmoid: _form("Sigmoid", None, inplace=None),
    torch.tanh: _form("Tanh", None, inplace=None),
    torch.tanh_: _form("Tanh", None, inplace=None),
    _T.tanh: _form("Tanh", None, inplace=None),
    _T.tanh_: _form("Tanh", None, inplace=None),
    F.tanh: _form("Tanh", None, inplace=None),
    F.hardsigmoid: _form("Hardsigmoid", None),
    F.logsigmoid: _form("LogSigmoid", None, inplace=None),
    F.softsign: _form("Softsign", None, inplace=None),
    F.glu: _form("GLU", None, inplace=None),
    # neither a rectifier nor a gate: no stated rule, refused
    F.hardshrink: _refused("Hardshrink"),
    F.softshrink: _refused("Softshrink"),
    F.tanhshrink: _refused("Tanhshrink"),
}


MULTIPLY = {torch.mul, _T.mul, _T.mul_, _T.__mul__, _T.__rmul__, _T.__imul__}
# the calls LRP's relevance rule also rules (`relu_rules.relevance_rule`)
ADD = {torch.add, _T.add, _T.__add__, _T.__radd__, _T.__iadd__}  # residual sums
DIVIDE = {torch.div, torch.true_divide, _T.div, _T.__truediv__, _T.__itruediv__}
NORMALIZE = {F.layer_norm, torch.layer_norm, F.group_norm, torch.group_norm, F.batch_norm}

# timm's activations composed of primitives (`x.mul(x.sigmoid())`) or custom autograd Functions
# (`*Me`): found by class, their whole forward is one activation. name -> (shown as, rectifier?)
_TIMM_MODULES = ("timm.layers.activations", "timm.layers.activations_me")
_TIMM_COMPOSED: dict[str, tuple[str, bool]] = {
    "Swish": ("Swish", True),
    "SwishMe": ("Swish", True),
    "Mish": ("Mish", True),
    "MishMe": ("Mish", True),
    "HardSwish": ("HardSwish", True),
    "HardSwishMe": ("HardSwish", True),
    "QuickGELU": ("QuickGELU", True),
    "HardMish": ("HardMish", True),
    "HardMishMe": ("HardMish", True),
    "HardSigmoid": ("HardSigmoid", False),
    "HardSigmoidMe": ("HardSigmoid", False),
}


def composed(module: nn.Module) -> tuple[str, bool] | None:
    for cls in type(module).__mro__:
        if cls.__module__ in _TIMM_MODULES and cls.__name__ in _TIMM_COMPOSED:
            return _TIMM_COMPOSED[cls.__name__]
    return None
