"""Linear probes (`vizcnn.features.probes`, `vizcnn probe`): oracles on layers with known
information, scikit-learn on brute-force features, one forward per batch, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.labelled import open_labelled_images
from vizcnn.features.probes import ProbeConfig, pool_features, probe_layers, probe_split
from vizcnn.hooks import forward_to
from vizcnn.models.base import describe
from vizcnn.runs.probe import probe_folder

CLASSES = 3
COUNTS = (14, 9, 7)  # imbalanced: the majority class is 0, with no ties


class OneHot(nn.Module):
    """The label, read from the image's mean (filled with (label + 1) / (K + 1)), one-hot as a
    2x2 map: its pooled output is the label's one-hot vector."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        label = (x.mean(dim=(1, 2, 3)) * (CLASSES + 1)).round().long() - 1
        return F.one_hot(label, CLASSES).float()[:, :, None, None].expand(-1, -1, 2, 2)


class Constant(nn.Module):
    """The same map for every image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[0], 4, 2, 2, device=x.device)


class Known(nn.Module):
    """`constant` carries nothing, `onehot` the label; the logits are 10 x the one-hot."""

    def __init__(self) -> None:
        super().__init__()
        self.constant = Constant()
        self.onehot = OneHot()
        self.calls = 0  # forward passes of the whole network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.constant(x)
        return 10 * self.onehot(x).mean(dim=(2, 3))


def _known_data() -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    images = ((labels.float() + 1) / (CLASSES + 1)).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    return images.contiguous(), labels


def _known_model() -> tuple[Known, object]:
    net = Known()
    loaded = describe(net, mean=(0.0,), std=(1.0,), input_size=8, labels=["a", "b", "c"])
    return net, loaded


def test_one_hot_layer_probes_at_100_and_a_constant_layer_at_chance() -> None:
    net, loaded = _known_model()
    images, labels = _known_data()
    config = ProbeConfig(layers=("onehot", "constant"), model_classes="index")
    result = probe_layers(loaded, (images, labels), config, seed=3, run=RunOptions(batch=8))
    by_layer = {p.layer: p for p in result.layers}
    # forward order, not the order given
    assert [p.layer for p in result.layers] == ["constant", "onehot"]
    assert by_layer["onehot"].test_accuracy == 1.0 and by_layer["onehot"].train_accuracy == 1.0
    assert by_layer["onehot"].features == CLASSES and by_layer["constant"].features == 4
    # chance = the held-out share of the training split's majority class (class 0)
    _, test = probe_split(labels.numpy(), config.test_fraction, 3)
    chance = float(np.mean(labels.numpy()[test] == 0))
    assert result.chance == pytest.approx(chance)
    assert by_layer["constant"].test_accuracy == pytest.approx(chance)
    assert result.model_accuracy == 1.0
    assert (result.images, result.test_images) == (sum(COUNTS), len(test))


def test_one_forward_per_batch_feeds_every_layer() -> None:
    net, loaded = _known_model()
    images, labels = _known_data()
    config = ProbeConfig(layers=("onehot", "constant"), model_classes="off")
    probe_layers(loaded, (images, labels), config, run=RunOptions(batch=8))  # warms preflight
    net.calls = 0
    before = model_state(net)
    probe_layers(loaded, (images, labels), config, run=RunOptions(batch=8))
    assert net.calls == math.ceil(sum(COUNTS) / 8)  # one pass per batch for both layers
    assert_same_state(before, model_state(net))


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.relu(self.conv1(x)))
        return self.fc(self.pool(x).flatten(1))


def test_probe_equals_scikit_learn_on_brute_force_features() -> None:
    """Oracle: per layer, a separate truncated forward over all images, pooled, then
    StandardScaler + LogisticRegression on the same stratified split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat(15)
    images = torch.rand(60, 3, 12, 12, generator=generator) * 0.5
    images[:, 0] += labels.view(-1, 1, 1) * 0.1  # the label leaks a little into the red channel
    loaded = describe(Conv(), input_size=12)
    layers = ("conv1", "relu", "conv2", "fc")
    config = ProbeConfig(layers=layers, test_fraction=0.3, C=0.5)
    result = probe_layers(loaded, (images, labels), config, seed=7, run=RunOptions(batch=7))
    train, test = train_test_split(
        np.arange(60), test_size=0.3, random_state=7, stratify=labels.numpy()
    )
    y = labels.numpy()
    for probe in result.layers:
        with torch.no_grad():
            output = forward_to(loaded.module, loaded.normalize(images), [probe.layer])
        x = pool_features(output[probe.layer]).double().numpy()
        scaler = StandardScaler().fit(x[train])
        fitted = LogisticRegression(C=0.5, max_iter=1000).fit(scaler.transform(x[train]), y[train])
        assert probe.test_accuracy == fitted.score(scaler.transform(x[test]), y[test]), probe
        assert probe.train_accuracy == fitted.score(scaler.transform(x[train]), y[train])
    assert [p.layer for p in result.layers] == list(layers)
    assert result.model_accuracy is not None  # no class names: counts agree
    with torch.no_grad():
        logits = loaded.module(loaded.normalize(images))
    assert result.model_accuracy == float(
        np.mean(logits.argmax(1).numpy()[np.sort(test)] == y[np.sort(test)])
    )


