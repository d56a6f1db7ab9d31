"""Shared fixtures: tiny networks with hand-set weights whose activations are known exactly."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv(1->2, 3x3, all ones) -> ReLU(inplace) -> maxpool 2 -> conv(2->1, 3x3 ones) -> linear.

    With a 10x10 input of ones, conv1 gives 9 in the interior (no padding), so every later value is
    computable by hand.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(2, 1, 3)
        self.head = nn.Linear(4, 3)
        assert self.conv1.bias is not None and self.conv2.bias is not None
        assert self.head.bias is not None
        with torch.no_grad():
            self.conv1.weight.fill_(1.0)
            self.conv1.bias.copy_(
                torch.tensor([0.0, -10.0])
            )  # channel 1: 9 - 10 < 0, ReLU kills it
            self.conv2.weight.fill_(1.0)
            self.conv2.bias.zero_()
            self.head.weight.copy_(torch.arange(12.0).view(3, 4))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.relu(self.conv2(x))  # the same ReLU module called twice
        return self.head(x.flatten(1))


@pytest.fixture(autouse=True, scope="session")
def float32_unless_a_test_forces_bf16() -> Iterator[None]:
    """`amp="auto"` (render's and dream's default) runs float32 in tests on every machine.

    Auto means bfloat16 where the hardware has it natively; without this, oracle tests would run
    in bf16 on CI machines with AVX512-BF16/AMX or a recent GPU and in float32 elsewhere. Tests of
    the bf16 path set the capability flag themselves (their monkeypatch runs after this one).
    Session-wide, so module- and session-scoped fixtures (a report site built once) see it too.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: False)
        patch.setattr("vizcnn.core.precision.cuda_bf16_supported", lambda: False)
        yield


@pytest.fixture
def tiny() -> TinyNet:
    return TinyNet().eval()


def model_state(model: nn.Module) -> dict[str, object]:
    """Everything a technique could leave changed on a model."""
    return {
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
        "hooks": [
            (
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})),
            )
            for m in model.modules()
        ],
        "params": [p.detach().clone() for p in model.parameters()],
        "types": [type(m).__name__ for m in model.modules()],
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    for key in ("training", "requires_grad", "inplace", "hooks", "types"):
        assert before[key] == after[key], key
    for a, b in zip(before["params"], after["params"], strict=True):  # type: ignore[call-overload]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.fixture(scope="session")
def lite0() -> Any:  # the real default model, loaded once per test session
    from vizcnn.models.loading import load_model

    return load_model("efficientnet_lite0")
