"""Models beyond ImageNet RGB through every technique: 1 and 4 channels, 32 px and non-square
inputs, tuple / dict / dataclass outputs, wrapped (DataParallel, DDP, torch.compile) and
channels-last models, heads with their own labels; and the one-line refusals of an input size
the model cannot take and of a layer that never runs, before any work."""

from __future__ import annotations

import os
from collections import OrderedDict, namedtuple
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image
from torch import nn

from vizcnn import (
    EquivarianceConfig,
    FeatureMapConfig,
    RenderConfig,
    RunOptions,
    VizError,
    attribute,
    describe,
    embed_dataset,
    feature_maps,
    load_image,
    load_model,
    measure_equivariance,
    mine_topk,
    render,
    render_folder,
)
from vizcnn import dream as dream_image
from vizcnn.ablation.data import UnlabelledData
from vizcnn.ablation.lesion import lesion_study
from vizcnn.cli.main import app
from vizcnn.core.outputs import output_tensor, require_output_tensor
from vizcnn.data.datasets import TensorImages, open_dataset
from vizcnn.deepdream.dreaming import DreamConfig
from vizcnn.mining.streaming import MineConfig
from vizcnn.models.base import unwrap
from vizcnn.optvis import objectives as O

FAST = RenderConfig(steps=2)
CLASSES = 5


class Net(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> global pool -> linear (seeded weights), any channels."""

    def __init__(self, channels: int = 3, classes: int = CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(6, 6, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, classes)
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))

    def forward(self, x: torch.Tensor) -> Any:
        return self.logits(x)


class ModelOutput(OrderedDict):  # type: ignore[type-arg]
    """Hugging Face's `ModelOutput` in miniature: a dict whose keys are also attributes."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


@dataclass
class DataclassOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor


Pair = namedtuple("Pair", ["main", "aux"])

WRAP_OUTPUT: dict[str, Callable[[torch.Tensor], Any]] = {
    "tuple": lambda y: (y, y.detach() * 2),
    "list": lambda y: [None, y],
    "namedtuple": lambda y: Pair(y, y * 3),
    "dict": lambda y: {"logits": y, "hidden": y + 1},
    "dict_out": lambda y: {"aux": y * 0, "out": y},
    "model_output": lambda y: ModelOutput(logits=y),
    "dataclass": lambda y: DataclassOutput(None, y),
}


class Wrapped(Net):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> Any:
        return WRAP_OUTPUT[self.kind](self.logits(x))


def photos(count: int = 2, channels: int = 3, size: tuple[int, int] = (32, 32)) -> torch.Tensor:
    return torch.rand(count, channels, *size, generator=torch.Generator().manual_seed(3))


# -- outputs ---------------------------------------------------------------------------------


def test_the_rule_takes_googlenet_aux_logits_and_refuses_ambiguous_dicts() -> None:
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = net.train()(x)
    assert type(out).__name__ == "GoogLeNetOutputs"
    assert output_tensor(out) is out.logits
    assert output_tensor({"a": x, "b": x}) is None  # two tensors, neither logits nor out
    with pytest.raises(VizError, match=r"returns dict with keys a, b, which holds no tensor"):
        require_output_tensor({"a": x, "b": x}, "net")


@pytest.mark.parametrize("kind", list(WRAP_OUTPUT))
@pytest.mark.parametrize(
    "technique", ["render_class", "attribute", "equivariance", "neighbors", "lesion"]
)
def test_every_output_kind_gives_what_the_tensor_model_gives(kind: str, technique: str) -> None:
    """Oracle: the same weights returning a plain tensor."""
    plain = describe(Net(), input_size=32)
    odd = describe(Wrapped(kind), input_size=32)
    x = photos()

    def run(loaded: Any) -> torch.Tensor:
        if technique == "render_class":
            return render(loaded, [O.class_logit(1)], FAST, run=RunOptions(batch=1)).images
        if technique == "attribute":
            maps = attribute(loaded, x, ["saliency", "gradcam"], targets=2).maps
            return torch.cat([maps["saliency"], maps["gradcam"]])
        if technique == "equivariance":
            config = EquivarianceConfig(layers=("features.2",), shifts=(1, 2))
            result = measure_equivariance(loaded, photos(2, size=(40, 40)), config)
            return torch.tensor([e for row in result.rows for e in row.errors.values()])
        if technique == "neighbors":  # the classifier's input: the full forward pass
            return embed_dataset(loaded, TensorImages(x)).vectors
        study = lesion_study(loaded, UnlabelledData(TensorImages(x)), blocks=["features.1"])
        scores = [study.intact, *(lesion.scores for lesion in study.lesions)]
        return torch.tensor([list(asdict(s).values()) for s in scores if s is not None])

    torch.testing.assert_close(run(odd), run(plain), rtol=0, atol=0)


# -- wrappers and memory format ----------------------------------------------------------------


def _ddp(net: nn.Module, tmp_path: Path) -> nn.Module:
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            "gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1
        )
    return nn.parallel.DistributedDataParallel(net)


