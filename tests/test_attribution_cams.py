"""The CAM family against hand computations on tiny float64 networks with set weights, the
relations the papers state, batching budgets, per-image / score / segmentation targets, and
every method on real architectures.

The oracles never touch `vizcnn.attribution.cams`: activations and gradients come from the
network's forward written out by hand (autograd on explicit tensors), the formulas in numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attribution_helpers import images, plain
from conftest import assert_same_state, model_state
from vizcnn.attribution import (
    METHODS,
    AblationCAM,
    EigenCAM,
    FullGrad,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    Method,
    ScoreCAM,
    SegmentationTarget,
    XGradCAM,
    attribute,
    make_methods,
)
from vizcnn.attribution.cams import CAMS
from vizcnn.core.errors import VizError
from vizcnn.core.precision import cpu_bf16_supported
from vizcnn.models.base import describe

NEW = [cls.name for cls in CAMS]


class CamNet(nn.Module):
    """conv1(3->3) -> ReLU -> conv2(3->4, stride 2) -> BatchNorm -> ReLU -> mean -> linear(4->5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(4, 5)
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            for p in (self.conv1.weight, self.conv2.weight, self.head.weight):
                p.copy_(torch.randn(p.shape, generator=g) * 0.6)
            self.conv1.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
            self.conv2.bias.copy_(torch.tensor([0.2, 0.1, -0.1, 0.05]))
            self.bn.weight.copy_(torch.tensor([1.2, 0.8, 1.0, 0.9]))
            self.bn.bias.copy_(torch.tensor([0.3, -0.1, 0.2, 0.4]))
            self.bn.running_mean.copy_(torch.tensor([0.1, -0.05, 0.2, 0.0]))
            self.bn.running_var.copy_(torch.tensor([0.5, 1.5, 0.8, 1.1]))
            self.head.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0, 0.05]))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu2(self.bn(self.conv2(self.relu1(self.conv1(x)))))
        return self.head(a.mean(dim=(2, 3)))


