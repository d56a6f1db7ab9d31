"""Techniques on a bare nn.Module (as captum and lucent take it) and on float64/bfloat16 models."""

from __future__ import annotations

import pytest
import torch
import torchvision
from _render_models import Tiny

from conftest import assert_same_state, model_state
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.deepdream.dreaming import DreamConfig, LayerTarget, dream, guide_features
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.hooks import forward_to
from vizcnn.io.imaging import resize
from vizcnn.mining.patches import mine_patches
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.models import describe
from vizcnn.optvis import objectives as O
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.rendering import layer_channels, render

FAST = RenderConfig(steps=3, size=16)
DREAM = DreamConfig(layers=("features.2",), octaves=1, steps=2)


def images(count: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_every_technique_takes_a_bare_module_as_its_description() -> None:
    """A bare module behaves exactly as `describe(module)` (ImageNet stats, its own device),
    and is left as found (here in train mode, as a user's module often is)."""
    net = Tiny().train()
    described = describe(net)
    before = model_state(net)
    data = TensorImages(images(size=224))
    units = ["features.2:0", O.class_logit(2)]
    bare, ref = (render(m, units, FAST, seed=3, run=RunOptions(batch=4)) for m in (net, described))
    torch.testing.assert_close(bare.images, ref.images, rtol=0, atol=0)
    assert layer_channels(net, "features.2") == 3
    photo = images(1, 24)[0]
    torch.testing.assert_close(dream(net, photo, DREAM), dream(described, photo, DREAM))
    frames = list(dream_frames(net, photo, DREAM, ZoomConfig(frames=2)))
    assert len(frames) == 2 and frames[0].shape == photo.shape
    target = [LayerTarget("features.2")]
    torch.testing.assert_close(
        guide_features(net, photo, target)[0], guide_features(described, photo, target)[0]
    )
    config = MineConfig(layer="features.2", channels=(0, 1), k=2)
    top = mine_topk(net, data, config, run=RunOptions(batch=2))
    assert top.hits(0) == mine_topk(described, data, config, run=RunOptions(batch=2)).hits(0)
    mined = mine_patches(net, data, top, projections="guided")
    assert len(mined.hits) == 2
    assert_same_state(before, model_state(net))
    assert net.training


def test_torchvision_resnet18_bare() -> None:
    net = torchvision.models.resnet18(weights=None)
    assert layer_channels(net, "layer1") == 64
    result = render(net, ["layer2:5"], RenderConfig(steps=2, size=32))
    assert torch.isfinite(result.values).all() and result.images.shape == (1, 3, 32, 32)
    # the value is the channel's mean activation on the final image, recomputed here
    inputs = describe(net).normalize(resize(result.images, (224, 224)))
    with torch.no_grad():
        acts = forward_to(net.eval(), inputs, ["layer2"])["layer2"]
    assert float(result.values[0]) == pytest.approx(float(acts[0, 5].mean()), rel=1e-4)


def test_class_by_name_needs_labels_by_index_does_not() -> None:
    net = Tiny()
    result = render(net, [O.class_logit(1)], FAST, run=RunOptions(batch=4))
    with torch.no_grad():
        logits = net(describe(net).normalize(resize(result.images, (224, 224))))
    assert float(result.values[0]) == pytest.approx(float(logits[0, 1]), rel=1e-4)
    with pytest.raises(VizError, match="no class names; give the class by index"):
        render(net, [O.class_logit("cat")], FAST, run=RunOptions(batch=4))
    labelled = describe(net, labels=["cat", "dog", "espresso"])
    assert render(labelled, [O.class_logit("Dog")], FAST, run=RunOptions(batch=4)).units == [
        "class 1 (dog)"
    ]
    assert describe(net).class_index("2") == 2


# float64 vs float32 is not exact even for an exact network: Adam's first step is about
# lr * g / |g| per pixel, so a pixel whose gradient is near zero moves by a rounding-dependent
# amount; on an AVX512 CPU the two renders' values part by 2.5e-4 after 3 steps (1e-5 held on
# other CPUs).
@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float64, 2e-4), (torch.bfloat16, 3e-2)], ids=str
)
def test_render_and_mine_in_the_model_dtype(dtype: torch.dtype, tolerance: float) -> None:
    """A float64 or bfloat16 model renders and mines like its float32 copy (the oracle), with
    float32 parameterization: inputs are cast where they enter the network."""
    wide, narrow = Tiny(), Tiny().to(dtype)
    units = ["features.2:0", "features.0:3"]
    ref, got = (render(m, units, FAST, seed=7, run=RunOptions(batch=4)) for m in (wide, narrow))
    assert got.images.dtype == torch.float32
    torch.testing.assert_close(got.values, ref.values, rtol=tolerance * 5, atol=tolerance * 5)
    data = TensorImages(images(6, size=32, seed=1))
    config = MineConfig(layer="features.2", channels=(0, 1, 2), k=3)
    ref_top, top = (
        mine_topk(describe(m, input_size=32), data, config, run=RunOptions(batch=4))
        for m in (wide, narrow)
    )
    for row in range(3):
        want, have = ref_top.hits(row), top.hits(row)
        if dtype == torch.float64:  # same winners, in the same order
            assert [h[1:] for h in have] == [h[1:] for h in want]
        for (value, *_), (expected, *_) in zip(have, want, strict=True):
            assert value == pytest.approx(expected, rel=tolerance, abs=tolerance)
    projected = mine_patches(describe(narrow, input_size=32), data, top, projections="deconv")
    assert projected.hits[0][0].projection is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_bare_module_on_cuda_in_its_dtype(dtype: torch.dtype) -> None:
    """A bare CUDA module: render and mine run on its device and in its dtype, as on the CPU."""
    cpu, cuda = Tiny().to(dtype), Tiny().to(dtype).cuda()
    result = render(cuda, ["features.2:0"], FAST, run=RunOptions(batch=4))
    assert torch.isfinite(result.values).all()
    data = TensorImages(images(6, size=32, seed=2))
    config = MineConfig(layer="features.2", channels=(0, 1), k=2)
    on_gpu, on_cpu = (
        mine_topk(describe(m, input_size=32), data, config, run=RunOptions(batch=3))
        for m in (cuda, cpu)
    )
    for row in range(2):
        for (value, *_), (expected, *_) in zip(on_gpu.hits(row), on_cpu.hits(row), strict=True):
            assert value == pytest.approx(expected, rel=3e-2, abs=3e-2)
