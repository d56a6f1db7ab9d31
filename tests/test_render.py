"""The batched render loop on tiny hand-set models (fast) and on the default model (slow)."""

from __future__ import annotations

import pytest
import torch
from _render_models import Tripwire, hooks_left, tiny_loaded
from torch import nn
from torch.testing import assert_close

from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.hooks import forward_to
from vizcnn.io.imaging import resize
from vizcnn.optvis import objectives as O
from vizcnn.optvis.config import CHUNK_SEED_STRIDE, RenderConfig
from vizcnn.optvis.rendering import layer_channels, render, render_iter

FAST = RenderConfig(steps=12, size=12)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def channel_means(loaded, images: torch.Tensor, layer: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Oracle: every channel's mean on the untransformed images, by a plain forward pass."""
    with torch.no_grad():
        inputs = loaded.normalize(resize(images, loaded.input_size))
        return forward_to(loaded.module, inputs, [layer])[layer].mean((2, 3))


def test_values_are_the_units_objective_on_the_returned_images() -> None:
    loaded = tiny_loaded()
    units = ["features.0:0", "features.0:3", O.neuron("features.2", 1), O.class_logit("Dog")]
    result = render(loaded, units, FAST, run=RunOptions(batch=4))
    assert result.images.shape == (4, 3, 12, 12)
    assert result.units == ["features.0:0", "features.0:3", "features.2:1", "class 1 (Dog)"]
    means = channel_means(loaded, result.images, "features.0")
    assert_close(result.values[0], means[0, 0])
    assert_close(result.values[1], means[1, 3])
    with torch.no_grad():
        inputs = loaded.normalize(resize(result.images, loaded.input_size))
        acts = forward_to(loaded.module, inputs, ["features.2"])["features.2"]
        logits = loaded.module(inputs)
    assert_close(result.values[2], acts[2, 1, 8, 8])  # centre of the 16 x 16 map
    assert_close(result.values[3], logits[3, 1])


def test_optimization_raises_each_images_own_unit() -> None:
    loaded = tiny_loaded()
    units = [f"features.2:{c}" for c in range(3)]
    config = RenderConfig(steps=40, size=12, transforms=())
    start = render(loaded, units, RenderConfig(steps=1, size=12, lr=1e-9, transforms=()))
    result = render(loaded, units, config, run=RunOptions(batch=3))
    means = channel_means(loaded, result.images, "features.2")
    for i in range(3):
        assert result.values[i] > start.values[i] + 0.5
        # image i drives channel i harder than the images made for the other channels do
        assert means[i, i] == means[:, i].max()


def test_image_i_does_not_depend_on_other_units() -> None:
    loaded = tiny_loaded()
    a = render(loaded, ["features.0:1", "features.0:2"], FAST, seed=3, run=RunOptions(batch=4))
    b = render(loaded, ["features.0:1", "features.2:0"], FAST, seed=3, run=RunOptions(batch=4))
    assert torch.equal(a.images[0], b.images[0])
    assert not torch.equal(a.images[1], b.images[1])


def test_chunks_progress_and_unit_order() -> None:
    loaded = tiny_loaded()
    calls: list[tuple[int, int, str]] = []
    config = RenderConfig(steps=3, size=10)
    parts = list(
        render_iter(
            loaded,
            [f"features.0:{c}" for c in range(4)] + ["features.2:0"],
            config,
            progress=lambda d, t, m: calls.append((d, t, m)),
            run=RunOptions(batch=2),
        )
    )
    assert [p.unit_index for p in parts] == [[0, 1], [2, 3], [4]]
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and done[-1] == calls[-1][1] == 5 * 3
    assert "unit 5 of 5, step 3/3" in calls[-1][2]


def test_diversity_gives_several_pushed_apart_images_per_unit() -> None:
    loaded = tiny_loaded()
    config = RenderConfig(steps=30, size=12, diversity=3, diversity_weight=0.0)
    plain = render(loaded, ["features.2:0", "features.2:1"], config, run=RunOptions(batch=6))
    assert plain.unit_index == [0, 0, 0, 1, 1, 1]
    assert plain.images.shape[0] == 6
    pushed = render(
        loaded,
        ["features.2:0", "features.2:1"],
        RenderConfig(steps=30, size=12, diversity=3, diversity_weight=50.0),
        run=RunOptions(batch=6),
    )

    def similarity(result) -> float:  # type: ignore[no-untyped-def]
        with torch.no_grad():
            inputs = loaded.normalize(resize(result.images, loaded.input_size))
            acts = forward_to(loaded.module, inputs, ["features.2"])["features.2"]
        ctx = O.ObjectiveContext(
            {"features.2": acts}, result.images, torch.tensor(result.unit_index)
        )
        return float(O.diversity("features.2")(ctx).sum())

    assert similarity(pushed) < similarity(plain)


def test_diversity_for_a_class_uses_the_models_render_layer() -> None:
    loaded = tiny_loaded()  # no zoo entry: the fallback conv two thirds deep, features.2
    assert loaded.layers_for("render")[0] == "features.2"

    def run(layer: str | None) -> torch.Tensor:
        config = RenderConfig(
            steps=4, size=12, diversity=2, diversity_weight=5.0, diversity_layer=layer
        )
        return render(loaded, [O.class_logit("cat")], config).images

    # oracle: the default equals naming the render layer, and naming another layer differs
    default = run(None)
    assert torch.equal(default, run("features.2"))
    assert not torch.equal(default, run("features.0"))
    with pytest.raises(VizError, match="did you mean"):
        render(
            loaded,
            ["features.0:0"],
            RenderConfig(steps=2, diversity=2, diversity_layer="feature.2"),
        )


def test_stops_at_the_target_layer() -> None:
    loaded = tiny_loaded()
    loaded.module.head = Tripwire()  # type: ignore[assignment]
    result = render(loaded, ["features.2:0"], FAST, run=RunOptions(batch=4))
    assert torch.isfinite(result.values).all()
    with pytest.raises(AssertionError, match="past the target"):
        render(loaded, [O.class_logit(0)], FAST, run=RunOptions(batch=4))


def _state(module: nn.Module) -> tuple:  # type: ignore[type-arg]
    return (
        [m.training for m in module.modules()],
        [p.requires_grad for p in module.parameters()],
        [getattr(m, "inplace", None) for m in module.modules()],
        {k: v.clone() for k, v in module.state_dict().items()},
    )


def _assert_same(before: tuple, module: nn.Module) -> None:  # type: ignore[type-arg]
    after = _state(module)
    assert before[:3] == after[:3]
    for key, value in before[3].items():
        assert torch.equal(value, after[3][key])
    assert hooks_left(module) == 0


def test_model_left_unchanged_even_when_it_trains_and_on_errors() -> None:
    loaded = tiny_loaded(frozen=False)
    module = loaded.module
    module.train()
    module.features[2].requires_grad_(False)  # a mix of flags to restore
    before = _state(module)
    render(loaded, ["features.0:0", O.class_logit(2)], FAST, run=RunOptions(batch=4))
    _assert_same(before, module)
    assert all(p.grad is None for p in module.parameters())  # frozen during the render
    with pytest.raises(VizError):
        render(loaded, ["features.0:9"], FAST, run=RunOptions(batch=4))
    _assert_same(before, module)


def test_errors_are_one_line_and_say_what_is_valid() -> None:
    loaded = tiny_loaded()
    with pytest.raises(
        VizError, match=r"layer 'features.0': channel 9 out of range; valid: 0\.\.3"
    ):
        render(loaded, ["features.0:9"], FAST, run=RunOptions(batch=4))
    with pytest.raises(VizError, match="did you mean: espresso"):
        render(loaded, [O.class_logit("expresso")], FAST, run=RunOptions(batch=4))
    with pytest.raises(VizError, match="did you mean"):
        render(loaded, ["features.9:0"], FAST, run=RunOptions(batch=4))
    bad_settings: list[dict[str, object]] = [
        {"steps": 0},
        {"param": "dct"},
        {"lr": 0},
        {"lr": float("inf")},
        {"lr": float("nan")},
        {"diversity_weight": float("inf")},
        {"size": 4},
    ]
    for bad in bad_settings:
        with pytest.raises(VizError) as info:
            RenderConfig(**bad)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    with pytest.raises(VizError) as info:  # batch is how it runs: RunOptions
        RunOptions(batch=0)
    assert "\n" not in str(info.value)


def test_non_finite_loss_names_the_step() -> None:
    loaded = tiny_loaded()
    calls = {"n": 0}

    def explode(ctx: O.ObjectiveContext) -> torch.Tensor:
        calls["n"] += 1
        value = ctx.layer("features.0")[:, 0].mean((1, 2))
        return value * float("nan") if calls["n"] >= 5 else value

    objective = O.Objective(explode, ("features.0",), "explode")
    with pytest.raises(VizError, match=r"non-finite \(nan\) at step 5 \(unit 1 of 1\)") as info:
        render(loaded, [objective], FAST, run=RunOptions(batch=4))
    assert "\n" not in str(info.value) and "lower RenderConfig.lr" in str(info.value)
    assert hooks_left(loaded.module) == 0


def test_same_seed_same_images_and_config_reproducible() -> None:
    loaded = tiny_loaded()
    a = render(loaded, ["features.0:0", "features.0:1"], FAST, seed=1, run=RunOptions(batch=4))
    b = render(loaded, ["features.0:0", "features.0:1"], FAST, seed=1, run=RunOptions(batch=4))
    c = render(loaded, ["features.0:0", "features.0:1"], FAST, seed=2, run=RunOptions(batch=4))
    assert torch.equal(a.images, b.images) and torch.equal(a.values, b.values)
    assert not torch.equal(a.images, c.images)


def test_each_chunk_draws_from_its_own_seed() -> None:
    loaded = tiny_loaded()
    config = RenderConfig(steps=5, size=10)
    units = [f"features.0:{c}" for c in range(4)] + ["features.2:0"]
    full = render(loaded, units, config, seed=7, run=RunOptions(batch=2))
    # oracle: chunk n is the first chunk of a render of its own units seeded seed + n * stride
    for number, start in enumerate(range(0, 5, 2)):
        alone = render(
            loaded,
            units[start : start + 2],
            config,
            seed=7 + CHUNK_SEED_STRIDE * number,
            run=RunOptions(batch=2),
        )
        assert torch.equal(alone.images, full.images[start : start + 2])


def test_skip_renders_only_unfinished_chunks_with_the_same_pictures() -> None:
    loaded = tiny_loaded()
    config = RenderConfig(steps=4, size=10)
    units = [f"features.0:{c}" for c in range(4)] + ["features.2:0"]
    full = render(loaded, units, config, seed=3, run=RunOptions(batch=2))
    calls: list[tuple[int, int, str]] = []
    parts = list(
        render_iter(
            loaded,
            units,
            config,
            seed=3,
            skip={0, 1, 2},
            progress=lambda d, t, m: calls.append((d, t, m)),
            run=RunOptions(batch=2),
        )
    )
    # chunk 0 is skipped; chunk 1 runs whole but yields only unit 3; chunk 2 runs
    assert [p.unit_index for p in parts] == [[3], [4]]
    assert torch.equal(torch.cat([p.images for p in parts]), full.images[3:])
    assert calls[-1][0] == calls[-1][1] == 3 * 4  # three units' steps: ends at 100%
    assert {m.split(",")[0] for _, _, m in calls} == {"units 3-4 of 5", "unit 5 of 5"}


def test_a_spec_with_several_channels_is_one_unit_per_channel() -> None:
    loaded = tiny_loaded()
    config = RenderConfig(steps=3, size=10)
    ranged = render(loaded, ["features.0:0:3"], config, run=RunOptions(batch=4))
    listed = render(
        loaded, ["features.0:0", "features.0:1", "features.0:2"], config, run=RunOptions(batch=4)
    )
    assert ranged.units == ["features.0:0", "features.0:1", "features.0:2"]
    assert torch.equal(ranged.images, listed.images)
    assert torch.equal(
        render(loaded, ["features.0:0-2"], config, run=RunOptions(batch=4)).images, listed.images
    )
    # no channels: the default selection (all 4 of this small layer)
    assert len(render(loaded, ["features.0"], config, run=RunOptions(batch=4)).units) == 4


@pytest.mark.parametrize("channels", [1, 2])
def test_any_channel_count_and_non_square_size(channels: int) -> None:
    loaded = tiny_loaded(channels=channels, size=20)
    for param in ("fft", "pixel"):
        config = RenderConfig(steps=4, size=(9, 14), param=param)
        result = render(loaded, ["features.0:1", "features.2:2"], config)
        assert result.images.shape == (2, channels, 9, 14)
        assert torch.isfinite(result.values).all()


def test_default_size_is_128_or_the_smaller_input() -> None:
    assert RenderConfig().image_size(tiny_loaded(size=16)) == (16, 16)
    assert RenderConfig().image_size(tiny_loaded(size=224)) == (128, 128)
    assert RenderConfig(size=(30, 40)).image_size(tiny_loaded()) == (30, 40)


def test_layer_channels_and_amp_ignored_on_cpu() -> None:
    loaded = tiny_loaded()
    assert layer_channels(loaded, "features.0") == 4
    assert layer_channels(loaded, "features.2") == 3
    plain = render(loaded, ["features.0:0"], FAST, run=RunOptions(batch=4))
    amp = render(
        loaded,
        ["features.0:0"],
        RenderConfig(steps=12, size=12),
        run=RunOptions(batch=4, amp=True),
    )
    # on a CPU without native bf16 amp is off (equal images); with it, values stay close
    torch.testing.assert_close(amp.values, plain.values, rtol=0.05, atol=0.05)


def high_frequency_share(images: torch.Tensor) -> float:
    """Share of spectral power above half the Nyquist frequency (mean removed), averaged."""
    spectrum = torch.fft.rfft2(images - images.mean((-2, -1), keepdim=True)).abs().pow(2)
    fy = torch.fft.fftfreq(images.shape[-2]).abs().view(-1, 1)
    fx = torch.fft.rfftfreq(images.shape[-1]).view(1, -1)
    high = (torch.maximum(fy, fx) > 0.25).to(spectrum.dtype)
    return float(((spectrum * high).sum((-2, -1)) / spectrum.sum((-2, -1))).mean())


def test_fourier_steps_carry_less_high_frequency_than_pixel_steps() -> None:
    from vizcnn.optvis.param import ImageParam

    loaded = tiny_loaded(size=32)
    units = [f"features.2:{c}" for c in range(3)]
    shares = {}
    for kind in ("fft", "pixel"):
        config = RenderConfig(steps=1, size=32, param=kind, decorrelate=kind == "fft")
        result = render(loaded, units, config)
        # the same seed draws the same initial parameters first
        start = ImageParam(kind, 3, 3, (32, 32), decorrelate=kind == "fft")()
        shares[kind] = high_frequency_share(result.images - start.detach())
    assert shares["fft"] < 0.5 * shares["pixel"]


def test_lenet_digits_one_channel_render() -> None:
    from vizcnn.models.loading import load_model

    loaded = load_model("lenet5_digits")
    start = render(loaded, ["features.3:0", O.class_logit(7)], RenderConfig(steps=1, lr=1e-9))
    result = render(
        loaded, ["features.3:0", O.class_logit(7)], RenderConfig(steps=40), run=RunOptions(batch=2)
    )
    assert result.images.shape == (2, 1, 32, 32)
    assert (result.values > start.values).all()


# --- the default model (slow: a few tens of seconds each on 2 CPU cores) -------------------


@pytest.fixture(scope="module")
def lite0():  # type: ignore[no-untyped-def]
    from vizcnn.models.loading import load_model

    return load_model("efficientnet_lite0")


@pytest.mark.slow
def test_espresso_render_is_classified_as_espresso(lite0) -> None:  # type: ignore[no-untyped-def]
    result = render(lite0, [O.class_logit("espresso")], RenderConfig(steps=64))
    with torch.no_grad():
        probs = lite0.module(lite0.normalize(resize(result.images, lite0.input_size))).softmax(1)
    assert probs[0, lite0.class_index("espresso")] >= 0.9


@pytest.mark.slow
def test_channel_render_far_above_natural_images(lite0) -> None:  # type: ignore[no-untyped-def]
    from vizcnn.data.samples import sample_image

    layer, channels = "_blocks.9", [0, 3]
    names = ["coffee", "chelsea", "astronaut", "china", "flower"]
    photos = torch.stack([resize(sample_image(n)[None], lite0.input_size)[0] for n in names])
    natural = channel_means(lite0, photos, layer)[:, channels]
    steps = 24  # enough to leave every natural image far behind; keeps the test short
    fft = render(lite0, [f"{layer}:{c}" for c in channels], RenderConfig(steps=steps, param="fft"))
    rendered = channel_means(lite0, fft.images, layer)
    for i, c in enumerate(channels):
        spread = float(natural[:, i].max() - natural[:, i].min())
        assert float(rendered[i, c]) > float(natural[:, i].max()) + 2 * spread
        assert float(rendered[i, c]) > 3 * float(natural[:, i].abs().max())
    pixel = render(
        lite0,
        [f"{layer}:{c}" for c in channels],
        RenderConfig(steps=steps, param="pixel", decorrelate=False),
    )
    # Fourier + decorrelation: far less high-frequency energy at equal steps (0.12 vs 0.45)
    assert high_frequency_share(fft.images) < 0.5 * high_frequency_share(pixel.images)
    assert hooks_left(lite0.module) == 0
    assert not any(p.requires_grad for p in lite0.module.parameters())
