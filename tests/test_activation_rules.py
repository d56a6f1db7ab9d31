"""Guided backprop and deconvnet on every activation: against hand-written derivatives, or refused.

The oracle: a copy of the model whose activation modules are swapped for `HandRule`, an autograd
Function whose backward is written out here from the activation's formula (guided
`f'(x) * max(g, 0)`, deconv `max(g, 0)`, gates `f'(x) * g`); everything else (convolutions,
LayerNorm, pooling, the squeeze-excitation product) is plain autograd, no interception. The
tested `relu_rule` must give the same gradient in float64.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.attribution import attribute
from vizcnn.core.errors import VizError
from vizcnn.core.relu_rules import relu_rule
from vizcnn.mining.patches import project
from vizcnn.models.base import describe

timm_acts = pytest.importorskip("timm.layers.activations")
timm_me = pytest.importorskip("timm.layers.activations_me")

Prime = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _sig(z: torch.Tensor) -> torch.Tensor:
    return 1 / (1 + torch.exp(-z))


def _silu(_: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return _sig(z) * (1 + z * (1 - _sig(z)))


def _mish(_: nn.Module, z: torch.Tensor) -> torch.Tensor:
    sp = torch.log1p(torch.exp(z))
    return torch.tanh(sp) + z * (1 - torch.tanh(sp) ** 2) * _sig(z)


def _hardswish(_: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return torch.where(z < -3, 0.0, torch.where(z > 3, 1.0, (2 * z + 3) / 6))


def _gelu(m: nn.Module, z: torch.Tensor) -> torch.Tensor:
    if getattr(m, "approximate", "none") == "tanh" or isinstance(m, timm_acts.GELUTanh):
        k = math.sqrt(2 / math.pi)
        u = torch.tanh(k * (z + 0.044715 * z**3))
        return 0.5 * (1 + u) + 0.5 * z * (1 - u**2) * k * (1 + 3 * 0.044715 * z**2)
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    return cdf + z * torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)


def _quick_gelu(_: nn.Module, z: torch.Tensor) -> torch.Tensor:
    s = _sig(1.702 * z)
    return s + 1.702 * z * s * (1 - s)


def _hard_mish(_: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return torch.where(z < -2, 0.0, torch.where(z > 0, 1.0, z + 1))


def _leaky(m: nn.Module, z: torch.Tensor) -> torch.Tensor:
    slope = m.weight.detach() if isinstance(m, nn.PReLU) else m.negative_slope  # type: ignore[union-attr]
    return torch.where(z > 0, torch.ones_like(z), slope * torch.ones_like(z))


def _elu(m: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return torch.where(z > 0, 1.0, m.alpha * torch.exp(z))  # type: ignore[operator]


def _selu(_: nn.Module, z: torch.Tensor) -> torch.Tensor:
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return scale * torch.where(z > 0, 1.0, alpha * torch.exp(z))


# rectifiers: module -> f'(z)
RECTIFIERS: dict[str, tuple[Callable[[], nn.Module], Prime]] = {
    "ReLU": (lambda: nn.ReLU(inplace=True), lambda m, z: (z > 0).to(z.dtype)),
    "ReLU6": (lambda: nn.ReLU6(), lambda m, z: ((z > 0) & (z < 6)).to(z.dtype)),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.1, inplace=True), _leaky),
    "PReLU": (lambda: nn.PReLU(init=0.3).double(), _leaky),
    "ELU": (lambda: nn.ELU(alpha=0.7, inplace=True), _elu),
    "SELU": (lambda: nn.SELU(), _selu),
    "SiLU": (lambda: nn.SiLU(inplace=True), _silu),
    "GELU": (lambda: nn.GELU(), _gelu),
    "GELU-tanh": (lambda: nn.GELU(approximate="tanh"), _gelu),
    "Hardswish": (lambda: nn.Hardswish(inplace=True), _hardswish),
    "Mish": (lambda: nn.Mish(), _mish),
    "Softplus": (lambda: nn.Softplus(), lambda m, z: _sig(z)),
    "timm.Swish": (lambda: timm_acts.Swish(inplace=True), _silu),
    "timm.SwishMe": (lambda: timm_me.SwishMe(), _silu),
    "timm.Mish": (lambda: timm_acts.Mish(), _mish),
    "timm.MishMe": (lambda: timm_me.MishMe(), _mish),
    "timm.HardSwish": (lambda: timm_acts.HardSwish(inplace=True), _hardswish),
    "timm.HardSwishMe": (lambda: timm_me.HardSwishMe(), _hardswish),
    "timm.GELU": (lambda: timm_acts.GELU(), _gelu),
    "timm.GELUTanh": (lambda: timm_acts.GELUTanh(), _gelu),
    "timm.QuickGELU": (lambda: timm_acts.QuickGELU(), _quick_gelu),
    "timm.HardMish": (lambda: timm_acts.HardMish(), _hard_mish),
    "timm.PReLU": (lambda: timm_acts.PReLU(init=0.3).double(), _leaky),
}
GATES: dict[str, tuple[Callable[[], nn.Module], Prime]] = {
    "Sigmoid": (lambda: nn.Sigmoid(), lambda m, z: _sig(z) * (1 - _sig(z))),
    "Tanh": (lambda: nn.Tanh(), lambda m, z: 1 - torch.tanh(z) ** 2),
    "Hardsigmoid": (
        lambda: nn.Hardsigmoid(),
        lambda m, z: ((z > -3) & (z < 3)).to(z.dtype) / 6,
    ),
    "timm.HardSigmoid": (
        lambda: timm_acts.HardSigmoid(),
        lambda m, z: ((z > -3) & (z < 3)).to(z.dtype) / 6,
    ),
    "timm.Sigmoid": (lambda: timm_acts.Sigmoid(), lambda m, z: _sig(z) * (1 - _sig(z))),
}
PRIMES: dict[type, Prime] = {type(make()): prime for make, prime in RECTIFIERS.values()}
GATE_PRIMES: dict[type, Prime] = {type(make()): prime for make, prime in GATES.values()}


class HandRule(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, module, prime, mode):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(z)
        ctx.module, ctx.prime, ctx.mode = module, prime, mode
        return module(z.clone())

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        (z,) = ctx.saved_tensors
        if ctx.mode == "deconv":
            return g.clamp(min=0), None, None, None
        passed = g if ctx.mode == "plain" else g.clamp(min=0)
        return ctx.prime(ctx.module, z) * passed, None, None, None


class Hand(nn.Module):
    def __init__(self, module: nn.Module, rule: str) -> None:
        super().__init__()
        self.module = module
        if hasattr(module, "inplace"):
            module.inplace = False
        gate = type(module) in GATE_PRIMES
        self.prime = (GATE_PRIMES if gate else PRIMES)[type(module)]
        self.mode = "plain" if gate else rule

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return HandRule.apply(z, self.module, self.prime, self.mode)  # type: ignore[no-any-return]


def hand_model(model: nn.Module, rule: str) -> nn.Module:
    """A copy with every known activation module wrapped in `Hand`."""
    oracle = copy.deepcopy(model)
    for module in list(oracle.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) in PRIMES or type(child) in GATE_PRIMES:
                setattr(module, child_name, Hand(child, rule))
    return oracle


def grad(model: nn.Module, x: torch.Tensor, rule: str | None) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    weights = torch.linspace(-1, 1, 7, dtype=x.dtype)
    if rule is None:
        out = model(x)
    else:
        with relu_rule(model, rule):  # type: ignore[arg-type]
            out = model(x)
            (g,) = torch.autograd.grad((out * weights[: out.shape[1]]).sum(), x)
            return g
    (g,) = torch.autograd.grad((out * weights[: out.shape[1]]).sum(), x)
    return g


def _set(model: nn.Module, seed: int = 0, scale: float = 0.7) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


class TinyNet(nn.Module):
    """conv -> act -> conv -> act2 -> mean -> linear(4 -> 3)."""

    def __init__(self, act: nn.Module, act2: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.act = act
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act2 = act2 if act2 is not None else nn.Identity()
        self.head = nn.Linear(4, 3)
        _set(self.double())
        if isinstance(act, nn.PReLU):
            nn.init.constant_(act.weight, 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act2(self.conv2(self.act(self.conv1(x)))).mean(dim=(2, 3)))


def _x(shape: tuple[int, ...] = (2, 2, 6, 6), seed: int = 1) -> torch.Tensor:
    return (
        torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
    )


@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("name", list(RECTIFIERS))
def test_each_rectifier_follows_its_hand_rule(name: str, rule: str) -> None:
    model = TinyNet(RECTIFIERS[name][0]())
    x = _x()
    before = model_state(model)
    got = grad(model, x, rule)
    torch.testing.assert_close(got, grad(hand_model(model, rule), x, None), rtol=1e-9, atol=1e-12)
    assert not torch.allclose(got, grad(model, x, None))  # never the plain gradient
    with relu_rule(model, rule), torch.no_grad():  # type: ignore[arg-type]
        torch.testing.assert_close(model(x), hand_model(model, rule)(x), rtol=0, atol=0)
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("name", list(GATES))
def test_gates_pass_the_plain_gradient_behind_a_rectifier(name: str, rule: str) -> None:
    model = TinyNet(nn.ReLU(), GATES[name][0]())
    x = _x()
    got = grad(model, x, rule)
    # rtol 1e-7: torch's hardsigmoid backward multiplies by 1/6 rounded to float32 in float64 too
    torch.testing.assert_close(got, grad(hand_model(model, rule), x, None), rtol=1e-7, atol=1e-12)


FUNCTIONAL: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "F.silu(inplace)": lambda t: F.silu(t, inplace=True),
    "F.gelu": F.gelu,
    "F.gelu(tanh)": lambda t: F.gelu(t, approximate="tanh"),
    "F.hardswish": F.hardswish,
    "F.mish(inplace)": lambda t: F.mish(t, inplace=True),
    "F.leaky_relu_": lambda t: F.leaky_relu_(t, 0.1),
    "F.elu": lambda t: F.elu(t, 0.7),
    "F.relu6": F.relu6,
}
MODULE_OF: dict[str, nn.Module] = {
    "F.silu(inplace)": nn.SiLU(),
    "F.gelu": nn.GELU(),
    "F.gelu(tanh)": nn.GELU(approximate="tanh"),
    "F.hardswish": nn.Hardswish(),
    "F.mish(inplace)": nn.Mish(),
    "F.leaky_relu_": nn.LeakyReLU(0.1),
    "F.elu": nn.ELU(0.7),
    "F.relu6": nn.ReLU6(),
}


class Call(nn.Module):
    """A functional activation called in forward: no activation module for a hook to find."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x * 1)


