from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from conftest import TinyNet, assert_same_state, model_state
from vizcnn.core.errors import VizError
from vizcnn.hooks import capture, forward_to, parse_layer


def test_captures_exact_activations(tiny: TinyNet) -> None:
    x = torch.ones(1, 1, 10, 10)
    with capture(tiny, ["conv1", "pool", "conv2"]) as acts:
        tiny(x)
    # conv1: 3x3 window of ones over ones = 9 (+ bias), no padding: 8x8 map
    expected_conv1 = torch.stack([torch.full((8, 8), 9.0), torch.full((8, 8), -1.0)])[None]
    torch.testing.assert_close(acts["conv1"], expected_conv1)
    # in-place ReLU after conv1 must not have overwritten the captured -1s
    expected_pool = torch.stack([torch.full((4, 4), 9.0), torch.zeros(4, 4)])[None]
    torch.testing.assert_close(acts["pool"], expected_pool)
    # conv2 sums 9 values of 9 from channel 0 and zeros from channel 1 = 81
    torch.testing.assert_close(acts["conv2"], torch.full((1, 1, 2, 2), 81.0))


def test_second_call_of_a_reused_module(tiny: TinyNet) -> None:
    x = torch.ones(1, 1, 10, 10)
    with capture(tiny, ["relu", "relu#1"]) as acts:
        tiny(x)
    assert acts["relu"].shape == (1, 2, 8, 8)
    torch.testing.assert_close(acts["relu#1"], torch.full((1, 1, 2, 2), 81.0))
    assert acts.calls["relu"] == 2


def test_stop_early_does_not_run_later_layers(tiny: TinyNet) -> None:
    ran: list[str] = []
    handle = tiny.head.register_forward_hook(lambda *_: ran.append("head"))
    try:
        out = forward_to(tiny, torch.ones(2, 1, 10, 10), ["pool"])
    finally:
        handle.remove()
    assert ran == []
    assert out["pool"].shape == (2, 2, 4, 4)


def test_stop_early_only_through_run_a_direct_call_runs_the_whole_body(tiny: TinyNet) -> None:
    ran: list[str] = []
    handle = tiny.head.register_forward_hook(lambda *_: ran.append("head"))
    try:
        with capture(tiny, ["conv1"], stop_early=True) as acts:
            logits = tiny(torch.ones(1, 1, 10, 10))  # not acts.run: the full pass runs
            ran.append("rest of the body")
            assert acts.run(torch.ones(1, 1, 10, 10)) is None  # run: stops after conv1
    finally:
        handle.remove()
    assert ran == ["head", "rest of the body"]
    # conv2 of the full pass = 81 (see test_captures_exact_activations); head = W @ [81]*4
    torch.testing.assert_close(logits, torch.tensor([[6.0, 22.0, 38.0]]) * 81)
    assert acts["conv1"].shape == (1, 2, 8, 8)


def test_direct_submodule_call_after_a_full_pass_replaces_its_outputs(tiny: TinyNet) -> None:
    with capture(tiny, ["conv1", "relu", "relu#1", "conv2"]) as acts:
        tiny(torch.ones(1, 1, 10, 10))
        assert set(acts) == {"conv1", "relu", "relu#1", "conv2"}
        z = torch.full((1, 2, 4, 4), -3.0)
        z[0, 0, 0, 0] = 5.0
        out = tiny.relu(z)  # the reused module called on its own: a new pass, its call 0
        assert set(acts) == {"relu"}  # nothing stale from the full pass
        torch.testing.assert_close(acts["relu"], z.clamp(min=0))
        torch.testing.assert_close(out, z.clamp(min=0))
        tiny.conv2(torch.ones(1, 2, 3, 3))  # 18 ones under a 3x3x2 kernel of ones = 18
        assert set(acts) == {"conv2"}
        torch.testing.assert_close(acts["conv2"], torch.full((1, 1, 1, 1), 18.0))
        tiny.head(torch.ones(1, 4))  # contains no requested layer: changes nothing
        assert set(acts) == {"conv2"}
        for value, expected in ((1.0, 81.0), (0.0, 0.0)):  # a loop of passes, each afresh
            tiny(torch.full((1, 1, 10, 10), value))
            torch.testing.assert_close(acts["conv2"], torch.full((1, 1, 2, 2), expected))
            assert acts.calls["relu"] == 2


def test_strict_counts_layers_fired_in_any_pass(tiny: TinyNet) -> None:
    # conv1 fired in the first pass, conv2 only in a later direct call: neither is "missing"
    with capture(tiny, ["conv1", "conv2"]) as acts:
        tiny(torch.ones(1, 1, 10, 10))
        tiny.conv2(torch.ones(1, 2, 3, 3))
    assert set(acts) == {"conv2"}
    with (
        pytest.raises(VizError, match="never ran during the forward pass"),
        capture(tiny, ["conv1", "conv2"]),
    ):
        tiny.conv1(torch.ones(1, 1, 5, 5))


