"""DeepDream: objective, roll, tiling, octaves, guided dreaming, video and the `dream` command.

Oracles: a straightforward re-implementation of the original notebook (explicit pyramid,
torch.roll, whole-image gradient), brute-force loops for the guided objective, and a pointwise
model for which tiling must be exact.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

from vizcnn import load_model
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.deepdream.dreaming import (
    DreamConfig,
    LayerTarget,
    dream,
    dream_memory,
    dream_objective,
    guide_features,
    octave_sizes,
    parse_layer_target,
)
from vizcnn.deepdream.tiling import rolled_gradient, tile_shapes, tile_spans, wrapped_spans
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames, zoom_center
from vizcnn.hooks import forward_to
from vizcnn.io.imaging import read_png_metadata
from vizcnn.io.video import save_mp4
from vizcnn.models.loading import LoadedModel, freeze

MEAN = (0.4, 0.5, 0.6)
STD = (0.2, 0.25, 0.3)


def _tiny(pointwise: bool = False, dtype: torch.dtype = torch.float64) -> LoadedModel:
    """A 2-conv net with seeded weights; `pointwise` uses 1x1 kernels (no spatial mixing)."""
    generator = torch.Generator().manual_seed(1)
    k = 1 if pointwise else 3
    module = nn.Sequential(
        nn.Conv2d(3, 4, k, padding=k // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, k, stride=1 if pointwise else 2, padding=k // 2),
    )
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    module = freeze(module.to(dtype))
    return LoadedModel("tiny", module, MEAN, STD, (16, 16), [], {"dream": ["2"]})


def _image(height: int, width: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(channels, height, width, generator=generator, dtype=torch.float64)


@pytest.fixture(scope="module")
def lite0() -> LoadedModel:
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def alexnet() -> LoadedModel:
    return load_model("alexnet", weights="none")


def _state(module: nn.Module) -> list[tuple[object, ...]]:
    """Everything a technique must leave as found: flags, requires_grad, hooks, inplace."""
    rows: list[tuple[object, ...]] = []
    for name, sub in module.named_modules():
        hooks = (
            len(sub._forward_hooks),
            len(sub._forward_pre_hooks),
            len(sub._backward_hooks),
            len(getattr(sub, "_backward_pre_hooks", {})),
        )
        rows.append((name, sub.training, getattr(sub, "inplace", None), hooks))
    rows.extend((name, p.requires_grad) for name, p in module.named_parameters())
    return rows


# --- layer specs and the objective -------------------------------------------------------------


def test_parse_layer_target() -> None:
    assert parse_layer_target("_blocks.9:0-15@2") == LayerTarget("_blocks.9", tuple(range(16)), 2.0)
    assert parse_layer_target("a#1:3,5-6") == LayerTarget("a#1", (3, 5, 6), 1.0)
    assert parse_layer_target(" x@-0.5 ") == LayerTarget("x", None, -0.5)
    assert parse_layer_target("x:1,1,2").channels == (1, 2)
    assert parse_layer_target("_blocks.9:0-2@2").spec == "_blocks.9:0,1,2@2"
    for bad in ["x:5-3", "x:a", "x@foo", ":3", "x:", "x@inf"]:
        with pytest.raises(VizError):
            parse_layer_target(bad)


def test_objective_weights_and_channel_subsets() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2, 6, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, 2, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    targets = [LayerTarget("a", (1, 3), 2.0), LayerTarget("b", None, 0.5)]
    value = dream_objective({"a": a, "b": b}, targets)
    expected = 0.0
    for n in range(2):  # brute force over every element
        for c in (1, 3):
            expected += 2.0 * 0.5 * sum(float(v) ** 2 for v in a.detach()[n, c].flatten())
        expected += 0.5 * 0.5 * sum(float(v) ** 2 for v in b.detach()[n].flatten())
    torch.testing.assert_close(value.double(), torch.tensor(expected, dtype=torch.float64))
    grad_a, grad_b = torch.autograd.grad(value, (a, b))
    mask = torch.zeros(6, dtype=torch.float64)
    mask[[1, 3]] = 1
    torch.testing.assert_close(grad_a, 2.0 * a.detach() * mask.view(1, 6, 1, 1))
    torch.testing.assert_close(grad_b, 0.5 * b.detach())
    with pytest.raises(VizError, match="channel 7 out of range"):
        dream_objective({"a": a}, [LayerTarget("a", (7,))])


def test_guided_objective_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(3)
    acts = torch.randn(2, 5, 3, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    guide = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    target = LayerTarget("a", None, 1.5)
    (grad,) = torch.autograd.grad(dream_objective({"a": acts}, [target], [guide]), acts)
    expected = torch.zeros_like(grad)
    for n in range(2):
        for y in range(3):
            for x in range(4):
                vector = acts[n, :, y, x].detach()
                dots = [float(vector @ guide[:, j]) for j in range(7)]
                expected[n, :, y, x] = 1.5 * guide[:, dots.index(max(dots))]
    torch.testing.assert_close(grad, expected)
    # A tiny chunk size must not change the choice.
    from vizcnn.deepdream.targets import _guided_term

    value = _guided_term(acts.detach(), guide, chunk=5)
    torch.testing.assert_close(value, (acts.detach() * expected / 1.5).sum())


def test_guide_features_are_the_guide_activations() -> None:
    loaded = _tiny()
    guide = _image(8, 12, seed=5)
    (features,) = guide_features(loaded, guide, [LayerTarget("2", (0, 2))])
    resized = F.interpolate(guide[None], size=(16, 24), mode="bilinear", align_corners=False)
    acts = forward_to(loaded.module, loaded.normalize(resized), ["2"])["2"]
    torch.testing.assert_close(features, acts[0, [0, 2]].flatten(1))


# --- roll and tiles ----------------------------------------------------------------------------


def _plain_grad(loaded: LoadedModel, x: torch.Tensor, target: LayerTarget) -> torch.Tensor:
    """d/dx of weight*0.5*||a||^2 with a whole-image forward through the Sequential (no hooks)."""
    x = x.detach().requires_grad_(True)
    depth = int(target.layer) + 1
    acts = loaded.module[:depth](x)
    (grad,) = torch.autograd.grad(target.weight * 0.5 * acts.square().sum(), x)
    return grad


def _grad_fn(loaded: LoadedModel, target: LayerTarget):  # type: ignore[no-untyped-def]
    return lambda piece: _plain_grad(loaded, piece, target)


@pytest.mark.parametrize("length, tile", [(1, 5), (17, 5), (100, 512), (1100, 512), (7, 0)])
def test_tile_spans_partition(length: int, tile: int) -> None:
    spans = tile_spans(length, tile)
    covered = [i for a, b in spans for i in range(a, b)]
    assert covered == list(range(length))
    if tile:
        assert all(b - a <= tile for a, b in spans)
        assert len(spans) == -(-length // tile)


def test_tile_covering_image_is_untiled_gradient_with_roll_undone() -> None:
    loaded = _tiny()
    target = LayerTarget("2")
    x = torch.randn(2, 3, 13, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shift = (5, -3)
    rolled = torch.roll(x, shift, dims=(2, 3))
    reference = torch.roll(_plain_grad(loaded, rolled, target), (-shift[0], -shift[1]), (2, 3))
    for tile in (0, 17, 64):
        grad, stats = rolled_gradient(x, shift, tile, _grad_fn(loaded, target))
        torch.testing.assert_close(grad, reference)
        torch.testing.assert_close(stats.mean_abs(), reference.abs().mean(dim=(1, 2, 3)))
        torch.testing.assert_close(stats.std(), reference.flatten(1).std(dim=1, unbiased=False))


def test_tiled_gradient_exact_for_pointwise_model() -> None:
    loaded = _tiny(pointwise=True)
    target = LayerTarget("2")
    x = torch.randn(1, 3, 17, 23, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad, _ = rolled_gradient(x, (7, 11), 5, _grad_fn(loaded, target))
    torch.testing.assert_close(grad, _plain_grad(loaded, x, target))


def test_tiled_gradient_reaches_every_pixel() -> None:
    loaded = _tiny()
    target = LayerTarget("0")  # linear conv: a zero gradient would mean an uncovered pixel
    x = torch.randn(1, 3, 30, 31, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grad, _ = rolled_gradient(x, (-9, 4), 8, _grad_fn(loaded, target))
    assert tile_shapes((30, 31), 8) == {(7, 7), (8, 7), (7, 8), (8, 8)}
    assert bool((grad.abs().sum(dim=1) > 0).all())
    assert not torch.allclose(grad, _plain_grad(loaded, x, target))  # seams differ, as expected


# --- the whole dream against a reference implementation ---------------------------------------


def _reference_dream(
    loaded: LoadedModel, image: torch.Tensor, config: DreamConfig, seed: int
) -> torch.Tensor:
    """The original notebook's loop, written out plainly (whole-image gradient, torch.roll)."""
    generator = torch.Generator().manual_seed(seed)
    (target,) = config.targets(loaded)
    mean = torch.tensor(loaded.mean, dtype=image.dtype).view(1, -1, 1, 1)
    std = torch.tensor(loaded.std, dtype=image.dtype).view(1, -1, 1, 1)
    low, high = -mean / std, (1 - mean) / std
    height, width = image.shape[-2:]
    sizes = [
        (round(height / config.octave_scale**k), round(width / config.octave_scale**k))
        for k in range(config.octaves)
    ][::-1]
    bases = [
        (F.interpolate(image[None], size=s, mode="bilinear", antialias=s != (height, width)) - mean)
        / std
        for s in sizes
    ]
    detail = torch.zeros_like(bases[0])
    src = bases[0]
    for base in bases:
        detail = F.interpolate(detail, size=base.shape[-2:], mode="bilinear", align_corners=False)
        src = torch.maximum(torch.minimum(base + detail, high), low)
        for _ in range(config.steps):
            j = config.jitter
            dy, dx = torch.randint(-j, j + 1, (2,), generator=generator).tolist()
            rolled = torch.roll(src, (dy, dx), (2, 3))
            grad = torch.roll(_plain_grad(loaded, rolled, target), (-dy, -dx), (2, 3))
            spread = grad.abs().mean() if config.grad_norm == "mean" else grad.std(unbiased=False)
            src = src + (config.step_size / 255) / std * grad / spread
            src = torch.maximum(torch.minimum(src, high), low)
        detail = src - base
    return (src * std + mean).clamp(0, 1)[0]