@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("name", list(FUNCTIONAL))
def test_functional_calls_get_the_module_rule(name: str, rule: str) -> None:
    functional = TinyNet(Call(FUNCTIONAL[name]))
    as_module = TinyNet(MODULE_OF[name])
    x = _x()
    got = grad(functional, x, rule)
    torch.testing.assert_close(
        got, grad(hand_model(as_module, rule), x, None), rtol=1e-9, atol=1e-12
    )
    assert not torch.allclose(got, grad(functional, x, None))


class ConvNeXtBlock(nn.Module):
    """timm ConvNeXt's block: dwconv 7x7 -> LayerNorm (channels last) -> Linear -> GELU -> Linear,
    layer scale, residual; then a 1x1 conv and a head."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, c, 2, stride=2)
        self.conv_dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1 = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.ones(c))
        self.pw = nn.Conv2d(c, c, 1)
        self.head = nn.Linear(c, 3)
        _set(self.double())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        h = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        h = self.fc2(self.act(self.fc1(h))) * self.gamma
        x = self.pw(x + h.permute(0, 3, 1, 2))
        return self.head(x.mean(dim=(2, 3)))


class EfficientNetBlock(nn.Module):
    """EfficientNet's MBConv: 1x1 expand -> BN -> SiLU -> dw 3x3 -> SiLU -> SE (SiLU reduce,
    sigmoid gate) -> 1x1 project -> BN, residual; then a head."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, c, 3, padding=1)
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.bn1 = nn.BatchNorm2d(2 * c)
        self.act1 = nn.SiLU(inplace=True)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.act2 = nn.SiLU(inplace=True)
        self.se_reduce = nn.Conv2d(2 * c, 2, 1)
        self.se_act = nn.SiLU(inplace=True)
        self.se_expand = nn.Conv2d(2, 2 * c, 1)
        self.gate = nn.Sigmoid()
        self.project = nn.Conv2d(2 * c, c, 1)
        self.bn2 = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, 3)
        _set(self.double()).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        h = self.act2(self.dw(self.act1(self.bn1(self.expand(x)))))
        s = self.gate(self.se_expand(self.se_act(self.se_reduce(h.mean((2, 3), keepdim=True)))))
        x = x + self.bn2(self.project(h * s))
        return self.head(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("block", [ConvNeXtBlock, EfficientNetBlock])
def test_modern_blocks_follow_the_hand_rule(block: type[nn.Module], rule: str) -> None:
    model = block()
    x = _x((2, 2, 8, 8))
    before = model_state(model)
    got = grad(model, x, rule)
    torch.testing.assert_close(got, grad(hand_model(model, rule), x, None), rtol=1e-9, atol=1e-12)
    assert not torch.allclose(got, grad(model, x, None))
    assert_same_state(before, model_state(model))


class SwishByHand(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class MySwishFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def, override]
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def, override]
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return g * s * (1 + x * (1 - s))


