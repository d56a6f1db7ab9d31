from __future__ import annotations

import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from vizcnn.core.errors import VizError
from vizcnn.data.samples import sample_image
from vizcnn.io.imaging import resize
from vizcnn.models.loading import available_models, load_model


def classify(loaded, image: torch.Tensor) -> list[tuple[str, float]]:
    batch = resize(image[None], loaded.input_size)
    with torch.no_grad():
        probs = loaded.module(loaded.normalize(batch)).softmax(1)[0]
    values, indices = probs.topk(3)
    return [(loaded.labels[int(i)], float(v)) for v, i in zip(values, indices, strict=True)]


def test_default_model_is_offline_and_classifies_samples(lite0) -> None:
    assert not lite0.module.training
    assert not any(p.requires_grad for p in lite0.module.parameters())
    label, prob = classify(lite0, sample_image("coffee"))[0]
    assert label == "espresso" and prob > 0.5
    assert classify(lite0, sample_image("chelsea"))[0][0] in {"Egyptian cat", "tabby", "tiger cat"}


def test_lenet5_digits_accuracy() -> None:
    from vizcnn.models import lenet

    loaded = load_model("lenet5_digits")
    _, _, test_x, test_y = lenet.digits_tensors()
    assert loaded.channels == 1 and loaded.input_size == (32, 32)
    with torch.no_grad():
        predicted = loaded.module(loaded.normalize(test_x)).argmax(1)
    assert float((predicted == test_y).float().mean()) >= 0.97


def test_torchvision_random_weights() -> None:
    loaded = load_model("resnet18", weights="none")
    assert loaded.module(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    assert loaded.labels[0] == "tench"


def test_offline_download_error_names_file_and_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline, raising=False)
    with pytest.raises(VizError) as info:
        load_model("alexnet")
    message = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in message and str(tmp_path / "checkpoints") in message


def test_state_dict_checkpoint_with_arch(tmp_path: Path) -> None:
    model = torchvision.models.resnet18(weights=None, num_classes=7)
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(str(path), arch="resnet18")
    torch.testing.assert_close(loaded.module.fc.weight, model.fc.weight)
    assert len(loaded.labels) == 7
    # the same through --weights on an architecture name
    again = load_model("resnet18", weights=str(path))
    torch.testing.assert_close(again.module.conv1.weight, model.conv1.weight)


def test_state_dict_without_arch_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "mine.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(VizError, match="arch=..."):
        load_model(str(path))


def test_pickled_module_needs_trust(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(torchvision.models.alexnet(weights=None), path)
    with pytest.raises(VizError, match="trust_checkpoint=True"):
        load_model(str(path))
    loaded = load_model(str(path), trust_checkpoint=True)
    assert isinstance(loaded.module, torchvision.models.AlexNet)


def test_factory_spec_with_custom_preprocessing(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "usernet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n"
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_model("usernet:build", mean=[0.5], std=[0.25], size=48, labels=str(labels))
    assert (
        loaded.channels == 1 and loaded.input_size == (48, 48) and loaded.labels == ["cat", "dog"]
    )
    torch.testing.assert_close(
        loaded.normalize(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2)
    )
    assert loaded.class_index("DOG") == 1
    sys.modules.pop("usernet", None)


def test_unknown_model_and_class_suggest(lite0) -> None:
    with pytest.raises(VizError, match="did you mean: .*resnet50"):
        load_model("resnet5O")
    with pytest.raises(VizError, match="espresso"):
        lite0.class_index("expresso")
    assert lite0.class_index("Espresso") == 967 == lite0.class_index("967")


def test_models_listing_reports_offline_weights() -> None:
    rows = {row["name"]: row for row in available_models()}
    assert rows["efficientnet_lite0"]["weights_present"] is True
    assert "resnet50" in rows


def test_bundled_models_take_none_or_a_state_dict(tmp_path: Path) -> None:
    bundled = load_model("lenet5_digits")
    random = load_model("lenet5_digits", weights="none")
    assert random.weights.startswith("random")
    assert not torch.equal(random.module.features[0].weight, bundled.module.features[0].weight)
    path = tmp_path / "lenet.pt"
    torch.save(random.module.state_dict(), path)
    again = load_model("lenet5_digits", weights=str(path))
    torch.testing.assert_close(again.module.features[0].weight, random.module.features[0].weight)
    with pytest.raises(VizError, match="DEFAULT, none or a state-dict path"):
        load_model("lenet5_digits", weights="IMAGENET1K_V1")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(VizError, match="does not fit lenet5_digits"):
        load_model("lenet5_digits", weights=str(path))