@pytest.mark.parametrize("grad_norm", ["mean", "std"])
@pytest.mark.parametrize("tile", [0, 64])
def test_dream_matches_reference(grad_norm: str, tile: int) -> None:
    loaded = _tiny()
    image = _image(37, 45)
    config = DreamConfig(
        layers=("2@1.5",), octaves=3, steps=3, step_size=20, jitter=4, tile=tile,
        grad_norm=grad_norm,  # type: ignore[arg-type]
    )  # fmt: skip
    ours = dream(loaded, image, config, seed=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, _reference_dream(loaded, image, config, seed=7))
    assert ours.shape == image.shape and ours.dtype == image.dtype
    assert float((ours - image).abs().mean()) > 1e-3


def test_same_seed_same_output_and_progress() -> None:
    loaded = _tiny(dtype=torch.float32)
    image = _image(24, 20).float()
    config = DreamConfig(octaves=2, steps=3, jitter=3, step_size=10, tile=12)
    calls: list[tuple[int, int, str]] = []
    first = dream(loaded, image, config, seed=torch.Generator().manual_seed(0))
    second = dream(
        loaded,
        image,
        config,
        seed=torch.Generator().manual_seed(0),
        progress=lambda d, t, m: calls.append((d, t, m)),
    )
    other = dream(loaded, image, config, seed=torch.Generator().manual_seed(1))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]
    assert calls[-1][2].startswith("octave 2/2 (20x24) step 3/3")  # W x H, as everywhere
    assert float(first.min()) >= 0 and float(first.max()) <= 1


