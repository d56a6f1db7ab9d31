"""Lesion blocks of networks whose stages are not a Sequential (timm's RegNet `s1.b1`, ...):
found by running the network once and following which child feeds which."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vizcnn.ablation.data import UnlabelledData
from vizcnn.ablation.lesion import chained_blocks, lesion_study
from vizcnn.data.datasets import TensorImages
from vizcnn.models.base import describe


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class _Stage(nn.Module):
    """Calls its blocks one after another, but is no Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.b1, self.b2 = _Residual(), _Residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b2(self.b1(x))


class _Dense(nn.Module):
    """Concatenates what its layers make: no chain, nothing to remove one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = _Residual(), _Residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.l1(x), self.l2(x)], 1)[:, :4]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stage = _Stage()
        self.dense = _Dense()
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dense(self.stage(self.stem(x))).mean((2, 3)))


def test_a_stage_that_calls_its_blocks_in_turn_gives_blocks() -> None:
    torch.manual_seed(0)
    loaded = describe(_Net(), input_size=16)
    assert [b.name for b in chained_blocks(loaded)] == ["stage.b1", "stage.b2"]
    images = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    result = lesion_study(loaded, UnlabelledData(TensorImages(images)))
    assert [lesion.block for lesion in result.lesions] == ["stage.b1", "stage.b2"]
    # the oracle: removing stage.b2 by hand (identity) predicts what the lesion measured
    with torch.no_grad():
        intact = loaded.module(loaded.normalize(images)).argmax(1)
        loaded.module.stage.b2 = nn.Identity()
        lesioned = loaded.module(loaded.normalize(images)).argmax(1)
    agreement = (intact == lesioned).float().mean().item()
    assert result.lesions[1].scores is not None
    assert result.lesions[1].scores.agreement == pytest.approx(agreement)


def test_timm_regnet_stages_give_blocks() -> None:
    timm = pytest.importorskip("timm")
    loaded = describe(timm.create_model("regnety_002", pretrained=False), input_size=64)
    names = [b.name for b in chained_blocks(loaded)]
    # s1 and s2 hold one block each (depths 1, 1, 4, 7): a chain needs two
    assert names == [*(f"s3.b{i}" for i in range(1, 5)), *(f"s4.b{i}" for i in range(1, 8))]
    dense = describe(timm.create_model("densenet121", pretrained=False), input_size=64)
    assert all(".denselayer" not in b.name for b in chained_blocks(dense))
