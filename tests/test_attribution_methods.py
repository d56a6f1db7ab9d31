"""One callable per attribution method: the same maps as `attribute`, one-channel Grad-CAM,
per-image targets, the model left as found, SmoothGrad's seed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attribution_helpers import SmallNet, images, plain
from conftest import assert_same_state, model_state
from vizcnn.attribution import (
    DEFAULT_METHODS,
    LRP,
    METHODS,
    AblationCAM,
    Deconvolution,
    EigenCAM,
    FullGrad,
    GradCAM,
    GradCAMPlusPlus,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Method,
    Occlusion,
    Saliency,
    ScoreCAM,
    SmoothGrad,
    XGradCAM,
    attribute,
    make_methods,
)
from vizcnn.core.errors import VizError

TARGETS = torch.tensor([0, 3, 1, 4])


def _methods(loaded: object) -> list[Method]:
    return [
        Saliency(loaded),
        IntegratedGradients(loaded, steps=6, baseline=0.3),
        SmoothGrad(loaded, samples=3, stdev=0.2, seed=7),
        GuidedBackprop(loaded),
        Deconvolution(loaded),
        GradCAM(loaded, "conv1"),
        GuidedGradCAM(loaded, layer="conv1"),
        Occlusion(loaded, window=3, stride=2, baseline=0.5),
        LRP(loaded, composite="gamma", epsilon=1e-4),
        GradCAMPlusPlus(loaded, "conv1"),
        XGradCAM(loaded, "conv2"),
        HiResCAM(loaded, "conv1"),
        LayerCAM(loaded, "conv1"),
        EigenCAM(loaded, "conv2"),
        ScoreCAM(loaded, "conv1", batch=3),
        AblationCAM(loaded, "conv2", batch=3),
        FullGrad(loaded),
    ]


def test_every_name_has_its_class_and_the_cli_default_is_the_library_s() -> None:
    assert [cls.name for cls in METHODS.values()] == list(METHODS)
    assert [type(m).name for m in _methods(plain(SmallNet()))] == list(METHODS)
    assert set(DEFAULT_METHODS) <= set(METHODS)


@pytest.mark.parametrize("position", range(len(METHODS)))
def test_each_callable_equals_attribute_for_that_method(position: int) -> None:
    net = SmallNet().train()
    loaded = plain(net)
    before = model_state(net)
    x = images(4)
    method = _methods(loaded)[position]
    maps = method(x, TARGETS)
    assert_same_state(before, model_state(net))  # the guard: left exactly as found
    expected = attribute(loaded, x, [method], targets=TARGETS).maps[method.name]
    assert maps.shape == ((4, 1, 8, 8) if method.one_channel else (4, 3, 8, 8))
    assert maps.device == x.device and maps.dtype == x.dtype
    torch.testing.assert_close(maps.expand_as(expected), expected, rtol=0, atol=0)


def test_gradcam_with_a_target_per_image_is_one_channel_per_image() -> None:
    loaded = plain(SmallNet())
    x = images(4)
    cam = GradCAM(loaded, loaded.module.conv2)
    maps = cam(x, ["tabby", 3, "espresso", "volcano"])
    assert maps.shape == (4, 1, 8, 8) and cam.layer_name == "conv2"
    for i, target in enumerate(TARGETS.tolist()):  # oracle: each image alone, its own class
        torch.testing.assert_close(maps[i : i + 1], cam(x[i : i + 1], target))
    assert not torch.equal(maps, cam(x, 0))  # the targets matter
    torch.testing.assert_close(cam(x, torch.tensor(2)), cam(x, [2, 2, 2, 2]), rtol=0, atol=0)


def test_smoothgrad_seed_an_int_repeats_a_generator_advances() -> None:
    loaded = plain(SmallNet())
    x = images(2)
    state = torch.get_rng_state()
    fixed = SmoothGrad(loaded, samples=3, seed=1)
    torch.testing.assert_close(fixed(x), fixed(x), rtol=0, atol=0)
    drawn = SmoothGrad(loaded, samples=3, seed=torch.Generator().manual_seed(1))
    first, second = drawn(x), drawn(x)
    assert not torch.equal(first, second)
    again = SmoothGrad(loaded, samples=3, seed=torch.Generator().manual_seed(1))
    torch.testing.assert_close(again(x), first, rtol=0, atol=0)
    assert torch.equal(state, torch.get_rng_state())  # torch's global generator untouched
    # recorded by its state: a folder made with another state is not taken for this one
    assert drawn.options()["seed"].startswith("generator ")
    assert drawn.options()["seed"] != again.options()["seed"]  # `again` drew once, `drawn` twice


def test_smoothgrad_seeds_only_the_generator_of_the_images_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """captum takes no generator, so its noise comes from the default one of the images' device,
    forked and seeded. `torch.manual_seed` would also reseed every CUDA and MPS generator (CUDA's
    lazily when it is not initialized yet) where no fork restores them; it must not be called."""
    reseeded: list[str] = []
    for module, name in ((torch.cuda, "manual_seed_all"), (torch.cuda, "manual_seed")):
        monkeypatch.setattr(module, name, lambda *_a, _n=name, **_k: reseeded.append(_n))
    monkeypatch.setattr(torch.mps, "manual_seed", lambda *_a, **_k: reseeded.append("mps"))
    x, loaded = images(2), plain(SmallNet())  # building the net draws from the global RNG
    state = torch.get_rng_state()
    maps = SmoothGrad(loaded, samples=3, seed=1)(x)
    assert reseeded == [] and torch.equal(state, torch.get_rng_state())
    # the noise is what the CPU generator seeded with 1 draws: another seed, other maps
    assert not torch.equal(maps, SmoothGrad(loaded, samples=3, seed=2)(x))
    torch.testing.assert_close(SmoothGrad(loaded, samples=3, seed=1)(x), maps, rtol=0, atol=0)


def test_a_method_runs_on_another_model_with_its_options() -> None:
    loaded, other = plain(SmallNet(seed=0)), plain(SmallNet(seed=1))
    cam = GradCAM(loaded, loaded.module.conv1)  # a submodule: `on` carries its name
    moved = cam.on(other)
    assert moved.layer_name == "conv1" and moved.loaded.module is other.module
    x = images(2)
    torch.testing.assert_close(moved(x, 1), GradCAM(other, "conv1")(x, 1), rtol=0, atol=0)
    via_attribute = attribute(other, x, [cam], targets=1).maps["gradcam"]
    torch.testing.assert_close(via_attribute, moved(x, 1).expand(-1, 3, -1, -1))


def test_options_are_checked_when_made_and_named_by_field() -> None:
    loaded = plain(SmallNet())
    with pytest.raises(VizError, match="IntegratedGradients steps = 0 must be at least 1"):
        IntegratedGradients(loaded, steps=0)
    with pytest.raises(VizError, match="SmoothGrad stdev = 0"):
        SmoothGrad(loaded, stdev=0.0)
    with pytest.raises(VizError, match=r"Occlusion baseline = 2.0 must lie in \[0, 1\]"):
        Occlusion(loaded, baseline=2.0)
    with pytest.raises(VizError, match="conv1"):
        GradCAM(loaded, "conv_1")
    with pytest.raises(VizError, match="no Conv2d layer for Grad-CAM; give the method a layer"):
        GradCAM(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)))
    with pytest.raises(VizError, match="option.s. step$"):
        make_methods(loaded, ["ig"], step=3)
    with pytest.raises(VizError, match="name one twice"):
        attribute(loaded, images(1), ["saliency", Saliency(loaded)])
    made = make_methods(loaded, ["ig", "occlusion"], baseline=0.5, steps=3, layer="conv2")
    assert [m.options() for m in made] == [
        {"steps": 3, "baseline": 0.5, "batch": 32},
        {"window": 0, "stride": 0, "baseline": 0.5, "batch": 32},
    ]