def test_uint8_input_matches_float_input() -> None:
    loaded = _tiny(dtype=torch.float32)
    generator = torch.Generator().manual_seed(4)
    u8 = torch.randint(0, 256, (3, 30, 26), generator=generator, dtype=torch.uint8)
    config = DreamConfig(octaves=2, steps=2, jitter=3, step_size=10)
    ours = dream(loaded, u8, config, seed=torch.Generator().manual_seed(0))
    plain = dream(loaded, u8.float() / 255, config, seed=torch.Generator().manual_seed(0))
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, plain, atol=0, rtol=0)  # bit for bit: the CLI feeds uint8


def test_tiled_dream_with_bfloat16_gradient_buffer_stays_close_to_float64() -> None:
    image = _image(40, 36)
    config = DreamConfig(octaves=2, steps=3, jitter=5, step_size=10, tile=16)
    exact = dream(_tiny(), image, config, seed=torch.Generator().manual_seed(0))
    compact = dream(
        _tiny(dtype=torch.float32),
        image.float(),
        config,
        seed=torch.Generator().manual_seed(0),
    )
    assert float((exact - image).abs().mean()) > 1e-2  # the dream moved pixels...
    # ...alike: rounding the stored gradient moves a few pixels by a few 8-bit levels at most.
    difference = (compact.double() - exact).abs()
    assert float(difference.mean()) < 1e-3
    assert float((difference > 5e-3).double().mean()) < 0.02
    assert float(difference.max()) < 0.05


