"""Feature accentuation on a tiny hand-set model (fast) and on the default model (slow)."""

from __future__ import annotations

import pytest
import torch
from _render_models import tiny_loaded
from torch.testing import assert_close

from conftest import assert_same_state, model_state
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.optvis import objectives as O
from vizcnn.optvis import rendering
from vizcnn.optvis.accent_regularizer import default_reg_layer, layer_distance, transform_pair
from vizcnn.optvis.accentuation import accent_transforms, accentuate
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.param import ImagePhaseParam
from vizcnn.optvis.transforms import apply_transforms

UNIT = "features.3:0"  # the second conv's ReLU, channel 0
REG = "features.1"  # the first conv's ReLU: earlier than the unit


def photos(count: int = 2, size: int = 20, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, size, size, generator=gen) * 0.8 + 0.1


def test_phase_parameterization_starts_at_the_photograph() -> None:
    for shape in [(2, 3, 17, 20), (1, 3, 16, 15), (1, 1, 9, 8)]:
        images = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 0.98 + 0.01
        assert_close(ImagePhaseParam(images)(), images, rtol=0, atol=1e-5)


def test_transform_pair_is_apply_transforms_bit_for_bit() -> None:
    images, others = photos(4), photos(4, seed=1)
    loaded = tiny_loaded()
    ours, target = transform_pair(
        images,
        others,
        accent_transforms(),
        (16, 16),
        torch.Generator().manual_seed(3),
        then=loaded.normalize,
    )
    plain = apply_transforms(
        images,
        accent_transforms(),
        (16, 16),
        torch.Generator().manual_seed(3),
        then=loaded.normalize,
    )
    assert_close(ours, plain, rtol=0, atol=0)
    # the same boxes and noise: the photograph's crops equal the optimized ones when equal
    same, twin = transform_pair(
        images, images.clone(), accent_transforms(), (16, 16), torch.Generator().manual_seed(3)
    )
    assert_close(same, twin, rtol=0, atol=0)


