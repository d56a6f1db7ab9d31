"""The only place vizcnn registers hooks: a context manager that captures layer outputs.

Layers are named by their dotted `named_modules()` path. A module called more than once in a
forward pass (EfficientNet-Lite's `_swish`, ResNet's `relu`) is named `name#k` for its k-th call
(0-based); plain `name` means its first call. Wherever a layer is taken, the submodule itself
(`model.layer4`) may stand for its name: `layer_name` resolves it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch
from torch import nn

from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.core.guard import inplace_off, model_guard
from vizcnn.core.outputs import output_tensor

__all__ = [
    "Captured",
    "Layer",
    "LayerRef",
    "capture",
    "find_module",
    "forward_to",
    "inplace_off",
    "layer_name",
    "layer_names",
    "layer_output_shape",
    "model_guard",
    "parse_layer",
    "replace_output",
]


class _StopForward(Exception):
    """Raised by a hook to cut the forward pass short once every requested layer has fired."""


@dataclass(frozen=True)
class LayerRef:
    """A parsed layer name: module path plus which call of it (0-based)."""

    name: str  # dotted path in named_modules()
    call: int = 0  # which call of the module in one forward pass

    @property
    def spec(self) -> str:
        return self.name if self.call == 0 else f"{self.name}#{self.call}"


def parse_layer(spec: str) -> LayerRef:
    """Split `"features.8#1"` into `LayerRef("features.8", 1)`; a bare name is call 0."""
    name, sep, call = spec.strip().partition("#")
    if not sep:
        return LayerRef(name)
    if not call.isdigit():
        raise VizError(f"bad layer call index in {spec!r}; write name#k with k = 0, 1, 2, ...")
    return LayerRef(name, int(call))


# A layer as the user gives it: a dotted `named_modules()` path (`name#k` for the k-th call), or
# the submodule itself (`model.layer4`), as captum and pytorch-grad-cam take it.
Layer: TypeAlias = str | nn.Module


def layer_name(model: nn.Module, layer: Layer) -> str:
    """The dotted `named_modules()` name of `layer`; a name (`"layer4"`, `"relu#1"`) is returned as is.

    A submodule registered under several names (a shared block) gets the first name in
    `model.named_modules()` order. A module that is not part of `model`, or `model` itself,
    is a one-line VizError.

    Example:
        >>> layer_name(resnet, resnet.layer4[1].conv2)
        'layer4.1.conv2'
    """
    if isinstance(layer, str):
        return layer
    if not isinstance(layer, nn.Module):
        raise VizError(
            f"a layer is a dotted module name or an nn.Module, not {type(layer).__name__}"
        )
    names: list[str] = []
    for name, module in model.named_modules():
        if module is layer:
            if name:
                return name
            break
        if name and len(names) < 3:
            names.append(name)
    what = "the model itself" if layer is model else "not a submodule of the model"
    example = ", ".join(names) if names else "conv1"
    raise VizError(
        f"the module passed as layer ({type(layer).__name__}) is {what}; pass one of its "
        f"submodules or a dotted name such as {example} (see `vizcnn layers`)"
    )


def layer_names(model: nn.Module, layers: Iterable[Layer]) -> list[str]:
    """`layer_name` of each of `layers`, in order."""
    return [layer_name(model, layer) for layer in layers]


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path `name`, or a VizError listing the closest valid names."""
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        valid = [n for n in modules if n]
        raise VizError(did_you_mean(name, valid, "layer") + " (see `vizcnn layers`)")
    return modules[name]