@pytest.mark.parametrize("shape", [(5, 7, 9, 13), (3, 3, 40, 4), (20, 30, 28, 42)])
def test_banded_enlarge_is_bilinear_interpolation(shape: tuple[int, int, int, int]) -> None:
    from vizcnn.deepdream.tiling import enlarge as _enlarge

    h, w, height, width = shape
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    torch.testing.assert_close(_enlarge(x, (height, width)), expected)


def test_octave_sizes_follow_the_scale() -> None:
    loaded = _tiny()
    sizes = octave_sizes(loaded, (480, 640), DreamConfig(layers=("2",)))
    assert sizes == [(175, 233), (245, 327), (343, 457), (480, 640)]


def test_batch_and_channel_conversion() -> None:
    loaded = _tiny(dtype=torch.float32)
    batch = torch.stack([_image(16, 16, seed=s) for s in range(2)]).float()
    config = DreamConfig(octaves=1, steps=2, jitter=2, step_size=10)
    out = dream(loaded, batch, config)
    assert out.shape == batch.shape
    gray = dream(loaded, _image(16, 16, channels=1).float(), config)
    assert gray.shape == (3, 16, 16)  # one channel repeated for a 3-channel model


def test_amp_on_a_cpu_without_bf16_warns_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: False)
    loaded = _tiny(dtype=torch.float32)
    image = _image(16, 16).float()
    plain = dream(loaded, image, DreamConfig(octaves=1, steps=2))
    with pytest.warns(UserWarning, match="no native bfloat16"):
        amp = dream(loaded, image, DreamConfig(octaves=1, steps=2), run=RunOptions(amp=True))
    assert torch.equal(plain, amp)


def test_amp_on_a_cpu_with_bf16_runs_the_network_in_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 autocast changes the result a little (the network's precision), not its meaning."""
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: True)
    loaded = _tiny(dtype=torch.float32)
    image = _image(16, 16).float()
    plain = dream(loaded, image, DreamConfig(octaves=1, steps=2), run=RunOptions(amp=False))
    amp = dream(loaded, image, DreamConfig(octaves=1, steps=2), run=RunOptions(amp=True))
    assert amp.dtype == plain.dtype == torch.float32
    assert not torch.equal(plain, amp)  # the network really ran in bfloat16
    assert float((plain - amp).abs().mean()) < 0.02 * float((plain - image).abs().mean()) + 2e-3


def test_config_validation() -> None:
    inf, nan = float("inf"), float("nan")
    for kwargs in [
        {"octaves": 0},
        {"octave_scale": 1.0},
        {"octave_scale": inf},
        {"steps": 0},
        {"tile": -1},
        {"step_size": inf},
        {"step_size": nan},
        {"step_size": -inf},
    ]:
        with pytest.raises(VizError) as info:
            DreamConfig(**kwargs)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    with pytest.raises(VizError):
        ZoomConfig(blend=1.5)


# --- real architectures: small images, model left as found ------------------------------------


