"""Attribution methods against oracles: weights, completeness, hand Grad-CAM, brute-force occlusion."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attribution_helpers import SmallNet, images, plain
from conftest import assert_same_state, model_state
from vizcnn.attribution import (
    METHODS,
    GradCAM,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
    attribute,
    make_methods,
)
from vizcnn.core.errors import VizError
from vizcnn.core.relu_rules import relu_rule
from vizcnn.core.run_options import RunOptions


def test_saliency_of_a_linear_model_is_its_weights() -> None:
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)).double()
    x = images(2)
    result = attribute(plain(linear), x, "saliency", targets=torch.tensor([1, 4]))
    weight = linear[1].weight.detach()
    torch.testing.assert_close(result.maps["saliency"][0], weight[1].view(3, 8, 8))
    torch.testing.assert_close(result.maps["saliency"][1], weight[4].view(3, 8, 8))


def test_integrated_gradients_are_complete() -> None:
    # a smooth net: Gauss-Legendre integration converges fast (ReLU kinks would need many steps)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(144, 5)).double()
    x = images(3)
    loaded = plain(net)
    method = IntegratedGradients(loaded, steps=32, baseline=0.25)
    result = attribute(loaded, x, [method], targets="espresso")
    with torch.no_grad():
        gap = net(x)[:, 1] - net(torch.full_like(x, 0.25))[:, 1]
    torch.testing.assert_close(result.maps["ig"].sum(dim=(1, 2, 3)), gap, rtol=1e-6, atol=1e-8)


class CamNet(nn.Module):
    """conv(1->2, padding 1) -> ReLU -> global mean -> linear; Grad-CAM at `conv` is closed-form."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.head = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([torch.ones(1, 3, 3), -torch.eye(3).view(1, 3, 3)]))
            self.head.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 3.0], [1.0, 1.0]]))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("target", [0, 1])
def test_gradcam_equals_the_hand_computed_map(target: int) -> None:
    x = images(2, channels=1, size=8) - 0.3  # some negative conv outputs, so the masks matter
    result = attribute(
        plain(CamNet(), channels=1, size=8, labels=None), x, "gradcam", targets=target
    )
    assert result.layer == "conv"
    # by hand: A_k = conv output; dy/dA_k = w_k * [A_k > 0] / 64; alpha_k its spatial mean
    ones = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    diag = -torch.eye(3, dtype=torch.float64).view(1, 1, 3, 3)
    acts = [F.conv2d(x, ones, padding=1), F.conv2d(x, diag, padding=1)]
    w = CamNet().head.weight[target].detach()
    alphas = [w[k] * (acts[k] > 0).double().mean(dim=(2, 3), keepdim=True) / 64 for k in range(2)]
    cam = (alphas[0] * acts[0] + alphas[1] * acts[1]).clamp(min=0)
    torch.testing.assert_close(result.maps["gradcam"], cam)


