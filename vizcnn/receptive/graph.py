"""Receptive fields: for every layer, the input box that each output unit (y, x) sees.

Computed from the traced graph (torch.fx): kernel, stride, padding and dilation of every
convolution, pooling and padding op, the widest field over branches. Where tracing or an op is
not understood, the field is measured instead by back-propagating a one-hot from one unit.

Per axis, a field is (top, size, jump): unit u of the layer sees input pixels
top + u*jump ... top + u*jump + size - 1. Through an op with effective kernel k_eff = d*(k-1)+1,
stride s and leading padding p: top <- top - p*jump, size <- size + (k_eff-1)*jump, jump <- jump*s.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from vizcnn.hooks import LayerRef, model_guard
from vizcnn.receptive._axis import (
    GLOBAL,
    IDENTITY,
    Axis2,
    conv_padding,
    flatten_ints,
    pair,
    pair_or_list,
    shift,
    window,
)
from vizcnn.receptive.field import Field, adaptive_bins, uniform_spans


def _is_split(node: fx.Node) -> bool:
    """A node that cuts a tensor into a tuple of parts (`x.split(...)`, `torch.chunk(x, 2, 1)`)."""
    if node.op == "call_method":
        return node.target in {"split", "chunk", "tensor_split"}
    return node.op == "call_function" and node.target in {
        torch.split,
        torch.chunk,
        torch.tensor_split,
    }


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


class _Unknown(Exception):
    """An op whose effect on the field is not understood; the layer gets measured instead."""


def _tensor_inputs(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []

    def visit(value: Any) -> None:
        if isinstance(value, fx.Node):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(node.args)
    visit(node.kwargs)
    return found


_POINTWISE_SAFE = {"size", "dim", "shape"}
_REDUCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.logsumexp}
_REDUCTION_METHODS = {"mean", "sum", "amax", "amin", "std", "var", "logsumexp"}


class _FieldPropagator:
    """Walks a traced graph once, giving each tensor node its field (or _Unknown downstream)."""

    def __init__(self, graph_module: fx.GraphModule) -> None:
        self.gm = graph_module
        self.modules = dict(graph_module.named_modules())
        self.fields: dict[fx.Node, Axis2 | None] = {}  # None: not a spatial tensor / unknown
        # nodes computed from parameters and constants alone (ConvNeXt's layer scale reshaped to
        # (1, C, 1, 1)): no input pixel reaches them, so they are neither context nor unknown
        self.constant: set[fx.Node] = set()

    def run(self) -> dict[fx.Node, Axis2 | None]:
        for node in self.gm.graph.nodes:
            if node.op == "get_attr" or (
                node.op in {"call_function", "call_method"}
                and all(source in self.constant for source in _tensor_inputs(node))
            ):
                self.constant.add(node)
                self.fields[node] = None
                continue
            try:
                self.fields[node] = self._field(node)
            except _Unknown:
                self.fields[node] = None
        return self.fields

    def _arg(self, node: fx.Node, index: int, name: str, default: Any) -> Any:
        if len(node.args) > index:
            return node.args[index]
        return node.kwargs.get(name, default)

    def _input_field(self, node: fx.Node, nchw: bool = True) -> Axis2:
        """The field of the node's first argument; with `nchw`, only in (N, C, H, W) layout."""
        source = node.args[0]
        if not isinstance(source, fx.Node) or self.fields.get(source) is None:
            raise _Unknown
        field = self.fields[source]
        assert field is not None
        if nchw and not field.is_global and field.dims != (2, 3):
            raise _Unknown  # a window op on a permuted tensor slides over other dims
        return field

    def _field(self, node: fx.Node) -> Axis2 | None:
        shape = _shape(node)
        if node.op == "placeholder":
            return IDENTITY
        if node.op in {"get_attr", "output"}:
            return None
        if _is_split(node):
            return self._split(node)  # a tuple of tensors: each part keeps the field
        if shape is None:
            return None  # not a tensor (sizes, tuples of metadata)
        if len(shape) != 4:
            return self._global_from_inputs(node)
        if node.op == "call_module":
            return self._module_field(node, self.modules[str(node.target)])
        if node.op == "call_function":
            return self._function_field(node)
        if node.op == "call_method":
            return self._method_field(node)
        raise _Unknown

    def _global_from_inputs(self, node: fx.Node) -> Axis2 | None:
        for source in _tensor_inputs(node):
            if source in self.constant or source not in self.fields:
                continue
            if self.fields[source] is None and len(_shape(source) or ()) == 4:
                raise _Unknown
        return GLOBAL

    def _module_field(self, node: fx.Node, module: nn.Module) -> Axis2 | None:
        if isinstance(module, nn.Conv2d):
            kernel, dilation = pair(module.kernel_size), pair(module.dilation)
            pad = conv_padding(module.padding, kernel, dilation)
            return window(self._input_field(node), kernel, module.stride, pad, dilation)
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            stride = module.stride if module.stride is not None else module.kernel_size
            pool_dilation = getattr(module, "dilation", 1)
            return window(
                self._input_field(node),
                module.kernel_size,
                stride,
                pair(module.padding),
                pool_dilation,
            )
        if isinstance(
            module, (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)
        ):
            left, _right, top, _bottom = module.padding
            return shift(self._input_field(node), int(top), int(left))
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return self._adaptive(node)
        if isinstance(
            module, (nn.Upsample, nn.ConvTranspose2d, nn.Unfold, nn.Fold, nn.PixelShuffle)
        ):
            raise _Unknown
        if isinstance(module, nn.Linear):
            return self._last_dims(node, 1)
        if isinstance(module, nn.LayerNorm):
            return self._last_dims(node, len(module.normalized_shape))
        return self._pointwise(node)

    def _split(self, node: fx.Node) -> Axis2 | None:
        """split / chunk of a tensor along channels (CSPNet's cross-stage halves): every part
        sees what the whole saw; along rows or columns the parts are other windows: unknown."""
        source = node.args[0]
        field = self.fields.get(source) if isinstance(source, fx.Node) else None
        if field is None:
            return None
        dim = self._arg(node, 2, "dim", 0)
        if not field.is_global and int(dim) % 4 in field.dims:
            return None
        return field

    def _function_field(self, node: fx.Node) -> Axis2 | None:
        target = node.target
        if (
            target is operator.getitem
            and isinstance(node.args[0], fx.Node)
            and _is_split(node.args[0])
        ):
            part = self.fields.get(node.args[0])
            if part is None:
                raise _Unknown
            return part
        if target in {F.conv2d, torch.conv2d}:
            weight = _shape(node.args[1]) if isinstance(node.args[1], fx.Node) else None
            if weight is None:
                raise _Unknown
            kernel = (int(weight[2]), int(weight[3]))
            dilation = pair(self._arg(node, 5, "dilation", 1))
            pad = conv_padding(self._arg(node, 4, "padding", 0), kernel, dilation)
            return window(
                self._input_field(node), kernel, self._arg(node, 3, "stride", 1), pad, dilation
            )
        if target in {F.max_pool2d, F.avg_pool2d, torch.max_pool2d}:
            pool_kernel = self._arg(node, 1, "kernel_size", None)
            stride = self._arg(node, 2, "stride", None) or pool_kernel
            padding = pair(self._arg(node, 3, "padding", 0))
            pool_dilation = self._arg(node, 4, "dilation", 1) if target is not F.avg_pool2d else 1
            return window(self._input_field(node), pool_kernel, stride, padding, pool_dilation)
        if target is F.pad:
            pads = list(self._arg(node, 1, "pad", ()))
            if len(pads) < 4:
                raise _Unknown
            return shift(self._input_field(node), int(pads[2]), int(pads[0]))
        if target in {F.adaptive_avg_pool2d, F.adaptive_max_pool2d}:
            return self._adaptive(node)
        if target in {F.interpolate, F.conv_transpose2d, F.unfold, F.fold, F.grid_sample}:
            raise _Unknown
        if target is F.linear:
            return self._last_dims(node, 1)
        if target is F.layer_norm:
            return self._last_dims(
                node, len(pair_or_list(self._arg(node, 1, "normalized_shape", ())))
            )
        if target in {torch.permute, torch.transpose}:
            return self._layout(node, str(getattr(target, "__name__", "")))
        if target in _REDUCTIONS:
            return self._reduction(node)
        return self._pointwise(node)

    def _method_field(self, node: fx.Node) -> Axis2 | None:
        if node.target in {"permute", "transpose"}:
            return self._layout(node, str(node.target))
        if node.target in _REDUCTION_METHODS:
            return self._reduction(node)
        if node.target in {"view", "reshape", "flatten", "unfold"}:
            raise _Unknown  # a 4-D result of a reshape: layout no longer known
        return self._pointwise(node)

    def _layout(self, node: fx.Node, op: str) -> Axis2 | None:
        """permute / transpose of a 4-D tensor: the field moves with its rows and columns."""
        field = self._input_field(node, nchw=False)
        rest = [*node.args[1:], *node.kwargs.values()]
        flat = [int(v) for v in flatten_ints(rest)]
        if op == "permute":
            order = [d % 4 for d in flat]
        elif op == "transpose" and len(flat) == 2:
            order = [0, 1, 2, 3]
            a, b = flat[0] % 4, flat[1] % 4
            order[a], order[b] = order[b], order[a]
        else:
            raise _Unknown
        if sorted(order) != [0, 1, 2, 3]:
            raise _Unknown
        if field.is_global:
            return field
        dims = (order.index(field.dims[0]), order.index(field.dims[1]))
        if dims[0] > dims[1]:
            raise _Unknown  # rows and columns swapped: not a layout the fields describe
        return Axis2(field.top, field.size, field.jump, False, field.context, dims)

    def _reduction(self, node: fx.Node) -> Axis2 | None:
        """mean / sum / amax ... (squeeze-excitation's `x.mean((2, 3), keepdim=True)`)."""
        field = self._input_field(node, nchw=False)
        dim = self._arg(node, 1, "dim", None)
        if field.is_global or dim is None:
            return GLOBAL
        reduced = {int(d) % 4 for d in flatten_ints([dim])}
        if reduced & set(field.dims):
            return GLOBAL  # every unit of the result pools the whole map
        return field

    def _last_dims(self, node: fx.Node, count: int) -> Axis2 | None:
        """Linear (last dim) or LayerNorm (last `count` dims): pointwise unless they are spatial."""
        field = self._input_field(node, nchw=False)
        if field.is_global:
            return field
        if set(range(4 - count, 4)) & set(field.dims):
            if (
                isinstance(node.target, str)
                and isinstance(self.modules.get(node.target), nn.LayerNorm)
                or node.target is F.layer_norm
            ):
                return GLOBAL  # statistics over rows or columns: every pixel counts
            raise _Unknown  # a linear map across columns
        return self._pointwise(node)

    def _adaptive(self, node: fx.Node) -> Axis2 | None:
        source = node.args[0]
        in_shape = _shape(source) if isinstance(source, fx.Node) else None
        out_shape = _shape(node)
        if in_shape is None or out_shape is None:
            raise _Unknown
        if in_shape[2:] == out_shape[2:]:
            return self._input_field(node)
        if out_shape[2] == 1 and out_shape[3] == 1:
            return GLOBAL
        # torch's bins: [floor(i*L/n), ceil((i+1)*L/n)); a window op only when they are uniform
        # (10 px to 4 gives 3-px bins at steps 2, 3, 2: measured per unit instead)
        axes = [
            uniform_spans(adaptive_bins(i, o))
            for i, o in zip(in_shape[2:], out_shape[2:], strict=True)
        ]
        if axes[0] is None or axes[1] is None:
            raise _Unknown
        kernel = (axes[0][1], axes[1][1])
        stride = (axes[0][2], axes[1][2])
        return window(self._input_field(node), kernel, stride, (0, 0))

    def _pointwise(self, node: fx.Node) -> Axis2 | None:
        """Elementwise ops, normalization, concatenation: the union of the inputs' fields."""
        out_shape = _shape(node)
        assert out_shape is not None
        sources = [
            source
            for source in _tensor_inputs(node)
            if _shape(source) is not None and source not in self.constant
        ]
        layouts = {
            field.dims
            for field in (self.fields.get(source) for source in sources)
            if field is not None and not field.is_global
        }
        if len(layouts) > 1:
            raise _Unknown  # NCHW and NHWC tensors mixed
        rows, cols = layouts.pop() if layouts else (2, 3)
        out_hw = (out_shape[rows], out_shape[cols])
        spatial: list[Axis2] = []
        context = False
        for source in sources:
            source_shape = _shape(source)
            assert source_shape is not None
            field = self.fields.get(source)
            hw = (source_shape[rows], source_shape[cols]) if len(source_shape) == 4 else None
            if hw == out_hw:
                if field is None:
                    raise _Unknown
                spatial.append(field)
            elif hw == (1, 1) or field is not None and field.is_global:
                context = True  # squeeze-excitation style gating: a global branch broadcast in
            elif len(source_shape) >= 2 and field is None:
                raise _Unknown
        if not spatial:
            if out_hw == (1, 1) and context:
                return GLOBAL
            raise _Unknown
        if any(f.is_global for f in spatial):
            return GLOBAL
        tops = [min(f.top[a] for f in spatial) for a in range(2)]
        bottoms = [max(f.top[a] + f.size[a] for f in spatial) for a in range(2)]
        jumps = [max(f.jump[a] for f in spatial) for a in range(2)]
        return Axis2(
            (tops[0], tops[1]),
            (bottoms[0] - tops[0], bottoms[1] - tops[1]),
            (jumps[0], jumps[1]),
            False,
            context or any(f.context for f in spatial),
            (rows, cols),
        )


