"""The `timm:NAME` model spec: timm's architecture, its `pretrained_cfg` preprocessing and class
names, weights from a file (torch or safetensors) or a seed, nothing downloaded, and one line for
each bad input."""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from vizcnn import load_model
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.io.provenance import weights_digest
from vizcnn.io.resume import stored_provenance
from vizcnn.models.base import ResizeCrop, imagenet_labels
from vizcnn.models.loading import available_models

timm = pytest.importorskip("timm")
from timm.data import ImageNetInfo, resolve_model_data_config  # noqa: E402

# timm's tiny test architectures (0.3-0.5 M parameters) and two real small ImageNet CNNs
SMALL = ["test_resnet", "test_convnext", "mobilenetv3_small_050"]


def _timm_net(name: str, seed: int, **kwargs: Any) -> nn.Module:
    """The oracle: timm's own model, its init drawn from `seed` as `seeded_init` draws it."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return timm.create_model(name, pretrained=False, **kwargs).eval()


def _same_outputs(a: nn.Module, b: nn.Module, size: int = 64) -> None:
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(images), b.eval()(images), rtol=0, atol=0)


@pytest.mark.parametrize("name", [*SMALL, "resnet18.tv_in1k"])
def test_preprocessing_is_the_pretrained_cfgs(name: str) -> None:
    loaded = load_model(f"timm:{name}", weights="none", device="cpu")
    config = resolve_model_data_config(timm.create_model(name, pretrained=False))
    assert loaded.name == f"timm:{name}"
    assert loaded.mean == tuple(config["mean"]) and loaded.std == tuple(config["std"])
    assert loaded.input_size == tuple(config["input_size"][1:])
    assert loaded.resize_crop == ResizeCrop(
        config["interpolation"], config["crop_pct"], config["crop_mode"]
    )
    assert loaded.stats_given and loaded.normalization_note() is None
    record = loaded.normalization
    assert record["interpolation"] == config["interpolation"]
    assert record["crop_pct"] == config["crop_pct"]


def test_a_pretrained_tag_picks_its_own_preprocessing() -> None:
    default = load_model("timm:resnet18", weights="none", device="cpu").resize_crop
    torchvision_tag = load_model("timm:resnet18.tv_in1k", weights="none", device="cpu")
    # timm's default resnet18 tag (a1_in1k) is evaluated bicubic at 0.95, torchvision's bilinear
    assert default == ResizeCrop("bicubic", 0.95)
    assert torchvision_tag.resize_crop == ResizeCrop("bilinear", 0.875)


def test_imagenet_head_gets_class_names() -> None:
    loaded = load_model("timm:mobilenetv3_small_050", weights="none", device="cpu")
    assert loaded.labels == imagenet_labels()
    # the same classes in the same order as timm's ImageNet info (first synonym), the two
    # names torchvision disambiguates aside
    info = ImageNetInfo("imagenet-1k")
    timm_first = [info.index_to_description(i).split(",")[0] for i in range(1000)]
    differ = [i for i in range(1000) if timm_first[i] != loaded.labels[i]]
    assert differ == [134, 639]
    assert loaded.class_index("espresso") == 967
    given = load_model("timm:test_resnet", weights="none", labels=["a"] * 1000, device="cpu")
    assert given.labels == ["a"] * 1000


def test_none_is_timms_init_from_the_seed() -> None:
    before = torch.random.get_rng_state()
    loaded = load_model("timm:test_convnext", weights="none", seed=3, device="cpu")
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG untouched
    assert loaded.weights == "random init (weights=none, seed 3)"
    _same_outputs(loaded.module, _timm_net("test_convnext", 3))
    other = load_model("timm:test_convnext", weights="none", seed=4, device="cpu")
    assert weights_digest(other.module) != weights_digest(loaded.module)
    assert not any(p.requires_grad for p in loaded.module.parameters())
    assert not loaded.module.training


@pytest.mark.parametrize("name", ["test_resnet", "mobilenetv3_small_050"])
@pytest.mark.parametrize("form", ["torch-nested", "safetensors"])
def test_weights_file_round_trip(tmp_path: Path, name: str, form: str) -> None:
    original = _timm_net(name, 11)
    state = original.state_dict()
    if form == "safetensors":
        safetensors_torch = pytest.importorskip("safetensors.torch")
        path = tmp_path / "model.safetensors"
        safetensors_torch.save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # a training checkpoint with DataParallel's prefixes
        path = tmp_path / "checkpoint.pth"
        torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = load_model(f"timm:{name}", weights=str(path), device="cpu")
    _same_outputs(loaded.module, original)
    assert weights_digest(loaded.module) == weights_digest(original)
    assert loaded.weights.startswith(f"state dict {path.name}")
    assert loaded.load_options is not None
    assert loaded.load_options["spec"] == f"timm:{name}"
    assert loaded.load_options["weights"] == str(path)
    again = load_model(**loaded.load_options, device="cpu")  # what a run records re-loads it
    assert weights_digest(again.module) == weights_digest(original)


def test_a_fine_tuned_head_is_built_to_fit(tmp_path: Path) -> None:
    original = _timm_net("test_resnet", 2, num_classes=10)
    path = tmp_path / "ten.pt"
    torch.save(original.state_dict(), path)
    loaded = load_model("timm:test_resnet", weights=str(path), device="cpu")
    assert getattr(loaded.module, "num_classes", None) == 10
    _same_outputs(loaded.module, original)
    assert loaded.labels == []  # not ImageNet's: classes named by index (or labels=)


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "convnext.pt"
    convnext = _timm_net("test_convnext", 0).state_dict()
    torch.save(convnext, path)
    with pytest.raises(VizError) as info:
        load_model("timm:test_resnet", weights=str(path), device="cpu")
    message = str(info.value)
    resnet = _timm_net("test_resnet", 0).state_dict()
    # BatchNorm's counters may be missing from a checkpoint (the network fills them in)
    missing = [k for k in resnet if k not in convnext and "num_batches_tracked" not in k]
    unexpected = [k for k in convnext if k not in resnet]
    assert f"does not fit timm:test_resnet: {len(missing)} missing keys (first: {missing[0]})" in (
        message
    )
    assert f"{len(unexpected)} unexpected keys (first: {unexpected[0]})" in message
    assert "give one saved from timm test_resnet" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("spec", "near"),
    [
        ("timm:resnet19", "resnet18"),
        ("timm:convnext_tinny", "convnext_tiny"),
        ("timm:resnet18.a9_in1k", "resnet18.a1_in1k"),
    ],
)
def test_unknown_names_get_the_closest(spec: str, near: str) -> None:
    with pytest.raises(VizError, match="did you mean") as info:
        load_model(spec, weights="none", device="cpu")
    assert near in str(info.value).split("did you mean")[1]
    assert "\n" not in str(info.value)


def test_other_weight_choices_get_one_line() -> None:
    with pytest.raises(VizError, match="give a state-dict file .weights=PATH., 'none'"):
        load_model("timm:test_resnet", weights="IMAGENET1K_V1", device="cpu")
    with pytest.raises(VizError, match="checkpoint 'absent.safetensors' not found"):
        load_model("timm:test_resnet", weights="absent.safetensors", device="cpu")


def test_a_damaged_safetensors_file_gets_one_line(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "cut.safetensors"
    safetensors_torch.save_file(_timm_net("test_resnet", 0).state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:4000])  # the header intact, the tensors cut off
    with pytest.raises(VizError, match="cut.safetensors is a damaged safetensors file") as info:
        load_model("timm:test_resnet", weights=str(path), device="cpu")
    assert "\n" not in str(info.value)


def test_a_vision_transformer_is_refused() -> None:
    with pytest.raises(VizError, match="is not a convolutional network: 1 Conv2d layer"):
        load_model("timm:test_vit", weights="none", device="cpu")


def test_without_timm_one_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    monkeypatch.setitem(sys.modules, "timm.data", None)
    with pytest.raises(VizError) as info:
        load_model("timm:resnet18", weights="none", device="cpu")
    assert str(info.value) == "model spec 'timm:resnet18' needs timm: pip install \"vizcnn[timm]\""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *a: None if name == "timm" else real_find_spec(name, *a),
    )
    rows = {row["name"]: row for row in available_models()}
    assert rows["timm:NAME"]["weights_present"] is False
    assert rows["timm:NAME"]["get_weights"] == 'pip install "vizcnn[timm]"'


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args[:2]}")

    import huggingface_hub
    import huggingface_hub.file_download

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub.file_download, "hf_hub_download", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.usefixtures("offline")
def test_nothing_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    for weights in (None, "DEFAULT", "pretrained"):
        with pytest.raises(VizError) as info:
            load_model("timm:resnet18", weights=weights, device="cpu")
        message = str(info.value)
        assert "download model.safetensors from https://huggingface.co/timm/resnet18.a1_in1k" in (
            message
        )
        assert "give it as weights=PATH, or weights='none'" in message
        assert ("no weights given" in message) == (weights is None)
    load_model("timm:test_resnet", weights="none", device="cpu")
    path = tmp_path / "w.pt"
    torch.save(_timm_net("test_resnet", 0).state_dict(), path)
    load_model("timm:test_resnet", weights=str(path), device="cpu")


@pytest.mark.usefixtures("offline")
def test_default_reads_timms_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights timm already put in the Hugging Face cache load offline (no hub call)."""
    import huggingface_hub.constants

    safetensors_torch = pytest.importorskip("safetensors.torch")
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    original = _timm_net("test_resnet", 5)
    safetensors_torch.save_file(original.state_dict(), str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_model("timm:test_resnet", device="cpu")
    assert loaded.weights == "timm pretrained timm/test_resnet.r160_in1k (local cache)"
    _same_outputs(loaded.module, original)


def test_the_models_listing_names_the_spec() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("timm:NAME")]
    assert len(lines) == 1
    assert f"any timm {timm.__version__} CNN: --weights PATH, or --weights none" in lines[0]
    help_text = CliRunner().invoke(app, ["render", "--help"]).output
    assert "timm:NAME" in " ".join(help_text.split())


