"""The features commands and `ablate` are one library call each: the CLI's files equal the
library call's byte for byte (PNG pixels and text chunks, JSON, Markdown) but for timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from folder_helpers import folder_contents
from vizcnn.ablation.training import TrainConfig
from vizcnn.ablation.variants import parse_units
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.features.equivariance import EquivarianceConfig
from vizcnn.features.featuremaps import FeatureMapConfig
from vizcnn.features.filters import FilterConfig
from vizcnn.features.kernels import KernelConfig
from vizcnn.features.neighbors import NeighborsConfig
from vizcnn.models.loading import load_model
from vizcnn.runs import (
    ablate_folder,
    equivariance_folder,
    featuremaps_folder,
    filters_file,
    kernels_file,
    lesion_folder,
    neighbors_file,
)
from vizcnn.runs.neighbors import CACHE_DIR


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "-q"] if args[0] != "kernels" else list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_filters(tmp_path: Path) -> None:
    _cli("filters", "-m", "lenet5_digits", "--sort", "norm", "--seed", "3", "-o", f"{tmp_path}/cli/f.png")  # fmt: skip
    loaded = load_model("lenet5_digits", device="cpu")
    run = filters_file(loaded, tmp_path / "lib" / "f.png", FilterConfig(sort="norm"), seed=3)
    assert run.grid.layer == "features.0"
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")


def test_featuremaps(tmp_path: Path) -> None:
    args = ["sample:camera", "-m", "lenet5_digits", "-l", "features.1", "-l", "features.3"]
    _cli("featuremaps", *args, "--top", "4", "--overlay", "--cmap", "magma", "-o", f"{tmp_path}/cli")  # fmt: skip
    loaded = load_model("lenet5_digits", device="cpu")
    config = FeatureMapConfig(("features.1", "features.3"), top=4, overlay=True, cmap="magma")
    run = featuremaps_folder(loaded, "sample:camera", tmp_path / "lib", config, seed=0)
    assert run.files == ["00_features.1.png", "01_features.3.png"]
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")
    # another run with other layers replaces the earlier figures: the folder never mixes runs
    featuremaps_folder(loaded, "sample:camera", tmp_path / "lib", FeatureMapConfig(("features.4",)))
    kept = sorted(p.name for p in (tmp_path / "lib").iterdir() if p.suffix == ".png")
    assert kept == ["00_features.4.png"]


def test_kernels(tmp_path: Path) -> None:
    _cli("kernels", "sample:coffee", "-k", "sharpen", "-k", "box blur", "--size", "48", "--gray",
         "--padding", "zeros", "-o", f"{tmp_path}/cli/k.png")  # fmt: skip
    config = KernelConfig(("sharpen", "box blur"), padding="zeros", size=48, gray=True)
    run = kernels_file("sample:coffee", tmp_path / "lib" / "k.png", config)
    assert run.names == ["sharpen", "box blur"] and min(run.outputs["sharpen"].shape[-2:]) == 48
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")
    with pytest.raises(VizError, match="size must be >= 0"):
        KernelConfig(size=-1)


def test_equivariance(tmp_path: Path) -> None:
    _cli("equivariance", "samples", "-m", "lenet5_digits", "--shifts", "1,2", "--limit", "2",
         "--direction", "xy", "-o", f"{tmp_path}/cli")  # fmt: skip
    loaded = load_model("lenet5_digits", device="cpu")
    config = EquivarianceConfig(shifts=(1, 2), direction="xy")
    run = equivariance_folder(loaded, "samples", tmp_path / "lib", config, limit=2, seed=0)
    assert run.result.images == 2
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")


def _images(folder: Path, count: int = 6) -> Path:
    folder.mkdir()
    generator = torch.Generator().manual_seed(4)
    for i in range(count):
        pixels = (torch.rand(40, 40, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    return folder


def test_neighbors_and_its_cache(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    query = str(data / "img2.png")
    _cli("neighbors", query, "sample:camera", str(data), "-m", "lenet5_digits", "-k", "3",
         "--metric", "cosine", "-o", f"{tmp_path}/cli/nn.png")  # fmt: skip
    loaded = load_model("lenet5_digits", device="cpu")
    config = NeighborsConfig(k=3, metric="cosine")
    path = tmp_path / "lib" / "nn.png"
    run = neighbors_file(loaded, [query, "sample:camera"], str(data), path, config)
    assert not run.embeddings.cached and run.indices[0, 0] == 2  # img2 is its own nearest
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")
    cached = sorted(p.name for p in (tmp_path / "cli" / CACHE_DIR).iterdir())
    assert cached == sorted(p.name for p in (tmp_path / "lib" / CACHE_DIR).iterdir())
    again = neighbors_file(loaded, [query], str(data), path, config)
    assert again.embeddings.cached and torch.equal(again.indices[0], run.indices[0])
    other = neighbors_file(loaded, [query], str(data), path, NeighborsConfig(layer="features.3"))
    assert not other.embeddings.cached  # other settings: their own cache entry
    assert len(list((tmp_path / "lib" / CACHE_DIR).iterdir())) == 2


def test_ablate_units(tmp_path: Path) -> None:
    _cli("ablate", "digits", "-m", "lenet5_digits", "--units", "features.3:0,5", "--retrain",
         "none", "--seed", "2", "-o", f"{tmp_path}/cli")  # fmt: skip
    loaded = load_model("lenet5_digits", device="cpu")
    variants = [parse_units("features.3:0,5")]
    config = TrainConfig(retrain="none")
    run = ablate_folder(loaded, "digits", tmp_path / "lib", variants, config, seed=2)
    assert [row.name for row in run.result.rows] == ["original", "features.3:0,5"]
    assert run.baseline.name == "original" and run.result.seed == 2
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")
    # the seed is recorded where it was while it was a TrainConfig field
    written = json.loads((tmp_path / "lib" / "results.json").read_text())
    assert written["retrain"]["seed"] == 2 and written["provenance"]["seed"] == 2
    assert written["provenance"]["options"]["seed"] == 2
    # an earlier run's results are not replaced without a word: refused before any work
    before = (tmp_path / "lib" / "results.json").read_bytes()
    with pytest.raises(
        VizError, match=r"made with other settings \(seed 2 in the file, 3 now.*overwrite=True"
    ):
        ablate_folder(loaded, "digits", tmp_path / "lib", variants, config, seed=3)
    assert (tmp_path / "lib" / "results.json").read_bytes() == before
    again = ablate_folder(
        loaded, "digits", tmp_path / "lib", variants, config, seed=3, overwrite=True
    )
    assert again.result.seed == 3
    refused = CliRunner().invoke(app, ["ablate", "digits", "-m", "lenet5_digits", "--units",
                                       "features.3:0,5", "--retrain", "none", "-o", f"{tmp_path}/cli"])  # fmt: skip
    assert refused.exit_code == 1 and "use --overwrite to redo it" in refused.output


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.conv(x))


class _Down(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def tiny_resnet() -> nn.Module:
    """Three blocks, two of them residual (removable): a factory for `-m`."""
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Sequential(_Residual(4), _Down(), _Residual(8)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return net


def test_ablate_blocks(tmp_path: Path) -> None:
    spec = f"{Path(__file__).stem}:tiny_resnet"
    _cli("ablate", "samples", "-m", spec, "--input-size", "16", "--blocks", "--crops", "2",
         "--batch", "4", "-o", f"{tmp_path}/cli")  # fmt: skip
    loaded = load_model(spec, size=16, device="cpu")
    run = lesion_folder(loaded, "samples", tmp_path / "lib", crops=2, run=RunOptions(batch=4))
    assert [les.removable for les in run.result.lesions] == [True, False, True]
    assert run.worst is not None and run.worst.block in ("1.0", "1.2")
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")