@dataclass
class Captured(Mapping[str, torch.Tensor]):
    """Layer outputs recorded during a `capture` block, keyed by the requested layer spec.

    Holds the outputs of the latest pass only: a pass is one outermost call of the model or of
    any submodule that contains a requested layer, so a submodule called directly after a full
    pass does not leave the full pass's outputs behind.
    """

    model: nn.Module
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)  # calls seen per module in the last pass
    stop_early: bool = False  # cut a pass started by `run` after the last requested layer
    fired: set[str] = field(default_factory=set)  # specs captured in any pass of the block
    depth: int = 0  # module calls (of the root and the requested layers' ancestors) under way
    running: bool = False  # inside `run`: the only place a pass may be cut short

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.outputs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def run(self, *inputs: Any, **kwargs: Any) -> Any:
        """Run the model; returns its output, or None when the pass stopped early.

        With `stop_early`, only a pass started here stops after the last requested layer; a
        body calling `model(x)` itself always gets the full pass (and the rest of the body).
        """
        if self.running:
            raise RuntimeError("Captured.run called from inside a forward pass it started")
        self.running = True
        try:
            return self.model(*inputs, **kwargs)
        except _StopForward:
            return None
        finally:
            self.running = False
            self.depth = 0  # a pass cut short unwinds every module call it was in


def _never_fired(spec: str, calls: Mapping[str, int]) -> str:
    """`layer _swish#2 never ran during the forward pass (module ran 2 time(s) in the last
    pass; valid: _swish, _swish#1)`: the wording of `vizcnn.models.preflight` too."""
    name = parse_layer(spec).name
    count = calls.get(name, 0)
    valid = [LayerRef(name, k).spec for k in range(count)]
    shown = f"; valid: {', '.join(valid[:6])}{', ...' if count > 6 else ''}" if valid else ""
    return (
        f"layer {spec} never ran during the forward pass "
        f"(module ran {count} time(s) in the last pass{shown})"
    )


@contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[Layer],
    *,
    stop_early: bool = False,
    detach: bool = False,
    strict: bool = True,
) -> Iterator[Captured]:
    """Record the outputs of `layers` while the body runs the model.

    Each pass starts afresh: the model called again, or a submodule holding a requested layer
    called directly (`model.layer1(x)`), clears the previous pass's outputs, so `acts` always
    holds the latest pass (a loop of passes inside one block works).

    Args:
        model: any `nn.Module`; it is left exactly as found (hooks, training flag, inplace flags).
        layers: dotted module paths, optionally `name#k` for the k-th call of a reused module,
            or the submodules themselves (keyed by their dotted name, see `layer_name`).
        stop_early: cut a pass started by `acts.run(x)` right after the last requested layer
            fired. Only `acts.run` stops early: a body calling `model(x)` itself gets the full
            pass, so no statement of the body is ever skipped.
        detach: store detached outputs (no autograd graph kept), e.g. for mining.
        strict: raise at the end of the block if a requested layer never fired in any pass, or
            returns no tensor (False: skip it).

    Yields:
        A `Captured` mapping from layer spec to output tensor `(B, C, H, W)`.

    Example:
        >>> with capture(model, ["features.8"], stop_early=True) as acts:
        ...     acts.run(images)
        >>> acts["features.8"].shape
    """
    refs = [parse_layer(spec) for spec in layer_names(model, layers)]
    if not refs:
        raise VizError("no layer given; name at least one (see `vizcnn layers`)")
    by_name: dict[str, list[LayerRef]] = {}
    for ref in refs:
        find_module(model, ref.name)
        by_name.setdefault(ref.name, []).append(ref)
    modules = dict(model.named_modules())
    wanted = {ref.spec for ref in refs}
    captured = Captured(model=model, stop_early=stop_early)
    # A pass can begin at the root or at any module on the path down to a requested layer;
    # calling any other submodule cannot change what is captured.
    starts: dict[str, nn.Module] = {"": model}
    for name in by_name:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            path = ".".join(parts[:end])
            if path in modules:
                starts[path] = modules[path]

    handles: list[torch.utils.hooks.RemovableHandle] = []

    def enter(_module: nn.Module, _inputs: Any) -> None:
        if captured.depth == 0:  # an outermost call: a new pass
            captured.calls.clear()
            captured.outputs.clear()
        captured.depth += 1

    def leave(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        # always_call: also runs when the pass is cut short or raises
        captured.depth = max(0, captured.depth - 1)

    def make_hook(name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            call = captured.calls.get(name, 0)
            captured.calls[name] = call + 1
            spec = LayerRef(name, call).spec
            if spec not in wanted:
                return
            tensor = output_tensor(output)
            if tensor is None:
                if not strict:
                    return
                raise VizError(f"layer {spec!r} returns {type(output).__name__}, not a tensor")
            stop = (
                captured.running
                and stop_early
                and wanted.issubset(captured.outputs.keys() | {spec})
            )
            if detach:
                tensor = tensor.detach()
            # Functional in-place ops later in the graph (F.relu(x, inplace=True)) could still
            # overwrite the tensor; a copy is needed unless the pass stops right here.
            if not stop:
                tensor = tensor.clone()
            captured.outputs[spec] = tensor
            captured.fired.add(spec)
            if stop:
                raise _StopForward

        return hook

    # In-place activations would overwrite a captured output before the caller reads it, and
    # break backward hooks; they are off for the block and restored afterwards.
    with inplace_off(model):
        try:
            for module in starts.values():
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave, always_call=True))
            for name in by_name:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
            yield captured
            missing = sorted(wanted - captured.fired)
            if missing and strict:
                detail = "; ".join(_never_fired(spec, captured.calls) for spec in missing)
                raise VizError(detail)
        finally:
            for handle in handles:
                handle.remove()


