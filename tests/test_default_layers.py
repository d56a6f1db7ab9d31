"""Default layers for models the zoo does not know: stage outputs from the structure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from click.testing import CliRunner
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn import describe
from vizcnn.attribution import GradCAM, attribute
from vizcnn.cli.main import app
from vizcnn.hooks import find_module, forward_to
from vizcnn.models.default_layers import _DEFAULTS
from vizcnn.models.loading import load_model
from vizcnn.models.structure import stages

SIZE = 64  # small inputs: stride 32 still leaves a 2x2 map


def _timm(name: str) -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False)


def _children_up_to(net: nn.Module, last: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The root's children run in order up to `last`: a torchvision net's final feature map."""
    children = []
    for name, child in net.named_children():
        if not name.startswith("aux"):  # GoogLeNet's aux heads do not run in eval mode
            children.append(child)
        if name == last:
            break
    return nn.Sequential(*children)


def _efficientnet_blocks(net: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    # timm's forward_features adds the 1x1 conv_head; the last stage is `blocks`' output
    return lambda x: net.blocks(net.bn1(net.conv_stem(x)))


def _forward_features(net: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    return net.forward_features  # type: ignore[no-any-return]


# model -> (constructor, the final feature map computed a second way: timm's forward_features,
# or the network's own modules run by hand)
MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[Any], Callable[..., Any]]]] = {
    "timm:resnet50": (lambda: _timm("resnet50"), _forward_features),
    "timm:regnety_002": (lambda: _timm("regnety_002"), _forward_features),
    "timm:convnext_atto": (lambda: _timm("convnext_atto"), _forward_features),
    "timm:efficientnet_b0": (lambda: _timm("efficientnet_b0"), _efficientnet_blocks),
    "timm:mobilenetv3_small_100": (lambda: _timm("mobilenetv3_small_100"), _forward_features),
    "timm:densenet121": (lambda: _timm("densenet121"), _forward_features),
    "timm:vgg11": (lambda: _timm("vgg11"), _forward_features),
    "tv:resnet18": (
        lambda: torchvision.models.resnet18(weights=None),
        lambda net: _children_up_to(net, "layer4"),
    ),
    "tv:googlenet": (
        lambda: torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False),
        lambda net: _children_up_to(net, "inception5b"),
    ),
    "tv:mobilenet_v3_small": (
        lambda: torchvision.models.mobilenet_v3_small(weights=None),
        lambda net: net.features,
    ),
}
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid)
NAMES = {"timm:resnet50": "layer4", "timm:convnext_atto": "stages.3", "tv:resnet18": "layer4"}


@pytest.mark.parametrize("model", list(MODELS))
def test_the_gradcam_default_is_the_last_block_output(model: str) -> None:
    make, features = MODELS[model]
    net = make().train()  # as timm and torchvision return them
    before = model_state(net)
    loaded = describe(net, input_size=SIZE, name=model)
    choice = loaded.layer_choice("gradcam")
    assert_same_state(before, model_state(net))  # the probe left the model as found
    assert choice.source in ("feature_info", "structure") and len(choice.layers) == 1
    name = choice.layers[0]
    if model in NAMES:
        assert name == NAMES[model]
    module = find_module(net, name)
    parent = find_module(net, name.rpartition(".")[0]) if "." in name else net
    # never a conv inside a block; a lone norm or activation only as a layer of a plain
    # Sequential trunk (DenseNet's norm5), not inside a residual block
    assert not isinstance(module, nn.Conv2d)
    if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm, *ACTIVATIONS)):
        assert type(parent) is nn.Sequential
    # oracle: the chosen layer's output is the network's final feature map, computed by
    # timm's forward_features (or the network's modules run by hand)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    net.eval()
    with torch.no_grad():
        got = forward_to(net, x, [name], detach=True)[name]
        want = features(net)(x)
    torch.testing.assert_close(got, want)
    assert got.shape[2] * got.shape[3] > 1
    # the other techniques take stage outputs too, two thirds deep at most
    names = [s.name for s in stages(loaded)]
    for technique in ("render", "dream", "mine", "report"):
        chosen = loaded.layer_choice(technique).layers
        assert chosen and set(chosen) <= set(names), (technique, chosen)
        assert all(names.index(layer) < names.index(name) for layer in chosen)


