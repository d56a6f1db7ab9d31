"""Strided depthwise convolutions under CPU bfloat16 autocast: bf16 forward, float32 input gradient.

On the CPU (oneDNN, torch 2.x) the input gradient of a depthwise convolution with stride > 1 has
no fast bfloat16 kernel: measured on an AVX512-BF16 EPYC at one thread, batch 1, it takes 8-19 ms
in bf16 against 0.3-7 ms for the same gradient computed in float32 (96 channels 3x3 at 144x215,
144 channels 5x5 at 74x110, 240 channels 3x3 at 36x54, 672 channels 5x5 at 20x29), while
stride-1 depthwise gradients are fast in bf16. EfficientNet/MobileNet blocks downsample with
exactly these convolutions: under plain autocast they took a third to half of a dream's time.

`strided_depthwise_fp32_backward()` is a `TorchFunctionMode`: while it is active, each such
`F.conv2d` call on a CPU tensor whose weight needs no gradient (the model is frozen inside
`model_guard`) runs its forward in bfloat16, as autocast would, and computes its input gradient in
float32 from the bf16 gradient, which is exact up to the final rounding to the input's dtype.
Every other call passes through untouched; nothing is attached to the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from vizcnn.core.torch_calls import call_argument

_Pair = tuple[int, int]


def _pair(value: Any) -> _Pair:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


class _StridedDepthwise(torch.autograd.Function):
    """`conv2d` in bfloat16 forward; the input's gradient in float32 backward (weight frozen)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: _Pair,
        padding: _Pair,
        dilation: _Pair,
        groups: int,
    ) -> torch.Tensor:
        low = torch.bfloat16
        # the gradient of what the forward computed: the weight as rounded for it
        ctx.save_for_backward(weight.to(low))
        ctx.shape, ctx.dtype = x.shape, x.dtype
        ctx.layout = (
            torch.channels_last
            if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        ctx.conv = (list(stride), list(padding), list(dilation), groups)
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(
                x.to(low),
                weight.to(low),
                None if bias is None else bias.to(low),
                stride,
                padding,
                dilation,
                groups,
            )

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        # only the input's shape and layout matter for its gradient
        shape_only = torch.empty(ctx.shape, dtype=torch.float32, memory_format=ctx.layout)
        grad_input = torch.ops.aten.convolution_backward(
            grad.float(),
            shape_only,
            weight.float(),
            None,
            stride,
            padding,
            dilation,
            False,
            [0, 0],
            groups,
            [True, False, False],
        )[0]
        return grad_input.to(ctx.dtype), None, None, None, None, None, None


class _StridedDepthwiseMode(TorchFunctionMode):
    """Routes strided depthwise `conv2d` calls through `_StridedDepthwise` while active."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d or func is torch.conv2d:
            call = _strided_depthwise(args, kwargs)
            if call is not None:
                return _StridedDepthwise.apply(*call)
        return func(*args, **kwargs)


def _strided_depthwise(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The arguments of `_StridedDepthwise` if this conv2d call is one to reroute, else None."""
    x, weight = (
        call_argument(args, kwargs, 0, "input", None),
        call_argument(args, kwargs, 1, "weight", None),
    )
    bias = call_argument(args, kwargs, 2, "bias", None)
    padding = call_argument(args, kwargs, 4, "padding", 0)
    groups = int(call_argument(args, kwargs, 6, "groups", 1))
    if not (
        isinstance(x, torch.Tensor)
        and isinstance(weight, torch.Tensor)
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.requires_grad
        and not weight.requires_grad
        and (bias is None or not bias.requires_grad)
        and not isinstance(padding, str)
        and groups > 1
        and groups == x.shape[1] == weight.shape[0]
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    ):
        return None
    stride = _pair(call_argument(args, kwargs, 3, "stride", 1))
    if max(stride) == 1:  # stride-1 depthwise gradients are fast in bfloat16
        return None
    dilation = _pair(call_argument(args, kwargs, 5, "dilation", 1))
    return (x, weight, bias, stride, _pair(padding), dilation, groups)


def strided_depthwise_fp32_backward() -> TorchFunctionMode:
    """The mode that gives strided depthwise convolutions a float32 input gradient (see module).

    Example:
        >>> with torch.autocast("cpu", dtype=torch.bfloat16), strided_depthwise_fp32_backward():
        ...     out = frozen_model(x)
    """
    return _StridedDepthwiseMode()
