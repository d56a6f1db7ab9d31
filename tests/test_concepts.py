"""Concept discovery (`vizcnn.concepts`): the torch NMF against scikit-learn's, NNLS against
scipy's, the removal oracle on a network whose layer is an exact k-concept product, the
reservoir's cap, class mode, and the one-line refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from scipy.optimize import nnls as scipy_nnls
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.concepts import (
    concept_coefficients,
    concept_heatmaps,
    concept_importance,
    concept_patches,
    concept_renders,
    find_concepts,
    logits_without_concepts,
    nmf,
    nnls,
    nonnegative_layers,
)
from vizcnn.concepts.discovery import Concepts
from vizcnn.core.errors import VizError
from vizcnn.hooks import capture, replace_output
from vizcnn.models.base import describe
from vizcnn.optvis.config import RenderConfig

K, C, CLASSES = 3, 6, 4


def planted(n: int, k: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse non-negative U (n, k) and W (k, C): A = U W has exactly k concepts."""
    g = torch.Generator().manual_seed(seed)
    U = torch.rand(n, k, generator=g) * (torch.rand(n, k, generator=g) < 0.4)
    W = torch.rand(k, channels, generator=g) * (torch.rand(k, channels, generator=g) < 0.5)
    W[torch.arange(k), torch.arange(k)] = 1.0  # no empty or duplicate direction
    return U, W