class _CallRecorder(fx.Tracer):
    """A tracer that notes which graph node each module call returns (Identity calls included)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: dict[str, fx.Node] = {}
        self.counts: dict[str, int] = {}

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        out = super().call_module(m, forward, args, kwargs)
        name = self.path_of_module(m)
        call = self.counts.get(name, 0)
        self.counts[name] = call + 1
        node = out.node if isinstance(out, fx.Proxy) else None
        if node is None and isinstance(out, (tuple, list)):
            node = next((item.node for item in out if isinstance(item, fx.Proxy)), None)
        if node is not None:
            self.outputs[LayerRef(name, call).spec] = node
        return out


def graph_fields(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, Field | None]:
    """Fields of every module call found in the traced graph, keyed by layer spec (`name#k`).

    Raises whatever torch.fx raises when the model cannot be traced. The shape pass runs under
    `model_guard` (eval mode; the model is left as found).
    """
    recorder = _CallRecorder()
    graph_module = fx.GraphModule(model, recorder.trace(model))
    param = next(iter(model.parameters()), None)
    example = torch.zeros(
        1,
        *input_shape,
        device=param.device if param is not None else "cpu",
        dtype=param.dtype if param is not None else torch.float32,
    )
    with model_guard(model), torch.no_grad():
        ShapeProp(graph_module).propagate(example)
    fields = _FieldPropagator(graph_module).run()
    return {
        spec: _to_field(fields.get(node), input_shape) for spec, node in recorder.outputs.items()
    }


def _to_field(axis: Axis2 | None, input_shape: tuple[int, int, int]) -> Field | None:
    if axis is None:
        return None
    if axis.is_global:
        return Field((input_shape[1], input_shape[2]), (0, 0), (0, 0), "global")
    method = "graph+context" if axis.context else "graph"
    return Field(
        (int(axis.size[0]), int(axis.size[1])),
        (int(axis.jump[0]), int(axis.jump[1])),
        (math.floor(axis.top[0]), math.floor(axis.top[1])),
        method,
    )
