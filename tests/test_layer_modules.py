"""A layer given as the submodule itself (`model.features[2]`, as captum and grad-cam take it).

Every entry point that takes a layer name also takes the module; the result is exactly the one
for its dotted `named_modules()` name, and that name is what is recorded.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from _render_models import tiny_loaded
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions


@pytest.fixture
def loaded():  # Tiny: features.0 conv (4 ch), features.2 conv (3 ch), head linear, input 16x16
    return tiny_loaded()


def images(count: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


# The helper ---------------------------------------------------------------------------------
def test_layer_name_of_a_submodule_and_of_a_name(loaded) -> None:
    from vizcnn import layer_name

    module = loaded.module
    assert layer_name(module, module.features[2]) == "features.2"
    assert layer_name(module, module.head) == "head"
    assert layer_name(module, "features.0#1") == "features.0#1"  # names pass through as given


def test_shared_module_gets_its_first_name() -> None:
    from vizcnn.hooks import layer_name

    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    net.add_module("again", net[0])  # one module under two names
    assert layer_name(net, net[0]) == "0"
    assert layer_name(net, net.again) == "0"


def test_module_outside_the_model_is_a_one_line_error(loaded) -> None:
    from vizcnn.hooks import forward_to

    stranger = nn.Sequential(nn.Conv2d(3, 3, 1))
    with pytest.raises(VizError, match=r"\(Sequential\) is not a submodule of the model") as info:
        forward_to(loaded.module, images(1), [stranger])
    assert "\n" not in str(info.value)
    assert "features" in str(info.value)  # names a valid choice
    with pytest.raises(VizError, match="is the model itself"):
        forward_to(loaded.module, images(1), [loaded.module])


# hooks ----------------------------------------------------------------------------------------
def test_capture_forward_to_and_shape(loaded) -> None:
    from vizcnn.hooks import capture, forward_to, layer_output_shape

    module, x = loaded.module, images(2)
    by_module = forward_to(module, x, [module.features[0], module.features[2]])
    by_name = forward_to(module, x, ["features.0", "features.2"])
    assert list(by_module) == ["features.0", "features.2"]
    for key in by_name:
        torch.testing.assert_close(by_module[key], by_name[key], rtol=0, atol=0)
    with capture(module, [module.features[2]]) as acts:
        module(x)
    torch.testing.assert_close(acts["features.2"], by_name["features.2"], rtol=0, atol=0)
    assert layer_output_shape(module, (3, 16, 16), module.features[2]) == (3, 16, 16)


# optvis -------------------------------------------------------------------------------------
def test_render_units_and_objectives_by_module(loaded) -> None:
    from vizcnn.optvis import objectives as obj
    from vizcnn.optvis.config import RenderConfig
    from vizcnn.optvis.rendering import render

    layer = loaded.module.features[2]
    config = RenderConfig(steps=3, size=16, param="pixel")
    by_name = render(
        loaded,
        ["features.2:1", "features.0:2", obj.neuron("features.2", 0)],
        config,
        run=RunOptions(batch=4),
    )
    by_module = render(
        loaded,
        [(layer, 1), obj.channel(loaded.module.features[0], 2), obj.neuron(layer, 0)],
        config,
        run=RunOptions(batch=4),
    )
    assert by_module.units == by_name.units == ["features.2:1", "features.0:2", "features.2:0"]
    torch.testing.assert_close(by_module.images, by_name.images, rtol=0, atol=0)
    torch.testing.assert_close(by_module.values, by_name.values, rtol=0, atol=0)
    single = render(
        loaded, (layer, 1), config, run=RunOptions(batch=4)
    )  # one pair alone is one unit
    assert single.units == ["features.2:1"]
    torch.testing.assert_close(
        single.images,
        render(loaded, "features.2:1", config, run=RunOptions(batch=4)).images,
        rtol=0,
        atol=0,
    )


def test_objective_algebra_and_diversity_layer_by_module(loaded) -> None:
    from vizcnn.optvis import objectives as obj
    from vizcnn.optvis.config import RenderConfig
    from vizcnn.optvis.rendering import render

    layer = loaded.module.features[2]
    config = RenderConfig(steps=3, size=16, param="pixel", diversity=2)
    named = obj.channel("features.2", 1) - 0.5 * obj.layer_l2("features.0")
    moduled = obj.channel(layer, 1) - 0.5 * obj.layer_l2(loaded.module.features[0])
    a = render(
        loaded, [named], replace(config, diversity_layer="features.0"), run=RunOptions(batch=4)
    )
    b = render(
        loaded,
        [moduled],
        replace(config, diversity_layer=loaded.module.features[0]),
        run=RunOptions(batch=4),
    )
    torch.testing.assert_close(b.images, a.images, rtol=0, atol=0)
    assert b.units == a.units
    vector = torch.tensor([1.0, -1.0, 0.5])
    c = render(
        loaded,
        [obj.direction("features.2", vector)],
        replace(config, diversity=1),
        run=RunOptions(batch=4),
    )
    d = render(
        loaded,
        [obj.direction(layer, vector)],
        replace(config, diversity=1),
        run=RunOptions(batch=4),
    )
    torch.testing.assert_close(d.images, c.images, rtol=0, atol=0)
    with pytest.raises(VizError, match="not a submodule"):
        render(loaded, [obj.channel(nn.Conv2d(3, 3, 1), 0)], config, run=RunOptions(batch=4))


# deepdream ------------------------------------------------------------------------------------
def test_dream_layers_by_module(loaded) -> None:
    from vizcnn.deepdream.dreaming import DreamConfig, LayerTarget, dream

    layer = loaded.module.features[2]
    x = images(1)[0]
    base = dict(octaves=1, steps=2, jitter=2)
    named = dream(loaded, x, DreamConfig(layers=("features.2", "features.0:1@2"), **base))
    moduled = dream(
        loaded,
        x,
        DreamConfig(layers=(layer, LayerTarget(loaded.module.features[0], (1,), 2.0)), **base),
    )
    torch.testing.assert_close(moduled, named, rtol=0, atol=0)
    assert not torch.equal(named, x)
    targets = DreamConfig(layers=(layer,)).targets(loaded)
    assert [t.spec for t in targets] == ["features.2"]


# mining ---------------------------------------------------------------------------------------
def test_mine_topk_by_module(loaded) -> None:
    from vizcnn.data.datasets import TensorImages
    from vizcnn.mining.patches import check_patch_options
    from vizcnn.mining.streaming import MineConfig, mine_topk

    data = TensorImages(images(6))
    named = mine_topk(loaded, data, MineConfig(layer="features.2", k=2), run=RunOptions(batch=4))
    moduled = mine_topk(
        loaded, data, MineConfig(layer=loaded.module.features[2], k=2), run=RunOptions(batch=4)
    )
    assert moduled.layer == "features.2"
    torch.testing.assert_close(moduled.values, named.values, rtol=0, atol=0)
    assert torch.equal(moduled.image_ids, named.image_ids)
    assert torch.equal(moduled.positions, named.positions)
    check_patch_options(loaded, loaded.module.features[2], "deconv")


# features -------------------------------------------------------------------------------------
def test_feature_maps_and_filters_by_module(loaded) -> None:
    from vizcnn.features import FeatureMapConfig, FilterConfig, feature_maps, filter_grid

    x = images(1)[0]
    _, named = feature_maps(loaded, x, FeatureMapConfig(layers=("features.0", "features.2"), top=2))
    _, moduled = feature_maps(
        loaded,
        x,
        FeatureMapConfig(layers=(loaded.module.features[0], loaded.module.features[2]), top=2),
    )
    assert [m.layer for m in moduled] == ["features.0", "features.2"]
    for a, b in zip(named, moduled, strict=True):
        assert a.channels == b.channels
        torch.testing.assert_close(b.maps, a.maps, rtol=0, atol=0)
    grid = filter_grid(loaded, FilterConfig(layer=loaded.module.features[2]))
    assert grid.layer == "features.2"
    torch.testing.assert_close(
        grid.grid, filter_grid(loaded, FilterConfig(layer="features.2")).grid, rtol=0, atol=0
    )


def test_embeddings_and_equivariance_by_module(loaded) -> None:
    from vizcnn.data.datasets import TensorImages
    from vizcnn.features import EquivarianceConfig, embed_dataset, measure_equivariance
    from vizcnn.features.neighbors import embed

    data = TensorImages(images(5))
    named = embed_dataset(loaded, data, "features.2", run=RunOptions(batch=2))
    moduled = embed_dataset(loaded, data, loaded.module.features[2], run=RunOptions(batch=2))
    assert moduled.layer == "features.2"
    torch.testing.assert_close(moduled.vectors, named.vectors, rtol=0, atol=0)
    torch.testing.assert_close(
        embed(loaded, images(2), loaded.module.features[0]),
        embed(loaded, images(2), "features.0"),
        rtol=0,
        atol=0,
    )
    config = EquivarianceConfig(layers=("features.0", "features.2"), shifts=(1, 2))
    x = images(2, size=18)
    a = measure_equivariance(loaded, x, config, run=RunOptions(batch=2))
    b = measure_equivariance(
        loaded,
        x,
        replace(config, layers=(loaded.module.features[0], loaded.module.features[2])),
        run=RunOptions(batch=2),
    )
    assert (
        [r.layer for r in b.rows]
        == [r.layer for r in a.rows]
        == [
            "features.0",
            "features.2",
            "output",
        ]
    )
    assert [r.errors for r in b.rows] == [r.errors for r in a.rows]


# attribution ----------------------------------------------------------------------------------
def test_attribution_layer_by_module(loaded) -> None:
    from vizcnn.attribution import GradCAM, attribute

    x = images(2)
    named = attribute(loaded, x, [GradCAM(loaded, layer="features.0")])
    moduled = attribute(loaded, x, [GradCAM(loaded, layer=loaded.module.features[0])])
    assert moduled.layer == "features.0"
    torch.testing.assert_close(moduled.maps["gradcam"], named.maps["gradcam"], rtol=0, atol=0)
    with pytest.raises(VizError, match="not a submodule"):
        attribute(loaded, x, [GradCAM(loaded, layer=nn.Conv2d(3, 3, 1))])


# ablation -------------------------------------------------------------------------------------
def test_ablation_layers_by_module(loaded) -> None:
    from vizcnn.ablation.data import TensorData
    from vizcnn.ablation.lesion import lesion_study
    from vizcnn.ablation.surgery import ablate

    module = loaded.module
    x = images(3)
    named = ablate(loaded, ["features.1"], units={"features.2": "0"})
    moduled = ablate(loaded, [module.features[1]], units={module.features[2]: "0"})
    assert [c.layer for c in moduled.changes] == [c.layer for c in named.changes]
    with torch.no_grad():
        torch.testing.assert_close(
            moduled.module(loaded.normalize(x)), named.module(loaded.normalize(x)), rtol=0, atol=0
        )
    data = TensorData(x, torch.tensor([0, 1, 2]))
    a = lesion_study(loaded, data, blocks=["features.1", "features.3"])
    b = lesion_study(loaded, data, blocks=[module.features[1], module.features[3]])
    assert [lesion.block for lesion in b.lesions] == ["features.1", "features.3"]
    assert [lesion.scores for lesion in b.lesions] == [lesion.scores for lesion in a.lesions]


def test_ablation_variants_by_module(loaded) -> None:
    from vizcnn.ablation.data import TensorData
    from vizcnn.ablation.experiment import run_ablation
    from vizcnn.ablation.training import TrainConfig
    from vizcnn.ablation.variants import Variant

    module = loaded.module
    data = TensorData(images(3), torch.tensor([0, 1, 2]))
    config = TrainConfig(retrain="none")
    a = run_ablation(
        loaded, [Variant("cut", ("features.1",), (("features.2", "1"),))], data, config
    )
    b = run_ablation(
        loaded, [Variant("cut", (module.features[1],), ((module.features[2], "1"),))], data, config
    )
    assert [r.removed for r in b.rows] == [r.removed for r in a.rows]
    assert b.rows[-1].removed == ["features.1", "features.2:1"]
    assert [r.scores for r in b.rows] == [r.scores for r in a.rows]


# receptive fields -----------------------------------------------------------------------------
def test_receptive_fields_by_module(loaded) -> None:
    from vizcnn.receptive import measure_field, receptive_fields

    module = loaded.module
    fields = receptive_fields(module, (3, 16, 16), [module.features[2]])
    assert list(fields) == ["features.2"]
    assert fields == receptive_fields(module, (3, 16, 16), ["features.2"])
    assert measure_field(module, module.features[0], (3, 16, 16)) == measure_field(
        module, "features.0", (3, 16, 16)
    )