@pytest.mark.parametrize("wrapper", ["dataparallel", "ddp", "compile", "channels_last"])
def test_wrapped_models_run_unwrapped_with_the_same_pictures(wrapper: str, tmp_path: Path) -> None:
    net = Net()
    if wrapper == "dataparallel":
        wrapped: nn.Module = nn.DataParallel(net)
    elif wrapper == "ddp":
        wrapped = _ddp(net, tmp_path)
    elif wrapper == "compile":
        wrapped = torch.compile(net)  # lazy: nothing is compiled until it is called
    else:
        wrapped = Net().to(memory_format=torch.channels_last)
    try:
        loaded = describe(wrapped, input_size=32)
        if wrapper != "channels_last":
            assert loaded.module is net and unwrap(wrapped) is net
        units = ["features.2:1", O.class_logit(3)]
        got = render(loaded, units, FAST, run=RunOptions(batch=2))
        want = render(describe(Net(), input_size=32), units, FAST, run=RunOptions(batch=2))
        torch.testing.assert_close(got.images, want.images, rtol=0, atol=1e-6)
        _, acts = feature_maps(loaded, photos(1)[0], FeatureMapConfig(layers=("features.2",)))
        assert acts[0].layer == "features.2"
        if wrapper != "channels_last":  # the wrapper's names are not layer names
            with pytest.raises(VizError, match="features.2"):
                render(loaded, ["module.features.2:0"], FAST)
    finally:
        if wrapper == "ddp":
            torch.distributed.destroy_process_group()


# -- channels ----------------------------------------------------------------------------------


def _png(path: Path, mode: str, size: tuple[int, int] = (40, 30)) -> Path:
    bands = len(Image.new(mode, (1, 1)).getbands())
    gen = torch.Generator().manual_seed(5)
    array = torch.randint(0, 256, (size[1], size[0], bands), generator=gen, dtype=torch.uint8)
    Image.fromarray(array.squeeze(-1).numpy(), mode if mode != "RGBA" else None).save(path)
    return path


