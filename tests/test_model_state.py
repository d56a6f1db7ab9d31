"""Every public function that takes a model leaves it exactly as found: on success and on error.

The model is in train mode with one child in eval mode, one frozen parameter, in-place ReLUs,
BatchNorm (running statistics and `num_batches_tracked` would move in a train-mode pass) and a
hook of the user's own. Compared before/after: parameters, buffers, per-module training flags,
`requires_grad`, `.grad`, `inplace` flags, the module objects and every hook dict.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.deepdream.dreaming import DreamConfig, dream
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.hooks import capture, forward_to, layer_output_shape
from vizcnn.mining.patches import check_projectable, mine_patches, project
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.models.base import describe
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.rendering import render
from vizcnn.receptive import receptive_fields
from vizcnn.receptive.measured import measure_field
from vizcnn.receptive.table import layer_table

SIZE = 16
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


class StateNet(nn.Module):
    """conv-BN-ReLU(inplace) -> block (conv-BN-ReLU(inplace)) -> F.relu -> pool -> linear."""

    def __init__(self, dynamic: bool = False) -> None:
        super().__init__()
        self.dynamic = dynamic  # data-dependent control flow: torch.fx cannot trace it
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.block = nn.Sequential(
            nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.head = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.relu(self.bn1(self.conv1(x))))
        if self.dynamic and bool(x.sum() > 0):
            x = x * 1.0
        x = F.relu(self.conv2(x))
        return self.head(x.mean(dim=(2, 3)))


def make_net(dynamic: bool = False) -> StateNet:
    torch.manual_seed(0)  # weights only
    net = StateNet(dynamic).train()
    net.block.eval()  # a child in another mode than its parent
    net.conv1.bias.requires_grad_(False)  # one frozen parameter
    net.conv2.register_forward_hook(lambda *_: None)  # a hook of the user's own
    with torch.no_grad():  # statistics that a train-mode pass would visibly move
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.running_var.uniform_(0.5, 2.0)
    return net


def snapshot(model: nn.Module) -> dict[str, Any]:
    modules = dict(model.named_modules())
    return {
        "modules": [(name, id(m)) for name, m in modules.items()],
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "training": {n: m.training for n, m in modules.items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: p.grad is None for n, p in model.named_parameters()},
        "inplace": {n: m.inplace for n, m in modules.items() if hasattr(m, "inplace")},
        "hooks": {
            (n, attr): [(key, id(value)) for key, value in getattr(m, attr, {}).items()]
            for n, m in modules.items()
            for attr in HOOK_DICTS
        },
    }


def assert_unchanged(before: dict[str, Any], model: nn.Module) -> None:
    after = snapshot(model)
    for key in ("modules", "training", "requires_grad", "grad", "inplace", "hooks"):
        assert after[key] == before[key], key
    for key in ("params", "buffers"):
        assert after[key].keys() == before[key].keys(), key
        for name, value in before[key].items():
            assert torch.equal(after[key][name], value), (key, name)


def interrupt_after(calls: int) -> Callable[[int, int, str], None]:
    """A progress callback that raises KeyboardInterrupt on its `calls`-th call (Ctrl-C)."""
    seen = [0]

    def progress(_done: int, _total: int, _message: str) -> None:
        seen[0] += 1
        if seen[0] >= calls:
            raise KeyboardInterrupt

    return progress


def images(count: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


DREAM = DreamConfig(layers=("block.0",), octaves=2, octave_scale=1.2, steps=1, jitter=2)


def run_render(net: nn.Module, progress: Any = None) -> Any:
    config = RenderConfig(steps=2, size=SIZE, transforms=())
    kwargs = {"progress": progress} if progress else {}
    return render(
        describe(net, input_size=SIZE),
        ["block.0:0", "conv2:1"],
        config,
        **kwargs,
        run=RunOptions(batch=2),
    )


def run_dream(net: nn.Module, progress: Any = None, layer: str = "block.0") -> Any:
    config = DreamConfig(layers=(layer,), octaves=2, octave_scale=1.2, steps=2, jitter=2)
    return dream(describe(net, input_size=SIZE), images(1)[0], config, progress=progress)


def run_frames(net: nn.Module, progress: Any = None) -> Any:
    frames = dream_frames(
        describe(net, input_size=SIZE), images(1)[0], DREAM, ZoomConfig(frames=2), progress=progress
    )
    return list(frames)


def run_mine(net: nn.Module, progress: Any = None, layer: str = "block.0") -> Any:
    config = MineConfig(layer=layer, channels=(0, 1), k=2)
    kwargs = {"progress": progress} if progress else {}
    return mine_topk(
        net, TensorImages(images(4)), config, **kwargs, run=RunOptions(batch=2)
    )  # a bare nn.Module


def run_patches(net: nn.Module, progress: Any = None, layer: str = "block.0") -> Any:
    data = TensorImages(images(4))
    loaded = describe(net, input_size=SIZE)
    top = mine_topk(loaded, data, MineConfig(layer="block.0", channels=(0, 1), k=2))
    top.layer = layer
    kwargs = {"progress": progress} if progress else {}
    return mine_patches(loaded, data, top, projections="guided", thumbnail_size=8, **kwargs)


def run_project(net: nn.Module, layer: str = "block.0") -> Any:
    units = torch.tensor([[0, 1, 1], [1, 2, 3]])
    return project(describe(net, input_size=SIZE), images(2), layer, units, "deconv")


SUCCEEDS: dict[str, Callable[[nn.Module], Any]] = {
    "render": run_render,
    "dream": run_dream,
    "dream_frames": run_frames,
    "mine_topk": run_mine,
    "mine_patches": run_patches,
    "receptive_fields": lambda net: receptive_fields(net, (3, SIZE, SIZE)),
    "layer_table": lambda net: layer_table(net, (3, SIZE, SIZE)),
    "measure_field": lambda net: measure_field(net, "block.0", (3, SIZE, SIZE)),
    "check_projectable": lambda net: check_projectable(net, "block.0"),  # a bare nn.Module
    "project": run_project,
    "layer_output_shape": lambda net: layer_output_shape(net, (3, SIZE, SIZE), "block.1"),
    "forward_to": lambda net: forward_to(net, images(2), ["bn1", "block.1"]),
}

RAISES: dict[str, tuple[Callable[[nn.Module], Any], type[BaseException]]] = {
    "render interrupted": (lambda net: run_render(net, interrupt_after(1)), KeyboardInterrupt),
    "render bad layer": (lambda net: render(describe(net), "nope:0"), VizError),
    "dream interrupted": (lambda net: run_dream(net, interrupt_after(2)), KeyboardInterrupt),
    "dream bad layer": (lambda net: run_dream(net, layer="nope"), VizError),
    "dream_frames interrupted": (
        lambda net: run_frames(net, interrupt_after(3)),
        KeyboardInterrupt,
    ),
    "mine_topk interrupted": (lambda net: run_mine(net, interrupt_after(2)), KeyboardInterrupt),
    "mine_topk bad layer": (lambda net: run_mine(net, layer="nope"), VizError),
    "mine_patches interrupted": (
        lambda net: run_patches(net, interrupt_after(2)),
        KeyboardInterrupt,
    ),
    "mine_patches bad layer": (lambda net: run_patches(net, layer="nope"), VizError),
    "receptive_fields bad layer": (
        lambda net: receptive_fields(net, (3, SIZE, SIZE), ["nope"]),
        VizError,
    ),
    "layer_table bad input": (lambda net: layer_table(net, (1, SIZE, SIZE)), RuntimeError),
    "measure_field bad layer": (
        lambda net: measure_field(net, "nope", (3, SIZE, SIZE)),
        VizError,
    ),
    "check_projectable no map": (lambda net: check_projectable(net, "head"), VizError),
    "project bad layer": (lambda net: run_project(net, layer="nope"), VizError),
    "layer_output_shape bad layer": (
        lambda net: layer_output_shape(net, (3, SIZE, SIZE), "nope"),
        VizError,
    ),
    "forward_to bad input": (
        lambda net: forward_to(net, torch.rand(1, 1, 8, 8), ["bn1"]),
        RuntimeError,
    ),
}


@pytest.mark.parametrize("name", list(SUCCEEDS))
def test_model_left_as_found(name: str) -> None:
    net = make_net()
    before = snapshot(net)
    SUCCEEDS[name](net)
    assert_unchanged(before, net)


@pytest.mark.parametrize("name", list(RAISES))
def test_model_left_as_found_when_the_call_raises(name: str) -> None:
    net = make_net()
    before = snapshot(net)
    call, error = RAISES[name]
    with pytest.raises(error):
        call(net)
    assert_unchanged(before, net)


@pytest.mark.parametrize(
    "name",
    ["receptive_fields", "layer_table", "layer_output_shape", "mine_patches", "measure_field"],
)
def test_model_left_as_found_on_the_measured_path(name: str) -> None:
    net = make_net(dynamic=True)  # tracing fails: fields are measured by backpropagation
    before = snapshot(net)
    SUCCEEDS[name](net)
    assert_unchanged(before, net)


def test_results_are_those_of_eval_mode() -> None:
    # the guard really runs the model in eval mode: BatchNorm uses its running statistics
    net = make_net()
    reference = copy.deepcopy(net).eval()
    x = images(2)
    with torch.no_grad():
        expected = reference.block[1](
            reference.block[0](reference.relu(reference.bn1(reference.conv1(x))))
        )
    torch.testing.assert_close(forward_to(net, x, ["block.1"])["block.1"], expected)
    assert layer_output_shape(net, (3, SIZE, SIZE), "block.1") == (6, SIZE // 2, SIZE // 2)


def test_capture_itself_changes_nothing() -> None:
    # capture does not choose the mode: the body's own train-mode pass moves BatchNorm as it
    # would without capture; capture adds nothing (the same state as an uncaptured twin's)
    net, twin = make_net(), make_net()
    x = images(2)
    with capture(net, ["bn1", "block.2", "conv2"]):
        net(x)
    twin(x)
    assert int(twin.bn1.num_batches_tracked) == 1
    ours, theirs = snapshot(net), snapshot(twin)
    for key in ("training", "requires_grad", "grad", "inplace"):
        assert ours[key] == theirs[key], key
    assert {k: len(v) for k, v in ours["hooks"].items()} == {
        k: len(v) for k, v in theirs["hooks"].items()
    }
    for key in ("params", "buffers"):
        for name, value in theirs[key].items():
            assert torch.equal(ours[key][name], value), (key, name)
    before = snapshot(net)
    with pytest.raises(VizError), capture(net, ["nope"]):
        pass
    with pytest.raises(KeyboardInterrupt), capture(net, ["conv2"]):
        raise KeyboardInterrupt
    assert_unchanged(before, net)


def test_one_guard_and_the_core_imports_no_models() -> None:
    """`model_guard` is the guard's only name; `vizcnn.core` sits below `vizcnn.models`."""
    import vizcnn.core.guard
    import vizcnn.hooks

    for module in (vizcnn.hooks, vizcnn.core.guard):
        assert not hasattr(module, "guarded") and not hasattr(module, "technique")
    core = Path(vizcnn.core.guard.__file__).parent
    for path in sorted(core.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            assert not any(n.startswith("vizcnn.models") for n in names), path.name
