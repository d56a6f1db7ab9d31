"""Mixed precision: bf16 autocast where it is native, float32 with a note elsewhere."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vizcnn.core.adam import Adam
from vizcnn.core.errors import VizError
from vizcnn.core.precision import (
    AUTO,
    Precision,
    _CpuBf16,
    check_amp,
    choose_precision,
    cpu_bf16_supported,
)
from vizcnn.core.run_options import RunOptions
from vizcnn.deepdream import DreamConfig, dream
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis import RenderConfig, render, rendering


def test_off_unless_asked() -> None:
    choice = choose_precision(torch.device("cpu"), amp=False)
    assert not choice.enabled and choice.note == "" and choice.dtype == torch.float32


def test_cpu_follows_native_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: True)
    on = choose_precision(torch.device("cpu"), amp=True)
    assert on.enabled and on.note == "" and on.dtype == torch.bfloat16
    with on.autocast():
        out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == torch.bfloat16
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: False)
    off = choose_precision(torch.device("cpu"), amp=True)
    assert not off.enabled and "no native bfloat16" in off.note
    with off.autocast():
        out = torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3))
    assert out.dtype == torch.float32


def test_cuda_always_and_mps_never() -> None:
    assert choose_precision(torch.device("cuda"), amp=True).enabled
    mps = choose_precision(torch.device("mps"), amp=True)
    assert not mps.enabled and "mps" in mps.note


# --- auto: the default of render and dream ------------------------------------------------------


def _force(monkeypatch: pytest.MonkeyPatch, cpu: bool, cuda: bool = False) -> None:
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: cpu)
    monkeypatch.setattr("vizcnn.core.precision.cuda_bf16_supported", lambda: cuda)


def test_auto_follows_the_capability_silently(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    _force(monkeypatch, cpu=True, cuda=True)
    on = choose_precision(cpu, AUTO)
    assert on.enabled and on.note == "" and on.name == "bfloat16" and on.channels_last
    assert choose_precision(cuda, AUTO).enabled
    assert not choose_precision(cuda, AUTO).channels_last  # CUDA callers have their own switch
    _force(monkeypatch, cpu=False, cuda=False)
    off = choose_precision(cpu, AUTO)
    assert not off.enabled and off.note == "" and off.name == "float32"  # no note: not asked for
    assert not choose_precision(cuda, AUTO).enabled
    assert choose_precision(cuda, True).enabled  # an explicit --amp keeps its CUDA meaning
    assert choose_precision(mps, AUTO) == Precision(False, "mps")
    _force(monkeypatch, cpu=True, cuda=True)
    assert not choose_precision(cpu, False).enabled  # --no-amp wins over the capability


def test_configs_default_to_auto_and_refuse_other_values() -> None:
    assert RunOptions().amp == AUTO  # render's, dream's and the report's precision
    for bad in ("on", "bf16", 1, None):
        with pytest.raises(VizError, match="amp must be True, False or 'auto'"):
            check_amp(bad)
        with pytest.raises(VizError, match="amp must be"):
            RunOptions(amp=bad)  # type: ignore[arg-type]


class _DtypeRecorder(nn.Module):
    """Identity that records the dtype and layout it sees (what the network ran in)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.dtype, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        return x


def _recording_model() -> tuple[LoadedModel, _DtypeRecorder]:
    gen = torch.Generator().manual_seed(3)
    recorder = _DtypeRecorder()
    module = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        recorder,
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),  # strided depthwise
        nn.Conv2d(6, 4, 1),
    )
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)
    module.eval().requires_grad_(False)
    loaded = LoadedModel("rec", module, (0.5,) * 3, (0.25,) * 3, (16, 16), [])
    return loaded, recorder


