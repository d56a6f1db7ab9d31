"""Objectives against brute-force float64 oracles, composition, shorthand, stacking, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from _render_models import tiny_loaded
from torch.testing import assert_close

from vizcnn.core.errors import VizError
from vizcnn.optvis import objectives as O


def make_ctx(batch: int = 3, groups: list[int] | None = None) -> O.ObjectiveContext:
    gen = torch.Generator().manual_seed(0)
    acts = {
        "conv": torch.randn(batch, 4, 5, 6, generator=gen, dtype=torch.float64),
        O.LOGITS: torch.randn(batch, 3, generator=gen, dtype=torch.float64),
    }
    images = torch.rand(batch, 3, 7, 8, generator=gen, dtype=torch.float64)
    ids = torch.tensor(groups if groups is not None else list(range(batch)))
    return O.ObjectiveContext(acts, images, ids)


def test_channel_neuron_class_layer_match_loops() -> None:
    ctx = make_ctx()
    acts = ctx.acts["conv"].numpy()
    for b in range(3):
        mean = sum(acts[b, 2, y, x] for y in range(5) for x in range(6)) / 30
        assert_close(O.channel("conv", 2)(ctx)[b].item(), float(mean))
        # centre of a 5 x 6 map is (2, 3)
        assert_close(O.neuron("conv", 1)(ctx)[b].item(), float(acts[b, 1, 2, 3]))
        assert_close(O.neuron("conv", 1, y=4, x=0)(ctx)[b].item(), float(acts[b, 1, 4, 0]))
        assert_close(O.class_logit(2)(ctx)[b], ctx.acts[O.LOGITS][b, 2])
        squares = sum(acts[b, c, y, x] ** 2 for c in range(4) for y in range(5) for x in range(6))
        assert_close(O.layer_l2("conv")(ctx)[b].item(), float(squares / 120))


def test_direction_is_mean_cosine() -> None:
    ctx = make_ctx()
    vector = [0.5, -1.0, 2.0, 0.0]
    got = O.direction("conv", vector)(ctx)
    acts = ctx.acts["conv"].numpy()
    v = np.array(vector)
    for b in range(3):
        cosines = [
            float(acts[b, :, y, x] @ v / (np.linalg.norm(acts[b, :, y, x]) * np.linalg.norm(v)))
            for y in range(5)
            for x in range(6)
        ]
        assert got[b].item() == pytest.approx(sum(cosines) / 30, rel=1e-5)


def test_diversity_brute_force_with_groups() -> None:
    ctx = make_ctx(batch=4, groups=[0, 0, 0, 1])
    got = O.diversity("conv")(ctx)
    acts = ctx.acts["conv"].numpy()
    grams = []
    for b in range(4):
        flat = acts[b].reshape(4, -1)
        gram = flat @ flat.T
        grams.append(gram / np.sqrt((gram**2).sum()))
    for i in range(4):
        same = [j for j in range(4) if j != i and ctx.groups[j] == ctx.groups[i]]
        expected = sum(float((grams[i] * grams[j]).sum()) for j in same)
        assert got[i].item() == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert got[3].item() == 0.0  # alone in its group


def test_image_penalties_match_loops() -> None:
    ctx = make_ctx(batch=2)
    img = ctx.images.numpy()
    for b in range(2):
        c, h, w = img[b].shape
        dy = sum(
            abs(img[b, k, y + 1, x] - img[b, k, y, x])
            for k in range(c)
            for y in range(h - 1)
            for x in range(w)
        )
        dx = sum(
            abs(img[b, k, y, x + 1] - img[b, k, y, x])
            for k in range(c)
            for y in range(h)
            for x in range(w - 1)
        )
        expected = dy / (c * (h - 1) * w) + dx / (c * h * (w - 1))
        assert O.total_variation()(ctx)[b].item() == pytest.approx(expected)
        assert O.l1()(ctx)[b].item() == pytest.approx(float(np.abs(img[b] - 0.5).mean()))
        assert O.l2(0.2)(ctx)[b].item() == pytest.approx(float(((img[b] - 0.2) ** 2).mean()))


def test_composition_arithmetic() -> None:
    ctx = make_ctx()
    a, b = O.channel("conv", 0), O.neuron("conv", 3)
    va, vb = a(ctx), b(ctx)
    assert_close((a + b)(ctx), va + vb)
    assert_close((a - 2 * b)(ctx), va - 2 * vb)
    assert_close((a * 3 - b / 4)(ctx), 3 * va - vb / 4)
    assert_close((-a)(ctx), -va)
    assert_close((1.5 - a)(ctx), 1.5 - va)
    assert_close((a + 2)(ctx), va + 2)
    assert_close(sum([a, b, a])(ctx), 2 * va + vb)  # type: ignore[operator]
    assert set((a + O.class_logit(1)).layers) == {"conv", O.LOGITS}
    with pytest.raises(TypeError):
        _ = a * b  # type: ignore[operator]
    with pytest.raises(VizError):
        _ = a / 0


def test_string_shorthand() -> None:
    ctx = make_ctx()
    assert_close(O.as_objective("conv:2")(ctx), O.channel("conv", 2)(ctx))
    assert O.as_objective("_blocks.9#1:17").layers == ("_blocks.9#1",)
    assert_close(O.as_objective("conv:2@3")(ctx), 3 * O.channel("conv", 2)(ctx))
    for bad, message in [
        ("conv", "names no channel"),
        ("conv:x", "bad channels"),
        (":3", "no layer name"),
        ("conv:0-2", "selects several channels"),
    ]:
        with pytest.raises(VizError, match=message):
            O.as_objective(bad)


def test_stack_scores_image_i_by_unit_i() -> None:
    ctx = make_ctx(batch=5)
    units: list[O.Objective | str] = [
        "conv:1",
        O.neuron("conv", 2),
        O.class_logit(0),
        O.layer_l2("conv"),  # no gather: evaluated on the batch, row taken
        O.channel("conv", 3) - O.total_variation(),
    ]
    got = O.stack(units)(ctx)
    for i, unit in enumerate(units):
        assert got[i].item() == pytest.approx(O.as_objective(unit)(ctx)[i].item(), rel=1e-6)


def test_stack_gradients_only_reach_own_image() -> None:
    acts = torch.randn(3, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    ctx = O.ObjectiveContext({"conv": acts}, torch.zeros(3, 1, 2, 2), torch.arange(3))
    O.stack(["conv:0", "conv:1", "conv:2"])(ctx).sum().backward()
    assert acts.grad is not None
    for i, j in itertools.product(range(3), range(4)):
        expected = 0.25 if i == j else 0.0
        assert torch.all(acts.grad[i, j] == expected)


def test_errors_name_valid_ranges() -> None:
    ctx = make_ctx()
    with pytest.raises(VizError, match=r"channel 4 out of range .*valid: 0\.\.3"):
        O.channel("conv", 4)(ctx)
    with pytest.raises(VizError, match=r"valid: 0\.\.3"):
        O.stack(["conv:0", "conv:9", "conv:1"])(ctx)
    with pytest.raises(VizError, match=r"y 0\.\.4"):
        O.neuron("conv", 0, y=5, x=0)(ctx)
    with pytest.raises(VizError, match="2 entries but .* 4 channels"):
        O.direction("conv", [1.0, 2.0])(ctx)
    with pytest.raises(VizError, match="not captured"):
        O.channel("other", 0)(ctx)


def test_class_names_bind_case_insensitively() -> None:
    loaded = tiny_loaded()
    ctx = make_ctx()
    bound = O.class_logit("ESPRESSO").bind(loaded)
    assert_close(bound(ctx), ctx.acts[O.LOGITS][:, 2])
    composite = (O.class_logit("dog") - O.class_logit("Cat")).bind(loaded)
    assert_close(composite(ctx), ctx.acts[O.LOGITS][:, 1] - ctx.acts[O.LOGITS][:, 0])
    with pytest.raises(VizError, match="espresso"):
        O.class_logit("espreso").bind(loaded)
    with pytest.raises(VizError, match="bind"):
        O.class_logit("cat")(ctx)


def test_center_of_odd_and_even_maps() -> None:
    for height, width in [(1, 1), (3, 4), (7, 7)]:
        acts = torch.arange(height * width, dtype=torch.float64).view(1, 1, height, width)
        ctx = O.ObjectiveContext({"l": acts}, torch.zeros(1, 1, 2, 2), torch.zeros(1))
        expected = (height // 2) * width + width // 2
        assert O.neuron("l", 0)(ctx).item() == expected
        assert math.isclose(O.stack([O.neuron("l", 0)])(ctx).item(), expected)
