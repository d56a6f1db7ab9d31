"""The `maco` parameterization, crop/noise transforms and the recipe's render options.

Oracles: numpy's FFT and a float64 power law built here (not the code's), synthetic power-law
noise with a known exponent, hand-checked crop geometry, and renders repeated with one seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _render_models import tiny_loaded
from torch.testing import assert_close

from vizcnn.core.adam import Adam
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.optvis import config as render_config
from vizcnn.optvis import objectives as O
from vizcnn.optvis import rendering
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.param import (
    MACO_CHANNEL_WEIGHTS,
    MACO_DECAY,
    ImageParam,
    spectrum_fit,
)
from vizcnn.optvis.rendering import render
from vizcnn.optvis.transforms import Crop, Noise, apply_transforms, draw


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def expected_amplitude(channels: int, height: int, width: int) -> np.ndarray:
    """k_c / max(|f|, 1/max(H, W)) ** decay, DC 0, scaled to unit pixel variance (numpy, float64)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    base = 1.0 / np.maximum(f, 1.0 / max(height, width)) ** MACO_DECAY
    base[0, 0] = 0.0
    weights = MACO_CHANNEL_WEIGHTS if channels == 3 else (1.0,) * channels
    amplitude = np.stack([w * base for w in weights])
    # the two-sided spectrum's energy equals the image's (orthonormal DFT): rfft columns other
    # than 0 and Nyquist stand for two bins each
    energy = 0.0
    for j in range(width // 2 + 1):
        twice = 1 if j == 0 or 2 * j == width else 2
        energy += twice * float((amplitude[:, :, j] ** 2).sum())
    return amplitude * math.sqrt(channels * height * width / energy)


@pytest.mark.parametrize(("channels", "size"), [(3, (16, 16)), (3, (9, 12)), (1, (7, 5))])
def test_maco_spectrum_has_the_fixed_amplitude_whatever_the_phase(
    channels: int, size: tuple[int, int]
) -> None:
    height, width = size
    param = ImageParam("maco", 2, channels, size, generator=gen(1))
    with torch.no_grad():
        param.values.add_(torch.randn(param.values.shape, generator=gen(2)) * 3)  # any phases
    raw = param.raw().detach().double().numpy()
    spectrum = np.abs(np.fft.rfft2(raw, norm="ortho"))
    want = expected_amplitude(channels, height, width)
    np.testing.assert_allclose(spectrum, np.broadcast_to(want, spectrum.shape), atol=1e-5)
    # unit variance, zero mean per image (Parseval), so contrast is fixed too
    np.testing.assert_allclose(raw.var(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(raw.mean(axis=(1, 2, 3)), 0.0, atol=1e-6)
    images = param().detach()
    assert images.dtype == torch.float32 and float(images.min()) > 0 and float(images.max()) < 1


def test_maco_gradient_moves_only_the_phase() -> None:
    param = ImageParam("maco", 1, 3, (12, 12), generator=gen(0))
    optimizer = torch.optim.Adam(param.parameters(), lr=0.3)
    for _ in range(5):
        optimizer.zero_grad()
        (-param()[:, 0, :6].mean()).backward()  # make the top of the red channel bright
        optimizer.step()
    spectrum = np.abs(np.fft.rfft2(param.raw().detach().double().numpy(), norm="ortho"))
    np.testing.assert_allclose(spectrum[0], expected_amplitude(3, 12, 12), atol=1e-5)


@pytest.mark.parametrize("decay", [1.0, 1.6])
def test_spectrum_fit_recovers_a_known_power_law(decay: float) -> None:
    size = 64
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.maximum(np.sqrt(fx**2 + fy**2), 1 / size)
    rng = np.random.default_rng(0)
    phases = np.angle(np.fft.rfft2(rng.standard_normal((8, 1, size, size))))  # Hermitian
    images = np.fft.irfft2(f**-decay * np.exp(1j * phases), s=(size, size), norm="ortho")
    fitted, weights = spectrum_fit(torch.from_numpy(images))
    assert fitted == pytest.approx(decay, abs=0.05)
    assert weights == (1.0,)


def test_stored_spectrum_constants_are_the_fit_on_the_bundled_samples() -> None:
    from vizcnn.data.samples import sample_image
    from vizcnn.io.imaging import resize

    names = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "china", "flower"]
    names += ["brick", "grass", "gravel", "coins", "camera", "moon"]
    photos = []
    for name in names:
        image = sample_image(name, 3)
        side = min(image.shape[-2:])
        photos.append(resize(image[None, :, :side, :side], (128, 128))[0])
    decay, weights = spectrum_fit(torch.stack(photos))
    assert decay == pytest.approx(MACO_DECAY, abs=0.01)
    assert weights == pytest.approx(MACO_CHANNEL_WEIGHTS, abs=0.01)


def test_crop_box_stays_inside_and_is_enlarged_to_the_canvas() -> None:
    drawn = draw([Crop(0.25, 0.5)], 64, (40, 40), gen(3))
    matrices = drawn.matrices  # source (centred px) -> canvas
    zoom = matrices[:, 0, 0]
    assert bool((zoom >= 2 - 1e-9).all() and (zoom <= 4 + 1e-9).all())
    assert_close(matrices[:, 1, 1], zoom)
    assert_close(matrices[:, 0, 1], torch.zeros_like(zoom))
    inverse = torch.linalg.inv(matrices)
    for cx, cy in ((-20, -20), (20, 20), (-20, 20), (20, -20)):  # the canvas corners
        corner = inverse @ torch.tensor([cx, cy, 1.0], dtype=inverse.dtype)
        assert bool((corner[:, :2].abs() <= 20 + 1e-9).all())  # come from inside the image
    assert drawn.canvas == (40, 40)


def test_crop_of_a_ramp_magnifies_it() -> None:
    ramp = torch.linspace(0, 1, 32).expand(1, 1, 32, 32).contiguous()
    out = apply_transforms(ramp, [Crop(0.5, 0.5)], (32, 32), gen(0))
    slope_in = float(ramp[0, 0, 0, 20] - ramp[0, 0, 0, 10]) / 10
    slope_out = float(out[0, 0, 16, 20] - out[0, 0, 16, 10]) / 10
    assert slope_out == pytest.approx(slope_in / 2, rel=1e-4)  # content twice as large


def test_noise_has_the_requested_spread_and_is_seeded() -> None:
    flat = torch.full((4, 3, 32, 32), 0.5)
    noisy = apply_transforms(flat, [Noise(0.1)], (32, 32), gen(5))
    assert float((noisy - 0.5).std()) == pytest.approx(0.1, rel=0.05)
    assert float((noisy - 0.5).mean()) == pytest.approx(0.0, abs=0.01)
    assert_close(noisy, apply_transforms(flat, [Noise(0.1)], (32, 32), gen(5)))
    with pytest.raises(VizError, match="noise sd must be >= 0"):
        apply_transforms(flat, [Noise(-1.0)], (32, 32), gen(5))
    with pytest.raises(VizError, match="0 < low <= high <= 1"):
        draw([Crop(0.8, 0.2)], 1, (8, 8), gen(0))


class _RecordingAdam(Adam):
    made: list[_RecordingAdam] = []

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.lrs: list[float] = []
        _RecordingAdam.made.append(self)

    def step(self) -> None:
        self.lrs.append(self.lr)
        super().step()


def test_parameters_and_optimizer_state_stay_float32_and_cosine_decays(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rendering, "Adam", _RecordingAdam)
    _RecordingAdam.made.clear()
    loaded = tiny_loaded()
    loaded.module.double()  # a float64 model: the image side must still be float32
    config = RenderConfig(steps=6, param="maco", crops=2, lr_schedule="cosine")
    result = render(loaded, [O.class_logit(0), "features.2:1"], config, run=RunOptions(amp=True))
    assert result.images.dtype == torch.float32
    (optimizer,) = _RecordingAdam.made
    assert optimizer.params and all(p.dtype == torch.float32 for p in optimizer.params)
    state = [*optimizer.first, *optimizer.second]
    assert {t.dtype for t in state} == {torch.float32}
    assert all(t.abs().sum() > 0 for t in state)  # the moments were updated
    want = [0.2 * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]  # maco's own lr
    assert optimizer.lrs == pytest.approx(want)


@pytest.mark.parametrize("param", ["maco", "fft"])
def test_same_seed_same_render_other_seed_other_render(param: str) -> None:
    loaded = tiny_loaded()
    config = RenderConfig(steps=5, param=param, crops=2, lr_schedule="cosine")
    units = ["features.2:0", "features.2:2"]
    first = render(loaded, units, config, seed=3)
    assert torch.equal(first.images, render(loaded, units, config, seed=3).images)
    assert torch.equal(first.values, render(loaded, units, config, seed=3).values)
    assert not torch.equal(first.images, render(loaded, units, config, seed=4).images)


def test_crops_without_transforms_equal_one_crop() -> None:
    loaded = tiny_loaded()
    units = ["features.2:0", "features.2:1"]
    one = render(loaded, units, RenderConfig(steps=4, param="maco", transforms=()))
    three = render(loaded, units, RenderConfig(steps=4, param="maco", transforms=(), crops=3))
    assert_close(three.images, one.images)


def test_crops_keep_diversity_within_each_copy() -> None:
    loaded = tiny_loaded()
    config = RenderConfig(steps=4, param="maco", crops=2, diversity=2, diversity_layer="features.2")
    result = render(loaded, ["features.2:0"], config)
    assert result.images.shape[0] == 2
    assert not torch.equal(result.images[0], result.images[1])


def test_config_rejects_bad_crops_schedule_and_param() -> None:
    with pytest.raises(VizError, match="crops must be at least 1"):
        RenderConfig(crops=0)
    with pytest.raises(VizError, match="valid: constant, cosine"):
        RenderConfig(lr_schedule="step")
    with pytest.raises(VizError, match="valid: auto, maco, fft, pixel"):
        RenderConfig(param="lucid")


def test_auto_param_is_maco_for_class_renders_and_fft_otherwise() -> None:
    loaded = tiny_loaded()
    classes = [O.class_logit(0), O.class_logit(2)]
    channel = O.channel("features.2", 1)
    assert render_config.resolve_param("auto", classes) == "maco"
    assert render_config.resolve_param("auto", [channel]) == "fft"
    assert render_config.resolve_param("auto", [classes[0], channel]) == "fft"  # mixed: fft for all
    assert render_config.resolve_param("pixel", classes) == "pixel"  # an explicit choice stays
    assert (
        render_config.resolve_param("auto", ["features.2:1"]) == "fft"
    )  # unit strings name layers
    assert RenderConfig().resolved(["features.2:1", "features.2:0"]).param == "fft"
    config = RenderConfig(steps=4)  # param="auto" is the default
    for units, param in ((classes, "maco"), ([channel, "features.0:2"], "fft")):
        auto = render(loaded, units, config, seed=1, run=RunOptions(batch=4))
        explicit = render(
            loaded, units, RenderConfig(steps=4, param=param), seed=1, run=RunOptions(batch=4)
        )
        assert torch.equal(auto.images, explicit.images)
    # auto resolves here too: no unresolved state to refuse
    assert config.transform_chain(classes) == RenderConfig(param="maco").transform_chain()
    assert config.transform_chain([channel]) == RenderConfig(param="fft").transform_chain()
    assert config.transform_chain() == RenderConfig(param="fft").transform_chain()


def test_recipe_fills_lr_and_schedule_left_unset_and_keeps_those_set() -> None:
    classes = [O.class_logit(0)]
    auto = RenderConfig().resolved(classes)
    assert (auto.param, auto.lr, auto.lr_schedule) == ("maco", 0.2, "cosine")
    fft = RenderConfig().resolved([O.channel("features.2", 0)])
    assert (fft.param, fft.lr, fft.lr_schedule) == ("fft", 0.05, "constant")
    mine = RenderConfig(param="maco", lr=0.07, lr_schedule="constant").resolved(classes)
    assert (mine.lr, mine.lr_schedule) == (0.07, "constant")
    assert RenderConfig().resolved().param == "fft"  # nothing known about the units: fft
    # an unresolved config is refused where it would run
    loaded = tiny_loaded()
    with pytest.raises(ValueError, match="resolved"):
        rendering._render_chunk(
            loaded,
            [],
            [0],
            RenderConfig(param="fft"),
            RunOptions(),
            torch.Generator(),
            lambda *a: None,
            1,
        )
