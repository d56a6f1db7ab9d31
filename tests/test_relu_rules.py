"""relu_rule: guided backprop and deconvnet gradients against a hand-written backward pass."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import assert_same_state, model_state
from vizcnn.core.errors import VizError
from vizcnn.core.relu_rules import relu_rule


def _weights() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "w1": torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64),
        "w2": torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64),
        "w3": torch.randn(3 * 4 * 4, generator=g, dtype=torch.float64),
    }


class ModuleNet(nn.Module):
    """conv -> nn.ReLU(inplace) -> conv -> nn.ReLU -> linear to a scalar."""

    def __init__(self) -> None:
        super().__init__()
        w = _weights()
        self.conv1 = nn.Conv2d(2, 4, 3, bias=False).double()
        self.conv2 = nn.Conv2d(4, 3, 3, bias=False).double()
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU()
        with torch.no_grad():
            self.conv1.weight.copy_(w["w1"])
            self.conv2.weight.copy_(w["w2"])
        self.w3 = nn.Parameter(w["w3"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return h.flatten(1) @ self.w3


class FunctionalNet(ModuleNet):
    """The same net with functional ReLUs, one of each spelling."""

    def __init__(self, first: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.first = first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(self.conv1(x))
        h = self.conv2(h).relu()
        return h.flatten(1) @ self.w3


def oracle(x: torch.Tensor, rule: str) -> torch.Tensor:
    """The rule's gradient by a hand-written backward pass (transposed convolutions, explicit masks)."""
    w = _weights()
    z1 = F.conv2d(x, w["w1"])
    z2 = F.conv2d(z1.clamp(min=0), w["w2"])

    def through(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        keep = grad > 0
        if rule == "guided":
            keep = keep & (z > 0)
        return torch.where(keep, grad, torch.zeros_like(grad))

    g = w["w3"].view(1, 3, 4, 4).expand(x.shape[0], 3, 4, 4)
    g = F.conv_transpose2d(through(g, z2), w["w2"])
    return F.conv_transpose2d(through(g, z1), w["w1"])


FIRST_RELUS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "F.relu": F.relu,
    "F.relu(inplace)": lambda t: F.relu(t, inplace=True),
    "torch.relu": torch.relu,
    "torch.relu_": torch.relu_,
    "Tensor.relu_": lambda t: t.relu_(),
}


def _grad(model: nn.Module, x: torch.Tensor, rule: str | None) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    if rule is None:
        model(x).sum().backward()
    else:
        with relu_rule(model, rule):  # type: ignore[arg-type]
            model(x).sum().backward()
    assert x.grad is not None
    return x.grad


@pytest.mark.parametrize("rule", ["guided", "deconv"])
@pytest.mark.parametrize("net", ["module", *FIRST_RELUS])
def test_rule_matches_hand_backward(rule: str, net: str) -> None:
    model = ModuleNet() if net == "module" else FunctionalNet(FIRST_RELUS[net])
    x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    before = model_state(model)
    got = _grad(model, x, rule)
    torch.testing.assert_close(got, oracle(x, rule), rtol=1e-12, atol=1e-12)
    # the rule changes the gradient (the test would be vacuous otherwise) but not the forward pass
    assert not torch.allclose(got, _grad(model, x, None))
    with relu_rule(model, rule), torch.no_grad():  # type: ignore[arg-type]
        torch.testing.assert_close(model(x), ModuleNet()(x), rtol=0, atol=0)
    assert_same_state(before, model_state(model))


def test_relu6_mask_is_zero_to_six() -> None:
    x = torch.tensor([-1.0, 0.5, 3.0, 7.0], dtype=torch.float64, requires_grad=True)
    upstream = torch.tensor([1.0, -1.0, 2.0, 3.0], dtype=torch.float64)
    for rule, expected in (("guided", [0.0, 0.0, 2.0, 0.0]), ("deconv", [1.0, 0.0, 2.0, 3.0])):
        for act in (nn.ReLU6(inplace=True), F.relu6):
            x.grad = None
            with relu_rule(nn.Identity(), rule):  # type: ignore[arg-type]
                (act(x * 1) * upstream).sum().backward()
            assert x.grad is not None
            assert x.grad.tolist() == expected


def test_googlenet_functional_relus_get_the_rule() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before = model_state(model)
    plain = _grad(model, x, None)
    guided = _grad(model, x, "guided")
    deconv = _grad(model, x, "deconv")
    # every ReLU in GoogLeNet is a functional F.relu(inplace=True): module hooks would see none
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert not torch.allclose(guided, plain)
    assert not torch.allclose(deconv, plain)
    assert not torch.allclose(guided, deconv)
    assert_same_state(before, model_state(model))


def test_flags_restored_when_the_block_raises() -> None:
    model = ModuleNet()
    with pytest.raises(RuntimeError, match="boom"), relu_rule(model, "guided"):
        assert model.relu1.inplace is False
        raise RuntimeError("boom")
    assert model.relu1.inplace is True
    # the mode is gone: plain backward again
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(_grad(model, x, None), _grad(ModuleNet(), x, None))


def test_unknown_rule() -> None:
    with pytest.raises(VizError, match="guided, deconv"), relu_rule(nn.Identity(), "lrp"):  # type: ignore[arg-type]
        pass