def by_hand(
    net: CamNet, x: torch.Tensor, ablate: tuple[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """The forward written out, every intermediate a tensor we can differentiate by."""
    x = x.clone().requires_grad_(True)
    z1 = F.conv2d(x, net.conv1.weight, net.conv1.bias, padding=1)
    a1 = z1.clamp(min=0)
    if ablate and ablate[0] == "a1":
        a1 = a1.clone()
        a1[:, ablate[1]] = 0
    z2 = F.conv2d(a1, net.conv2.weight, net.conv2.bias, stride=2, padding=1)
    bn = net.bn
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    z3 = (z2 - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]
    a2 = z3.clamp(min=0)
    if ablate and ablate[0] == "a2":
        a2 = a2.clone()
        a2[:, ablate[1]] = 0
    logits = a2.mean(dim=(2, 3)) @ net.head.weight.T + net.head.bias
    return {"x": x, "z1": z1, "a1": a1, "z2": z2, "z3": z3, "a2": a2, "logits": logits}


LAYERS = {"relu1": "a1", "relu2": "a2"}


def acts_grads(net: CamNet, x: torch.Tensor, t: list[int], key: str) -> tuple[np.ndarray, ...]:
    parts = by_hand(net, x)
    score = parts["logits"][torch.arange(len(t)), torch.tensor(t)].sum()
    (grad,) = torch.autograd.grad(score, parts[key], retain_graph=True)
    return parts[key].detach().numpy(), grad.numpy()


def up(cam: np.ndarray, size: int = 8) -> torch.Tensor:
    """(B, h, w) -> ReLU -> (B, 1, size, size) bilinear (align_corners=False)."""
    tensor = torch.from_numpy(np.maximum(cam, 0))[:, None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)


def hand_gradcampp(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    alpha = np.zeros_like(g)
    for b in range(a.shape[0]):
        for c in range(a.shape[1]):
            total = a[b, c].sum()
            for i in range(a.shape[2]):
                for j in range(a.shape[3]):
                    gij = g[b, c, i, j]
                    if gij != 0:
                        alpha[b, c, i, j] = gij**2 / (2 * gij**2 + total * gij**3 + 1e-7)
    w = (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
    return np.einsum("bc,bchw->bhw", w, a)


def hand_xgradcam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    w = (g * a).sum(axis=(2, 3)) / (a.sum(axis=(2, 3)) + 1e-7)
    return np.einsum("bc,bchw->bhw", w, a)


def hand_hirescam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return (g * a).sum(axis=1)


def hand_layercam(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    return (np.maximum(g, 0) * a).sum(axis=1)


GRADIENT_CAMS: list[tuple[type[Method], Callable[[np.ndarray, np.ndarray], np.ndarray]]] = [
    (GradCAMPlusPlus, hand_gradcampp),
    (XGradCAM, hand_xgradcam),
    (HiResCAM, hand_hirescam),
    (LayerCAM, hand_layercam),
]
TARGETS = [1, 3, 0]


@pytest.mark.parametrize(("cls", "formula"), GRADIENT_CAMS, ids=lambda v: getattr(v, "name", ""))
@pytest.mark.parametrize("layer", ["relu1", "relu2"])
def test_gradient_cams_equal_the_hand_formula(
    cls: type[Method], formula: Callable[[np.ndarray, np.ndarray], np.ndarray], layer: str
) -> None:
    net = CamNet()
    x = images(3)
    a, g = acts_grads(net, x, TARGETS, LAYERS[layer])
    if layer == "relu1":  # the gradient varies over positions there: a real test of the weights
        assert np.ptp(g, axis=(2, 3)).max() > 1e-3
    maps = cls(plain(net), layer)(x, torch.tensor(TARGETS))
    assert maps.shape == (3, 1, 8, 8) and maps.dtype == torch.float64
    torch.testing.assert_close(maps, up(formula(a, g)), rtol=1e-9, atol=1e-12)


def test_eigencam_is_the_first_principal_component_signed_by_the_activation_sum() -> None:
    net = CamNet()
    x = images(3)
    a = by_hand(net, x)["a1"].detach().numpy()
    expected = []
    for b in range(3):
        rows = a[b].reshape(3, -1).T  # positions x channels
        centred = rows - rows.mean(axis=0)
        _, _, vt = np.linalg.svd(centred)
        projection = centred @ vt[0]
        if np.corrcoef(projection, rows.sum(axis=1))[0, 1] < 0:
            projection = -projection
        expected.append(projection.reshape(8, 8))
    maps = EigenCAM(plain(net), "relu1")(x, torch.tensor(TARGETS))
    torch.testing.assert_close(maps, up(np.stack(expected)), rtol=1e-9, atol=1e-12)
    # no target: every class gives the same map
    torch.testing.assert_close(EigenCAM(plain(net), "relu1")(x, 4), maps, rtol=0, atol=0)


def hand_scorecam(net: CamNet, x: torch.Tensor, t: list[int]) -> np.ndarray:
    a = by_hand(net, x)["a1"].detach()
    cams = np.zeros((x.shape[0], 8, 8))
    for b in range(x.shape[0]):
        for c in range(a.shape[1]):
            channel = a[b, c]
            if channel.max() == channel.min():  # a constant map: no forward, weight 0
                continue
            mask = F.interpolate(channel[None, None], size=(8, 8), mode="bilinear")[0, 0]
            mask = (mask - mask.min()) / (mask.max() - mask.min())
            logits = by_hand(net, x[b : b + 1] * mask)["logits"].detach()
            probability = float(torch.softmax(logits, dim=1)[0, t[b]])
            cams[b] += probability * channel.numpy()
    return cams


@pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bfloat16")
def test_scorecam_amp_runs_the_masked_passes_in_bfloat16_and_stays_near_float32(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # conftest makes "auto" float32 in tests; this one runs the bf16 path the CPU has
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: True)
    net = CamNet().float()
    loaded = plain(net)
    x, t = images(3).float(), torch.tensor(TARGETS)
    seen: list[torch.dtype] = []
    handle = net.head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        exact = ScoreCAM(loaded, "relu1", amp=False)(x, t)
        passes = len(seen)
        fast = ScoreCAM(loaded, "relu1", amp=True)(x, t)
    finally:
        handle.remove()
    # one float32 pass for the activations, then every masked pass in bfloat16 (and only those)
    assert set(seen[:passes]) == {torch.float32}
    assert seen[passes] == torch.float32 and set(seen[passes + 1 :]) == {torch.bfloat16}
    assert exact.dtype == fast.dtype == torch.float32
    # float32 run = the float64 hand loop; bf16 probabilities within ~1e-2, so the maps too
    hand = up(hand_scorecam(CamNet(), images(3), TARGETS)).float()
    torch.testing.assert_close(exact, hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast, exact, rtol=0, atol=0.02 * float(exact.amax()))
    assert ScoreCAM(loaded, "relu1", amp=True).options()["precision"] == "bfloat16"
    assert ScoreCAM(loaded, "relu1", amp=False).options()["precision"] == "float32"


def test_scorecam_amp_leaves_a_float64_model_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: True)
    net = CamNet()
    loaded = plain(net)
    x, t = images(3), torch.tensor(TARGETS)
    seen: list[torch.dtype] = []
    handle = net.head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        fast = ScoreCAM(loaded, "relu1", amp=True)(x, t)
    finally:
        handle.remove()
    assert set(seen) == {torch.float64}
    hand = up(hand_scorecam(net, x, TARGETS))
    torch.testing.assert_close(fast, hand, rtol=1e-9, atol=1e-12)
    assert ScoreCAM(loaded, "relu1", amp=True).options()["precision"] == "float64"
    with pytest.raises(VizError, match="ScoreCAM: amp must be True, False or 'auto'"):
        ScoreCAM(loaded, "relu1", amp="yes")  # type: ignore[arg-type]


def hand_ablationcam(net: CamNet, x: torch.Tensor, t: list[int], key: str) -> np.ndarray:
    parts = by_hand(net, x)
    a = parts[key].detach().numpy()
    y = parts["logits"].detach().numpy()[np.arange(len(t)), t]
    cams = np.zeros((x.shape[0], *a.shape[2:]))
    for c in range(a.shape[1]):
        ablated = by_hand(net, x, (key, c))["logits"].detach().numpy()[np.arange(len(t)), t]
        cams += ((y - ablated) / y)[:, None, None] * a[:, c]
    return cams


def test_scorecam_equals_the_hand_loop_over_masked_images() -> None:
    net = CamNet()
    x = images(3)
    maps = ScoreCAM(plain(net), "relu1")(x, torch.tensor(TARGETS))
    torch.testing.assert_close(maps, up(hand_scorecam(net, x, TARGETS)), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layer", ["relu1", "relu2"])
def test_ablationcam_equals_the_hand_loop_over_ablated_channels(layer: str) -> None:
    net = CamNet()
    x = images(3)
    maps = AblationCAM(plain(net), layer)(x, torch.tensor(TARGETS))
    expected = up(hand_ablationcam(net, x, TARGETS, LAYERS[layer]))
    torch.testing.assert_close(maps, expected, rtol=1e-9, atol=1e-12)


def _psi(maps: np.ndarray) -> np.ndarray:
    """|maps| rescaled to [0, 1] per image and channel, summed over the channels: (B, 1, h, w)."""
    maps = np.abs(maps)
    maps = maps - maps.min(axis=(2, 3), keepdims=True)
    maps = maps / (maps.max(axis=(2, 3), keepdims=True) + 1e-7)
    return maps.sum(axis=1, keepdims=True)


def test_fullgrad_sums_the_input_and_every_conv_and_batchnorm_bias_gradient() -> None:
    net = CamNet()
    x = images(3)
    mean = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)[None, :, None, None]
    loaded = describe(net, mean=(0.2, 0.5, 0.3), std=(1.0,) * 3, input_size=8)
    parts = by_hand(net, x - mean)  # the normalization: a shift (std 1)
    score = parts["logits"][torch.arange(3), torch.tensor(TARGETS)].sum()
    gx, g1, g2, g3 = torch.autograd.grad(score, [parts[k] for k in ("x", "z1", "z2", "z3")])
    bn = net.bn
    bn_bias = bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)
    terms = [
        (gx * (x - mean)).numpy(),  # the normalized image (its shift is a bias too)
        (g1 * net.conv1.bias[None, :, None, None]).detach().numpy(),
        (g2 * net.conv2.bias[None, :, None, None]).detach().numpy(),
        (g3 * bn_bias[None, :, None, None]).detach().numpy(),
    ]
    expected = sum(
        F.interpolate(torch.from_numpy(_psi(t)), size=(8, 8), mode="bilinear") for t in terms
    )
    maps = FullGrad(loaded)(x, torch.tensor(TARGETS))
    assert maps.shape == (3, 1, 8, 8)
    torch.testing.assert_close(maps, expected, rtol=1e-9, atol=1e-12)


def test_fullgrad_refuses_models_whose_biases_it_cannot_sum() -> None:
    bare = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2))  # fmt: skip
    with pytest.raises(VizError, match="needs conv biases or BatchNorm layers; .* has neither"):
        FullGrad(bare)
    normed = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.AdaptiveAvgPool2d(1),
                           nn.Flatten(), nn.Linear(4, 2))  # fmt: skip
    with pytest.raises(VizError, match=r"biased GroupNorm layers \(1\)"):
        FullGrad(normed)
    with pytest.raises(VizError, match="fullgrad"):  # the registry names it
        make_methods(bare, ["fulgrad"])


