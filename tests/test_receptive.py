from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from vizcnn.hooks import capture
from vizcnn.receptive import receptive_fields


def gradient_box(
    model: nn.Module,
    layer: str,
    shape: tuple[int, int, int],
    unit: tuple[int, int, int],
    positive: bool = False,
) -> torch.Tensor:
    """The oracle: which input pixels get a non-zero gradient from one unit (c, y, x)."""
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(1, *shape, generator=generator, dtype=torch.float64)
    x = (x + 0.5 if positive else x).requires_grad_(True)
    with capture(model, [layer], stop_early=True) as acts:
        acts.run(x)
    c, y, xx = unit
    (grad,) = torch.autograd.grad(acts[layer][0, c, y, xx], x)
    return grad[0].abs().sum(0) > 0


def bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def box_mask(box: tuple[int, int, int, int], height: int, width: int) -> torch.Tensor:
    top, left, bottom, right = box
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
    return mask


class SinglePath(nn.Module):
    """Strides, paddings (asymmetric too), dilation and pooling on one path; positive weights."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((1, 0, 2, 0))  # left 1, right 0, top 2, bottom 0
        self.conv1 = nn.Conv2d(2, 3, 3, stride=1, padding=1)
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(3, 3, (5, 3), stride=2, padding=(2, 1))
        self.act = nn.ReLU()
        self.pool2 = nn.AvgPool2d(3, stride=1)
        self.conv3 = nn.Conv2d(3, 2, 3, dilation=2)
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(0.1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(self.pad(x)))
        return self.conv3(self.pool2(self.act(self.conv2(x))))


@pytest.mark.parametrize("layer", ["pad", "conv1", "pool1", "conv2", "act", "pool2", "conv3"])
def test_single_path_box_is_exactly_the_gradient_support(layer: str) -> None:
    model = SinglePath().double().eval()
    shape = (2, 40, 36)
    field = receptive_fields(model, shape, [layer])[layer]
    assert field is not None and field.method == "graph"
    with capture(model, [layer], stop_early=True) as acts:
        acts.run(torch.zeros(1, *shape, dtype=torch.float64))
    _, _, height, width = acts[layer].shape
    for y, x in [(0, 0), (height // 2, width // 3), (height - 1, width - 1)]:
        support = gradient_box(model, layer, shape, (0, y, x), positive=True)
        assert torch.equal(box_mask(field.box(y, x), shape[1], shape[2]), support), (layer, y, x)


def test_alexnet_matches_published_fields() -> None:
    model = torchvision.models.alexnet(weights=None).eval()
    fields = receptive_fields(
        model,
        (3, 224, 224),
        ["features.0", "features.3", "features.6", "features.8", "features.10", "features.12"],
    )
    sizes = {name: (f.size[0], f.stride[0]) for name, f in fields.items() if f is not None}
    assert sizes == {
        "features.0": (11, 4),
        "features.3": (51, 8),
        "features.6": (99, 16),
        "features.8": (131, 16),
        "features.10": (163, 16),
        "features.12": (195, 32),
    }


def _lite0_random() -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-lite0")


BRANCHED = [
    (
        "resnet18",
        lambda: torchvision.models.resnet18(weights=None),
        ["layer1.0", "layer2.1.relu#1", "layer3.0.downsample.0"],
    ),
    (
        "googlenet",
        lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False),
        ["inception3a", "maxpool3", "inception4a.branch4.1"],
    ),
    ("vgg11", lambda: torchvision.models.vgg11(weights=None), ["features.5", "features.10"]),
    ("efficientnet_lite0", _lite0_random, ["_blocks.2", "_blocks.5._swish#1", "_blocks.8"]),
]


@pytest.mark.parametrize("name,build,layers", BRANCHED, ids=[b[0] for b in BRANCHED])
def test_branched_box_contains_gradient_support(name: str, build, layers: list[str]) -> None:
    model = build().double().eval()
    shape = (3, 96, 96)
    fields = receptive_fields(model, shape, layers)
    for layer in layers:
        field = fields[layer]
        assert field is not None and field.method.startswith("graph"), layer
        with capture(model, [layer], stop_early=True) as acts:
            acts.run(torch.zeros(1, *shape, dtype=torch.float64))
        _, channels, height, width = acts[layer].shape
        for y, x in [(0, 0), (height // 2, width // 2), (height - 1, width - 1)]:
            support = gradient_box(model, layer, shape, (channels // 2, y, x))
            inside = box_mask(field.box(y, x), shape[1], shape[2])
            assert not (support & ~inside).any(), (name, layer, y, x, field)


class DataDependent(nn.Module):
    """Python control flow on tensor values: torch.fx cannot trace it, so the field is measured."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(0.1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if x.sum() > 0:
            x = self.conv2(x)
        return x


