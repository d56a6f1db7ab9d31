"""Equivariance: circular stride-1 convolutions are exact; striding breaks it at odd shifts."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.features.equivariance import (
    EquivarianceConfig,
    measure_equivariance,
    parse_shifts,
    stage_layers,
)
from vizcnn.models.base import describe


def _convs(stride: int, padding_mode: str = "circular") -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode=padding_mode),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=stride, padding=1, padding_mode=padding_mode),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1, padding_mode=padding_mode),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _images(n: int = 3, size: int = 24) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_circular_stride_one_is_exactly_equivariant() -> None:
    net = _convs(1).train()
    before = model_state(net)
    config = EquivarianceConfig(shifts=(1, 2, 3, 5), mode="roll", border=0.0)
    result = measure_equivariance(
        describe(net, input_size=24), _images(), config, run=RunOptions(batch=2)
    )
    assert [row.layer for row in result.rows] == [*stage_layers(net), "output"]
    for row in result.rows:
        for shift, error in row.errors.items():
            assert error < 1e-6, (row.layer, shift, error)
    # the pooled vector and the output are compared unshifted: exact invariance
    assert result.rows[-1].stride is None and result.rows[2].stride == (1.0, 1.0)
    assert result.top1_agreement == {1: 1.0, 2: 1.0, 3: 1.0, 5: 1.0}
    assert_same_state(before, model_state(net))


def test_striding_breaks_equivariance_at_odd_shifts_only() -> None:
    config = EquivarianceConfig(shifts=(1, 2, 3, 4), mode="roll", border=0.0, direction="xy")
    result = measure_equivariance(describe(_convs(2), input_size=24), _images(), config)
    rows = {row.layer: row for row in result.rows}
    assert rows["2"].stride == (2.0, 2.0) and rows["4"].stride == (2.0, 2.0)
    for name in ("2", "3", "4", "5", "output"):
        assert rows[name].errors[2] < 1e-6 and rows[name].errors[4] < 1e-6, name
        assert rows[name].errors[1] > 1e-2 and rows[name].errors[3] > 1e-2, name
    assert rows["0"].mean() < 1e-6  # before the stride: every shift is fine
    assert rows["2"].mean(1) > 1e-2 and rows["2"].mean(0) < 1e-6


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).double().norm() / b.double().norm())


def test_crop_mode_matches_a_direct_computation() -> None:
    net = _convs(1, "zeros").eval()
    config = EquivarianceConfig(layers=("2",), shifts=(3,), mode="crop", border=0.25)
    images = _images(2, 24)  # margin 3: windows of 24 x 21
    result = measure_equivariance(
        describe(net, mean=[0, 0, 0], std=[1, 1, 1], input_size=24), images, config
    )
    with torch.no_grad():
        sub = net[:3]
        base, moved = sub(images[..., :21]), sub(images[..., 3:24])
    # unit u of the moved window is unit u + 3 of the base: compare the valid interior by hand
    width = 21
    keep = slice(int(0.25 * width), width - 3 - int(0.25 * width))
    rows = slice(int(0.25 * 24), 24 - int(0.25 * 24))
    expected = _relative_error(moved[..., rows, keep], base[..., rows, 3:][..., keep])
    assert math.isclose(result.rows[0].errors[3], expected, rel_tol=1e-9, abs_tol=1e-12)
    assert expected < 1e-6  # the interior of stride-1 convolutions is exactly equivariant
    table = result.markdown()
    assert "| 0 | 2 | 8x24x21 | 1 |" in table and "| 1 | output |" in table


def test_parse_shifts_and_config_errors() -> None:
    assert parse_shifts("1..4") == (1, 2, 3, 4) and parse_shifts("1,2,4,2") == (1, 2, 4)
    assert parse_shifts("8") == (8,) and parse_shifts("2-3,9") == (2, 3, 9)
    for bad in ("0..3", "x", "4..2", ""):
        with pytest.raises(VizError):
            parse_shifts(bad)
    with pytest.raises(VizError, match="border"):
        EquivarianceConfig(border=0.5)
    with pytest.raises(VizError, match="unknown layer"):
        measure_equivariance(
            _convs(1), _images(), EquivarianceConfig(layers=("nope",), mode="roll")
        )


def test_equivariance_command(tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "equivariance",
            "samples",
            "-m",
            "lenet5_digits",
            "--limit",
            "2",
            "--shifts",
            "1,2",
            "-q",
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "equivariance.json").read_text())
    assert data["provenance"]["seed"] == 0
    assert data["provenance"]["technique"] == "equivariance" and data["result"]["images"] == 2
    names = [row["layer"] for row in data["result"]["layers"]]
    assert names[0] == "features.0" and names[-1] == "output"
    conv1 = data["result"]["layers"][0]
    assert conv1["stride"] == [1.0, 1.0] and conv1["errors"]["1"] < 1e-5  # stride-1 interior
    assert "| output |" in (tmp_path / "equivariance.md").read_text()
    assert (tmp_path / "equivariance.png").is_file()


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.png"], "not found"),
        (["sample:camera", "-l", "features.99"], "unknown layer"),
        (["sample:camera", "--shifts", "0"], "shifts"),
        (["/nonexistent/folder"], "not found"),
    ],
)
def test_equivariance_one_line_errors(tmp_path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["equivariance", *args, "-m", "lenet5_digits", "-o", str(tmp_path)]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("shift", [0.0, 1.0, 0.5, 1.25, 2.5])
def test_sliding_equals_rolling_inside_the_map(shift: float) -> None:
    from vizcnn.features.equivariance import _fractional_roll, _slide

    fmap = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(5))
    rows = slice(1, 9 - math.ceil(shift) - 1)
    expected = _fractional_roll(fmap, shift, -2)[..., rows, :]
    torch.testing.assert_close(_slide(fmap, shift, -2, rows), expected)
    cols = slice(0, 11 - math.ceil(shift))
    torch.testing.assert_close(
        _slide(fmap, shift, -1, cols), _fractional_roll(fmap, shift, -1)[..., cols]
    )