# --- relations the papers state ------------------------------------------------------------


def test_hirescam_equals_gradcam_where_the_gradient_is_constant_over_positions() -> None:
    net = CamNet()  # after relu2 only the mean and the linear head: G = W[t] / hw everywhere
    x = images(3)
    _, g = acts_grads(net, x, TARGETS, "a2")
    mask = g != 0  # ReLU-free from relu2 on: constant per channel
    assert np.allclose(g, g[:, :, :1, :1]) and mask.all()
    t = torch.tensor(TARGETS)
    hires = HiResCAM(plain(net), "relu2")(x, t)
    torch.testing.assert_close(hires, GradCAM(plain(net), "relu2")(x, t), rtol=1e-12, atol=1e-14)
    assert not torch.allclose(
        HiResCAM(plain(net), "relu1")(x, t), GradCAM(plain(net), "relu1")(x, t)
    )


def test_layercam_at_the_last_layer_of_a_gap_network_is_cam() -> None:
    net = CamNet()
    with torch.no_grad():  # target 2's weights all positive: the CAM of Zhou et al. exactly
        net.head.weight[2] = torch.tensor([0.7, 0.2, 1.1, 0.4], dtype=torch.float64)
    x = images(3)
    a = by_hand(net, x)["a2"].detach().numpy()
    cam = np.einsum("c,bchw->bhw", net.head.weight[2].detach().numpy(), a)  # sum_c w_c A_c
    maps = LayerCAM(plain(net), "relu2")(x, 2)
    torch.testing.assert_close(maps * 16, up(cam), rtol=1e-12, atol=1e-14)  # G = w / (h w)


