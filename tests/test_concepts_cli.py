"""`vizcnn concepts` and `concepts_folder`: the files on lite0 (default model, bundled photos),
a torchvision and a timm model with small settings, class mode, bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from vizcnn.cli.main import app
from vizcnn.data.datasets import open_dataset
from vizcnn.io.imaging import read_png_metadata
from vizcnn.models.loading import load_model

SMALL = ["--steps", "2", "--image-size", "32", "--max-positions", "400", "--importance-images",
         "2", "--heatmap-images", "2", "--patches", "4", "--thumbnail", "16", "-q"]  # fmt: skip


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["concepts", *args])
    return result.exit_code, result.output


def check_folder(out: Path, k: int, channels: int, cap: int, images: int) -> dict:
    stored = json.loads((out / "concepts.json").read_text())
    concepts = stored["concepts"]
    assert np.array(concepts["directions"]).shape == (k, channels)
    assert np.all(np.array(concepts["directions"]) >= 0)
    assert len(concepts["importances"]) == k and 0 <= concepts["reconstruction_error"] <= 1
    assert concepts["sampling"]["max_positions"] == cap
    assert concepts["sampling"]["sampled"] == min(cap, concepts["sampling"]["positions_seen"])
    assert concepts["images"]["count"] == images == len(concepts["images"]["names"])
    for i in range(k):
        for view in ("render", "patches", "heatmaps"):
            meta = read_png_metadata(out / f"concept_{i:02d}_{view}.png")
            assert json.loads(meta["provenance"])["technique"] == "concepts"
            assert meta["concept"] == str(i)
    assert "provenance" in read_png_metadata(out / "concepts.png")
    assert sorted(p.name for p in out.iterdir()) == sorted(stored["files"])
    return stored


def test_lite0_on_the_bundled_photos(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = run("samples", "-k", "3", "--limit", "8", *SMALL, "-o", str(out))
    assert code == 0, output
    stored = check_folder(out, 3, 480, 400, 8)
    assert stored["concepts"]["layer"] == "_blocks.6._swish#1"  # lite0's default
    assert stored["provenance"]["options"]["max_positions"] == 400
    assert "reconstruction error" in output and "400 of 1568 positions" in output


def test_class_mode_takes_only_the_images_predicted_as_the_class(tmp_path: Path) -> None:
    loaded = load_model("efficientnet_lite0")
    data = open_dataset("samples", 3, loaded.input_size, limit=6)
    with torch.no_grad():
        images = torch.stack([data.image(i) for i in range(6)])
        predicted = loaded.module(loaded.normalize(images)).argmax(1).tolist()
    target = max(set(predicted), key=predicted.count)
    out = tmp_path / "out"
    code, output = run(
        "samples", "-l", "_blocks.9._swish#1", "-k", "2", "--limit", "6", "--class",
        str(target), *SMALL, "-o", str(out),
    )  # fmt: skip
    assert code == 0, output
    concepts = json.loads((out / "concepts.json").read_text())["concepts"]
    wanted = [data.names[i] for i in range(6) if predicted[i] == target]
    assert concepts["images"]["names"] == wanted
    assert (
        concepts["class"]["index"] == target and concepts["class"]["name"] == loaded.labels[target]
    )
    assert concepts["importances"] == sorted(concepts["importances"], reverse=True)
    missing = next(c for c in range(1000) if c not in predicted)
    code, output = run("samples", "--limit", "6", "--class", str(missing), *SMALL, "-o",
                       str(tmp_path / "none"))  # fmt: skip
    assert code == 1 and "is predicted as class" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()


def _folder(root: Path, count: int = 6) -> Path:
    generator = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(count):
        pixels = generator.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize("model", ["resnet18", "timm:resnet18"])
def test_torchvision_and_timm(tmp_path: Path, model: str) -> None:
    root = _folder(tmp_path / "images")
    out = tmp_path / "out"
    code, output = run(
        str(root), "-m", model, "--weights", "none", "--input-size", "64", "-l", "layer3",
        "-k", "4", *SMALL, "-o", str(out),
    )  # fmt: skip
    assert code == 0, output
    check_folder(out, 4, 256, 400, 6)


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cases = [
        (["samples", "-l", "_blocks.6", "--limit", "4"], "_blocks.6._swish#1"),  # negative
        (["samples", "-k", "481", "--limit", "4"], "-k must be between 1 and the 480 channels"),
        (["samples", "-k", "0", "--limit", "4"], "-k must be at least 1"),
        (["samples", "--max-positions", "0", "--limit", "4"], "--max-positions must be at least 1"),
        ([str(tmp_path)], "no images"),  # an empty folder
        (["samples", "--class", "no such class", "--limit", "4"], "class"),
    ]
    for args, message in cases:
        code, output = run(*SMALL, *args, "-o", str(out))  # the case's options win
        assert code != 0 and message in output, (args, output)
        assert len(output.strip().splitlines()) == 1, output
        assert not out.exists()