class CustomFunction(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return MySwishFn.apply(x)  # type: ignore[no-any-return]


REFUSED: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "x * sigmoid(x)": (lambda: TinyNet(SwishByHand()), r"x \* sigmoid\(x\).*nn\.SiLU"),
    "custom Function": (lambda: TinyNet(CustomFunction()), "custom autograd Function .*MySwishFn"),
    "gates only": (lambda: TinyNet(nn.Tanh(), nn.Sigmoid()), r"only gates \(Sigmoid, Tanh\)"),
    "Softshrink": (lambda: TinyNet(nn.Softshrink()), "Softshrink is neither a rectifier"),
    "RReLU training": (lambda: TinyNet(nn.RReLU()).train(), "RReLU in training mode"),
    "TorchScript": (lambda: TinyNet(torch.jit.script(nn.SiLU())), "TorchScript .*'act'"),
}


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_what_the_rule_cannot_see_is_refused_in_one_line(case: str, rule: str) -> None:
    make, message = REFUSED[case]
    model = make()
    before = model_state(model)
    with pytest.raises(VizError, match=message) as raised:
        grad(model, _x(), rule)
    assert "\n" not in str(raised.value)
    assert_same_state(before, model_state(model))


def test_rrelu_in_eval_mode_is_its_mean_leaky_slope() -> None:
    x = _x()
    model = TinyNet(nn.RReLU(0.1, 0.3)).eval()
    leaky = TinyNet(nn.LeakyReLU(0.2))
    for rule in ("guided", "deconv"):
        torch.testing.assert_close(grad(model, x, rule), grad(hand_model(leaky, rule), x, None))