def test_transform_pair_with_fewer_photographs_takes_the_first_rows_draws() -> None:
    images, others = photos(6), photos(6, seed=1)
    loaded = tiny_loaded()

    def pair(photographs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return transform_pair(
            images,
            photographs,
            accent_transforms(),
            (16, 16),
            torch.Generator().manual_seed(3),
            then=loaded.normalize,
        )

    full_out, full_target = pair(others)
    out, target = pair(others[:2])
    assert_close(out, full_out, rtol=0, atol=0)  # the optimized crops do not change
    assert target.shape[0] == 2
    assert_close(target, full_target[:2], rtol=0, atol=0)
    with pytest.raises(VizError, match="7 photographs for 6 images"):
        transform_pair(images, photos(7), accent_transforms(), (16, 16), None)


def test_layer_distance_against_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    acts, target = torch.randn(2, 5, 3, 4, generator=gen), torch.randn(2, 5, 3, 4, generator=gen)
    a, t = acts.double(), target.double()
    for b in range(2):
        gaps = [(a[b, :, y, x] - t[b, :, y, x]).norm() for y in range(3) for x in range(4)]
        norms = [t[b, :, y, x].norm() for y in range(3) for x in range(4)]
        l2 = float(sum(gaps) / sum(norms))
        chords = [
            (a[b, :, y, x] / a[b, :, y, x].norm() - t[b, :, y, x] / t[b, :, y, x].norm()).norm()
            for y in range(3)
            for x in range(4)
        ]
        assert layer_distance(acts, target, "l2")[b].item() == pytest.approx(l2, rel=1e-5)
        assert layer_distance(acts, target, "cosine")[b].item() == pytest.approx(
            float(sum(chords) / 12), rel=1e-5
        )
    # a vector layer (B, C): one position
    flat_a, flat_t = acts[:, :, 0, 0], target[:, :, 0, 0]
    expected = (flat_a - flat_t).norm(dim=1) / flat_t.norm(dim=1)
    assert_close(layer_distance(flat_a, flat_t, "l2"), expected, rtol=1e-5, atol=1e-6)


def test_weight_zero_is_render_started_from_the_photograph(monkeypatch: pytest.MonkeyPatch) -> None:
    """Oracle: `render` itself, its image parameterization swapped for the photographs' phases
    (the only thing render cannot be told), the same transforms, crops, rate and seeds."""
    loaded, images = tiny_loaded(), photos(3)
    run = RunOptions(batch=2)  # two chunks: chunk seeds must agree too
    ours = accentuate(
        loaded, images, UNIT, reg_layer=REG, reg_weight=0, steps=6, crops=2, seed=5, run=run
    )
    chunks = iter([images[:2], images[2:]])

    def from_photos(*_args: object, **_kwargs: object) -> ImagePhaseParam:
        return ImagePhaseParam(next(chunks))

    monkeypatch.setattr(rendering, "ImageParam", from_photos)
    config = RenderConfig(
        steps=6,
        size=20,
        param="fft",
        lr=0.05,
        lr_schedule="constant",
        transforms=accent_transforms(),
        crops=2,
    )
    theirs = rendering.render(loaded, [UNIT] * 3, config, seed=5, run=run)
    assert_close(ours.images, theirs.images, rtol=0, atol=0)
    assert_close(ours.values, theirs.values, rtol=0, atol=0)
    assert ours.balance.eq(0).all()


def test_large_weight_keeps_the_photograph() -> None:
    loaded, images = tiny_loaded(), photos(2)
    free = accentuate(loaded, images, UNIT, reg_layer=REG, reg_weight=0, steps=30, crops=2)
    held = accentuate(loaded, images, UNIT, reg_layer=REG, reg_weight=1e4, steps=30, crops=2)
    moved_free = (free.images - images).abs().mean()
    moved_held = (held.images - images).abs().mean()
    assert moved_held < 0.1 * moved_free
    # Adam steps every phase by about lr whatever the gradient scale: "nearly" the photograph
    assert moved_held < 0.01
    assert held.regularizer[-10:].mean() < 0.2 * free.regularizer[-10:].mean()


def test_unit_rises_on_average_and_more_without_the_regularizer() -> None:
    loaded, images = tiny_loaded(), photos(2)
    result = accentuate(loaded, images, UNIT, reg_layer=REG, steps=40, crops=4)
    windows = result.activation.view(4, 10, -1).mean((1, 2))  # mean over 10-step windows
    assert (windows[1:] > windows[:-1]).all(), windows
    assert (result.values > result.start_values).all()
    free = accentuate(loaded, images, UNIT, reg_layer=REG, reg_weight=0, steps=40, crops=4)
    assert free.values.mean() > result.values.mean()
    assert result.activation.shape == result.regularizer.shape == (40, 2)
    assert result.regularizer[0].eq(0).all()  # step 1: the photograph is its own target
    assert result.settings["reg_layer"] == REG and result.units == [UNIT] * 2


def test_reg_crops_is_a_mean_over_fewer_crops() -> None:
    """Oracle: with no random transform every crop of an image is the same picture, so the
    regularizer's mean over 1 crop equals its mean over all 4, and so does every step."""
    loaded, images = tiny_loaded(), photos(2)
    args = {"reg_layer": REG, "steps": 12, "crops": 4, "transforms": ()}
    one = accentuate(loaded, images, UNIT, reg_crops=1, **args)  # type: ignore[arg-type]
    every = accentuate(loaded, images, UNIT, reg_crops=4, **args)  # type: ignore[arg-type]
    assert one.settings["reg_crops"] == 1 and every.settings["reg_crops"] == 4
    assert_close(one.regularizer, every.regularizer, rtol=1e-5, atol=1e-7)
    assert_close(one.images, every.images, rtol=0, atol=1e-5)
    assert one.regularizer[2:].gt(0).all()  # the oracle is not a regularizer of zero


def test_reg_crops_reads_the_first_crops_and_every_crop_when_balancing() -> None:
    loaded, images = tiny_loaded(), photos(2)
    first_layer = loaded.module.features[0]
    rows: list[tuple[bool, int]] = []  # (gradient on, batch) of each pass at the first layer
    handle = first_layer.register_forward_pre_hook(
        lambda _m, inputs: rows.append((torch.is_grad_enabled(), inputs[0].shape[0]))
    )
    try:
        few = accentuate(loaded, images, UNIT, reg_layer=REG, steps=4, crops=4, reg_crops=1)
    finally:
        handle.remove()
    # per step: the photograph's crops (no gradient), then the optimized ones (all crops)
    steps = [(a, b) for a, b in zip(rows, rows[1:], strict=False) if not a[0] and b[0]]
    assert len(steps) == 4
    assert [target[1] for target, _ in steps] == [2, 8, 2, 2]  # step 2 balances: every crop
    assert all(main == (True, 8) for _, main in steps)
    every = accentuate(loaded, images, UNIT, reg_layer=REG, steps=4, crops=4, reg_crops=4)
    # the same draws, and the first two steps read the same crops: same start and balance
    assert_close(few.balance, every.balance, rtol=0, atol=0)
    assert_close(few.regularizer[:2], every.regularizer[:2], rtol=0, atol=0)
    assert not torch.equal(few.regularizer[2:], every.regularizer[2:])


def test_reg_crops_default_is_two_or_every_crop_when_fewer() -> None:
    loaded, images = tiny_loaded(), photos(1)
    for crops, expected in [(8, 2), (2, 2), (1, 1)]:
        result = accentuate(loaded, images, UNIT, reg_layer=REG, steps=2, crops=crops)
        assert result.settings["reg_crops"] == expected


def test_one_unit_per_image_and_a_concept_direction() -> None:
    loaded, images = tiny_loaded(), photos(2)
    vector = torch.tensor([1.0, -1.0, 0.5])
    units = [O.direction("features.3", vector), O.neuron("features.3", 1)]
    result = accentuate(loaded, images, units, reg_layer=REG, steps=20, crops=2)
    assert (result.values > result.start_values).all()
    assert result.units[0] == "features.3 direction"
    with pytest.raises(VizError, match="3 units for 2 images"):
        accentuate(loaded, images, [UNIT] * 3, reg_layer=REG, steps=2)


def test_uint8_photographs_are_taken_as_read_as_value_over_255() -> None:
    loaded = tiny_loaded()
    pixels = (photos(1) * 255).round().to(torch.uint8)
    a = accentuate(loaded, pixels, UNIT, reg_layer=REG, steps=3)
    b = accentuate(loaded, pixels.float() / 255, UNIT, reg_layer=REG, steps=3)
    assert_close(a.images, b.images, rtol=0, atol=0)


def test_generator_seed_stands_for_the_int_it_draws() -> None:
    loaded, images = tiny_loaded(), photos(1)
    from vizcnn.core.devices import draw_seed

    drawn = draw_seed(torch.Generator().manual_seed(9))
    a = accentuate(
        loaded, images, UNIT, reg_layer=REG, steps=4, seed=torch.Generator().manual_seed(9)
    )
    b = accentuate(loaded, images, UNIT, reg_layer=REG, steps=4, seed=drawn)
    assert_close(a.images, b.images, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unit": "nope:0"}, "nope"),
        ({"unit": "features.3:7"}, "channel 7 out of range"),
        ({"reg_layer": "features.3"}, "does not run before the unit's layer"),
        ({"reg_layer": "missing"}, "missing"),
        ({"image": torch.rand(1, 1, 20, 20)}, "1 channels but the model takes 3"),
        ({"image": torch.rand(1, 3, 20, 20) * 255}, r"in \[0, 1\]"),
        ({"image": torch.full((1, 3, 20, 20), float("nan"))}, "NaN"),
        ({"image": torch.rand(1, 3, 4, 4)}, "too small"),
        ({"steps": 0}, "steps must be"),
        ({"reg_weight": -1.0}, "reg_weight must be >= 0"),
        ({"reg_weight": float("inf")}, "finite"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"distance": "l1"}, "unknown distance 'l1'; valid: l2, cosine"),
        ({"reg_crops": 0}, r"reg_crops must be an int from 1 to crops \(8\), got 0"),
        ({"reg_crops": 9}, r"reg_crops must be an int from 1 to crops \(8\), got 9"),
        ({"reg_crops": True}, "reg_crops must be an int"),
        ({"crops": 0}, "crops must be an int of at least 1"),
    ],
)
def test_bad_input_is_one_line(kwargs: dict[str, object], message: str) -> None:
    loaded = tiny_loaded()
    args: dict[str, object] = {"image": photos(1), "unit": UNIT, "reg_layer": REG, "steps": 2}
    args.update(kwargs)
    image, unit = args.pop("image"), args.pop("unit")
    with pytest.raises(VizError, match=message) as info:
        accentuate(loaded, image, unit, **args)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_model_left_unchanged_even_in_train_mode_and_on_errors() -> None:
    loaded = tiny_loaded(frozen=False)
    loaded.module.train()
    before = model_state(loaded.module)
    accentuate(loaded, photos(1), UNIT, reg_layer=REG, steps=3)
    assert_same_state(before, model_state(loaded.module))
    with pytest.raises(VizError):
        accentuate(loaded, photos(1), UNIT, reg_layer="features.3", steps=3)
    assert_same_state(before, model_state(loaded.module))


