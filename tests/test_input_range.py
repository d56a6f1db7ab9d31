"""Images handed in already normalized (captum / pytorch-grad-cam style) draw one warning."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from _render_models import tiny_loaded

from vizcnn.core.run_options import RunOptions
from vizcnn.models.loading import LoadedModel


@pytest.fixture
def loaded() -> LoadedModel:  # mean 0.5, std 0.25: normalized images lie in [-2, 2]
    return tiny_loaded()


def unit_images(count: int = 4, size: int = 16) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(0))


@contextmanager
def no_range_warning() -> Iterator[None]:
    from vizcnn.core.errors import InputRangeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRangeWarning)
        yield


def range_warnings(call: Callable[[], object]) -> list[str]:
    from vizcnn.core.errors import InputRangeWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, InputRangeWarning)]


def entry_points(loaded: LoadedModel, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """Each library entry point that takes the user's images, fed `x` `(4, 3, 16, 16)`."""
    from vizcnn.ablation.data import TensorData
    from vizcnn.ablation.lesion import lesion_study
    from vizcnn.attribution import attribute
    from vizcnn.attribution.deletion import deletion_curves
    from vizcnn.data.datasets import TensorImages
    from vizcnn.deepdream.dreaming import DreamConfig, dream
    from vizcnn.features import (
        EquivarianceConfig,
        FeatureMapConfig,
        embed_dataset,
        feature_maps,
        measure_equivariance,
    )
    from vizcnn.features.equivariance import prepare_images
    from vizcnn.features.neighbors import embed
    from vizcnn.mining.streaming import MineConfig, mine_topk

    maps = {"flat": torch.ones_like(x)}
    targets = torch.zeros(len(x), dtype=torch.long)
    equivariance = EquivarianceConfig(layers=("features.2",), shifts=(1,))
    labelled = TensorData(x, torch.tensor([0, 1, 2, 0]))
    return {
        "attribute": lambda: attribute(loaded, x, "saliency"),
        "deletion_curves": lambda: deletion_curves(loaded, x, maps, targets, steps=2),
        "dream": lambda: dream(
            loaded, x[0], DreamConfig(layers=("features.2",), octaves=1, steps=1)
        ),
        "dream guide": lambda: dream(
            loaded,
            x[0].clamp(0, 1) if x.min() >= 0 else loaded.denormalize(x[:1])[0],
            DreamConfig(layers=("features.2",), octaves=1, steps=1),
            guide=x[1],
        ),
        "mine_topk": lambda: mine_topk(
            loaded, TensorImages(x), MineConfig(layer="features.2", k=1), run=RunOptions(batch=2)
        ),
        "feature_maps": lambda: feature_maps(loaded, x[0], FeatureMapConfig(("features.2",), 1)),
        "embed": lambda: embed(loaded, x, "features.2"),
        "embed_dataset": lambda: embed_dataset(
            loaded, TensorImages(x), "features.2", run=RunOptions(batch=2)
        ),
        "measure_equivariance": lambda: measure_equivariance(
            loaded, torch.nn.functional.pad(x, (0, 1, 0, 0)), equivariance, run=RunOptions(batch=4)
        ),
        "prepare_images": lambda: prepare_images(loaded, list(x), equivariance),
        "lesion_study": lambda: lesion_study(
            loaded, labelled, blocks=["features.3"], run=RunOptions(batch=2)
        ),
    }


NAMES = list(entry_points(tiny_loaded(), unit_images()))


@pytest.mark.parametrize("name", NAMES)
def test_normalized_images_warn_once(loaded: LoadedModel, name: str) -> None:
    normalized = loaded.normalize(unit_images())
    found = range_warnings(entry_points(loaded, normalized)[name])
    assert len(found) == 1, found  # a data set in batches of 2 is checked on its first only
    low, high = (float(v) for v in normalized.aminmax())
    if name != "dream guide":  # the guide is one image of the batch
        assert found[0].startswith(f"images lie in [{low:.1f}, {high:.1f}], not [0, 1]: ")
    assert found[0].endswith(
        "vizcnn normalizes with the model's mean/std itself; pass unnormalized images in "
        "[0, 1] (e.g. loaded.denormalize(x))"
    )
    assert "\n" not in found[0]


@pytest.mark.parametrize("name", NAMES)
def test_unit_range_images_do_not_warn(loaded: LoadedModel, name: str) -> None:
    with no_range_warning():
        entry_points(loaded, unit_images())[name]()


def test_margins_tolerate_resampling_overshoot() -> None:
    from vizcnn.core.errors import InputRangeWarning
    from vizcnn.core.image_range import warn_if_normalized

    overshoot = torch.tensor([-0.2, 0.0, 0.5, 1.0, 1.2]).view(1, 1, 1, 5)
    with no_range_warning():
        warn_if_normalized(overshoot)
        warn_if_normalized((overshoot * 255).clamp(0, 255).to(torch.uint8))  # 8-bit: never
        warn_if_normalized(torch.empty(0, 3, 4, 4))
    with pytest.warns(InputRangeWarning, match=r"images lie in \[-0\.3, 1\.0\]"):
        warn_if_normalized(torch.tensor([-0.3, 0.5, 1.0]))
    with pytest.warns(InputRangeWarning, match=r"images lie in \[0\.0, 1\.3\]"):
        warn_if_normalized([torch.zeros(3, 2, 2), torch.full((3, 5, 4), 1.3)])  # sizes differ


def test_loaded_normalize_does_not_check(loaded: LoadedModel) -> None:
    # renders pass optimized images through normalize every step: no check (no sync) there
    with no_range_warning():
        loaded.normalize(loaded.normalize(unit_images()))


def test_warning_class_is_exported() -> None:
    import vizcnn
    from vizcnn.core.errors import InputRangeWarning

    assert vizcnn.InputRangeWarning is InputRangeWarning
    assert issubclass(InputRangeWarning, UserWarning)