def test_measured_field_when_tracing_fails() -> None:
    model = DataDependent().double().eval()
    field = receptive_fields(model, (1, 32, 32), ["conv2"])["conv2"]
    assert field is not None and field.method == "measured"
    assert field.size == (5, 5) and field.stride == (2, 2)  # 3x3 then 3x3 stride 2
    support = gradient_box(model, "conv2", (1, 32, 32), (0, 8, 8), positive=True)
    assert torch.equal(box_mask(field.box(8, 8), 32, 32), support)


def test_layer_table_reports_each_measured_layer() -> None:
    from vizcnn.receptive.table import layer_table

    calls: list[tuple[int, int, str]] = []
    table = layer_table(
        DataDependent().double().eval(), (1, 16, 16), progress=lambda *c: calls.append(c)
    )
    assert [row.field.method for row in table.rows if row.field] == ["measured", "measured"]
    # the forward passes, the graph walk (which fails here), then one step per layer measured
    assert [(done, total) for done, total, _ in calls] == [(0, 2), (1, 2), (2, 4), (3, 4), (4, 4)]
    assert "graph" in calls[1][2]
    assert calls[2][2].endswith("measuring conv1") and calls[3][2].endswith("measuring conv2")
    dones = [done for done, _, _ in calls]
    assert dones == sorted(dones) and calls[-1][0] == calls[-1][1]


def test_layer_table_of_a_traced_model_measures_nothing() -> None:
    from vizcnn.receptive.table import layer_table

    calls: list[tuple[int, int, str]] = []
    layer_table(
        torchvision.models.alexnet(weights=None), (3, 64, 64), progress=lambda *c: calls.append(c)
    )
    assert [(done, total) for done, total, _ in calls] == [(0, 2), (1, 2), (2, 2)]
    assert not any("measuring" in message for _, _, message in calls)


def test_global_pooling_is_global() -> None:
    model = torchvision.models.resnet18(weights=None).eval()
    field = receptive_fields(model, (3, 64, 64), ["avgpool"])["avgpool"]
    assert field is not None and field.method == "global"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

layer_spec = st.tuples(
    st.sampled_from(["conv", "avg", "pad"]),
    st.integers(1, 4),  # kernel
    st.integers(1, 3),  # stride
    st.integers(0, 2),  # padding
    st.integers(1, 2),  # dilation
)