class ShiftNet(nn.Module):
    """A shift by -0.5 (the CAM layer), global mean, linear with positive weights."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = nn.Conv2d(3, 3, 1)
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.shift.weight.copy_(torch.eye(3)[:, :, None, None])
            self.shift.bias.fill_(-0.5)
            self.head.weight.copy_(torch.tensor([[40.0, 25.0, 60.0], [-10.0, 30.0, 20.0]]))
            self.head.bias.zero_()
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.shift(x).mean(dim=(2, 3)))


def test_gradcampp_is_gradcam_scaled_where_the_second_order_terms_vanish() -> None:
    """Each channel's activations sum to 0 and G is constant: alpha = G^2 / 2 G^2 = 1/2 at every
    position, so the weights are (h w / 2) G: Grad-CAM times h w / 2 (up to the 1e-7 epsilon)."""
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64) * 0.4 - 0.2
    x = 0.5 + u - u.mean(dim=(2, 3), keepdim=True)  # shift(x) sums to 0 per channel
    loaded = plain(ShiftNet(), labels=None)
    plus = GradCAMPlusPlus(loaded, "shift")(x, 0)
    grad = GradCAM(loaded, "shift")(x, 0)
    assert grad.amax() > 0
    scaled = grad * 64 / 2
    # the epsilon moves each weight by 1e-7 / (2 G^2), under 1e-6 of it here
    torch.testing.assert_close(plus, scaled, rtol=0, atol=1e-6 * float(scaled.amax()))


# --- budgets, targets ----------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ScoreCAM, AblationCAM], ids=lambda c: c.name)
def test_masks_per_pass_do_not_change_the_maps(cls: type[ScoreCAM | AblationCAM]) -> None:
    loaded = plain(CamNet())
    x, t = images(3), torch.tensor(TARGETS)
    maps = [cls(loaded, "relu2", batch=b)(x, t) for b in (1, 3, 10_000)]  # 1, several, all
    assert maps[0].amax() > 0
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(VizError, match="batch = 0 must be at least 1"):
        cls(loaded, "relu2", batch=0)


def test_ablationcam_on_a_model_that_does_not_broadcast_the_prefix() -> None:
    class Reshaping(CamNet):  # reads the batch size from its input, as EfficientNet-PyTorch
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.relu2(self.bn(self.conv2(self.relu1(self.conv1(x)))))
            return self.head(a.mean(dim=(2, 3)).view(x.shape[0], -1))

    net, x, t = Reshaping(), images(3), torch.tensor(TARGETS)
    maps = AblationCAM(plain(net), "relu1", batch=2)(x, t)
    torch.testing.assert_close(maps, up(hand_ablationcam(net, x, TARGETS, "a1")))


def _cam_methods(loaded: object) -> list[Method]:
    return [METHODS[name](loaded, "relu1") for name in NEW if name != "fullgrad"] + [
        FullGrad(loaded)  # type: ignore[arg-type]
    ]


@pytest.mark.parametrize("position", range(len(NEW)))
def test_a_target_per_image_equals_each_image_alone(position: int) -> None:
    loaded = plain(CamNet())
    method = _cam_methods(loaded)[position]
    x = images(4)
    maps = method(x, ["espresso", 3, "tabby", "volcano"])
    for i, target in enumerate([1, 3, 0, 4]):
        torch.testing.assert_close(maps[i : i + 1], method(x[i : i + 1], target), msg=method.name)
    if method.name != "eigencam":  # class-agnostic
        assert not torch.allclose(maps, method(x, 2))


@pytest.mark.parametrize("position", range(len(NEW)))
def test_a_callable_picking_the_logit_equals_the_class_target(position: int) -> None:
    loaded = plain(CamNet())
    method = _cam_methods(loaded)[position]
    x = images(3)

    def pick(out: torch.Tensor) -> torch.Tensor:
        # Score-CAM weighs by the probability: a callable giving it is the class target
        return out.softmax(dim=1)[:, 2] if method.name == "scorecam" else out[:, 2]

    torch.testing.assert_close(method(x, pick), method(x, 2), rtol=1e-12, atol=1e-14)
    via_attribute = attribute(loaded, x, [method], targets=pick)
    assert via_attribute.targets.tolist() == [-1, -1, -1]
    torch.testing.assert_close(via_attribute.maps[method.name], method(x, 2).expand(-1, 3, -1, -1))


class SegNet(nn.Module):
    """conv(3->3) -> ReLU -> conv 1x1 (3->K=2): per-pixel logits (B, 2, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.classify = nn.Conv2d(3, 2, 1)
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.relu(self.conv1(x)))