def test_one_channel_models_read_luma_and_run_every_technique(tmp_path: Path) -> None:
    rgb = _png(tmp_path / "rgb.png", "RGB")
    gray = load_image(rgb, 1)
    colour = load_image(rgb, 3)
    luma = (colour * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
    assert gray.shape == (1, 30, 40)
    torch.testing.assert_close(gray, luma, rtol=0, atol=1.5 / 255)  # PIL rounds to 8 bits
    loaded = describe(Net(1), mean=[0.5], std=[0.25], input_size=32)
    assert render(loaded, ["features.2:0"], FAST).images.shape == (1, 1, 32, 32)
    data = open_dataset(tmp_path, 1, (32, 32))
    top = mine_topk(loaded, data, MineConfig(layer="features.2", channels=(0,), k=1))
    assert top.hits(0)[0][1] == 0
    assert attribute(loaded, photos(1, 1), ["saliency"]).maps["saliency"].shape == (1, 1, 32, 32)


def test_four_channel_models_refuse_photos_and_read_four_band_files(tmp_path: Path) -> None:
    rgb, rgba = _png(tmp_path / "rgb.png", "RGB"), _png(tmp_path / "rgba.png", "RGBA")
    with pytest.raises(VizError, match="takes 4-channel images") as info:
        load_image(rgb, 4)
    assert "\n" not in str(info.value) and "(B, 4, H, W) tensors" in str(info.value)
    raw = load_image(rgba, 4)  # stored bands, alpha not composited
    expected = torch.from_numpy(__import__("numpy").asarray(Image.open(rgba), dtype="uint8").copy())
    torch.testing.assert_close(raw, expected.permute(2, 0, 1).float() / 255)
    with pytest.raises(VizError, match="the bundled photo"):
        open_dataset("samples", 4, (32, 32))
    with pytest.raises(VizError, match="takes 4-channel images"):
        open_dataset(tmp_path, 4, (32, 32))  # the first file (rgb.png) says so up front
    loaded = describe(Net(4), mean=[0.5] * 4, std=[0.25] * 4, input_size=32)
    maps = attribute(loaded, photos(1, 4), ["saliency"]).maps["saliency"]
    assert maps.shape == (1, 4, 32, 32)
    run = render_folder(loaded, ["features.2:0"], tmp_path / "render", FAST)
    picture = load_image(run.folder / run.files[0], 3)
    image = render(loaded, ["features.2:0"], FAST).images[0]
    # the PNG shows the first three channels as RGB
    torch.testing.assert_close(picture, (image[:3] * 255).round() / 255, rtol=0, atol=1e-6)


# -- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (64, 40)], ids=str)
def test_every_technique_honours_height_and_width(size: tuple[int, int]) -> None:
    loaded = describe(Net(), input_size=size)
    assert render(loaded, ["features.2:0"], FAST).images.shape[-2:] == size
    data = TensorImages(photos(3, size=size))
    top = mine_topk(loaded, data, MineConfig(layer="features.0", channels=(0,), k=1))
    _, _, y, x = top.hits(0)[0]
    assert 0 <= y < size[0] and 0 <= x < size[1]
    maps = attribute(loaded, photos(1, size=size), ["saliency", "gradcam", "occlusion"]).maps
    assert all(m.shape[-2:] == size for m in maps.values())
    _, fmap = feature_maps(loaded, photos(1, size=(90, 70))[0], FeatureMapConfig(("features.0",)))
    assert fmap[0].shape[1:] == size  # resized + centre-cropped to (H, W), stride 1
    dreamed = dream_image(
        loaded, photos(1, size=size)[0], DreamConfig(layers=("features.2",), octaves=1, steps=1)
    )
    assert dreamed.shape[-2:] == size


def test_non_square_input_size_from_load_model_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "oddnet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),\n"
        "                         nn.Flatten(), nn.Linear(4 * 48 * 64, 5))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model("oddnet:build", size=(48, 64)).input_size == (48, 64)
    result = CliRunner().invoke(
        app,
        ["render", "-m", "oddnet:build", "--input-size", "48x64", "--class", "1"]
        + ["--steps", "1", "-o", "r"],
    )
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(app, ["layers", "-m", "oddnet:build", "--input-size", "64"])
    assert bad.exit_code == 1
    assert bad.output.strip().splitlines()[-1].startswith("Error: oddnet:build cannot take ")
    assert "cannot take --input-size 64x64" in bad.output  # the CLI's flag, not the field
    assert "give the --input-size it was trained at" in bad.output  # no common size fits


# -- bad input: a size the model cannot take, a layer that never runs ------------------------


class FixedHead(nn.Module):
    """A head for 32 px only (flatten + linear), after a conv that takes any size."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.head = nn.Linear(2 * 32 * 32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).flatten(1))


class Downsampling(nn.Module):
    """Halves the size five times (32x): 16 px comes out as nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *[m for _ in range(5) for m in (nn.Conv2d(3, 3, 3, padding=1), nn.MaxPool2d(2))]
        )
        self.head = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


class Unused(Net):
    def __init__(self) -> None:
        super().__init__()
        self.aux = nn.Conv2d(6, 6, 1)  # defined, never called (GoogLeNet's aux1 in eval mode)


def _count_calls(net: nn.Module) -> list[int]:
    calls = [0]
    net.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


TECHNIQUES: dict[str, Callable[[Any, str], object]] = {
    "render": lambda m, layer: render(m, [f"{layer}:0"], RenderConfig(steps=50)),
    "dream": lambda m, layer: dream_image(
        m, photos(1)[0], DreamConfig(layers=(layer,), octaves=1, steps=20)
    ),
    "mine": lambda m, layer: mine_topk(
        m, TensorImages(photos(4)), MineConfig(layer=layer, channels=(0,), k=1)
    ),
    "gradcam": lambda m, layer: attribute(m, photos(1), [_gradcam(m, layer)]),
    "featuremaps": lambda m, layer: feature_maps(m, photos(1)[0], FeatureMapConfig((layer,))),
    "neighbors": lambda m, layer: embed_dataset(m, TensorImages(photos(4)), layer),
    "equivariance": lambda m, layer: measure_equivariance(
        m, photos(1, size=(40, 40)), EquivarianceConfig(layers=(layer,), shifts=(1,))
    ),
}