@settings(max_examples=25, deadline=None)
@given(st.lists(layer_spec, min_size=1, max_size=4), st.integers(0, 10_000))
def test_random_single_path_stacks_match_gradient_oracle(specs, seed) -> None:
    torch.manual_seed(seed)  # hypothesis-driven test: weights only, never the library's randomness
    layers: list[nn.Module] = []
    for kind, kernel, stride, padding, dilation in specs:
        if kind == "conv":
            conv = nn.Conv2d(
                1, 1, kernel, stride=stride, padding=min(padding, kernel // 2), dilation=dilation
            )
            with torch.no_grad():
                conv.weight.uniform_(0.1, 1.0)
            layers.append(conv)
        elif kind == "avg":
            layers.append(nn.AvgPool2d(kernel, stride=stride, padding=min(padding, kernel // 2)))
        else:
            layers.append(nn.ZeroPad2d((padding, 1, kernel % 3, 0)))
    model = nn.Sequential(*layers).double().eval()
    shape = (1, 48, 40)
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *shape, dtype=torch.float64))
    except RuntimeError:  # the stack shrinks the image to nothing: no field to check
        return
    if out.shape[-1] < 1 or out.shape[-2] < 1:
        return
    name = str(len(layers) - 1)
    field = receptive_fields(model, shape, [name])[name]
    assert field is not None and field.method == "graph"
    height, width = out.shape[-2:]
    for y, x in {(0, 0), (height // 2, width // 2), (height - 1, width - 1)}:
        support = gradient_box(model, name, shape, (0, y, x), positive=True)
        expected = box_mask(field.box(y, x), shape[1], shape[2])
        if support.any():
            # dilation, or a stride longer than the kernel, leaves holes inside the field: the
            # box must contain the support, and be its bounding box where it lies inside the image
            assert not (support & ~expected).any(), (specs, y, x, field)
            top, left, bottom, right = field.box(y, x)
            if top >= 0 and left >= 0 and bottom <= shape[1] and right <= shape[2]:
                assert bounding_box(support) == (top, left, bottom, right), (specs, y, x, field)
        # (a unit of a padding layer's border sees no pixel at all, whatever its box says)


def test_squeeze_excitation_is_marked_as_context() -> None:
    model = torchvision.models.mobilenet_v3_small(weights=None).eval()
    fields = receptive_fields(model, (3, 64, 64), ["features.0", "features.1", "avgpool"])
    assert fields["features.0"] is not None and fields["features.0"].method == "graph"
    assert fields["features.1"] is not None and fields["features.1"].method == "graph+context"
    assert fields["features.1"].size == (3 + 2 * 2, 3 + 2 * 2)  # stem 3x3/2, then depthwise 3x3/2
    assert fields["avgpool"] is not None and fields["avgpool"].method == "global"


def clipped(box: tuple[int, int, int, int], height: int, width: int) -> tuple[int, int, int, int]:
    top, left, bottom, right = box
    return max(top, 0), max(left, 0), min(bottom, height), min(right, width)


def unit_support(model: nn.Module, layer: str, shape: tuple[int, int, int], y: int, x: int):
    """The oracle: bounding box of the pixels with a non-zero gradient from any channel of (y, x)."""
    masks = [
        gradient_box(model, layer, shape, (c, y, x), positive=True)
        for c in range(_channels(model, layer, shape))
    ]
    return bounding_box(torch.stack(masks).any(0))


def _channels(model: nn.Module, layer: str, shape: tuple[int, int, int]) -> int:
    with capture(model, [layer], stop_early=True) as acts:
        acts.run(torch.zeros(1, *shape, dtype=torch.float64))
    return int(acts[layer].shape[1])


class Untraceable(nn.Module):
    """Wraps a network behind data-dependent control flow, which torch.fx cannot trace."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > -1e30:  # always true, but only known from the data
            return self.inner(x)
        return x


def test_measured_alexnet_fields_match_the_published_ones() -> None:
    # the old measurement (stride = round(H_in / H_out)) gave features.10 stride 17, offset -72
    features = torchvision.models.alexnet(weights=None).features.eval()
    wrapped = Untraceable(features).eval()
    shape = (3, 128, 128)  # from 128 px on, two neighbouring units of conv5 end inside the image
    layers = ["inner.0", "inner.10", "inner.12"]
    fields = receptive_fields(wrapped, shape, layers)
    got = {name: (f.size, f.stride, f.offset, f.method) for name, f in fields.items() if f}
    assert got == {
        "inner.0": ((11, 11), (4, 4), (-2, -2), "measured"),
        "inner.10": ((163, 163), (16, 16), (-66, -66), "measured"),
        "inner.12": ((128, 128), (0, 0), (0, 0), "global"),  # each unit sees the whole image
    }
    traced = receptive_fields(features, shape, ["0", "10", "12"])
    for name in ["0", "10"]:  # the second oracle: the traced graph of the same network
        graph = traced[name]
        assert graph is not None and graph.method == "graph"
        assert (graph.size, graph.stride, graph.offset) == got[f"inner.{name}"][:3]
    pool5 = traced["12"]  # published pool5: 195 px at stride 32, offset -66; its 3x3 units
    assert pool5 is not None and (pool5.size, pool5.stride) == ((195, 195), (32, 32))
    assert all(clipped(pool5.box(y, y), 128, 128) == (0, 0, 128, 128) for y in range(3))


class ValidNet(nn.Module):
    """Valid (no) padding, pooling and dilation on one path; positive weights (no dead units)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 5)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, dilation=2)
        self.conv3 = nn.Conv2d(2, 2, 3, stride=2)
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(0.1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.pool(self.conv1(x))))


@pytest.mark.parametrize("layer", ["conv1", "pool", "conv2", "conv3"])
def test_measured_field_with_valid_padding_is_the_gradient_support(layer: str) -> None:
    torch.manual_seed(0)  # weights only
    inner = ValidNet().double().eval()
    wrapped = Untraceable(inner).eval()
    shape = (1, 44, 40)
    field = receptive_fields(wrapped, shape, [f"inner.{layer}"])[f"inner.{layer}"]
    graph = receptive_fields(inner, shape, [layer])[layer]
    assert field is not None and graph is not None
    assert field.method == "measured" and field.offset == (0, 0)  # valid padding: starts at 0
    assert (field.size, field.stride) == (graph.size, graph.stride)
    height, width = receptive_map(inner, layer, shape)
    for y, x in [(0, 0), (height // 2, width // 3), (height - 1, width - 1)]:
        support = unit_support(inner, layer, shape, y, x)
        if layer == "pool":  # one image's max-pool gradient takes one argmax per window: inside
            top, left, bottom, right = field.box(y, x)
            assert top <= support[0] and left <= support[1], (layer, y, x)
            assert support[2] <= bottom and support[3] <= right, (layer, y, x)
        else:  # positive weights and inputs: the support is the whole field
            assert support == field.box(y, x), (layer, y, x)


def receptive_map(model: nn.Module, layer: str, shape: tuple[int, int, int]) -> tuple[int, int]:
    with capture(model, [layer], stop_early=True) as acts:
        acts.run(torch.zeros(1, *shape, dtype=torch.float64))
    return int(acts[layer].shape[2]), int(acts[layer].shape[3])


class Adaptive(nn.Module):
    def __init__(self, out: int, dynamic: bool = False) -> None:
        super().__init__()
        self.dynamic = dynamic
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(out)
        self.head = nn.Conv2d(2, 2, 3, padding=1)
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(0.1, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic and x.sum() < -1e30:
            return x
        return self.head(self.pool(self.conv(x)))


@pytest.mark.parametrize("dynamic", [False, True], ids=["traced", "untraceable"])
def test_adaptive_pooling_bins_are_torchs(dynamic: bool) -> None:
    from vizcnn.receptive import adaptive_bins

    torch.manual_seed(0)  # weights only
    model = Adaptive(4, dynamic).double().eval()
    shape = (1, 10, 10)
    fields = receptive_fields(model, shape, ["pool", "head"])
    pool = fields["pool"]
    assert pool is not None and pool.method == "measured per unit"
    # torch's bins on 10 px to 4: [floor(i*10/4), ceil((i+1)*10/4)) = 3 px each, steps 2, 3, 2
    assert adaptive_bins(10, 4) == ((0, 3), (2, 5), (5, 8), (7, 10))
    for field in (pool, fields["head"]):
        assert field is not None
        layer = "pool" if field is pool else "head"
        for y in range(4):
            for x in range(4):
                expected = unit_support(model, layer, shape, y, x)
                assert clipped(field.box(y, x), 10, 10) == expected, (layer, y, x)
    # the 3x3 convolution before the pool widens each 3-px bin by one pixel on each side
    assert pool.box(1, 2) == (1, 4, 6, 9)


def test_uniform_adaptive_pooling_is_a_window_in_the_graph() -> None:
    torch.manual_seed(0)  # weights only
    model = Adaptive(4).double().eval()
    shape = (1, 12, 12)  # 12 px to 4: 3-px bins at step 3, exactly a 3x3 / 3 pooling
    field = receptive_fields(model, shape, ["pool"])["pool"]
    assert field is not None and field.method == "graph"
    assert (field.size, field.stride, field.offset) == ((5, 5), (3, 3), (-1, -1))
    for y, x in [(0, 0), (1, 2), (3, 3)]:
        assert clipped(field.box(y, x), 12, 12) == unit_support(model, "pool", shape, y, x)