def test_a_pass_that_raised_does_not_swallow_the_next_one(tiny: TinyNet) -> None:
    with capture(tiny, ["conv1", "conv2"]) as acts:
        with pytest.raises(RuntimeError):
            tiny(torch.ones(1, 1, 5, 5))  # conv1 fires, then the pass fails in conv2
        assert set(acts) == {"conv1"}
        tiny.conv2(torch.ones(1, 2, 3, 3))  # must count as a new pass, not as part of that one
        assert set(acts) == {"conv2"}


def test_gradient_flows_through_captured_output(tiny: TinyNet) -> None:
    x = torch.rand(1, 1, 10, 10, requires_grad=True)
    with capture(tiny, ["conv1"], stop_early=True) as acts:
        acts.run(x)
    acts["conv1"][0, 0].sum().backward()
    # d/dx of the sum of a ones-kernel conv = how many 3x3 windows cover each pixel
    ones = torch.ones(1, 1, 8, 8)
    oracle = torch.nn.functional.conv_transpose2d(ones, torch.ones(1, 1, 3, 3))
    torch.testing.assert_close(x.grad, oracle)


def test_unknown_layer_suggests_close_names(tiny: TinyNet) -> None:
    with pytest.raises(VizError, match="did you mean: conv1"), capture(tiny, ["conv_1"]):
        pass


def test_layer_that_never_fires_raises(tiny: TinyNet) -> None:
    with (
        pytest.raises(VizError, match="never ran during the forward pass"),
        capture(tiny, ["head"]),
    ):
        pass


def test_bad_call_index() -> None:
    with pytest.raises(VizError, match="name#k"):
        parse_layer("relu#x")


def test_model_unchanged_after_success_and_after_exception(tiny: TinyNet) -> None:
    tiny.train()
    before = model_state(tiny)
    with capture(tiny, ["conv1", "relu#1"]) as acts:
        tiny(torch.ones(1, 1, 10, 10))
    assert len(acts) == 2
    assert_same_state(before, model_state(tiny))
    with pytest.raises(RuntimeError, match="boom"), capture(tiny, ["conv1"]):
        tiny(torch.ones(1, 1, 10, 10))
        raise RuntimeError("boom")
    assert_same_state(before, model_state(tiny))


def test_keyboard_interrupt_leaves_no_hooks(tiny: TinyNet) -> None:
    before = model_state(tiny)
    with pytest.raises(KeyboardInterrupt), capture(tiny, ["conv1"]):
        raise KeyboardInterrupt
    assert_same_state(before, model_state(tiny))


@pytest.mark.parametrize(
    "arch,layer",
    [
        ("alexnet", "features.3"),
        ("vgg11", "features.4"),
        ("resnet18", "layer2.0.relu#1"),
        ("googlenet", "inception3a"),
    ],
)
def test_torchvision_architectures_unchanged(arch: str, layer: str) -> None:
    kwargs = {"aux_logits": False, "init_weights": False} if arch == "googlenet" else {}
    model = torchvision.models.get_model(arch, weights=None, **kwargs).eval()
    before = model_state(model)
    x = torch.rand(1, 3, 96, 96) if arch != "alexnet" else torch.rand(1, 3, 128, 128)
    with capture(model, [layer], stop_early=True) as acts:
        acts.run(x)
    assert acts[layer].dim() == 4
    assert_same_state(before, model_state(model))


def test_inplace_relu_conv_output_survives() -> None:
    model = torchvision.models.alexnet(weights=None).eval()
    x = torch.rand(1, 3, 128, 128)
    with capture(model, ["features.0", "features.1"]) as acts:
        model(x)
    assert (acts["features.0"] < 0).any(), "conv output was overwritten by the in-place ReLU"
    torch.testing.assert_close(acts["features.1"], acts["features.0"].clamp(min=0))


def test_inplace_off_restores_flags_even_on_error() -> None:
    from vizcnn.hooks import inplace_off

    model = torchvision.models.alexnet(weights=None)
    before = [getattr(m, "inplace", None) for m in model.modules()]
    with pytest.raises(RuntimeError), inplace_off(model):
        assert not any(getattr(m, "inplace", False) for m in model.modules())
        raise RuntimeError
    assert [getattr(m, "inplace", None) for m in model.modules()] == before


def test_layer_output_shape_matches_conv_arithmetic() -> None:
    from vizcnn.hooks import layer_output_shape

    model = torchvision.models.alexnet(weights=None).eval()
    # conv1: 11x11, stride 4, padding 2 on 224 px -> (224 + 4 - 11) // 4 + 1 = 55
    assert layer_output_shape(model, (3, 224, 224), "features.0") == (64, 55, 55)
    assert layer_output_shape(model, (3, 224, 224), "classifier.6") == (1000,)


def test_a_call_that_never_happens_lists_the_calls_that_do() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.act(x) - 1)

    net = Twice()
    expected = (
        r"act#2 never ran during the forward pass \(module ran 2 time\(s\).*valid: act, act#1\)"
    )
    with pytest.raises(VizError, match=expected), capture(net, ["act#2"]) as acts:
        acts.run(torch.zeros(1, 1, 2, 2))