def test_small_image_fewer_octaves_with_warning(alexnet: LoadedModel) -> None:
    image = _image(40, 40).float()
    config = DreamConfig(steps=1)
    with pytest.warns(UserWarning, match="using 1 of 4 octaves"):
        sizes = octave_sizes(alexnet, (40, 40), config)
    assert sizes == [(40, 40)]
    with pytest.warns(UserWarning, match="octaves"):
        out = dream(alexnet, image, config)
    assert out.shape == (3, 40, 40)
    with pytest.warns(UserWarning, match="resizing back"):
        tiny = dream(alexnet, _image(12, 12).float(), config)
    assert tiny.shape == (3, 12, 12)
    with pytest.raises(VizError, match="larger DreamConfig.tile"):
        octave_sizes(alexnet, (100, 100), DreamConfig(tile=20))


def test_lite0_small_image_fewer_octaves(lite0: LoadedModel) -> None:
    with pytest.warns(UserWarning, match="using 3 of 4 octaves"):
        out = dream(lite0, _image(40, 40).float(), DreamConfig(layers=("_blocks.9",), steps=1))
    assert out.shape == (3, 40, 40)
    with pytest.warns(UserWarning, match="using 1 of 4 octaves"):
        sizes = octave_sizes(lite0, (40, 40), DreamConfig())  # _blocks.11 needs more pixels
    assert sizes == [(40, 40)]


def test_model_left_unchanged(alexnet: LoadedModel) -> None:
    before = _state(alexnet.module)
    dream(alexnet, _image(90, 90).float(), DreamConfig(octaves=2, steps=1, tile=64))
    assert _state(alexnet.module) == before
    with pytest.raises(VizError, match="out of range"):
        dream(alexnet, _image(90, 90).float(), DreamConfig(layers=("features.9:999",), steps=1))
    assert _state(alexnet.module) == before
    assert any(getattr(m, "inplace", False) for m in alexnet.module.modules())


def test_one_channel_model_dreams_in_grayscale() -> None:
    loaded = load_model("lenet5_digits")
    out = dream(loaded, _image(48, 40).float(), DreamConfig(octaves=2, steps=2))
    assert out.shape == (1, 48, 40)


# --- video ------------------------------------------------------------------------------------


def test_zoom_center_is_a_centred_magnification() -> None:
    ramp = torch.arange(9, dtype=torch.float64).view(1, 9, 1).expand(1, 9, 5)
    out = zoom_center(ramp, 1.5)
    centre = 4.0
    expected = centre + (torch.arange(9, dtype=torch.float64) - centre) / 1.5
    torch.testing.assert_close(out[0, :, 2], expected)
    torch.testing.assert_close(zoom_center(ramp, 1.0), ramp)


def test_video_frames_and_blend() -> None:
    loaded = _tiny(dtype=torch.float32)
    image = _image(20, 20).float()
    config = DreamConfig(octaves=1, steps=1, jitter=2, step_size=10)
    calls: list[int] = []
    frames = list(
        dream_frames(
            loaded, image, config, ZoomConfig(frames=3, zoom=1.1),
            progress=lambda d, t, m: calls.append(t),
        )
    )  # fmt: skip
    assert len(frames) == 3 and all(f.shape == image.shape for f in frames)
    assert set(calls) == {3}
    held = list(dream_frames(loaded, image, config, ZoomConfig(frames=3, zoom=1.1, blend=1.0)))
    for previous, current in zip(held, held[1:], strict=False):
        torch.testing.assert_close(current, zoom_center(previous, 1.1).clamp(0, 1))


def test_frames_without_a_generator_get_fresh_rolls_per_frame() -> None:
    loaded = _tiny(dtype=torch.float32)
    image = _image(20, 20).float()
    config = DreamConfig(octaves=1, steps=2, jitter=4, step_size=10)
    zoom = ZoomConfig(frames=3, zoom=1.0)  # no zoom: the frames differ only by their rolls
    default = list(dream_frames(loaded, image, config, zoom))
    # oracle: one seed-0 generator running on across the frames, frame by frame with dream()
    generator = torch.Generator().manual_seed(0)
    current = image
    for frame in default:
        expected = dream(loaded, current, config, seed=generator)
        torch.testing.assert_close(frame, expected, rtol=0, atol=0)
        current = zoom_center(expected, 1.0).clamp(0, 1)
    # and not the same seed-0 rolls for every frame
    fresh = dream(loaded, default[0], config, seed=torch.Generator().manual_seed(0))
    assert not torch.equal(default[1], fresh)