def test_gradcam_upsamples_to_the_input_size() -> None:
    net = nn.Sequential(nn.Conv2d(3, 2, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    net(torch.zeros(1, 3, 16, 16))
    result = attribute(plain(net, size=16, labels=None), images(2, size=16).float(), "gradcam")
    assert result.maps["gradcam"].shape == (2, 3, 16, 16)
    assert result.layer == "0"


def test_occlusion_equals_a_brute_force_loop() -> None:
    net = SmallNet()
    x = images(2)
    loaded = plain(net)
    method = Occlusion(loaded, window=4, stride=2, baseline=0.5)
    result = attribute(loaded, x, [method], targets=3)
    total = torch.zeros_like(x)
    count = torch.zeros_like(x)
    with torch.no_grad():
        full = net(x)[:, 3]
        for top in range(0, 5, 2):
            for left in range(0, 5, 2):
                covered = x.clone()
                covered[:, :, top : top + 4, left : left + 4] = 0.5
                drop = full - net(covered)[:, 3]
                total[:, :, top : top + 4, left : left + 4] += drop.view(-1, 1, 1, 1)
                count[:, :, top : top + 4, left : left + 4] += 1
    # captum accumulates in float32
    torch.testing.assert_close(result.maps["occlusion"], total / count, rtol=1e-5, atol=1e-6)


def test_guided_and_deconv_equal_the_gradient_under_the_relu_rule() -> None:
    net = SmallNet()
    x = images(2)
    result = attribute(plain(net), x, ["guided", "deconv"], targets=2)
    for method, rule in (("guided", "guided"), ("deconv", "deconv")):
        leaf = x.clone().requires_grad_(True)
        with relu_rule(net, rule):  # type: ignore[arg-type]
            net(leaf)[:, 2].sum().backward()
        assert leaf.grad is not None
        torch.testing.assert_close(result.maps[method], leaf.grad)


def test_guided_differs_from_saliency_on_googlenet_functional_relus() -> None:
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    result = attribute(net, x, ["saliency", "guided", "deconv"])
    assert not torch.allclose(result.maps["guided"], result.maps["saliency"])
    assert not torch.allclose(result.maps["deconv"], result.maps["saliency"])


def test_all_methods_leave_the_model_as_found() -> None:
    net = SmallNet().train()
    before = model_state(net)
    loaded = plain(net)
    methods = make_methods(loaded, list(METHODS), steps=4, samples=2)
    result = attribute(loaded, images(3), methods, run=RunOptions(batch=2))
    assert_same_state(before, model_state(net))
    for name, tensor in result.maps.items():
        assert tensor.shape == (3, 3, 8, 8), name
        assert torch.isfinite(tensor).all(), name


def test_batches_do_not_change_the_maps() -> None:
    net = SmallNet()
    x = images(4)
    methods = ("saliency", "ig", "guided", "gradcam", "occlusion", "smoothgrad")
    loaded = plain(net)
    one = attribute(loaded, x, make_methods(loaded, methods, samples=3), run=RunOptions(batch=1))
    four = attribute(loaded, x, make_methods(loaded, methods, samples=3), run=RunOptions(batch=4))
    for name in methods:
        if name == "smoothgrad":  # noise is drawn per call: same seed, different batch layout
            continue
        torch.testing.assert_close(one.maps[name], four.maps[name], msg=name)


def test_smoothgrad_is_reproducible_and_leaves_the_global_generator() -> None:
    net = SmallNet()
    method = SmoothGrad(plain(net), samples=4, seed=3)
    state = torch.get_rng_state()
    first = attribute(net, images(2), [method]).maps["smoothgrad"]
    assert torch.equal(state, torch.get_rng_state())
    second = attribute(net, images(2), [method]).maps["smoothgrad"]
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_grayscale_and_rgba_inputs_follow_the_chain_rule() -> None:
    net = SmallNet()
    loaded = plain(net)
    gray = images(2, channels=1)
    rgb = gray.expand(-1, 3, -1, -1).contiguous()
    via_gray = attribute(loaded, gray, "saliency", targets=0).maps["saliency"]
    via_rgb = attribute(loaded, rgb, "saliency", targets=0).maps["saliency"]
    assert via_gray.shape == (2, 1, 8, 8)
    torch.testing.assert_close(via_gray, via_rgb.sum(1, keepdim=True))
    rgba = torch.cat([rgb, torch.ones_like(gray)], dim=1)  # opaque: RGB attributions, alpha's own
    via_rgba = attribute(loaded, rgba, "saliency", targets=0).maps["saliency"]
    torch.testing.assert_close(via_rgba[:, :3], via_rgb)
    # d/d alpha of (rgb * alpha + 1 - alpha) = (rgb - 1) weighted by the RGB gradient
    torch.testing.assert_close(via_rgba[:, 3], (via_rgb * (rgb - 1)).sum(1))


def test_target_errors_name_the_closest_labels() -> None:
    loaded = plain(SmallNet())
    with pytest.raises(VizError, match="espresso"):
        attribute(loaded, images(1), "saliency", targets="espreso")
    with pytest.raises(VizError, match="out of range"):
        attribute(loaded, images(1), "saliency", targets=9)
    with pytest.raises(VizError, match="gradcam"):
        attribute(loaded, images(1), "gradcan")
    with pytest.raises(VizError, match="conv1"):
        GradCAM(loaded, layer="conv_1")


def test_top1_targets_are_the_predictions() -> None:
    net = SmallNet()
    x = images(4)
    result = attribute(plain(net), x, "saliency")
    with torch.no_grad():
        assert torch.equal(result.targets, net(x).argmax(1))
    assert result.predictions.top_indices.shape == (4, 5)


@pytest.mark.slow
def test_lite0_end_to_end(lite0) -> None:  # type: ignore[no-untyped-def]
    from vizcnn.data.datasets import preprocess
    from vizcnn.data.samples import sample_image

    before = model_state(lite0.module)
    x = preprocess(sample_image("coffee"), lite0.input_size)[None]
    methods = ("saliency", "guided", "gradcam")
    result = attribute(lite0, x, methods)
    assert lite0.labels[int(result.targets[0])] == "espresso"
    assert result.layer == "_conv_head"
    # lite0's activations are nn.ReLU6 modules: captum alone would return the plain gradient here
    assert not torch.allclose(result.maps["guided"], result.maps["saliency"])
    # Grad-CAM puts more mass on the cup (centre) than on the border
    cam = result.maps["gradcam"][0, 0]
    assert cam[56:168, 56:168].mean() > cam.mean()
    assert_same_state(before, model_state(lite0.module))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_methods_run_on_cuda_and_match_cpu() -> None:
    net = SmallNet().float()
    x = images(2).float()
    methods = ["saliency", "guided", "gradcam", "occlusion"]
    on_cpu = attribute(plain(net), x, methods, targets=1)
    net.cuda()
    on_gpu = attribute(plain(net), x.cuda(), methods, targets=1)
    for name in methods:
        assert on_gpu.maps[name].device.type == "cuda"
        torch.testing.assert_close(on_gpu.maps[name].cpu(), on_cpu.maps[name], rtol=1e-4, atol=1e-5)


# --- targets in every accepted form ---------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "same_as"),
    [
        ([1, 2, 4], [1, 2, 4]),
        ((1, 2, 4), [1, 2, 4]),
        (["ESPRESSO", "daisy", " Volcano"], [1, 2, 4]),
        (["espresso", 2, "volcano"], [1, 2, 4]),
        (1, [1, 1, 1]),
        ("Tiger Cat", [3, 3, 3]),
        (torch.tensor(3), [3, 3, 3]),
    ],
)
def test_every_form_of_targets_gives_the_maps_of_the_equivalent_tensor(
    targets: object, same_as: list[int]
) -> None:
    loaded = plain(SmallNet())
    x = images(3)
    methods = ["saliency", "gradcam"]
    expected = attribute(loaded, x, methods, targets=torch.tensor(same_as))
    got = attribute(loaded, x, methods, targets=targets)  # type: ignore[arg-type]
    assert got.targets.tolist() == same_as
    for name in methods:
        torch.testing.assert_close(got.maps[name], expected.maps[name], rtol=0, atol=0)


def test_top1_in_a_list_is_that_image_s_prediction() -> None:
    net = SmallNet()
    x = images(3)
    result = attribute(plain(net), x, "saliency", targets=["top1", 0, "top1"])
    with torch.no_grad():
        top = net(x).argmax(1)
    assert result.targets.tolist() == [int(top[0]), 0, int(top[2])]


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([1, 2], "got 2 targets for a batch of 3 images"),
        (torch.tensor([1, 2]), r"shape \(3,\) for this batch of 3"),
        (["espresso", "daisi", 0], "unknown class 'daisi'; did you mean: daisy"),
        ([0, 1, 7], "class 7 out of range"),
        (torch.tensor([0, 9, 1]), r"targets \[9\] out of range; the model has classes 0\.\.4"),
        ([0, 1.5, 2], "target 1.5 .* must be a class index or a class name"),
    ],
)
def test_bad_targets_give_one_line_errors(targets: object, message: str) -> None:
    with pytest.raises(VizError, match=message) as caught:
        attribute(plain(SmallNet()), images(3), "saliency", targets=targets)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