def test_segmentation_target_sums_the_category_over_the_mask() -> None:
    net, x = SegNet(), images(2)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 1:7] = True
    target = SegmentationTarget(1, mask)
    out = net(x)
    expected = torch.stack([out[b, 1][mask].sum() for b in range(2)])  # the hand sum
    torch.testing.assert_close(target(out), expected, rtol=0, atol=0)
    # HiResCAM at the ReLU: the gradient of that sum, by hand
    xx = x.clone()
    a = torch.relu(F.conv2d(xx, net.conv1.weight, net.conv1.bias, padding=1)).requires_grad_(True)
    logits = F.conv2d(a, net.classify.weight, net.classify.bias)
    (g,) = torch.autograd.grad((logits[:, 1] * mask).sum(), a)
    loaded = plain(net, labels=None)
    maps = HiResCAM(loaded, "relu")(x, target)
    torch.testing.assert_close(maps, up((g * a).sum(1).detach().numpy()), rtol=1e-9, atol=1e-12)
    result = attribute(loaded, x, ["gradcam++", "ablationcam"], targets=target)
    assert result.maps["gradcam++"].shape == (2, 3, 8, 8) and result.targets.tolist() == [-1, -1]
    per_image = SegmentationTarget(1, torch.stack([mask, ~mask]))  # (B, H, W): one per image
    torch.testing.assert_close(per_image(out)[1], out[1, 1][~mask].sum())


