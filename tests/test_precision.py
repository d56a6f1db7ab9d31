"""Mixed precision: bf16 autocast where it is native, float32 with a note elsewhere."""

from __future__ import annotations

import pytest
import torch

from vizcnn.core.precision import choose_precision


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