def _gradcam(model: Any, layer: str) -> Any:
    from vizcnn import GradCAM

    return GradCAM(model, layer=layer)


@pytest.mark.parametrize("technique", list(TECHNIQUES))
def test_a_layer_that_never_runs_is_one_line_before_any_work(technique: str) -> None:
    net = Unused()
    calls = _count_calls(net)
    with pytest.raises(VizError) as info:
        TECHNIQUES[technique](describe(net, input_size=32), "aux")
    message = str(info.value)
    assert message.startswith("layer aux never ran during the forward pass")
    assert "\n" not in message
    assert calls[0] == 1  # the probe only


@pytest.mark.parametrize(
    ("net", "size", "works"), [(FixedHead, 64, "input_size=32 works"), (Downsampling, 16, "")]
)
@pytest.mark.parametrize("technique", ["render_class", "attribute", "lesion", "equivariance"])
def test_a_size_the_model_cannot_take_is_one_line_with_one_that_works(
    net: Callable[[], nn.Module], size: int, works: str, technique: str
) -> None:
    loaded = describe(net(), input_size=size)
    run: dict[str, Callable[[], object]] = {
        "render_class": lambda: render(loaded, [O.class_logit(0)], FAST),
        "attribute": lambda: attribute(loaded, photos(1, size=(size, size)), ["saliency"]),
        "lesion": lambda: lesion_study(
            loaded, UnlabelledData(TensorImages(photos(2, size=(size, size))))
        ),
        "equivariance": lambda: measure_equivariance(
            loaded, photos(1, size=(size + 4, size + 4)), EquivarianceConfig(shifts=(1,))
        ),
    }
    with pytest.raises(VizError) as info:
        run[technique]()
    message = str(info.value)
    name = type(loaded.module).__name__
    if technique == "equivariance":  # its photos' own size (with the shifts' margin)
        assert message.startswith(f"{name} cannot take a ")
        assert "\n" not in message and ("works" in message or "at least" in message)
        assert works.replace("input_size=", "").split(" ")[0] in message
    else:
        assert message.startswith(f"{name} cannot take input_size {size}x{size}")
        assert "\n" not in message and "works" in message and works in message
    # a layer before the fixed head is fine at any size: the check stops where the work does
    if net is FixedHead:
        assert render(loaded, ["conv:0"], FAST).images.shape[-2:] == (size, size)


# -- labels ------------------------------------------------------------------------------------

NAMES = ["ant", "bee", "cat", "dog", "eel"]


def test_labels_name_the_classes_of_a_five_class_head(tmp_path: Path) -> None:
    loaded = describe(Net(), input_size=32, labels=NAMES)
    x = photos(2)
    by_name = attribute(loaded, x, ["saliency"], targets="dog")
    by_index = attribute(loaded, x, ["saliency"], targets=3)
    torch.testing.assert_close(by_name.maps["saliency"], by_index.maps["saliency"])
    assert render(loaded, [O.class_logit("Eel")], FAST).units == ["class 4 (eel)"]
    with pytest.raises(VizError) as info:
        attribute(describe(Net(), input_size=32, labels=NAMES[:4]), x, ["saliency"])
    assert str(info.value) == (
        "4 labels given but Net has 5 outputs; give 5 class names, one per output (labels=...)"
    )


def test_labels_file_is_checked_by_load_model_and_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fivenet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),\n"
        "                         nn.Flatten(), nn.Linear(4, 5))\n"
    )
    (tmp_path / "five.txt").write_text("\n".join(NAMES) + "\n")
    (tmp_path / "four.txt").write_text("\n".join(NAMES[:4]) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_model("fivenet:build", labels="five.txt", size=32).labels == NAMES
    with pytest.raises(VizError, match="4 labels given but fivenet:build has 5 outputs"):
        load_model("fivenet:build", labels="four.txt", size=32)
    with pytest.raises(VizError, match="labels file 'nope.txt' not found"):
        load_model("fivenet:build", labels="nope.txt", size=32)
    base = ["attribute", "sample:coffee", "-m", "fivenet:build", "--input-size", "32"]
    ok = CliRunner().invoke(app, [*base, "--labels", "five.txt", "--target", "cat", "-o", "a"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, [*base, "--labels", "four.txt", "-o", "b"])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines()[-1] == (
        "Error: 4 labels given but fivenet:build has 5 outputs; give 5 class names, one per "
        "line (--labels FILE)"
    )
    assert not os.path.exists(tmp_path / "b")
