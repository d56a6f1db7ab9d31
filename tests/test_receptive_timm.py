"""Receptive fields of timm networks from the traced graph: layouts, reductions, budgets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vizcnn.hooks import capture
from vizcnn.receptive import receptive_fields

timm = pytest.importorskip("timm")


def _support(
    model: nn.Module, layer: str, shape: tuple[int, int, int], index: tuple
) -> torch.Tensor:
    """The oracle: input pixels with a non-zero gradient from one output element."""
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x.requires_grad_(True)
    with capture(model, [layer], stop_early=True) as acts:
        acts.run(x)
    (grad,) = torch.autograd.grad(acts[layer][(0, *index)], x)
    return grad[0].abs().sum(0) > 0


def _bbox(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@pytest.mark.parametrize("conv_mlp", [False, True])
def test_convnext_fields_follow_permutes_and_match_the_gradient_support(conv_mlp: bool) -> None:
    # ConvNeXt's blocks (conv_mlp=False, as convnext_tiny) and LayerNorm2d permute to
    # (N, H, W, C) and back: the field must follow the rows and columns
    model = timm.create_model("convnext_atto", pretrained=False, conv_mlp=conv_mlp)
    model = model.double().eval()
    shape = (3, 96, 96)
    nchw = ["stem", "stages.0.blocks.0", "stages.1", "stages.2.blocks.1"]
    nhwc = ["stages.1.blocks.0.mlp.fc1", "stages.1.blocks.0.norm"]  # (N, H, W, C) outputs
    if conv_mlp:  # 1x1 convolutions and LayerNorm2d in (N, C, H, W)
        nchw, nhwc = nchw + nhwc, []
    fields = receptive_fields(model, shape, [*nchw, *nhwc])
    for layer in [*nchw, *nhwc]:
        field = fields[layer]
        assert field is not None and field.method == "graph", layer
        with capture(model, [layer], stop_early=True) as acts:
            acts.run(torch.zeros(1, *shape, dtype=torch.float64))
        out = acts[layer].shape
        height, width = (out[2], out[3]) if layer in nchw else (out[1], out[2])
        y, x = height // 2, width // 2
        index = (out[1] // 2, y, x) if layer in nchw else (y, x, out[3] // 2)
        top, left, bottom, right = field.box(y, x)
        support = _support(model, layer, shape, index)
        inside = top >= 0 and left >= 0 and bottom <= shape[1] and right <= shape[2]
        if inside:  # dense convolutions with random weights: the box is the support's
            assert _bbox(support) == (top, left, bottom, right), (layer, field)
        else:
            mask = torch.zeros_like(support)
            mask[max(top, 0) : bottom, max(left, 0) : right] = True
            assert not (support & ~mask).any(), (layer, field)


@pytest.mark.parametrize("name", ["efficientnet_b0", "regnety_002", "mobilenetv3_small_100"])
def test_squeeze_excitation_branches_are_global_in_the_graph(name: str) -> None:
    # `x.mean((2, 3), keepdim=True)` pools the whole map: the excitation's layers see every pixel
    model = timm.create_model(name, pretrained=False).eval()
    fields = receptive_fields(model, (3, 64, 64))
    assert all(field is not None for field in fields.values()), [
        spec for spec, field in fields.items() if field is None
    ]
    se = [spec for spec in fields if ".se." in spec]
    assert se and all(fields[spec].method == "global" for spec in se)  # type: ignore[union-attr]
    gated = [spec for spec in fields if spec.endswith(".se")]
    assert gated and all(fields[spec].method == "graph+context" for spec in gated)  # type: ignore[union-attr]


class _Untraceable(nn.Module):
    """Data-dependent control flow around a small net: torch.fx fails, every field is measured."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(2, 2, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e30:  # always true, but only known from the data
            x = self.conv3(self.conv2(self.conv1(x)))
        return x


def test_a_spent_budget_gives_not_known_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from vizcnn.receptive import measured, probe_fields

    model = _Untraceable().double().eval()
    shape = (1, 32, 32)
    exact = receptive_fields(model, shape, ["conv1", "conv2", "conv3"])
    assert all(f is not None and f.method == "measured" for f in exact.values())
    # a clock that ticks one second per reading: the budget check before conv2 finds 1.5 s spent
    ticks = iter(range(1000))
    monkeypatch.setattr(measured.time, "monotonic", lambda: float(next(ticks)))
    probe = probe_fields(model, shape, ["conv1", "conv2", "conv3"], budget_s=1.5)
    assert probe.fields == {"conv1": exact["conv1"], "conv2": None, "conv3": None}
    assert set(probe.not_known) == {"conv2", "conv3"}
    assert all("1.5 s measuring budget" in reason for reason in probe.not_known.values())


def test_layer_table_shows_why_a_field_is_not_known() -> None:
    from vizcnn.receptive.table import layer_table

    table = layer_table(_Untraceable().eval(), (1, 32, 32), field_budget_s=0)
    rows = {row.name: row for row in table.rows}
    for name in ["conv1", "conv2", "conv3"]:
        assert rows[name].field is None  # no number rather than a wrong one
        assert rows[name].field_note is not None and "budget" in rows[name].field_note
    text = table.format()
    assert "not known [1]" in text and "[1] not measured: the 0 s measuring budget" in text
    layers = {item["name"]: item for item in table.to_dict("m")["layers"]}
    assert (
        layers["conv2"]["rf_method"] == "not known" and layers["conv2"]["receptive_field"] is None
    )
    assert "budget" in layers["conv2"]["rf_note"]


def test_a_budget_does_not_touch_graph_fields() -> None:
    from vizcnn.receptive.table import layer_table

    model = timm.create_model("efficientnet_b0", pretrained=False)
    table = layer_table(model, (3, 64, 64), field_budget_s=0)
    assert all(row.field_note is None for row in table.rows)
    assert all(row.field is not None for row in table.rows if row.output_shape is not None)


@pytest.mark.parametrize("name", ["cspresnet50", "cs3darknet_s"])
def test_channel_splits_keep_the_field_and_match_the_gradient_support(name: str) -> None:
    # CSPNet cuts each stage's tensor in two along channels (`x.split(...)`/`chunk`): both
    # halves see what the whole saw, so the stages after it get graph fields, exactly
    model = timm.create_model(name, pretrained=False).double().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # no zero-initialized last BatchNorm: every path carries gradient
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
    shape = (3, 96, 96)
    layers = ["stages.0", "stages.1.blocks.0", "stages.1"]
    fields = receptive_fields(model, shape, layers)
    for layer in layers:
        field = fields[layer]
        assert field is not None and field.method == "graph", (layer, field)
        with capture(model, [layer], stop_early=True) as acts:
            acts.run(torch.zeros(1, *shape, dtype=torch.float64))
        out = acts[layer].shape
        y, x = out[2] // 2, out[3] // 2
        top, left, bottom, right = field.box(y, x)
        support = _support(model, layer, shape, (out[1] // 2, y, x))
        mask = torch.zeros_like(support)
        mask[max(top, 0) : bottom, max(left, 0) : right] = True
        assert not (support & ~mask).any(), (layer, field)  # nothing outside the box
        if top >= 0 and left >= 0 and bottom <= shape[1] and right <= shape[2]:
            assert _bbox(support) == (top, left, bottom, right), (layer, field)