def test_bad_score_targets_are_one_line_errors() -> None:
    loaded = plain(SegNet(), labels=None)
    x = images(2)
    with pytest.raises(VizError, match=r"mask is \(4, 4\) pixels; the model's output is \(8, 8\)"):
        HiResCAM(loaded, "relu")(x, SegmentationTarget(0, torch.ones(4, 4)))
    with pytest.raises(VizError, match="category 5 out of range; the model has categories 0..1"):
        HiResCAM(loaded, "relu")(x, SegmentationTarget(5, torch.ones(8, 8)))
    with pytest.raises(VizError, match=r"needs \(B, K, H, W\) outputs"):
        HiResCAM(plain(CamNet()), "relu1")(x, SegmentationTarget(0, torch.ones(8, 8)))
    with pytest.raises(VizError, match=r"one score per image, shape \(2,\); got \(2, 2\)$"):
        HiResCAM(loaded, "relu")(x, lambda out: out.sum(-1)[:, :, 0])
    with pytest.raises(VizError, match="give a convolutional layer"):
        HiResCAM(plain(CamNet()), "head")(x)


# --- real architectures --------------------------------------------------------------------


def _architectures(lite0: object) -> list[tuple[str, object]]:
    torchvision = pytest.importorskip("torchvision")
    timm = pytest.importorskip("timm")
    with torch.random.fork_rng():  # the same random weights every run, the global state kept
        torch.manual_seed(0)
        return [
            ("efficientnet_lite0", lite0),
            ("resnet18", torchvision.models.resnet18(weights=None)),
            ("timm efficientnet_b0", timm.create_model("efficientnet_b0", pretrained=False)),
        ]


def test_every_new_method_on_lite0_torchvision_resnet_and_timm_efficientnet(lite0: object) -> None:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for label, model in _architectures(lite0):
        module = getattr(model, "module", model)
        before = model_state(module)  # type: ignore[arg-type]
        methods = make_methods(model, NEW, batch=256)  # type: ignore[arg-type]
        for method in methods:
            maps = method(x, 1)
            assert maps.shape == (1, 1, 64, 64), (label, method.name)
            # finite; not asserted non-zero: on random weights relu(sum_c w_c A_c) may be 0
            assert torch.isfinite(maps).all() and (maps >= 0).all(), (label, method.name)
        assert_same_state(before, model_state(module))  # type: ignore[arg-type]


def test_timm_convnext_runs_the_cams_and_fullgrad_refuses_its_layernorm() -> None:
    timm = pytest.importorskip("timm")
    model = timm.create_model("convnext_atto", pretrained=False)
    before = model_state(model)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in ("gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"):
        maps = METHODS[name](model)(x, [3, 7])
        assert maps.shape == (2, 1, 32, 32) and torch.isfinite(maps).all(), name
    with pytest.raises(VizError, match="biased LayerNorm2d layers"):
        FullGrad(model)
    assert_same_state(before, model_state(model))


