"""Deletion/insertion curves against brute force; the sanity check flags a method ignoring weights."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from attribution_helpers import SmallNet, images, plain
from conftest import assert_same_state, model_state
from vizcnn.attribution import attribute
from vizcnn.attribution.deletion import deletion_curves
from vizcnn.attribution.sanity import SanityResult, cascade_units, sanity_check
from vizcnn.models.base import LoadedModel


def test_deletion_and_insertion_equal_a_brute_force_recomputation() -> None:
    net = SmallNet()
    x = images(2)
    g = torch.Generator().manual_seed(5)
    maps = {"random": torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)}
    targets = torch.tensor([1, 3])
    curves = deletion_curves(plain(net), x, maps, targets, steps=4, baseline=0.2, batch=3)
    curve = curves["random"]
    for b in range(2):
        score = maps["random"][b].abs().sum(0)
        order = sorted(range(64), key=lambda i: -float(score.view(-1)[i]))
        for step, count in enumerate((0, 16, 32, 48, 64)):
            removed = x[b].clone()
            inserted = torch.full_like(x[b], 0.2)
            for pixel in order[:count]:
                r, c = divmod(pixel, 8)
                removed[:, r, c] = 0.2
                inserted[:, r, c] = x[b, :, r, c]
            with torch.no_grad():
                p_del = F.softmax(net(removed[None]), 1)[0, targets[b]]
                p_ins = F.softmax(net(inserted[None]), 1)[0, targets[b]]
            torch.testing.assert_close(curve.deletion[b, step], p_del)
            torch.testing.assert_close(curve.insertion[b, step], p_ins)
    areas = curve.deletion_area
    by_hand = (curve.deletion[:, :-1] + curve.deletion[:, 1:]).sum(1) / 2 / 4
    torch.testing.assert_close(areas, by_hand)


def _edges(images: torch.Tensor) -> torch.Tensor:
    """A fake "attribution method": the image's Sobel edge magnitude; it never looks at the model."""
    gray = images.mean(1, keepdim=True)
    kx = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=images.dtype).view(1, 1, 3, 3)
    gx = F.conv2d(gray, kx, padding=1)
    gy = F.conv2d(gray, kx.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt().expand_as(images)


def test_sanity_check_flags_a_method_that_ignores_the_weights() -> None:
    net = SmallNet().train()
    before = model_state(net)
    loaded = plain(net, size=16)
    x = images(2, size=16)
    targets = torch.tensor([0, 2])

    def maps_of(
        model: LoadedModel, xs: torch.Tensor, ts: torch.Tensor
    ) -> Mapping[str, torch.Tensor]:
        real = attribute(model, xs, ["saliency", "gradcam"], targets=ts)
        return {**real.maps, "edges": _edges(xs), "blank": torch.zeros_like(xs)}

    result = sanity_check(loaded, x, targets, maps_of, stages=4, seed=0)
    assert result.flagged == ["edges"]
    # the verdicts: edges never change (Spearman 1 at every stage), saliency's mean is below
    # the threshold, a blank map has no correlation to measure
    verdicts = {"saliency": "passed", "edges": "failed", "blank": "undecided"}
    assert {m: result.verdicts()[m] for m in verdicts} == verdicts
    assert SanityResult.from_dict(result.to_dict()).verdicts() == result.verdicts()
    assert result.to_dict()["verdicts"] == result.verdicts()
    assert result.stages == ["head", "conv2", "conv1"]  # 4 stages asked, 3 modules to randomize
    assert all(abs(v - 1.0) < 1e-9 for v in result.spearman["edges"])
    assert sum(result.spearman["saliency"]) / 3 < 0.5
    assert_same_state(before, model_state(net))
    assert "FAILED" in result.table() and "below 0.5" in result.table()


def test_cascade_starts_at_the_top() -> None:
    assert cascade_units(SmallNet()) == ["head", "conv2", "conv1"]
