"""Layer surgery on a copy of a network: remove layers, zero channels, insert the smallest adapters.

The user's module is never modified: `ablate` deep-copies it and edits the copy. A removed layer
becomes the identity where its input and output shapes agree. Where they do not:

- a removed `nn.Linear` becomes the identity and the next linear layer that then receives the
  wrong number of features is re-fitted to it (a fresh `nn.Linear`): removing hidden FC layers
  connects the layer before them straight to the classifier, as in Zeiler & Fergus;
- any other layer is replaced by the smallest adapter that restores its output shape: a 1x1
  convolution (after average pooling when the spatial size changes) or a linear layer.

Adapters and re-fitted layers are new, seeded parameters that must be trained; `Ablated` says so.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vizcnn.core.channels import parse_channels
from vizcnn.core.errors import VizError
from vizcnn.core.outputs import require_output_tensor
from vizcnn.hooks import Layer, find_module, layer_name, layer_names
from vizcnn.models.base import ModelLike, as_loaded


class Removed(nn.Module):
    """Stands in for a removed layer: the identity, or an adapter when the shapes differ.

    Accepts and ignores extra arguments, so it can replace blocks called with keyword arguments
    (EfficientNet's `block(x, drop_connect_rate=...)`).
    """

    def __init__(self, adapter: nn.Module | None = None) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return x if self.adapter is None else self.adapter(x)


class ZeroChannels(nn.Module):
    """Runs `inner` and sets the given channels (dim 1) of its output to zero."""

    def __init__(self, inner: nn.Module, channels: Sequence[int]) -> None:
        super().__init__()
        self.inner = inner
        self.channels = tuple(int(c) for c in channels)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.inner(*args, **kwargs)
        keep = torch.ones(out.shape[1], dtype=out.dtype, device=out.device)
        keep[list(self.channels)] = 0
        return out * keep.view(1, -1, *([1] * (out.dim() - 2)))


@dataclass(frozen=True)
class Change:
    """One edit made to the copy."""

    layer: str  # the layer removed, zeroed or re-fitted (dotted name in the original)
    kind: str  # identity | adapter | refit | zeroed
    detail: str  # human-readable, e.g. "1x1 conv 6->16 after pooling to 10x10"


@dataclass
class Ablated:
    """An edited copy of a network and what was done to it."""

    module: nn.Module  # the copy (eval mode; the user's instance is untouched)
    changes: list[Change]
    params_before: int  # parameters of the original network
    params_after: int  # parameters of the copy, adapters included
    new_params: list[str] = field(default_factory=list)  # names (in the copy) to be trained
    head: str | None = None  # the layer producing the network's output, if it has parameters

    @property
    def params_removed(self) -> int:
        """Net parameter change: original minus edited (adapters counted against the removal)."""
        return self.params_before - self.params_after

    @property
    def needs_training(self) -> bool:
        """True when adapters or re-fitted layers hold untrained parameters."""
        return bool(self.new_params)

    @property
    def adapter(self) -> bool:
        return any(change.kind in ("adapter", "refit") for change in self.changes)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def init_params(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default uniform(+-1/sqrt(fan_in)) initialization, drawn from `generator`."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() > 1:
                fan_in = param[0].numel()
            else:  # a bias: its layer's fan-in is the weight's, stored next to it
                weight = dict(module.named_parameters()).get(name.rsplit(".", 1)[0] + ".weight")
                fan_in = weight[0].numel() if weight is not None and weight.dim() > 1 else 1
            bound = 1.0 / math.sqrt(fan_in)
            values = torch.rand(param.shape, generator=generator, dtype=torch.float64)
            param.copy_(((values * 2 - 1) * bound).to(param.dtype))


@dataclass
class _Seen:
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


@contextmanager
def record_io(module: nn.Module, names: Sequence[str]) -> Iterator[_Seen]:
    """Record the first input and output of each named submodule; hooks removed in `finally`."""
    seen = _Seen()
    handles = []
    modules = dict(module.named_modules())

    def hook(name: str) -> Any:
        def record(_: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if name not in seen.outputs:
                seen.inputs[name] = args[0] if args else None
                seen.outputs[name] = output

        return record

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook(name)))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


class _Mismatch(Exception):
    def __init__(self, name: str, features: int) -> None:
        super().__init__(name)
        self.name = name
        self.features = features


@contextmanager
def _linear_checks(module: nn.Module) -> Iterator[None]:
    """Raise `_Mismatch` when a linear layer receives the wrong number of features."""
    handles = []

    def check(name: str) -> Any:
        def pre(layer: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            if isinstance(x, torch.Tensor) and x.shape[-1] != layer.in_features:
                raise _Mismatch(name, int(x.shape[-1]))

        return pre

    try:
        for name, layer in module.named_modules():
            if isinstance(layer, nn.Linear):
                handles.append(layer.register_forward_pre_hook(check(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _set(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, key = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    parent._modules[key] = new


def _adapter(name: str, x: torch.Tensor, y: torch.Tensor) -> tuple[nn.Module, str]:
    """The smallest module mapping a tensor shaped like `x` to one shaped like `y`."""
    if x.dim() == 4 and y.dim() == 4:
        conv = nn.Conv2d(x.shape[1], y.shape[1], kernel_size=1)
        if x.shape[-2:] == y.shape[-2:]:
            return conv, f"1x1 conv {x.shape[1]}->{y.shape[1]}"
        size = (int(y.shape[-2]), int(y.shape[-1]))
        return (
            nn.Sequential(nn.AdaptiveAvgPool2d(size), conv),
            f"1x1 conv {x.shape[1]}->{y.shape[1]} after pooling to {size[0]}x{size[1]}",
        )
    if x.dim() == 2 and y.dim() == 2:
        return nn.Linear(x.shape[1], y.shape[1]), f"linear {x.shape[1]}->{y.shape[1]}"
    raise VizError(
        f"cannot remove {name}: it maps {tuple(x.shape[1:])} to {tuple(y.shape[1:])}, which no "
        "1x1 convolution or linear adapter restores; remove the layers around it too"
    )


def _example(model: ModelLike, example: torch.Tensor | None) -> torch.Tensor:
    if example is not None:
        return example
    loaded = as_loaded(model)
    return torch.zeros(
        2, loaded.channels, *loaded.input_size, device=loaded.device, dtype=loaded.dtype
    )


def check_layers(module: nn.Module, layers: Sequence[Layer]) -> None:
    """Raise a one-line VizError for an unknown, repeated, nested or root layer name."""
    layers = layer_names(module, layers)
    if not layers:
        raise VizError("a variant must name at least one layer to remove")
    for name in layers:
        if name.strip() in ("", "."):
            raise VizError("removing the whole network leaves nothing; name layers inside it")
        find_module(module, name)
    if len(set(layers)) != len(layers):
        raise VizError(f"layer named twice in {', '.join(layers)}")
    for outer in layers:
        for inner in layers:
            if inner != outer and inner.startswith(outer + "."):
                raise VizError(f"{inner} lies inside {outer}, which is already removed")


def ablate(
    model: ModelLike,
    remove: Sequence[Layer] = (),
    *,
    units: Mapping[Layer, str] | None = None,
    example: torch.Tensor | None = None,
    seed: int = 0,
) -> Ablated:
    """A copy of `model` with `remove` layers taken out and `units` channels zeroed.

    Args:
        model: a `LoadedModel` or any `nn.Module` returning logits `(B, K)`; never modified.
        remove: layers to remove (identity, adapter or re-fit, see the module doc): dotted
            names or the submodules themselves (`vizcnn.hooks.layer_name`).
        units: layer (name or submodule) -> channel selection (`"0,5,9"`, `"0:8"`): those
            output channels of the layer are zeroed in the copy.
        example: an input batch `(B, C, H, W)` for the shape probe (default: zeros at the
            model's input size, on its device).
        seed: seeds the initialization of adapters and re-fitted layers.

    Returns:
        `Ablated`; a one-line VizError before any work for an unknown layer, a removal that
        disconnects the output, or a shape no adapter restores.

    Example:
        >>> cut = ablate(load_model("lenet5_digits"), ["classifier.3", "classifier.4"])
        >>> cut.changes[-1].kind
        'refit'
    """
    module = as_loaded(model).module
    names = layer_names(module, remove)
    zeroed = {layer_name(module, layer): c for layer, c in (units or {}).items()}
    return _ablate(model, names, zeroed, example, seed)


def _ablate(
    model: ModelLike,
    remove: list[str],
    units: dict[str, str],
    example: torch.Tensor | None,
    seed: int,
) -> Ablated:
    """`ablate` with its layers as dotted names."""
    loaded = as_loaded(model)
    original = loaded.module
    if remove:
        check_layers(original, list(remove))
    for name in units:
        find_module(original, name)
    x = _example(model, example)
    work = copy.deepcopy(original).eval()
    generator = torch.Generator().manual_seed(int(seed))
    leaves = [n for n, m in work.named_modules() if n and not any(True for _ in m.children())]
    probe_names = list(dict.fromkeys([*remove, *units, *leaves]))
    with torch.no_grad(), record_io(work, probe_names) as seen:
        reference = require_output_tensor(work(x))
    head = next(
        (
            n
            for n in leaves
            if seen.outputs.get(n) is reference and count_params(work.get_submodule(n))
        ),
        None,
    )
    for name in [*remove, *units]:
        if name not in seen.outputs:
            raise VizError(f"{name} never runs in a forward pass; removing it changes nothing")
        if seen.outputs[name] is reference:
            raise VizError(
                f"removing {name} disconnects the network from its {reference.shape[-1]} outputs "
                "(it produces the output); remove layers before it"
            )
        if not isinstance(seen.inputs[name], torch.Tensor):
            raise VizError(f"cannot remove {name}: its input is not a single tensor")

    changes: list[Change] = []
    new_modules: list[tuple[str, nn.Module]] = []
    for name in remove:
        x_in, y_out = seen.inputs[name], require_output_tensor(seen.outputs[name])
        layer = work.get_submodule(name)
        if x_in.shape == y_out.shape:
            _set(work, name, Removed())
            changes.append(Change(name, "identity", "identity"))
        elif isinstance(layer, nn.Linear):
            _set(work, name, Removed())
            changes.append(Change(name, "identity", "identity; the next linear layer is re-fitted"))
        else:
            adapter, detail = _adapter(name, x_in, y_out)
            adapter.to(device=x_in.device, dtype=x_in.dtype)
            init_params(adapter, generator)
            _set(work, name, Removed(adapter))
            new_modules.append((f"{name}.adapter", adapter))
            changes.append(Change(name, "adapter", detail))
    for name, text in units.items():
        out = require_output_tensor(seen.outputs[name])
        channels = parse_channels(text, int(out.shape[1]))
        layer = work.get_submodule(name)
        _set(work, name, ZeroChannels(layer, channels))
        changes.append(Change(name, "zeroed", f"channels {','.join(map(str, channels))}"))

    output = _refit_linears(work, x, generator, changes, new_modules)
    if output.shape != reference.shape:
        raise VizError(
            f"removing {', '.join(remove)} changes the output from {tuple(reference.shape[1:])} "
            f"to {tuple(output.shape[1:])}: the network is disconnected from its classifier"
        )
    new_ids = {id(p) for _, m in new_modules for p in m.parameters()}
    new_params = [n for n, p in work.named_parameters() if id(p) in new_ids]
    units_params = _zeroed_params(original, units, changes)
    before = count_params(original)
    after = count_params(work) - units_params
    return Ablated(work, changes, before, after, new_params, head)


def _zeroed_params(original: nn.Module, units: Mapping[str, str], changes: list[Change]) -> int:
    """Parameters made useless by zeroing output channels of a conv or linear layer (weights and
    bias of those channels, plus a BatchNorm's affine pair when the zeroed layer is one)."""
    total = 0
    for change in changes:
        if change.kind != "zeroed":
            continue
        layer = original.get_submodule(change.layer)
        count = len(change.detail.removeprefix("channels ").split(","))
        if isinstance(layer, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            per_channel = sum(p[0].numel() if p.dim() > 1 else 1 for p in layer.parameters())
            total += per_channel * count
    return total


def _refit_linears(
    work: nn.Module,
    x: torch.Tensor,
    generator: torch.Generator,
    changes: list[Change],
    new_modules: list[tuple[str, nn.Module]],
) -> torch.Tensor:
    """Run the copy; re-fit each linear layer that now receives the wrong number of features."""
    linears = sum(1 for m in work.modules() if isinstance(m, nn.Linear))
    for _ in range(linears + 1):
        try:
            with torch.no_grad(), _linear_checks(work):
                return require_output_tensor(work(x))
        except _Mismatch as mismatch:
            old = work.get_submodule(mismatch.name)
            assert isinstance(old, nn.Linear)
            new = nn.Linear(mismatch.features, old.out_features, bias=old.bias is not None)
            new.to(device=old.weight.device, dtype=old.weight.dtype)
            init_params(new, generator)
            _set(work, mismatch.name, new)
            new_modules.append((mismatch.name, new))
            changes.append(
                Change(
                    mismatch.name,
                    "refit",
                    f"linear {mismatch.features}->{old.out_features} (was {old.in_features} inputs)",
                )
            )
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise VizError(f"the network no longer runs after the removal: {first}") from None
    raise VizError("could not re-fit the linear layers after the removal")