def test_the_report_images_page_shows_the_new_methods(tmp_path: Path) -> None:
    from report_helpers import markup_loaded, tiny_config, write_data
    from vizcnn.report import report_folder

    methods = ("gradcam++", "scorecam", "fullgrad")
    config = tiny_config(write_data(tmp_path / "data", count=2), methods=methods)
    report_folder(markup_loaded(), tmp_path / "site", config)
    page = (tmp_path / "site" / "images.html").read_text(encoding="utf-8")
    for name in methods:
        assert f"{name} attribution map of" in page, name


def test_the_report_keys_score_cam_by_the_precision_its_masked_passes_run_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from report_helpers import markup_loaded, tiny_config, write_data
    from vizcnn.core.run_options import RunOptions
    from vizcnn.report.builder.plan import plan_report

    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: True)
    loaded = markup_loaded()
    data = write_data(tmp_path / "data", count=2)

    def keyed(methods: tuple[str, ...], amp: bool) -> list[object]:
        plan = plan_report(loaded, tiny_config(data, methods=methods), run=RunOptions(amp=amp))
        found = [a.params for a in plan.artifacts if a.kind == "attribution"]
        assert found
        return [params.get("scorecam_precision") for params in found]

    wanted = "bfloat16" if loaded.dtype == torch.float32 else str(loaded.dtype).split(".")[-1]
    assert set(keyed(("gradcam", "scorecam"), True)) == {wanted}
    assert set(keyed(("gradcam", "scorecam"), False)) == {str(loaded.dtype).split(".")[-1]}
    assert set(keyed(("gradcam",), True)) == {None}  # no Score-CAM: keys as before


@pytest.mark.parametrize("layer", ["relu1", "conv2", "relu2"])
def test_gradcam_equals_captum_layer_gradcam(layer: str) -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    from vizcnn.attribution.classifier import Classifier

    net, x, t = CamNet().eval(), images(3), torch.tensor(TARGETS)  # BatchNorm: running stats
    loaded = plain(net)
    leaf = x.clone().requires_grad_(True)
    module = getattr(net, layer)
    cam = LayerGradCam(Classifier(loaded), module).attribute(leaf, target=t, relu_attributions=True)
    expected = LayerAttribution.interpolate(cam, (8, 8), interpolate_mode="bilinear")
    torch.testing.assert_close(GradCAM(loaded, layer)(x, t), expected, rtol=1e-12, atol=1e-14)


def test_explicit_classes_cost_no_prediction_pass_and_are_checked() -> None:
    net = CamNet()
    loaded = plain(net)
    calls: list[int] = []
    handle = net.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    try:
        x = images(3)
        HiResCAM(loaded, "relu1")(x, [1, "daisy", 4])  # classes given: the method's pass only
        assert calls == [3]
        calls.clear()
        HiResCAM(loaded, "relu1")(x, "top1")  # the prediction first, then the method's pass
        assert calls == [3, 3]
    finally:
        handle.remove()
    with pytest.raises(VizError, match=r"targets \[9\] out of range; the model has classes 0..4"):
        HiResCAM(loaded, "relu1")(x, torch.tensor([1, 9, 2]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_cams_run_on_cuda_keep_their_maps_there_and_match_cpu() -> None:
    net = CamNet().float()
    x, t = images(3).float(), torch.tensor(TARGETS)
    on_cpu = attribute(plain(net), x, NEW, targets=t)
    net.cuda()
    on_gpu = attribute(plain(net), x.cuda(), NEW, targets=t.cuda())
    for name in NEW:
        assert on_gpu.maps[name].device.type == "cuda", name
        torch.testing.assert_close(on_gpu.maps[name].cpu(), on_cpu.maps[name], rtol=1e-4, atol=1e-5)