@pytest.mark.parametrize("tile", [0, 12])
def test_batched_dream_equals_per_image_dreams(tile: int) -> None:
    loaded = _tiny(dtype=torch.float64)
    images = torch.stack([_image(24, 28, seed=s) for s in range(3)]).double()
    config = DreamConfig(octaves=2, steps=3, jitter=3, step_size=10, tile=tile, grad_norm="std")
    batched = dream(loaded, images, config, seed=torch.Generator().manual_seed(2))
    for index in range(3):  # oracle: each image alone, with the same rolls
        alone = dream(loaded, images[index], config, seed=torch.Generator().manual_seed(2))
        torch.testing.assert_close(batched[index], alone, rtol=0, atol=1e-10)


def test_memory_estimate_counts_saved_activations_and_tiles() -> None:
    loaded = _tiny(dtype=torch.float64)  # conv(3->4) -> ReLU -> conv(4->5, stride 2), float64
    whole = dream_memory(loaded, (64, 96), DreamConfig(tile=0))
    # oracle by hand: autograd keeps conv1's input (3 channels) and the ReLU output (4, shared
    # by the ReLU and conv2); the weights are resident anyway: 7 float64 values per pixel
    assert whole.bytes_per_pixel == pytest.approx(7 * 8)
    assert whole.tile_pixels == 64 * 96
    assert whole.image_bytes == 3 * 64 * 96 * (2 * 8 + 1)
    tiled = dream_memory(loaded, (64, 96), DreamConfig(tile=32))
    assert tiled.tile_pixels == 32 * 32 and tiled.total < whole.total
    assert dream_memory(loaded, (128, 192), DreamConfig(tile=0)).total == pytest.approx(
        4 * whole.total, rel=1e-6
    )