def test_render_auto_is_bf16_exactly_where_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto == amp=True with the capability, == amp=False without; state stays float32."""
    loaded, recorder = _recording_model()
    config = RenderConfig(steps=6, size=12)
    units = ["4:0", "4:3"]
    optimizers: list[Adam] = []

    class SpyAdam(Adam):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            optimizers.append(self)

    monkeypatch.setattr(rendering, "Adam", SpyAdam)
    _force(monkeypatch, cpu=True)
    auto_on = render(loaded, units, config, seed=4, run=RunOptions(batch=2))
    assert (torch.bfloat16, True) in recorder.seen  # the network ran in bf16, channels-last
    assert all(dtype == torch.float32 for dtype, _ in recorder.seen[-1:])  # final value: float32
    adam = optimizers[-1]
    assert adam.params and adam.steps_taken == config.steps
    for param, first, second in zip(adam.params, adam.first, adam.second, strict=True):
        assert param.dtype == first.dtype == second.dtype == torch.float32
    forced = render(loaded, units, config, seed=4, run=RunOptions(batch=2, amp=True))
    assert torch.equal(auto_on.images, forced.images)
    assert auto_on.values.dtype == torch.float32
    recorder.seen.clear()
    _force(monkeypatch, cpu=False)
    auto_off = render(loaded, units, config, seed=4, run=RunOptions(batch=2))
    assert {dtype for dtype, _ in recorder.seen} == {torch.float32}
    assert torch.equal(
        auto_off.images,
        render(loaded, units, config, seed=4, run=RunOptions(batch=2, amp=False)).images,
    )
    assert not torch.equal(auto_on.images, auto_off.images)
    torch.testing.assert_close(auto_on.values, auto_off.values, rtol=0.05, atol=0.02)


def test_dream_auto_is_bf16_exactly_where_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, recorder = _recording_model()
    image = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0))
    config = DreamConfig(layers=("4",), octaves=1, steps=3, jitter=3)
    _force(monkeypatch, cpu=True)
    auto_on = dream(loaded, image, config)
    assert (torch.bfloat16, True) in recorder.seen
    assert torch.equal(auto_on, dream(loaded, image, config, run=RunOptions(amp=True)))
    recorder.seen.clear()
    _force(monkeypatch, cpu=False)
    auto_off = dream(loaded, image, config)
    assert {dtype for dtype, _ in recorder.seen} == {torch.float32}
    assert torch.equal(auto_off, dream(loaded, image, config, run=RunOptions(amp=False)))
    assert not torch.equal(auto_on, auto_off)
    moved = float((auto_off - image).abs().mean())
    assert float((auto_on - auto_off).abs().mean()) < 0.1 * moved


# --- strided depthwise convolutions: bf16 forward, float32 input gradient ------------------------


@pytest.mark.parametrize("stride, kernel, padding", [(2, 3, 1), (2, 5, 0), ((2, 1), 3, (1, 0))])
def test_strided_depthwise_gradient_is_exact_in_float32(
    stride: int | tuple[int, int], kernel: int, padding: int | tuple[int, int]
) -> None:
    """Oracle: the same convolution in float64 on the bf16-rounded input, weight and gradient."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 17, 14, generator=gen).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 1, kernel, kernel, generator=gen)
    bias = torch.randn(8, generator=gen)
    x.requires_grad_(True)
    with _CpuBf16():
        out = F.conv2d(x, weight, bias, stride, padding, 1, 8)
    assert out.dtype == torch.bfloat16
    upstream = torch.randn(out.shape, generator=gen).to(torch.bfloat16)
    (grad,) = torch.autograd.grad(out, x, upstream)
    assert grad.dtype == torch.float32 and grad.is_contiguous(memory_format=torch.channels_last)

    def rounded(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(torch.bfloat16).double()

    x64 = rounded(x).requires_grad_(True)
    ref_out = F.conv2d(x64, rounded(weight), rounded(bias), stride, padding, 1, 8)
    (ref_grad,) = torch.autograd.grad(ref_out, x64, upstream.double())
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-6, atol=1e-5)
    # the forward is plain autocast's: the same bf16 result
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = F.conv2d(x, weight, bias, stride, padding, 1, 8)
    assert torch.equal(out, plain)


def test_other_convolutions_pass_through_untouched() -> None:
    """Stride 1, grouped (not depthwise), trainable weights and no-grad calls: plain autocast."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 9, 9, generator=gen, requires_grad=True)
    cases = [
        (torch.randn(4, 1, 3, 3, generator=gen), 1, 4),  # depthwise, stride 1
        (torch.randn(4, 2, 3, 3, generator=gen), 2, 2),  # grouped, strided
        (torch.randn(4, 1, 3, 3, generator=gen).requires_grad_(True), 2, 4),  # trainable
    ]
    for weight, stride, groups in cases:
        with _CpuBf16():
            out = F.conv2d(x, weight, None, stride, 1, 1, groups)
        assert out.grad_fn is not None and "StridedDepthwise" not in type(out.grad_fn).__name__
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain = F.conv2d(x, weight, None, stride, 1, 1, groups)
        assert torch.equal(out, plain)
    with torch.no_grad(), _CpuBf16():
        out = F.conv2d(x, cases[0][0], None, 2, 1, 1, 4)
    assert out.grad_fn is None and out.dtype == torch.bfloat16


NATIVE_BF16 = cpu_bf16_supported()  # read at import, before the autouse fixture patches it


@pytest.mark.slow
@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bfloat16")
def test_espresso_render_under_bf16_is_espresso(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default (auto = bf16 here) keeps the class render recognizable: lite0 in float32."""
    from vizcnn.io.imaging import resize
    from vizcnn.models.loading import load_model
    from vizcnn.optvis import objectives as O

    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: True)
    lite0 = load_model("efficientnet_lite0")
    result = render(lite0, [O.class_logit("espresso")], RenderConfig(steps=64))
    with torch.no_grad():
        probs = lite0.module(lite0.normalize(resize(result.images, lite0.input_size))).softmax(1)
    assert probs[0, lite0.class_index("espresso")] >= 0.9
