"""Image parameterizations against explicit float64 DFT sums and colour-matrix products."""

from __future__ import annotations

import cmath
import math

import pytest
import torch
from torch.testing import assert_close

from vizcnn.core.errors import VizError
from vizcnn.optvis.param import COLOR_CORRELATION_SVD_SQRT, ImageParam, color_matrix, fft_scale


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_pixel_without_decorrelation_is_sigmoid_of_values() -> None:
    param = ImageParam("pixel", 2, 3, (5, 7), decorrelate=False, generator=gen())
    assert_close(param(), torch.sigmoid(param.values))


def _frequency(k: int, n: int) -> float:
    """Signed frequency of DFT bin k of n, in cycles per sample."""
    return (k if k <= (n - 1) // 2 else k - n) / n if k < n else math.nan


def test_fft_scale_is_one_over_frequency() -> None:
    height, width = 6, 5
    scale = fft_scale(height, width)
    for k in range(height):
        for m in range(width // 2 + 1):
            f = math.hypot(_frequency(k, height), m / width)
            assert scale[k, m].item() == pytest.approx(1 / max(f, 1 / max(height, width)), rel=1e-6)


@pytest.mark.parametrize("size", [(4, 5), (6, 6), (3, 8)])
def test_fft_image_is_scaled_inverse_dft(size: tuple[int, int]) -> None:
    height, width = size
    param = ImageParam("fft", 1, 1, size, decorrelate=False, sd=1.0, generator=gen(3))
    raw = param.raw().detach().double()[0, 0]
    spec = param.values.detach().double()[0, 0]  # (H, W//2+1, 2)
    scale = fft_scale(height, width).double()
    for n in range(height):
        for m in range(width):
            total = 0j
            for k in range(height):
                for j in range(width // 2 + 1):
                    weight = 1 if j == 0 or 2 * j == width else 2
                    coef = complex(spec[k, j, 0].item(), spec[k, j, 1].item()) * scale[k, j].item()
                    total += (
                        weight * coef * cmath.exp(2j * math.pi * (k * n / height + j * m / width))
                    )
            expected = total.real / math.sqrt(height * width) / 4
            assert raw[n, m].item() == pytest.approx(expected, abs=1e-5)


def test_decorrelation_applies_normalized_colour_matrix() -> None:
    matrix = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    norms = [math.sqrt(sum(matrix[i, j].item() ** 2 for i in range(3))) for j in range(3)]
    expected_matrix = matrix / max(norms)
    assert_close(color_matrix(dtype=torch.float64), expected_matrix)
    for kind in ("pixel", "fft"):
        param = ImageParam(kind, 2, 3, (6, 5), decorrelate=True, generator=gen(1))
        raw = param.raw().detach().double()
        mixed = torch.zeros_like(raw)
        for i in range(3):
            for j in range(3):
                mixed[:, i] += expected_matrix[i, j] * raw[:, j]
        assert_close(param().double(), torch.sigmoid(mixed), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 2, 4])
def test_other_channel_counts_skip_colour_mapping(channels: int) -> None:
    param = ImageParam("fft", 3, channels, (9, 11), decorrelate=True, generator=gen())
    images = param()
    assert images.shape == (3, channels, 9, 11)
    assert_close(images, torch.sigmoid(param.raw()))


def test_any_size_values_in_unit_range_and_grey_start() -> None:
    for kind in ("fft", "pixel"):
        for size in [(2, 2), (17, 31), (128, 96)]:
            images = ImageParam(kind, 2, 3, size, generator=gen())().detach()
            assert images.shape == (2, 3, *size)
            assert float(images.min()) >= 0 and float(images.max()) <= 1
            assert abs(float(images.mean()) - 0.5) < 0.05  # sd 0.01 starts near grey


def test_seeded_and_independent_per_image() -> None:
    a = ImageParam("fft", 2, 3, (8, 8), generator=gen(5))()
    b = ImageParam("fft", 2, 3, (8, 8), generator=gen(5))()
    c = ImageParam("fft", 2, 3, (8, 8), generator=gen(6))()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])


def test_gradients_reach_only_values() -> None:
    param = ImageParam("fft", 2, 3, (8, 8), generator=gen())
    param()[0].sum().backward()
    assert [name for name, p in param.named_parameters()] == ["values"]
    assert param.values.grad is not None
    assert float(param.values.grad[0].abs().sum()) > 0
    assert float(param.values.grad[1].abs().sum()) == 0  # images are independent


def test_bad_arguments() -> None:
    with pytest.raises(VizError, match="fft, pixel"):
        ImageParam("wavelet", 1, 3, (8, 8))
    with pytest.raises(VizError, match="cannot make"):
        ImageParam("fft", 0, 3, (8, 8))