def test_digits_split_is_lenet5_digits_test_split() -> None:
    from vizcnn.models.lenet import digits_tensors

    data = open_labelled_images("digits", 1, (32, 32))
    _, test = probe_split(np.asarray(data.labels), 0.25, 0)
    _, _, test_x, _ = digits_tensors()
    held = torch.stack([data.images.image(int(i)) for i in test])
    assert held.shape == test_x.shape
    # the same images (as sets: ours sorted by position, scikit-learn's shuffled)
    assert sorted(held.flatten(1).sum(1).tolist()) == pytest.approx(
        sorted(test_x.flatten(1).sum(1).tolist())
    )


def test_sample_crops_are_labelled_by_photo() -> None:
    data = open_labelled_images("sample-crops", 3, (32, 32), crops_per_image=2)
    assert len(data) == 2 * len(data.classes) == 32
    for name, label in zip(data.images.names, data.labels, strict=True):
        assert name.removeprefix("sample:").split("#")[0] == data.classes[label]


def _one_line(error: pytest.ExceptionInfo[VizError]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_bad_input_one_line_each(tmp_path: Path) -> None:
    net, loaded = _known_model()
    images, labels = _known_data()
    with pytest.raises(VizError) as info:  # empty data set
        probe_layers(loaded, (images[:0], labels[:0]), ProbeConfig(layers=("onehot",)))
    assert "no images" in _one_line(info)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (8, 8)).save(flat / "a.png")
    for unlabelled in ("samples", str(flat)):
        with pytest.raises(VizError) as info:
            probe_layers(loaded, unlabelled, ProbeConfig(layers=("onehot",)))
        assert "label" in _one_line(info)
    with pytest.raises(VizError) as info:  # unknown layer
        probe_layers(loaded, (images, labels), ProbeConfig(layers=("onehott",)))
    assert "onehot" in _one_line(info)
    with pytest.raises(VizError) as info:  # one class only
        probe_layers(loaded, (images, torch.zeros_like(labels)), ProbeConfig(layers=("onehot",)))
    assert "one class" in _one_line(info)
    with pytest.raises(VizError) as info:
        ProbeConfig(test_fraction=1.0)
    assert "ProbeConfig.test_fraction" in _one_line(info)


def test_model_accuracy_not_shown_when_classes_differ() -> None:
    net = Known()
    loaded = describe(net, mean=(0.0,), std=(1.0,), input_size=8, labels=["x", "b", "c"])
    images, labels = _known_data()
    result = probe_layers(loaded, (images, labels), ProbeConfig(layers=("onehot",)))
    assert result.model_accuracy is None and "not the data's" in result.model_note


def test_probe_folder_writes_json_table_and_curve(tmp_path: Path) -> None:
    _, loaded = _known_model()
    images, labels = _known_data()
    config = ProbeConfig(layers=("onehot", "constant"), model_classes="index")
    run = probe_folder(loaded, (images, labels), tmp_path / "out", config)
    stored = json.loads((run.folder / "probes.json").read_text())
    assert stored["provenance"]["technique"] == "probe"
    assert [p["layer"] for p in stored["result"]["layers"]] == ["constant", "onehot"]
    assert stored["result"]["layers"][1]["test_accuracy"] == 1.0
    assert "`onehot`" in (run.folder / "probes.md").read_text()
    assert Image.open(run.folder / "probes.png").size[0] > 100


def _folder(tmp_path: Path) -> Path:
    """An ImageFolder of two classes: dark and bright noise."""
    root = tmp_path / "data"
    generator = np.random.default_rng(0)
    for name, level in (("dark", 40), ("bright", 200)):
        (root / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(generator.normal(level, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize(
    "model", [["-m", "resnet18", "--weights", "none"], ["-m", "timm:resnet18", "--weights", "none"]]
)
def test_probe_command_on_torchvision_and_timm(tmp_path: Path, model: list[str]) -> None:
    root = _folder(tmp_path)
    args = ["probe", str(root), *model, "--input-size", "32", "-l", "layer1", "--layers",
            "layer2,layer4", "--test-fraction", "0.5", "-q", "-o", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "out" / "probes.json").read_text())["result"]
    assert [p["layer"] for p in stored["layers"]] == ["layer1", "layer2", "layer4"]
    assert stored["model_accuracy"] is None and "1000 classes" in stored["model_note"]
    assert stored["layers"][0]["test_accuracy"] == 1.0  # dark vs bright: linear at any depth
    assert "layer4" in result.output and "chance" in result.output


def test_probe_command_errors_name_flags(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["probe", "samples", "-m", "lenet5_digits", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "sample-crops" in result.output
    result = CliRunner().invoke(
        app, ["probe", "digits", "-m", "lenet5_digits", "--test-fraction", "2", "-o", "x"]
    )
    assert result.exit_code != 0 and "--test-fraction" in result.output
    assert not (tmp_path / "o").exists()
