"""The features techniques on the real default model (slow) and on CUDA (gpu)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vizcnn.data.samples import sample_image
from vizcnn.features import (
    EquivarianceConfig,
    FeatureMapConfig,
    embed,
    feature_maps,
    measure_equivariance,
    prepare_images,
)
from vizcnn.hooks import forward_to, model_guard
from vizcnn.models.base import describe


@pytest.mark.slow
def test_lite0_stem_is_equivariant_to_even_shifts_only(lite0) -> None:
    config = EquivarianceConfig(layers=("_conv_stem", "_blocks.1"), shifts=(1, 2, 4))
    images = prepare_images(lite0, [sample_image("coffee")], config)
    result = measure_equivariance(lite0, images, config)
    stem, block1 = result.rows[0], result.rows[1]
    assert stem.stride == (2.0, 2.0) and block1.stride == (4.0, 4.0)
    assert stem.errors[2] < 1e-5 and stem.errors[4] < 1e-5 and stem.errors[1] > 1e-2
    assert block1.errors[4] < 1e-5 and block1.errors[2] > 1e-2
    assert result.top1_agreement is not None and result.rows[-1].layer == "output"


@pytest.mark.slow
def test_lite0_classifier_input_is_the_pooled_head(lite0) -> None:
    image = prepare_images(lite0, [sample_image("coffee")], EquivarianceConfig(mode="roll"))
    vectors = embed(lite0, image)
    with model_guard(lite0.module), torch.no_grad():
        pooled = forward_to(lite0.module, lite0.normalize(image), ["_avg_pooling"])["_avg_pooling"]
    assert vectors.shape == (1, 1280)
    torch.testing.assert_close(vectors, pooled.flatten(1), rtol=1e-5, atol=1e-5)


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
def test_cuda_equals_cpu() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, padding_mode="circular"),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    config = EquivarianceConfig(shifts=(1, 2), mode="roll", border=0.0)
    cpu = measure_equivariance(describe(net, input_size=32), images, config)
    cpu_vectors = embed(describe(net, input_size=32), images)
    _, cpu_maps = feature_maps(
        describe(net, input_size=32), images[0], FeatureMapConfig(layers=("1",))
    )
    net.cuda()
    cuda = measure_equivariance(describe(net, input_size=32), images, config)
    for a, b in zip(cpu.rows, cuda.rows, strict=True):
        for shift in config.shifts:
            assert abs(a.errors[shift] - b.errors[shift]) < 1e-4
    torch.testing.assert_close(
        embed(describe(net, input_size=32), images), cpu_vectors, rtol=1e-4, atol=1e-4
    )
    _, cuda_maps = feature_maps(
        describe(net, input_size=32), images[0], FeatureMapConfig(layers=("1",))
    )
    torch.testing.assert_close(cuda_maps[0].maps, cpu_maps[0].maps, rtol=1e-4, atol=1e-4)