def test_gradcam_on_timm_resnet50_with_zero_initialized_last_batchnorm_is_not_zero() -> None:
    net = _timm("resnet50").eval()
    assert torch.count_nonzero(net.layer4[-1].bn3.weight) == 0  # timm's zero_init_last
    loaded = describe(net, input_size=SIZE)
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    result = attribute(loaded, x, ["gradcam"])
    assert result.layer == "layer4"
    assert result.maps["gradcam"].abs().sum() > 0
    # the old default, the last Conv2d, sits before that BatchNorm: its map is all zero
    old = attribute(loaded, x, [GradCAM(loaded, layer="layer4.2.conv3")])
    assert old.maps["gradcam"].abs().sum() == 0


def test_the_zoos_defaults_are_unchanged(lite0: Any) -> None:
    for technique, layers in _DEFAULTS["efficientnet_lite0"].items():
        assert lite0.layer_choice(technique).layers == tuple(layers)
        assert lite0.layer_choice(technique).source == "zoo"
    # techniques the zoo entry leaves out keep the conv rules: the last Conv2d for Grad-CAM
    convs = [n for n, m in lite0.module.named_modules() if isinstance(m, nn.Conv2d)]
    assert lite0.layer_choice("gradcam").layers == (convs[-1],) == ("_conv_head",)


def test_a_model_with_some_defaults_keeps_the_conv_rules() -> None:
    net = torchvision.models.resnet18(weights=None)
    loaded = describe(net, input_size=SIZE, default_layers={"dream": ["layer2"]})
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    assert loaded.layers_for("dream") == ["layer2"]
    assert loaded.layers_for("render") == [convs[2 * len(convs) // 3]]
    assert loaded.layer_choice("gradcam").layers == (convs[-1],)


def test_a_flat_network_falls_back_to_a_conv() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1))
    loaded = describe(net, input_size=16)
    assert len(stages(loaded)) == 1  # one resolution: no stages to choose from
    choice = loaded.layer_choice("render")
    assert choice.source == "fallback" and choice.layers == ("2",)
    assert "too few" in choice.reason


def test_layers_stages_cli_lists_the_stages_and_defaults() -> None:
    args = ["layers", "-m", "resnet18", "--weights", "none", "--input-size", str(SIZE)]
    result = CliRunner().invoke(app, [*args, "--stages"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["stage", "output", "channels", "stride", "size", "default", "for"]
    rows = [line.split()[:4] for line in lines[1:6]]
    assert rows == [
        ["1", "relu", "64", "2"],
        ["2", "layer1", "64", "4"],
        ["3", "layer2", "128", "8"],
        ["4", "layer3", "256", "16"],
        ["5", "layer4", "512", "32"],
    ]
    assert lines[5].endswith("gradcam")
    assert any(line.startswith("gradcam: layer4 (the last stage output") for line in lines)
    view = json.loads(CliRunner().invoke(app, [*args, "--stages", "--json"]).stdout)
    assert [s["name"] for s in view["stages"]] == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert view["defaults"]["gradcam"]["layers"] == ["layer4"]


def test_the_cli_notes_the_default_layer(tmp_path: Any) -> None:
    args = ["-m", "resnet18", "--weights", "none", "--input-size", str(SIZE)]
    result = CliRunner().invoke(
        app, ["attribute", "sample:coffee", *args, "--method", "gradcam", "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "note: layer: layer4 (default for resnet18: the last stage output" in result.stderr
    assert json.dumps("layer4") in (tmp_path / "manifest.json").read_text()


def test_a_named_model_loaded_by_spec_gets_structural_defaults() -> None:
    loaded = load_model("resnet18", weights="none", size=SIZE)
    assert loaded.layers_for("render") == ["layer3"]
    assert loaded.layers_for("report") == ["layer1", "layer2", "layer3"]