def test_save_mp4_pipes_raw_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text('#!/bin/sh\nfor last; do :; done\ncat > "$last"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr("vizcnn.io.video.mp4_encoder", lambda: str(fake))
    frames = [_image(6, 8, seed=s).float() for s in range(2)]
    path = save_mp4(frames, tmp_path / "out.mp4", fps=12)
    raw = b"".join(
        Image.fromarray((f.permute(1, 2, 0) * 255).round().byte().numpy()).tobytes() for f in frames
    )
    assert path.read_bytes() == raw
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --- the command ------------------------------------------------------------------------------

ALEX = ["-m", "alexnet", "--weights", "none", "--steps", "1", "--octaves", "2", "-q"]


def _invoke(*args: str) -> object:
    result = CliRunner().invoke(app, ["dream", *args])
    return result


def test_cli_png_with_metadata_and_sidecar(tmp_path: Path) -> None:
    source = tmp_path / "rgba.png"
    Image.new("RGBA", (48, 36), (200, 40, 10, 100)).save(source)
    out = tmp_path / "d.png"
    result = CliRunner().invoke(
        app, ["dream", str(source), *ALEX, "-l", "features.9:0-3@2", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    with Image.open(out) as picture:
        assert picture.size == (48, 36) and picture.mode == "RGB"
    block = json.loads(read_png_metadata(out)["provenance"])
    sidecar = json.loads(out.with_suffix(".json").read_text())["provenance"]
    assert block["options"]["layers"] == sidecar["options"]["layers"] == ["features.9:0,1,2,3@2"]
    assert sidecar["technique"] == "dream" and sidecar["seed"] == 0 and sidecar["weights_digest"]
    assert sidecar["options"]["octaves"] == 2 and sidecar["options"]["image_size"] == "48x36"
    assert sidecar["data"] == str(source) and sidecar["seconds"] > 0
    assert "-l features.9:0,1,2,3@2" in block["command"]
    assert "-m alexnet --weights none" in block["command"]


def test_cli_recorded_command_remakes_the_picture(tmp_path: Path) -> None:
    out = tmp_path / "d.png"
    args = ["sample:coins", "-m", "lenet5_digits", "--steps", "2", "--jitter", "5", "-q"]
    assert CliRunner().invoke(app, ["dream", *args, "-o", str(out)]).exit_code == 0
    command = json.loads(read_png_metadata(out)["provenance"])["command"]
    again = tmp_path / "again.png"
    argv = command.split()[2:]
    argv[argv.index("-o") + 1] = str(again)
    assert CliRunner().invoke(app, ["dream", *argv, "-q"]).exit_code == 0
    with Image.open(again) as second, Image.open(out) as first:
        assert second.tobytes() == first.tobytes()


def test_cli_grayscale_and_exif(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.new("L", (40, 32), 90).save(gray)
    out = tmp_path / "digits.png"
    result = CliRunner().invoke(
        app, ["dream", str(gray), "-m", "lenet5_digits", "--steps", "1", "-q", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as picture:
        assert picture.mode == "L" and picture.size == (40, 32)
    rotated = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (50, 34), (10, 120, 200)).save(rotated, exif=exif)
    out = tmp_path / "upright.png"
    assert CliRunner().invoke(app, ["dream", str(rotated), *ALEX, "-o", str(out)]).exit_code == 0
    with Image.open(out) as picture:
        assert picture.size == (34, 50)


def test_cli_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(
        app, ["dream", "sample:coffee", *ALEX, "-l", "features.90", "-o", str(tmp_path / "x.png")]
    )
    assert result.exit_code == 1
    assert "did you mean" in result.output and "features.9" in result.output
    monkeypatch.setattr("vizcnn.runs.dream.mp4_encoder", lambda: None)
    result = CliRunner().invoke(
        app, ["dream", "sample:coffee", *ALEX, "--frames", "2", "-o", str(tmp_path / "v.mp4")]
    )
    assert result.exit_code == 1 and ".gif" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(
        app, ["dream", "sample:coffee", *ALEX, "--frames", "2", "-o", str(tmp_path / "v.png")]
    )
    assert result.exit_code == 1 and "video" in result.output


def test_cli_video_gif_and_frames(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    Image.new("RGB", (40, 40), (120, 80, 30)).save(source)
    gif = tmp_path / "zoom.gif"
    args = ["dream", str(source), *ALEX, "--frames", "3", "--zoom", "1.1", "--blend", "0.3"]
    result = CliRunner().invoke(app, [*args, "-o", str(gif)])
    assert result.exit_code == 0, result.output
    with Image.open(gif) as video:
        assert video.n_frames == 3 and video.size == (40, 40)
    assert json.loads(gif.with_suffix(".json").read_text())["provenance"]["options"]["frames"] == 3
    folder = tmp_path / "frames"
    assert CliRunner().invoke(app, [*args, "-o", str(folder)]).exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "dream.json", "frame_0000.png", "frame_0001.png", "frame_0002.png",
    ]  # fmt: skip


@pytest.mark.slow
def test_cli_default_model_on_bundled_photo(tmp_path: Path) -> None:
    out = tmp_path / "dream.png"
    result = CliRunner().invoke(
        app, ["dream", "sample:coffee", "--steps", "2", "-q", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    with Image.open(out) as picture:
        assert picture.size == (600, 400)
    block = json.loads(read_png_metadata(out)["provenance"])
    assert block["options"]["layers"] == ["_blocks.9", "_blocks.11"]
    assert os.path.getsize(out) > 10_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch", ["googlenet", "inception_v3", "vgg16", "resnet50", "alexnet", "lenet5_digits"]
)
def test_default_dream_layers_exist_and_run(arch: str) -> None:
    loaded = load_model(arch, weights="none") if arch != "lenet5_digits" else load_model(arch)
    before = _state(loaded.module)
    size = (80, 96) if arch != "inception_v3" else (160, 170)
    out = dream(
        loaded, _image(*size, channels=loaded.channels).float(), DreamConfig(octaves=1, steps=1)
    )
    assert out.shape == (loaded.channels, *size)
    assert _state(loaded.module) == before


@pytest.mark.parametrize("option", ["--step-size", "--octave-scale", "--zoom", "--fps", "--blend"])
def test_cli_float_options_reject_inf_and_nan(tmp_path: Path, option: str) -> None:
    for value in ("inf", "nan"):
        out = tmp_path / "x.png"
        result = CliRunner().invoke(
            app, ["dream", "sample:coffee", *ALEX, option, value, "-o", str(out)]
        )
        assert result.exit_code == 2 and "is not a finite number" in result.output
        assert not out.exists()


def test_cli_refuses_a_dream_that_cannot_fit_and_an_unwritable_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vizcnn.deepdream.octaves.available_memory", lambda device: 1_000_000)
    out = tmp_path / "x.png"
    args = ["dream", "sample:coffee", *ALEX, "--tile", "0", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "dreaming 600x400 at --tile 0 needs about" in result.output
    assert "set --tile 512" in result.output and not out.exists()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    result = CliRunner().invoke(
        app, ["dream", "sample:coffee", *ALEX, "-o", str(blocked / "sub" / "x.png")]
    )
    assert result.exit_code == 1 and "is a file, not a folder" in result.output


def test_cli_help_names_input_size_and_the_samples() -> None:
    from vizcnn.data.samples import sample_names

    out = CliRunner().invoke(app, ["dream", "--help"]).output
    assert "--input-size" in out and "--deterministic" in out
    assert "--size" not in out.replace("--input-size", "")  # the old name is hidden
    assert all(f"{name}" in out for name in sample_names())


def test_cli_size_is_not_an_alias_of_input_size(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    args = ["dream", "sample:coins", "-m", "lenet5_digits", "--steps", "1", "-q"]
    result = CliRunner().invoke(app, [*args, "--size", "32", "-o", str(out)])
    assert result.exit_code == 2 and "No such option '--size'" in result.output
    result = CliRunner().invoke(app, [*args, "--input-size", "32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    block = json.loads(read_png_metadata(out)["provenance"])
    assert "--input-size 32" in block["command"]


def test_tiny_gradients_still_dream() -> None:
    """A random-weight network's input gradient can be ~1e-10 (seen with `--weights none` on
    lite0): normalization must scale it up, not drown it in an absolute epsilon."""
    from vizcnn.models import describe

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.full_like(net[0].weight, 1e-6))
        net[0].bias.zero_()
    loaded = describe(net, input_size=32, default_layers={"dream": ["1"]})
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    with torch.enable_grad():
        x = loaded.normalize(image[None]).requires_grad_(True)
        (0.5 * net(x).square().sum()).backward()
    assert x.grad is not None and 0 < float(x.grad.abs().mean()) < 1e-8  # the premise
    out = dream(loaded, image, DreamConfig(octaves=1, steps=2, jitter=0))
    assert float((out - image).abs().mean()) > 1 / 255  # a visible change


@pytest.mark.parametrize("native", [True, False])
def test_cli_records_the_precision_used_and_pins_it_in_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: native)
    args = ["sample:coins", "-m", "lenet5_digits", "--steps", "2", "--jitter", "5", "-q"]
    for flags, used in (([], native), (["--no-amp"], False), (["--amp"], native)):
        out = tmp_path / f"d{len(flags)}{flags[0][2:] if flags else ''}.png"
        result = CliRunner().invoke(app, ["dream", *args, *flags, "-o", str(out)])
        assert result.exit_code == 0, result.output
        block = json.loads(read_png_metadata(out)["provenance"])
        assert block["options"]["precision"] == ("bfloat16" if used else "float32")
        assert block["options"]["amp"] == {"--amp": True, "--no-amp": False}.get(
            flags[0] if flags else "", "auto"
        )
        pinned = "--amp" if used else "--no-amp"
        assert block["command"].split().count(pinned) == 1


def test_wrapped_spans_cover_a_rolled_range_exactly() -> None:
    """Oracle: torch.roll of an index range, for every shift and tile."""
    for length in (1, 5, 10):
        source = torch.arange(length)
        for shift in range(-2 * length, 2 * length + 1):
            for start, stop in [*tile_spans(length, 3), (0, length)]:
                got = torch.full((stop - start,), -1)
                for dst, src in wrapped_spans(start, stop, shift, length):
                    got[dst] = source[src]
                assert torch.equal(got, torch.roll(source, shift)[start:stop])