def test_cli_render_records_the_spec_and_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    original = _timm_net("test_resnet", 7)
    torch.save(original.state_dict(), tmp_path / "net.pt")
    args = ["render", "-m", "timm:test_resnet", "--weights", "net.pt", "-l", "layer1", "-c", "0"]
    args += ["--steps", "2", "--image-size", "32", "--input-size", "32", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "-q", "-o", "render"])
    assert result.exit_code == 0, result.output
    block = stored_provenance(tmp_path / "render" / "manifest.json")
    assert block["model"] == "timm:test_resnet"
    assert block["weights"] == "state dict net.pt"
    assert block["weights_digest"] == weights_digest(original)
    assert block["normalization"]["mean"] == [0.5, 0.5, 0.5]  # test_resnet's pretrained_cfg
    assert block["normalization"]["interpolation"] == "bilinear"
    refused = CliRunner().invoke(app, ["layers", "-m", "timm:test_resnet", "--device", "cpu"])
    assert refused.exit_code == 1
    assert "Error: timm:test_resnet: no weights given" in refused.output
    assert "--weights PATH, or --weights none" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_a_one_channel_checkpoint_builds_a_one_channel_network(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "grey.pt")
    loaded = load_model("timm:resnet18", weights=str(tmp_path / "grey.pt"), device="cpu")
    assert loaded.channels == 1 and len(loaded.std) == 1
    config = timm.data.resolve_model_data_config(net)
    assert loaded.mean[0] == pytest.approx(sum(config["mean"]) / 3)  # a grey image's statistics
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net((x - loaded.mean[0]) / loaded.std[0])
        torch.testing.assert_close(loaded.module(loaded.normalize(x)), expected)
