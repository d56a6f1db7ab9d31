"""Feature maps of a hand-weighted net equal its analytic activations, strongest channel first."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.features.featuremaps import FeatureMapConfig, feature_maps, top_channels
from vizcnn.io.imaging import read_png_metadata
from vizcnn.io.resume import stored_provenance
from vizcnn.models.base import describe

WEIGHTS = (1.0, 2.0, -1.0, 0.5)
BIASES = (0.0, -0.5, 0.25, 0.1)


def _net() -> nn.Sequential:
    """1x1 conv, one input channel: channel c = relu(w_c * x + b_c), exactly."""
    net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(inplace=True), nn.AvgPool2d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(WEIGHTS).view(4, 1, 1, 1))
        net[0].bias.copy_(torch.tensor(BIASES))
    return net


def test_maps_equal_analytic_activations_ranked_by_mean() -> None:
    net = _net().train()
    before = model_state(net)
    loaded = describe(net, mean=[0.0], std=[1.0], input_size=8)
    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
    shown, (relu, pooled) = feature_maps(loaded, image, FeatureMapConfig(layers=("1", "2"), top=3))
    torch.testing.assert_close(shown, image)
    analytic = torch.stack(
        [torch.relu(w * image[0] + b) for w, b in zip(WEIGHTS, BIASES, strict=True)]
    )
    means = analytic.double().mean(dim=(1, 2))
    order = sorted(range(4), key=lambda c: -float(means[c]))[:3]
    assert relu.channels == order and relu.shape == (4, 8, 8)
    torch.testing.assert_close(relu.maps, analytic[order])
    torch.testing.assert_close(torch.tensor(relu.means, dtype=torch.float64), means[order])
    expected_pool = nn.functional.avg_pool2d(analytic, 2)
    torch.testing.assert_close(pooled.maps, expected_pool[pooled.channels])
    assert_same_state(before, model_state(net))  # train mode and inplace flag kept


def test_top_channels_ties_and_vectors() -> None:
    channels, means = top_channels(torch.tensor([[[1.0]], [[3.0]], [[3.0]], [[0.0]]]), 3)
    assert channels == [1, 2, 0] and means == [3.0, 3.0, 1.0]
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(2 * 64, 3))
    _, (logits,) = feature_maps(
        describe(net, input_size=8), torch.rand(1, 8, 8), FeatureMapConfig(layers=("2",))
    )
    assert logits.shape == (3, 1, 1) and len(logits.channels) == 3


def test_bad_config_and_layer() -> None:
    assert FeatureMapConfig().layers == ()  # the model's report layers (stages)
    with pytest.raises(VizError, match="top"):
        FeatureMapConfig(layers=("1",), top=0)
    loaded = describe(_net(), mean=[0.0], std=[1.0], input_size=8)
    with pytest.raises(VizError, match="unknown layer"):
        feature_maps(loaded, torch.rand(1, 8, 8), FeatureMapConfig(layers=("relu",)))


def test_featuremaps_command(tmp_path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "featuremaps",
            "sample:camera",
            "-m",
            "lenet5_digits",
            "-l",
            "features.1",
            "-l",
            "features.4",
            "--top",
            "4",
            "--overlay",
            "-q",
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "featuremaps.json").read_text())
    block = data["provenance"]
    assert block["technique"] == "featuremaps" and block["data"] == "sample:camera"
    assert [r["layer"] for r in data["result"]] == ["features.1", "features.4"]
    first = data["result"][0]
    assert first["shape"] == [6, 28, 28] and len(first["channels"]) == 4
    assert first["means"] == sorted(first["means"], reverse=True)
    chunks = read_png_metadata(tmp_path / first["file"])
    stored = stored_provenance(tmp_path / first["file"])
    assert stored["technique"] == "featuremaps" and chunks["layer"] == "features.1"
    assert stored["weights_digest"] == block["weights_digest"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.png", "-l", "features.1"], "not found"),
        (["sample:camera", "-l", "features.99"], "unknown layer"),
        (["sample:camera", "-l", "features.1", "--top", "0"], "top"),
    ],
)
def test_featuremaps_one_line_errors(tmp_path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(
        app, ["featuremaps", *args, "-m", "lenet5_digits", "-o", str(tmp_path)]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
