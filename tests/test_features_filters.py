"""Filter grids: tiles equal the hand-set weights after the stated min-max normalization."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.features.filters import FilterConfig, filter_grid


def _net(in_channels: int, out_channels: int = 4, k: int = 3) -> nn.Sequential:
    net = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, k), nn.ReLU(), nn.Conv2d(out_channels, 2, 1)
    )
    with torch.no_grad():
        values = torch.arange(out_channels * in_channels * k * k, dtype=torch.float32)
        net[0].weight.copy_((values - 20.0).view(out_channels, in_channels, k, k) / 7.0)
        net[0].weight[2].mul_(3.0)  # the largest norm: first when sorted by norm
    return net


def test_global_normalization_is_min_max_over_all_filters() -> None:
    net = _net(3)
    grid = filter_grid(net, FilterConfig(normalize="global", scale=2))
    w = net[0].weight.detach().double()
    expected = (w - w.min()) / (w.max() - w.min())
    torch.testing.assert_close(grid.tiles.double(), expected, rtol=0, atol=1e-6)
    assert grid.mode == "rgb" and grid.weight_shape == (4, 3, 3, 3)
    # each tile appears in the grid scaled by 2 (nearest neighbour) after the padding
    torch.testing.assert_close(
        grid.grid[:, 1:7, 1:7], grid.tiles[0].repeat_interleave(2, 1).repeat_interleave(2, 2)
    )


def test_per_filter_normalization_and_sort_by_norm() -> None:
    net = _net(3)
    grid = filter_grid(net, FilterConfig(normalize="per-filter", sort="norm"))
    w = net[0].weight.detach().double()
    norms = w.flatten(1).norm(dim=1)
    order = sorted(range(4), key=lambda i: -float(norms[i]))
    assert grid.order == order and order[0] == 2
    for position, index in enumerate(order):
        f = w[index]
        torch.testing.assert_close(
            grid.tiles[position].double(), (f - f.min()) / (f.max() - f.min()), rtol=0, atol=1e-6
        )
        assert grid.tiles[position].min() == 0 and grid.tiles[position].max() == 1


def test_non_rgb_inputs_split_or_mean() -> None:
    net = _net(2, out_channels=3)
    split = filter_grid(net)  # auto = split for 2 input channels
    w = net[0].weight.detach().double()
    assert split.mode == "split" and split.tiles.shape == (6, 1, 3, 3) and split.columns == 2
    g = (w - w.min()) / (w.max() - w.min())
    torch.testing.assert_close(split.tiles.double(), g.reshape(6, 1, 3, 3), rtol=0, atol=1e-6)
    mean = filter_grid(net, FilterConfig(inputs="mean"))
    m = w.mean(dim=1, keepdim=True)
    torch.testing.assert_close(
        mean.tiles.double(), (m - m.min()) / (m.max() - m.min()), rtol=0, atol=1e-6
    )
    with pytest.raises(VizError, match="not 3"):
        filter_grid(net, FilterConfig(inputs="rgb"))


def test_named_layer_and_wrong_layer() -> None:
    net = _net(3)
    grid = filter_grid(net, FilterConfig(layer="2"))
    assert grid.layer == "2" and grid.weight_shape == (2, 4, 1, 1)
    with pytest.raises(VizError, match="not a Conv2d"):
        filter_grid(net, FilterConfig(layer="1"))
    with pytest.raises(VizError, match="unknown layer"):
        filter_grid(net, FilterConfig(layer="conv9"))


def test_alexnet_first_layer_and_constant_filter() -> None:
    alexnet = torchvision.models.alexnet(weights=None)
    before = model_state(alexnet)
    grid = filter_grid(alexnet, FilterConfig(scale=1))
    assert grid.tiles.shape == (64, 3, 11, 11) and grid.layer == "features.0"
    assert_same_state(before, model_state(alexnet))
    flat = _net(3)
    with torch.no_grad():
        flat[0].weight.fill_(0.3)
    assert torch.all(filter_grid(flat, FilterConfig(normalize="per-filter")).tiles == 0.5)


def test_filters_command_writes_png_and_json_with_provenance(tmp_path) -> None:
    out = tmp_path / "f.png"
    result = CliRunner().invoke(
        app, ["filters", "-m", "lenet5_digits", "--sort", "norm", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.with_suffix(".json").read_text())
    block = data["provenance"]
    assert block["technique"] == "filters" and block["model"] == "lenet5_digits"
    assert block["weights_digest"] and block["options"]["sort"] == "norm"
    assert data["result"]["weight_shape"] == [6, 1, 5, 5] and data["result"]["mode"] == "mean"
    assert out.stat().st_size > 1000


@pytest.mark.parametrize(
    "args,message",
    [
        (["-l", "features.9"], "unknown layer"),
        (["-l", "features.1"], "not a Conv2d"),
        (["-o", "out.jpg"], ".png"),
    ],
)
def test_filters_command_one_line_errors(tmp_path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["filters", "-m", "lenet5_digits", *args])
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