def test_no_activation_at_all_is_the_gradient_not_an_error() -> None:
    # a layer before any activation (a first-layer projection): the rule acts nowhere, correctly
    model = TinyNet(nn.Identity())
    torch.testing.assert_close(grad(model, _x(), "guided"), grad(model, _x(), None))


TIMM_MODELS = {
    "convnext_atto": 32,  # GELU (timm's GELU module -> F.gelu), LayerNorm2d
    "efficientnet_b0": 32,  # SiLU, SE with a sigmoid gate
    "mobilenetv3_small_050": 32,  # Hardswish, ReLU, SE with a hardsigmoid gate
    "darknet17": 32,  # LeakyReLU
}


@pytest.mark.parametrize("name", list(TIMM_MODELS))
def test_timm_models_follow_the_hand_rule(name: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5).eval().double()
    size = TIMM_MODELS[name]
    x = torch.rand(
        1, 3, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    before = model_state(model)
    plain = grad(model, x, None)
    for rule in ("guided", "deconv"):
        got = grad(model, x, rule)
        assert not torch.allclose(got, plain)
        expected = grad(hand_model(model, rule), x, None)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6 * expected.abs().max())
    assert_same_state(before, model_state(model))


def _loaded(model: nn.Module, channels: int = 2, size: int = 8):  # type: ignore[no-untyped-def]
    return describe(model, mean=(0.0,) * channels, std=(1.0,) * channels, input_size=size)


def test_attribution_maps_follow_the_rule_on_a_silu_se_block() -> None:
    model = EfficientNetBlock()
    x = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    result = attribute(_loaded(model), x, ["saliency", "guided", "deconv"], targets=1)
    for rule in ("guided", "deconv"):
        leaf = x.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(hand_model(model, rule)(leaf)[:, 1].sum(), leaf)
        torch.testing.assert_close(result.maps[rule], expected, rtol=1e-9, atol=1e-12)
        assert not torch.allclose(result.maps[rule], result.maps["saliency"])
    assert result.warnings == []


def test_attribution_refuses_in_one_line() -> None:
    with pytest.raises(VizError, match=r"x \* sigmoid\(x\)"):
        attribute(_loaded(TinyNet(SwishByHand())), _x((1, 2, 8, 8)).clamp(0, 1), ["guided"])


@pytest.mark.parametrize("rule", ["guided", "deconv"])
def test_projections_follow_the_rule_on_a_gelu_block(rule: str) -> None:
    model = ConvNeXtBlock().eval()
    images = torch.rand(2, 2, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    units = torch.tensor([[0, 1, 2], [3, 3, 0]])  # (channel, y, x) on the 4x4 map
    got = project(_loaded(model), images, "pw", units, rule)
    oracle = hand_model(model, rule)
    leaf = images.clone().requires_grad_(True)
    acts: list[torch.Tensor] = []
    handle = oracle.pw.register_forward_hook(lambda m, i, o: acts.append(o))
    oracle(leaf)
    handle.remove()
    chosen = acts[0][torch.arange(2), units[:, 0], units[:, 1], units[:, 2]]
    (expected,) = torch.autograd.grad(chosen.sum(), leaf)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
