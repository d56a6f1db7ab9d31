"""ROAD's noisy linear imputation and the confidence metrics (`vizcnn.attribution.metrics`).

Oracles: the imputation against a dense solve (numpy.linalg) of the system written out pixel
by pixel from the paper's definition; average drop 0 for an all-ones map; increase in
confidence and average drop counted by hand on a toy classifier whose probabilities are a
closed form; ROAD's MoRF/LeRF against a toy model that reads one known pixel.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attribution_helpers import plain
from conftest import assert_same_state, model_state
from vizcnn.attribution.metrics import confidence, explanation_maps, impute, road
from vizcnn.core.errors import VizError


def _dense_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The paper's system by loops: each removed pixel = the weighted mean of its in-image
    neighbours (1/6 direct, 1/12 diagonal), removed neighbours unknown; solved densely."""
    channels, h, w = image.shape
    unknown = [(y, x) for y in range(h) for x in range(w) if removed[y, x]]
    number = {p: k for k, p in enumerate(unknown)}
    a = np.zeros((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), channels))
    for k, (y, x) in enumerate(unknown):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dy, dx) == (0, 0) or not (0 <= y + dy < h and 0 <= x + dx < w):
                    continue
                weight = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
                a[k, k] += weight
                if removed[y + dy, x + dx]:
                    a[k, number[(y + dy, x + dx)]] -= weight
                else:
                    b[k] += weight * image[:, y + dy, x + dx]
    solved = np.linalg.solve(a, b)
    out = image.copy()
    for k, (y, x) in enumerate(unknown):
        out[:, y, x] = solved[k]
    return out


def test_imputation_equals_a_dense_solve_of_the_same_system() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 7, 6, generator=g, dtype=torch.float64)
    removed = torch.rand(7, 6, generator=g) < 0.6
    removed[0, 0] = removed[6, 5] = True  # corners: the border weights
    out = impute(image, removed, noise=0.0)
    expected = _dense_imputation(image.numpy(), removed.numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    # kept pixels untouched; a removed pixel between known ones is their weighted mean
    assert torch.equal(out[:, ~removed], image[:, ~removed])


def test_imputation_noise_is_seeded_and_only_on_removed_pixels() -> None:
    image = torch.rand(3, 8, 8, dtype=torch.float64)
    removed = torch.zeros(8, 8, dtype=torch.bool)
    removed[2:5, 3:6] = True
    clean = impute(image, removed, noise=0.0)
    noisy = impute(image, removed, noise=0.05, seed=3)
    assert torch.equal(noisy, impute(image, removed, noise=0.05, seed=3))
    assert torch.equal(noisy[:, ~removed], image[:, ~removed])
    spread = (noisy - clean)[:, removed]
    assert 0.02 < float(spread.std()) < 0.09
    with pytest.raises(VizError, match="every pixel"):
        impute(image, torch.ones(8, 8, dtype=torch.bool))


class MeanLogit(nn.Module):
    """Two classes: logits (-s * mean(x), 0), so p0 = sigmoid(-s * mean(x)), p1 = 1 - p0."""

    def __init__(self, scale: float = 4.0) -> None:
        super().__init__()
        self.scale = scale
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))  # a device to sit on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-self.scale * m, torch.zeros_like(m)], dim=1) + self.dummy


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_average_drop_is_zero_for_an_all_ones_map() -> None:
    loaded = plain(MeanLogit(), labels=None)
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    scores = confidence(loaded, x, {"ones": torch.ones_like(x)}, torch.tensor([0, 1, 1]))
    assert scores["ones"].average_drop == 0.0
    assert scores["ones"].increase_in_confidence == 0.0  # O == Y: no increase either
    torch.testing.assert_close(explanation_maps(x, 3 * torch.ones_like(x)), x)


def test_confidence_counted_by_hand_on_a_toy_classifier() -> None:
    net = MeanLogit(scale=4.0)
    loaded = plain(net, labels=None)
    x = torch.full((3, 3, 8, 8), 0.5, dtype=torch.float64)
    half = torch.ones(3, 3, 8, 8, dtype=torch.float64)
    half[:, :, :, :4] = 0.5  # the left half of each image at half weight
    maps = {"half": half}
    targets = torch.tensor([0, 1, 1])
    scores = confidence(loaded, x, maps, targets)["half"]
    # image mean 0.5 -> 0.375 under the map: p0 = sigmoid(-4 m) rises, p1 falls
    y0, o0 = _sigmoid(-2.0), _sigmoid(-1.5)
    y1, o1 = 1 - y0, 1 - o0
    assert o0 > y0 and o1 < y1
    assert scores.increase_in_confidence == pytest.approx(100 / 3)  # image 0 only
    drop = (0 + (y1 - o1) / y1 + (y1 - o1) / y1) / 3
    assert scores.average_drop == pytest.approx(100 * drop, rel=1e-6)


class Pixel(nn.Module):
    """Two classes whose logits read pixel (0, 2, 2) alone: (10 * x, 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, 0, 2, 2]
        return torch.stack([10 * v, torch.zeros_like(v)], dim=1) + self.dummy


def test_road_morf_removes_the_read_pixel_first_and_lerf_last() -> None:
    net = Pixel()
    loaded = plain(net, labels=None)
    x = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    x[0, 0, 2, 2] = 1.0  # the one bright pixel, read by the model; its neighbours are 0
    good = torch.zeros_like(x)
    good[0, :, 2, 2] = 1.0  # a map that points at it
    before = model_state(net)
    curves = road(loaded, x, {"good": good}, torch.tensor([0]), shares=(0.1, 0.5), noise=0.0)
    assert_same_state(before, model_state(net))
    kept = _sigmoid(10.0)  # p0 with the pixel at 1
    gone = 0.5  # imputed from all-zero neighbours: 0, logits equal
    # MoRF removes the pixel at once; LeRF keeps it until the very end
    torch.testing.assert_close(curves["good"].morf, torch.tensor([[gone, gone]]).double())
    torch.testing.assert_close(curves["good"].lerf, torch.tensor([[kept, kept]]).double())
    assert curves["good"].shares == (0.1, 0.5)


def test_bad_metric_input_is_one_line() -> None:
    loaded = plain(Pixel(), labels=None)
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(VizError, match=r"\(0, 1\)"):
        road(loaded, x, {"m": x}, torch.tensor([0]), shares=(0.5, 1.0))
    with pytest.raises(VizError, match="expected"):
        confidence(loaded, x, {"m": x[:, :, :4]}, torch.tensor([0]))


def test_cli_deletion_table_equals_the_library(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from vizcnn.attribution import attribute
    from vizcnn.attribution.metrics import TABLE_COLUMNS, faithfulness
    from vizcnn.cli.main import app
    from vizcnn.data.datasets import preprocess
    from vizcnn.data.samples import sample_image
    from vizcnn.models.loading import load_model

    args = ["attribute", "sample:coffee", "-m", "lenet5_digits", "--method", "saliency",
            "--method", "gradcam", "--deletion", "--deletion-steps", "4", "--target", "3",
            "-q", "-o", str(tmp_path)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for _, title, _ in TABLE_COLUMNS:
        assert title in result.output
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    table = manifest["deletion"]["areas"]
    loaded = load_model("lenet5_digits")
    image = preprocess(sample_image("coffee", 1), loaded.input_size)[None]
    maps = attribute(loaded, image, ["saliency", "gradcam"], targets=3)
    expected = faithfulness(loaded, image, maps.maps, maps.targets, steps=4, seed=0)
    for method, row in expected.items():
        for key, value in row.items():
            assert table[method][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (method, key)