def matched_cosines(found: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Cosines of the Hungarian (best one-to-one) matching of two sets of directions."""
    a = found / np.linalg.norm(found, axis=1, keepdims=True)
    b = wanted / np.linalg.norm(wanted, axis=1, keepdims=True)
    cos = a @ b.T
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


def sklearn_nmf(A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    model = NMF(k, init="nndsvda", solver="cd", max_iter=2000, tol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # it is as good as it gets
        U = model.fit_transform(A)
    return U, model.components_


def test_nmf_matches_sklearn_reconstruction_error() -> None:
    g = torch.Generator().manual_seed(1)
    A = torch.rand(1500, 40, generator=g) ** 3  # no low-rank structure: error well above 0
    ours = nmf(A, 6)
    U, W = sklearn_nmf(A.double().numpy(), 6)
    theirs = np.linalg.norm(A.double().numpy() - U @ W) / np.linalg.norm(A.double().numpy())
    assert ours.error == pytest.approx(theirs, rel=0.03)
    assert ours.error == pytest.approx(
        float(torch.linalg.norm(A - ours.U @ ours.W) / torch.linalg.norm(A)), rel=1e-4
    )
    assert bool((ours.U >= 0).all()) and bool((ours.W >= 0).all())
    torch.testing.assert_close(torch.linalg.norm(ours.W, dim=1), torch.ones(6))


def test_nmf_finds_the_planted_concepts_as_sklearn_does() -> None:
    U0, W0 = planted(2000, 5, 30, seed=2)
    A = U0 @ W0
    ours = nmf(A, 5)
    _, theirs = sklearn_nmf(A.double().numpy(), 5)
    assert ours.error < 0.02
    assert matched_cosines(ours.W.numpy(), W0.numpy()).min() > 0.95
    assert matched_cosines(ours.W.numpy(), theirs).min() > 0.95


def test_nmf_random_start_is_seeded() -> None:
    U0, W0 = planted(300, 3, 12, seed=3)
    first = nmf(U0 @ W0, 3, init="random", seed=7)
    again = nmf(U0 @ W0, 3, init="random", seed=7)
    torch.testing.assert_close(first.W, again.W)


def test_nnls_matches_scipy() -> None:
    g = torch.Generator().manual_seed(4)
    W = torch.rand(4, 12, generator=g, dtype=torch.float64)
    A = torch.randn(25, 12, generator=g, dtype=torch.float64)  # any sign: many zeros
    ours = nnls(A, W)
    wanted = np.stack([scipy_nnls(W.numpy().T, row)[0] for row in A.numpy()])
    # coordinate descent stops at a relative step of 1e-7: close to the exact active-set answer
    np.testing.assert_allclose(ours.numpy(), wanted, atol=2e-5 * wanted.max())
    assert (wanted == 0).any()  # the constraint is active somewhere


class ConceptNet(nn.Module):
    """Input -> coefficient maps `U = relu(conv)` (K channels) -> layer `act` = exactly
    `sum_i U_i W_i` (C channels, non-negative) -> mean over positions -> linear head."""

    def __init__(self, W: torch.Tensor, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.coef = nn.Conv2d(3, K, 3, padding=1)
        self.coef_relu = nn.ReLU()
        self.mix = nn.Conv2d(K, C, 1, bias=False)
        self.act = nn.ReLU()  # identity on the non-negative product: a layer NMF may take
        self.pre = nn.Conv2d(3, C, 1)  # a layer with negative values
        self.head = nn.Linear(C, CLASSES)
        with torch.no_grad():
            self.coef.weight.copy_(torch.randn(K, 3, 3, 3, generator=g))
            self.coef.bias.copy_(torch.rand(K, generator=g))
            self.mix.weight.copy_(W.T[:, :, None, None])
            self.pre.weight.copy_(torch.randn(C, 3, 1, 1, generator=g))
            self.head.weight.copy_(torch.randn(CLASSES, C, generator=g))
            self.head.bias.copy_(torch.randn(CLASSES, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.pre(x)
        layer = self.act(self.mix(self.coef_relu(self.coef(x))))
        return self.head(layer.mean(dim=(2, 3)))


def concept_model(dtype: torch.dtype = torch.float32) -> tuple[nn.Module, torch.Tensor]:
    _, W = planted(1, K, C, seed=5)
    net = ConceptNet(W).to(dtype)
    loaded = describe(net, mean=(0.0,) * 3, std=(1.0,) * 3, input_size=8)
    return loaded, W.to(dtype)


def images(count: int, seed: int = 6, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(count, 3, 8, 8, generator=torch.Generator().manual_seed(seed)).to(dtype)


def exact_concepts(W: torch.Tensor) -> Concepts:
    """`Concepts` holding the network's true directions (unit norm, as find_concepts gives)."""
    return Concepts(
        layer="act",
        W=F.normalize(W, dim=1),
        coefficients=torch.zeros(0, K, dtype=W.dtype),
        positions=torch.zeros(0, 3, dtype=torch.long),
        reconstruction_error=0.0,
        image_ids=[],
        image_names=[],
        map_size=(8, 8),
        max_positions=0,
        positions_seen=0,
    )


def test_removing_every_concept_equals_zeroing_the_reconstructed_layer() -> None:
    loaded, W = concept_model(torch.float64)
    concepts = exact_concepts(W)
    batch = images(5, dtype=torch.float64)
    removed = logits_without_concepts(loaded, concepts, batch, range(K))
    with replace_output(loaded.module, "act", torch.zeros_like), torch.no_grad():
        zeroed = loaded.module(batch).float()
    torch.testing.assert_close(removed, zeroed, atol=1e-5, rtol=1e-5)
    # and nothing removed gives the plain logits
    with torch.no_grad():
        plain = loaded.module(batch).float()
    torch.testing.assert_close(logits_without_concepts(loaded, concepts, batch, []), plain)


def test_removal_importance_equals_the_logit_difference_by_hand() -> None:
    loaded, W = concept_model(torch.float64)
    concepts = exact_concepts(W)
    batch = images(6, dtype=torch.float64)
    target = 2
    with torch.no_grad(), capture(loaded.module, ["coef_relu"]) as acts:
        acts.run(batch)
    U = acts["coef_relu"]  # (B, K, h, w): the true coefficients of W's rows (unnormalized)
    head = loaded.module.head.weight[target]  # the head is linear after a mean over positions
    # removing concept i subtracts U_i W_i everywhere: the logit falls by head . mean(U_i) W_i
    wanted = torch.stack([(U[:, i].mean(dim=(1, 2))[:, None] * W[i]) @ head for i in range(K)], 1)
    found = concept_importance(loaded, concepts, batch, target, per_image=True)
    torch.testing.assert_close(found.double(), wanted, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        concept_importance(loaded, concepts, batch, target),
        wanted.mean(0).float(),
        atol=1e-4,
        rtol=1e-4,
    )
    # NNLS against the unit-norm directions recovers U scaled by W's row norms
    coefficients = concept_coefficients(loaded, concepts, batch)
    torch.testing.assert_close(
        coefficients.double(),
        U * torch.linalg.norm(W, dim=1)[None, :, None, None],
        atol=1e-5,
        rtol=1e-4,
    )
    maps = concept_heatmaps(loaded, concepts, batch)
    assert maps.shape == (6, K, 8, 8) and bool((maps >= 0).all())


def test_find_concepts_recovers_the_layer_concepts_and_leaves_the_model() -> None:
    loaded, W = concept_model()
    loaded.module.train()
    before = model_state(loaded.module)
    data = images(40)
    found = find_concepts(loaded, data, "act", K, max_positions=100_000)
    assert_same_state(before, model_state(loaded.module))
    assert found.reconstruction_error < 0.02
    assert matched_cosines(found.W.numpy(), W.numpy()).min() > 0.95
    assert found.sampled == found.positions_seen == 40 * 64  # under the cap: every position
    assert found.image_ids == list(range(40))
    # the sample's coefficients reconstruct the sampled activations
    with torch.no_grad(), capture(loaded.module, ["act"]) as acts:
        acts.run(data)
    where = found.positions
    rows = acts["act"][where[:, 0], :, where[:, 1], where[:, 2]]
    error = torch.linalg.norm(rows - found.coefficients @ found.W) / torch.linalg.norm(rows)
    assert float(error) == pytest.approx(found.reconstruction_error, abs=1e-4)


def test_the_sample_of_positions_is_capped_and_uniform() -> None:
    loaded, _ = concept_model()
    found = find_concepts(loaded, images(60), "act", K, max_positions=500, seed=3)
    assert found.sampled == 500 and found.positions_seen == 60 * 64
    assert len({tuple(p) for p in found.positions.tolist()}) == 500  # without replacement
    # every image has 64 positions: a uniform sample takes about 500/60 of each
    per_image = torch.bincount(found.positions[:, 0], minlength=60).float()
    assert abs(float(per_image.mean()) - 500 / 60) < 1e-6
    assert float(per_image.std()) < 6  # binomial spread ~ 2.7, not one image's block
    other = find_concepts(loaded, images(60), "act", K, max_positions=500, seed=4)
    assert not torch.equal(found.positions, other.positions)


def test_class_mode_uses_only_images_predicted_as_the_class() -> None:
    loaded, _ = concept_model()
    data = images(40)
    with torch.no_grad():
        predicted = loaded.module(data).argmax(1)
    target = int(torch.bincount(predicted).argmax())
    found = find_concepts(loaded, data, "act", K, target_class=target, importance_images=8)
    assert found.image_ids == [i for i in range(40) if int(predicted[i]) == target]
    assert found.target_class == target and found.importances is not None
    assert found.importances.tolist() == sorted(found.importances.tolist(), reverse=True)
    chosen = data[found.image_ids[:8]]
    wanted = concept_importance(loaded, found, chosen, target)
    torch.testing.assert_close(found.importances, wanted)


def test_bad_input_is_one_line() -> None:
    loaded, _ = concept_model()
    data = images(4)
    with pytest.raises(VizError, match="negative activations") as negative:
        find_concepts(loaded, data, "pre", 2)
    assert "act" in str(negative.value) and "\n" not in str(negative.value)
    with pytest.raises(VizError, match=f"k must be between 1 and the {C} channels"):
        find_concepts(loaded, data, "act", C + 1)
    with pytest.raises(VizError, match="no images"):
        find_concepts(loaded, data[:0], "act", 2)
    with torch.no_grad():
        predicted = set(loaded.module(data).argmax(1).tolist())
    missing = next(c for c in range(CLASSES) if c not in predicted)
    with pytest.raises(VizError, match=f"no image .* is predicted as class {missing}"):
        find_concepts(loaded, data, "act", 2, target_class=missing)
    with pytest.raises(VizError, match="max_positions"):
        find_concepts(loaded, data, "act", 2, max_positions=0)


def test_nonnegative_layers_lists_relu_calls_in_forward_order() -> None:
    loaded, _ = concept_model()
    assert nonnegative_layers(loaded) == ["coef_relu", "act"]
    assert nonnegative_layers(loaded, near="coef") == ["coef_relu", "act"]


def test_patches_are_the_highest_coefficients_one_per_image() -> None:
    loaded, W = concept_model()
    concepts = exact_concepts(W)
    data = images(12)
    found = concept_patches(loaded, concepts, data, n=3, thumbnail_size=16)
    U = concept_coefficients(loaded, concepts, data).flatten(2)  # brute force: all positions
    best = U.max(dim=2).values  # (B, k): each image's best position per concept
    for concept in range(K):
        hits = found.patches[concept]
        wanted = torch.topk(best[:, concept], 3).values
        torch.testing.assert_close(torch.tensor([h.value for h in hits]), wanted)
        assert len({h.image_id for h in hits}) == 3
        for hit in hits:
            y, x = hit.position
            assert float(U[hit.image_id, concept, y * 8 + x]) == pytest.approx(hit.value)
            assert hit.patch.shape[0] == 3 and max(hit.patch.shape[1:]) == 16


def test_patches_display_as_a_row_per_concept_in_a_notebook() -> None:
    from PIL import Image

    from vizcnn.io.display import show
    from vizcnn.io.imaging import labeled_sheet

    loaded, W = concept_model()
    found = concept_patches(loaded, exact_concepts(W), images(12), n=3, thumbnail_size=16)
    png = found._repr_png_()  # what IPython's formatter displays
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    sheet = np.asarray(found.contact_sheet().convert("RGB"))
    np.testing.assert_array_equal(decoded, sheet)
    np.testing.assert_array_equal(np.asarray(show(found).convert("RGB")), sheet)
    # the oracle: the concepts' patches in order, a row each, labelled with concept and value
    tiles = [hit.patch for concept in range(K) for hit in found.patches[concept]]
    labels = [f"k{h.concept} {h.value:.3g}" for c in range(K) for h in found.patches[c]]
    np.testing.assert_array_equal(sheet, np.asarray(labeled_sheet(tiles, labels, columns=3)))


def test_renders_one_image_per_concept() -> None:
    loaded, W = concept_model()
    result = concept_renders(loaded, exact_concepts(W), RenderConfig(steps=4, size=8))
    assert result.images.shape == (K, 3, 8, 8)
    assert result.units == ["act direction"] * K


def test_replace_output_edits_only_the_named_call_and_cleans_up() -> None:
    relu = nn.ReLU()
    model = nn.Sequential(relu, relu)  # one module called twice: "0" and "0#1" are its calls
    x = torch.tensor([[-1.0, 2.0]])
    with replace_output(model, "0#1", lambda a: a + 10):
        torch.testing.assert_close(model(x), torch.tensor([[10.0, 12.0]]))
    with replace_output(model, "0", lambda a: a - 5):
        torch.testing.assert_close(model(x), torch.tensor([[0.0, 0.0]]))
    assert not relu._forward_hooks and not model._forward_pre_hooks
    torch.testing.assert_close(model(x), torch.tensor([[0.0, 2.0]]))


def test_the_default_layer_is_the_last_relu_of_the_mining_layer() -> None:
    from vizcnn.concepts import default_concept_layer
    from vizcnn.models.loading import load_model

    resnet = load_model("resnet18", weights="none")
    assert resnet.layers_for("mine") == ["layer3"]
    assert default_concept_layer(resnet) == "layer3.1.relu#1"  # = layer3's own output
    with torch.no_grad(), capture(resnet.module, ["layer3", "layer3.1.relu#1"]) as acts:
        acts.run(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(acts["layer3"], acts["layer3.1.relu#1"])
