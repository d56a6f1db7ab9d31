"""Random transforms: exact oracles for pad/shift/rotate-by-90, draw distributions, seeding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import resize
from vizcnn.optvis.transforms import (
    Draw,
    Jitter,
    Pad,
    Rotate,
    Scale,
    apply_draw,
    apply_transforms,
    draw,
    standard_transforms,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(batch: int = 2, channels: int = 3, height: int = 6, width: int = 10) -> torch.Tensor:
    return torch.rand(batch, channels, height, width, generator=gen(42), dtype=torch.float64)


def translation(shifts: list[tuple[float, float]]) -> torch.Tensor:
    matrices = torch.eye(3, dtype=torch.float64).repeat(len(shifts), 1, 1)
    matrices[:, 0, 2] = torch.tensor([s[0] for s in shifts], dtype=torch.float64)
    matrices[:, 1, 2] = torch.tensor([s[1] for s in shifts], dtype=torch.float64)
    return matrices


def test_pad_equals_constant_padding() -> None:
    x = images()
    out = apply_transforms(x, [Pad(2, fill=0.3)], (10, 14))
    assert_close(out, F.pad(x, (2, 2, 2, 2), value=0.3))


def test_integer_shift_moves_content_right_and_down_on_non_square() -> None:
    x = images(batch=2, height=6, width=10)
    drawn = Draw(translation([(2.0, 1.0), (-3.0, 0.0)]), canvas=(6, 10), fill=0.5)
    out = apply_draw(x, drawn, (6, 10))
    expected = torch.full_like(x, 0.5)
    expected[0, :, 1:, 2:] = x[0, :, :-1, :-2]  # x shift 2 (columns), y shift 1 (rows)
    expected[1, :, :, :-3] = x[1, :, :, 3:]
    assert_close(out, expected)


def test_jitter_crop_offsets_match_slicing() -> None:
    x = images(batch=3, height=12, width=12)
    shifts = [(-4.0, -4.0), (4.0, 0.0), (1.0, -2.0)]
    # a Jitter(8) draw is a translation by -shift and a canvas 8 smaller
    drawn = Draw(translation([(-sx, -sy) for sx, sy in shifts]), canvas=(4, 4), fill=0.5)
    out = apply_draw(x, drawn, (4, 4))
    for b, (sx, sy) in enumerate(shifts):
        top, left = int(4 + sy), int(4 + sx)
        assert_close(out[b], x[b, :, top : top + 4, left : left + 4])


def test_rotation_by_90_degrees_is_exact() -> None:
    x = images(batch=1, height=8, width=8)
    turn = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    out = apply_draw(x, Draw(turn.unsqueeze(0), canvas=(8, 8), fill=0.5), (8, 8))
    # content point (x, y) -> (-y, x): a column read top-down becomes a row read right-to-left
    expected = torch.rot90(x, k=-1, dims=(-2, -1))
    assert_close(out, expected)


def test_shrinking_output_is_antialiased_resize() -> None:
    x = images(height=8, width=8)
    out = apply_transforms(x, [Pad(2)], (6, 6))
    assert_close(out, resize(F.pad(x, (2, 2, 2, 2), value=0.5), (6, 6)))


def test_no_transforms_only_resizes() -> None:
    x = images()
    assert_close(apply_transforms(x, [], (12, 20)), resize(x, (12, 20)))


def test_jitter_draws_both_directions_per_image() -> None:
    drawn = draw([Jitter(8)], 400, (32, 32), gen(1))
    shift = -drawn.matrices[:, :2, 2]
    assert drawn.canvas == (24, 24)
    assert float(shift.abs().max()) <= 4.0
    for axis in range(2):
        assert float(shift[:, axis].min()) < -3 and float(shift[:, axis].max()) > 3
    assert not torch.equal(shift[:, 0], shift[:, 1])  # x and y drawn separately
    assert len(set(shift[:, 0].tolist())) == 400  # a draw per image


def test_scale_and_rotation_draws() -> None:
    factors = (0.9, 1.0, 1.1)
    drawn = draw([Scale(factors)], 300, (16, 16), gen(2))
    zoom = drawn.matrices[:, 0, 0]
    assert set(round(v, 6) for v in zoom.tolist()) == set(factors)
    assert_close(drawn.matrices[:, 1, 1], zoom)
    drawn = draw([Rotate(10.0)], 300, (16, 16), gen(3))
    angle = torch.atan2(drawn.matrices[:, 1, 0], drawn.matrices[:, 0, 0]) * 180 / math.pi
    assert float(angle.abs().max()) <= 10.0
    assert float(angle.min()) < -8 and float(angle.max()) > 8


def test_standard_chain_canvas_and_fill() -> None:
    drawn = draw(standard_transforms(), 4, (128, 128), gen())
    assert drawn.canvas == (128 + 24 - 8 - 4, 128 + 24 - 8 - 4)
    assert drawn.fill == 0.5


def test_seeded_and_independent_per_image() -> None:
    x = images(batch=1, height=16, width=16).float().expand(4, -1, -1, -1)
    a = apply_transforms(x, standard_transforms(), (24, 24), gen(7))
    b = apply_transforms(x, standard_transforms(), (24, 24), gen(7))
    c = apply_transforms(x, standard_transforms(), (24, 24), gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for i in range(1, 4):
        assert not torch.allclose(a[0], a[i])  # same image, different draws


def test_gradients_flow_through_transforms() -> None:
    x = images(batch=2).requires_grad_(True)
    apply_transforms(x, standard_transforms(), (16, 16), gen())[0].sum().backward()
    assert x.grad is not None
    assert float(x.grad[0].abs().sum()) > 0 and float(x.grad[1].abs().sum()) == 0


def test_bad_transforms() -> None:
    with pytest.raises(VizError, match="jitter"):
        draw([Jitter(40)], 1, (16, 16))
    with pytest.raises(VizError, match="positive"):
        draw([Scale((0.0, 1.0))], 1, (16, 16))
    with pytest.raises(VizError, match="unknown transform"):
        draw(["flip"], 1, (16, 16))  # type: ignore[list-item]


def test_affine_map_before_resampling_equals_after() -> None:
    x = images(batch=3, height=16, width=16)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)

    def normalize(t: torch.Tensor) -> torch.Tensor:
        return (t - mean) / std

    for out_size in [(40, 40), (10, 12)]:  # the grid_sample path and the shrink path
        after = normalize(apply_transforms(x, standard_transforms(), out_size, gen(4)))
        before = apply_transforms(x, standard_transforms(), out_size, gen(4), then=normalize)
        assert_close(before, after)
    assert_close(apply_transforms(x, [], (20, 20), then=normalize), normalize(resize(x, (20, 20))))


def test_affine_grid_equals_torch_affine_grid() -> None:
    from vizcnn.optvis.transforms import affine_grid

    gen = torch.Generator().manual_seed(0)
    for dtype, tolerance in [(torch.float32, 1e-6), (torch.float64, 1e-14)]:
        for size in [(224, 224), (7, 13), (300, 17), (1, 5)]:
            theta = 3 * torch.randn(3, 2, 3, generator=gen, dtype=dtype)
            expected = F.affine_grid(theta, [3, 1, *size], align_corners=False)
            # rounding differs by a few ulps of the largest term (up to |theta| x 3)
            scale = float(theta.abs().amax()) * 3
            assert_close(affine_grid(theta, size), expected, rtol=0, atol=tolerance * scale)