def test_non_finite_loss_stops_with_the_step(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = tiny_loaded()
    calls = {"n": 0}
    real = loaded.module.features[2].forward

    def poisoned(x: torch.Tensor) -> torch.Tensor:
        value = real(x)
        if torch.is_grad_enabled():
            calls["n"] += 1
            return value * float("nan") if calls["n"] >= 3 else value
        return value

    monkeypatch.setattr(loaded.module.features[2], "forward", poisoned)
    with pytest.raises(VizError, match=r"non-finite \(nan\) at step 3 \(image 1 of 1\)"):
        accentuate(loaded, photos(1), UNIT, reg_layer=REG, steps=6)


def test_progress_counts_images_times_steps() -> None:
    seen: list[tuple[int, int]] = []
    accentuate(
        tiny_loaded(),
        photos(3),
        UNIT,
        reg_layer=REG,
        steps=2,
        run=RunOptions(batch=2),
        progress=lambda done, total, _m: seen.append((done, total)),
    )
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.slow
def test_lite0_accentuation_rises_and_defaults_to_an_early_layer(lite0) -> None:  # type: ignore[no-untyped-def]
    from vizcnn.data.samples import sample_image
    from vizcnn.io.imaging import resize

    assert default_reg_layer(lite0, ["_blocks.9"]) == "_blocks.2"
    assert default_reg_layer(lite0, [O.LOGITS]) == "_blocks.2"
    photo = resize(sample_image("coffee")[None], (224, 224)).clamp(0, 1)
    result = accentuate(lite0, photo, "_blocks.9:3", steps=12, crops=2)
    assert result.settings["reg_layer"] == "_blocks.2"
    assert result.values[0] > result.start_values[0]
    assert result.activation[6:].mean() > result.activation[:6].mean()


def test_class_unit_with_cosine_distance_on_a_torchvision_net() -> None:
    import torchvision

    from vizcnn import describe

    loaded = describe(torchvision.models.resnet18(weights=None), input_size=64)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.2
    result = accentuate(
        loaded, images, O.class_logit(3), steps=4, crops=1, distance="cosine", reg_weight=2
    )
    assert result.settings["reg_layer"] == "layer1"  # the default: the stride-4 stage output
    assert result.regularizer[1:].gt(0).all() and result.regularizer[1:].lt(2).all()


def test_no_default_reg_layer_says_to_give_one() -> None:
    with pytest.raises(VizError, match="no stage output of tiny runs before") as info:
        accentuate(tiny_loaded(), photos(1), UNIT, steps=2)
    assert "give reg_layer" in str(info.value) and "\n" not in str(info.value)
