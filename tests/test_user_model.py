"""The user's own model behind `package.module:factory`: its weights file is used by every
command (or refused), its normalization is the one default, and a factory needing arguments
gets one line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from vizcnn import describe, load_model
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.io.provenance import weights_digest
from vizcnn.io.resume import stored_provenance
from vizcnn.models.base import IMAGENET_MEAN, IMAGENET_STD

FACTORY = """
import torch.nn as nn

def build():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )

def needs_a_name(name):
    return build()
"""
TRAINED_CLASS = 2  # what the "trained" weights predict for every image


@pytest.fixture
def user_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with `usernet.py` (the factory) and `trained.pt` (its "trained" state dict)."""
    (tmp_path / "usernet.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("usernet", None)
    net = load_model("usernet:build", seed=123).module
    with torch.no_grad():  # a head that says class 2 whatever the picture, by a wide margin
        head = net[6]
        assert isinstance(head, nn.Linear)
        head.weight.mul_(0.01)
        head.bias.copy_(torch.tensor([0.0, 0.0, 8.0, 0.0]))
    torch.save({"model": net.state_dict(), "epoch": 9}, tmp_path / "trained.pt")
    yield tmp_path
    sys.modules.pop("usernet", None)


def _trained_digest(folder: Path) -> str:
    net = load_model("usernet:build", weights=str(folder / "trained.pt")).module
    return weights_digest(net)


def test_factory_weights_are_loaded_strictly(user_folder: Path) -> None:
    trained = load_model("usernet:build", weights="trained.pt")
    random = load_model("usernet:build")
    assert trained.weights == "state dict trained.pt['model']"
    assert random.weights == "factory usernet:build (seed 0)"
    images = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        predicted = trained.module(trained.normalize(images)).argmax(1)
        random_predicted = random.module(random.normalize(images)).argmax(1)
    assert predicted.tolist() == [TRAINED_CLASS] * 5
    assert weights_digest(trained.module) != weights_digest(random.module)
    assert random_predicted.tolist() != predicted.tolist()  # seed 0's network is not that sure
    with pytest.raises(VizError, match="not found"):
        load_model("usernet:build", weights="does_not_exist.pt")
    torch.save(nn.Linear(2, 2).state_dict(), user_folder / "other.pt")
    with pytest.raises(VizError, match="does not fit usernet:build"):
        load_model("usernet:build", weights="other.pt")


def test_factory_needing_arguments_is_one_line(user_folder: Path) -> None:
    with pytest.raises(VizError, match="cannot be called without arguments"):
        load_model("usernet:needs_a_name")
    result = CliRunner().invoke(app, ["layers", "-m", "usernet:needs_a_name"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "def build()" in result.output


def test_one_default_normalization_for_cli_and_python(user_folder: Path) -> None:
    from usernet import build  # type: ignore[import-not-found]

    by_spec = load_model("usernet:build")
    by_describe = describe(build())
    assert by_spec.mean == by_describe.mean == IMAGENET_MEAN
    assert by_spec.std == by_describe.std == IMAGENET_STD
    assert by_spec.normalization == {
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "default": True,
    }
    given = load_model("usernet:build", mean=[0.5] * 3, std=[0.25] * 3)
    assert given.normalization["default"] is False and given.normalization_note() is None
    assert describe(build(), mean=[0.5] * 3, std=[0.5] * 3).normalization["default"] is False
    one_channel = describe(nn.Conv2d(1, 2, 3))
    assert one_channel.mean == (0.0,) and one_channel.std == (1.0,)
    assert one_channel.normalization_note() is None  # only RGB models get the ImageNet guess


def _commands(folder: Path) -> dict[str, list[str]]:
    size = ["--input-size", "32"]
    return {
        "render": ["render", "-l", "2", "-c", "0", "--steps", "2", "--image-size", "32", *size]
        + ["-o", "render"],
        "dream": ["dream", "sample:coffee", "-l", "2", "--octaves", "1", "--steps", "1"]
        + [*size, "-o", "dream.png"],
        "mine": ["mine", "samples", "-l", "2", "--channels", "0:2", "--crops", "1", *size]
        + ["--workers", "0", "-o", "mine"],
        "attribute": ["attribute", "sample:coffee", "--method", "saliency", *size]
        + ["-o", "attribute"],
        "filters": ["filters", "-o", "filters.png"],
        "featuremaps": ["featuremaps", "sample:coffee", "-l", "2", *size, "-o", "featuremaps"],
        "neighbors": ["neighbors", "sample:coffee", "samples", "--no-cache", "--crops", "1"]
        + [*size, "-o", "neighbors.png"],
        "equivariance": ["equivariance", "sample:coffee", "-l", "2", "--shifts", "1,2"]
        + [*size, "-o", "equivariance"],
        "ablate": ["ablate", "samples", "--variant", "no-conv2=2", "--retrain", "none"]
        + ["--crops", "1", *size, "-o", "ablate"],
        "report": ["report", "--layers", "2", "--units-per-layer", "1", "--steps", "2"]
        + ["--image-size", "32", "--crops", "1", "--methods", "saliency", "--dream-octaves", "1"]
        + ["--dream-steps", "1", "--projections", "none", *size, "-o", "report"],
    }


def _blocks(root: Path) -> list[dict[str, Any]]:
    """Every provenance block under `root` (PNG chunks, JSON files)."""
    paths = [root] if root.is_file() else sorted(root.rglob("*"))
    if root.is_file() and root.with_suffix(".json").is_file():
        paths.append(root.with_suffix(".json"))
    blocks = [stored_provenance(p) for p in paths if p.suffix in {".png", ".json"}]
    return [b for b in blocks if b]


@pytest.mark.parametrize("command", list(_commands(Path())))
def test_every_command_runs_the_weights_file(user_folder: Path, command: str) -> None:
    args = _commands(user_folder)[command]
    result = CliRunner().invoke(app, [*args, "-m", "usernet:build", "--weights", "trained.pt"])
    assert result.exit_code == 0, result.output
    assert "note: usernet:build: no mean/std given; normalizing with ImageNet's" in result.output
    output = user_folder / args[args.index("-o") + 1]
    blocks = _blocks(output)
    assert blocks, f"{command} wrote no provenance under {output}"
    digest = _trained_digest(user_folder)
    for block in blocks:
        assert block["weights"] == "state dict trained.pt['model']"
        if block.get("weights_digest") is not None:
            assert block["weights_digest"] == digest
        assert block["normalization"]["default"] is True
    if command == "attribute":  # the trained model's prediction, not a random network's
        manifest = json.loads((output / "manifest.json").read_text())
        assert manifest["images"][0]["target"] == TRAINED_CLASS


def test_without_weights_the_factory_network_is_random(user_folder: Path) -> None:
    args = _commands(user_folder)["attribute"]
    result = CliRunner().invoke(app, [*args, "-m", "usernet:build", "--seed", "5"])
    assert result.exit_code == 0, result.output
    block = stored_provenance(user_folder / "attribute" / "manifest.json")
    assert block["weights"] == "factory usernet:build (seed 5)"
    assert block["weights_digest"] != _trained_digest(user_folder)


def test_missing_weights_file_refused_by_the_cli(user_folder: Path) -> None:
    result = CliRunner().invoke(
        app, ["layers", "-m", "usernet:build", "--weights", "does_not_exist.pt"]
    )
    assert result.exit_code == 1
    assert "does_not_exist.pt" in result.output and "not found" in result.output
    assert len(result.output.strip().splitlines()) == 1
    layers = CliRunner().invoke(
        app, ["layers", "-m", "usernet:build", "--weights", "trained.pt", "--input-size", "32"]
    )
    assert layers.exit_code == 0, layers.output
    assert "weights: state dict trained.pt['model']" in layers.output


DESCRIBED = """
import torch.nn as nn
import vizcnn

def build():
    return vizcnn.describe(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 2)),
        mean=[0.3], std=[0.2], input_size=40, labels=["cat", "dog"], name="ignored",
    )

def wrong():
    return "a string"
"""


def test_factory_returning_describe_brings_its_description(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "described_net.py").write_text(DESCRIBED)
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("described_net", None)
    loaded = load_model("described_net:build", seed=3)
    assert (loaded.mean, loaded.std, loaded.input_size) == ((0.3,), (0.2,), (40, 40))
    assert loaded.labels == ["cat", "dog"] and loaded.stats_given
    assert loaded.name == "described_net:build"  # the spec, as for a bare network
    assert loaded.weights == "factory described_net:build (seed 3)"
    assert not loaded.module.training  # frozen like any loaded model
    torch.save(loaded.module.state_dict(), tmp_path / "w.pt")
    overridden = load_model("described_net:build", weights="w.pt", std=[0.5], size=32)
    assert overridden.weights == "state dict w.pt" and overridden.load_options is not None
    assert (overridden.mean, overridden.std, overridden.input_size) == ((0.3,), (0.5,), (32, 32))
    assert weights_digest(overridden.module) == weights_digest(loaded.module)
    result = CliRunner().invoke(
        app,
        ["attribute", "sample:coffee", "--method", "saliency", "-o", "attr"]
        + ["-m", "described_net:build", "--weights", "w.pt"],
    )
    assert result.exit_code == 0, result.output
    block = stored_provenance(tmp_path / "attr" / "manifest.json")
    assert block["normalization"] == {"mean": [0.3], "std": [0.2], "default": False}
    assert json.loads((tmp_path / "attr" / "manifest.json").read_text())["images"][0]["target"] in (
        0,
        1,
    )
    with pytest.raises(
        VizError, match=r"returned str; return a torch.nn.Module or vizcnn\.describe"
    ):
        load_model("described_net:wrong")
    sys.modules.pop("described_net", None)