def forward_to(
    model: nn.Module, inputs: torch.Tensor, layers: Sequence[Layer], *, detach: bool = False
) -> dict[str, torch.Tensor]:
    """Run `model` only as far as the deepest of `layers` and return their outputs.

    `layers` are names or submodules; the outputs are keyed by dotted name (`layer_name`).

    Runs under `model_guard`: eval mode (BatchNorm uses its running statistics), parameters
    frozen, the model left exactly as found; outputs keep their graph to `inputs` unless
    `detach`.

    Args:
        inputs: `(B, C, H, W)` in the model's normalized space.

    Example:
        >>> forward_to(model, images, ["layer3"])["layer3"].shape
    """
    with model_guard(model), capture(model, layers, stop_early=True, detach=detach) as acts:
        acts.run(inputs)
    return dict(acts.outputs)


def layer_output_shape(
    model: nn.Module, input_shape: tuple[int, ...], layer: Layer
) -> tuple[int, ...]:
    """Shape of `layer`'s output for one input of `input_shape` = (C, H, W), batch dim dropped.

    Runs one truncated forward pass on zeros, on the model's device and dtype.
    """
    name = layer_name(model, layer)
    param = next(iter(model.parameters()), None)
    probe = torch.zeros(
        1,
        *input_shape,
        device=param.device if param is not None else "cpu",
        dtype=param.dtype if param is not None else torch.float32,
    )
    with model_guard(model), torch.no_grad():
        output = forward_to(model, probe, [name], detach=True)[name]
    return tuple(int(v) for v in output.shape[1:])


@contextmanager
def replace_output(
    model: nn.Module, layer: Layer, edit: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Pass `layer`'s output through `edit` on every pass run inside the block.

    `layer` is a dotted name, `name#k` (only the k-th call is edited) or the submodule. The
    edited tensor flows on through the rest of the network (e.g. a concept removed from a
    layer's activations). The hook is removed in `finally`; in-place activations are off for
    the block, as in `capture`, so a later in-place op cannot reach back into the edit.

    Example:
        >>> with replace_output(model, "layer3", lambda a: a * 0):
        ...     logits = model(images)
    """
    ref = parse_layer(layer_name(model, layer))
    module = find_module(model, ref.name)
    calls = {"seen": 0}

    def start(_module: nn.Module, _inputs: Any) -> None:
        calls["seen"] = 0  # the root's pre-hook: each pass counts the layer's calls afresh

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        call = calls["seen"]
        calls["seen"] = call + 1
        if call != ref.call:
            return None
        if not isinstance(output, torch.Tensor):
            raise VizError(
                f"layer {ref.spec!r} returns {type(output).__name__}, not a tensor to edit"
            )
        return edit(output)

    with inplace_off(model):
        handles = []
        try:
            handles.append(model.register_forward_pre_hook(start))
            handles.append(module.register_forward_hook(hook))
            yield
        finally:
            for handle in handles:
                handle.remove()
