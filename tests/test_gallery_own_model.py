"""`gallery/plot_own_model.py`, shrunk: a CNN of one's own trained on digits, then every step
from Python, and the `vizcnn` commands it prints run as printed (`-m own_cnn:build --weights`)
from the gallery folder, on the same weights and with the same maps."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from vizcnn import load_model
from vizcnn.cli.main import app
from vizcnn.io.provenance import weights_digest
from vizcnn.io.resume import stored_provenance
from vizcnn.models.lenet import digits_tensors

pytestmark = pytest.mark.slow  # trains a CNN and builds a report: about 20 s on 2 cores

GALLERY = Path(__file__).resolve().parents[1] / "gallery"
EXPLAINED = 3


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    """The gallery script as a module, with `own_cnn` importable as it is for `python gallery/...`."""
    sys.path.insert(0, str(GALLERY))
    try:
        yield importlib.import_module("plot_own_model")
    finally:
        sys.path.remove(str(GALLERY))
        for name in ("plot_own_model", "own_cnn"):
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def made(script: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("own_model")
    run = script.main(
        out,
        epochs=2,
        digits=90,
        channels=2,
        render_steps=4,
        explained=EXPLAINED,
        report_steps=2,
        units_per_layer=1,
        dream_steps=1,
    )
    return out, run


def _loaded(out: Path, run: Any) -> Any:
    return load_model(
        "own_cnn:build",
        weights=str(out / "own_cnn.pt"),
        mean=[run.mean],
        std=[run.std],
        size=32,
        labels=str(out / "labels.txt"),
        device="cpu",
    )


def test_the_trained_network_beats_chance(made: tuple[Path, Any], monkeypatch: Any) -> None:
    out, run = made
    assert run.accuracy > 0.5  # chance is 0.1; two epochs give about 0.8
    monkeypatch.chdir(GALLERY)  # the spec is found in the current folder, as on the CLI
    loaded = _loaded(out, run)
    _, _, test_x, test_y = digits_tensors()
    with torch.no_grad():  # the saved file, loaded by spec, is the network that was measured
        predicted = loaded.module(loaded.normalize(test_x)).argmax(1)
    assert float((predicted == test_y).float().mean()) == pytest.approx(run.accuracy)
    assert loaded.labels == [str(d) for d in range(10)] and loaded.channels == 1
    own_cnn = sys.modules["own_cnn"]  # `own_cnn:described` carries the statistics measured here
    assert (run.mean, run.std) == (own_cnn.MEAN, own_cnn.STD)


def test_every_step_wrote_its_files(made: tuple[Path, Any]) -> None:
    out, run = made
    assert len(run.digits) == 90 and all(p.parent == out / "digits" for p in run.digits)
    assert "block2" in (out / "layers.txt").read_text()
    render = json.loads((out / "render" / "manifest.json").read_text())
    assert [u["unit"] for u in render["units"]] == ["block2:0", "block2:1"]
    mine = json.loads((out / "mine" / "manifest.json").read_text())
    assert mine["layer"] == "block2" and mine["images"] == 90
    assert [c["channel"] for c in mine["channels"]] == [0, 1]
    assert all(len(c["hits"]) == 9 for c in mine["channels"])
    attribute = json.loads((out / "attribute" / "manifest.json").read_text())
    truth = [int(p.stem.split("_")[1]) for p in run.digits[:EXPLAINED]]  # NNN_label.png
    assert [image["target"] for image in attribute["images"]] == truth
    assert (out / "report" / "index.html").is_file()
    assert (out / "report" / "layer-02-block2.html").is_file()
    assert (out / "own_model.png").stat().st_size > 0
    commands = (out / "commands.txt").read_text().splitlines()
    assert commands[0].startswith("cd ") and len(commands) == 1 + len(run.commands)
    assert all(" -m own_cnn:" in line and " --weights " in line for line in commands[1:])


@pytest.mark.parametrize("step", ["layers", "attribute", "described"])
def test_the_printed_commands_run(
    made: tuple[Path, Any], step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, run = made
    monkeypatch.chdir(GALLERY)
    result = CliRunner().invoke(app, run.commands[step])
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output  # mean and std were given: no normalization guess
    digest = weights_digest(_loaded(out, run).module)
    if step == "layers":
        assert "block3.pool" in result.output and "own_cnn.pt" in result.output
        return
    args = run.commands[step]
    folder = Path(args[args.index("-o") + 1])
    assert folder.is_absolute()  # out is outside the gallery folder
    block = stored_provenance(folder / "manifest.json")
    assert block["weights_digest"] == digest
    assert (
        block["weights_digest"]
        == stored_provenance(out / "attribute" / "manifest.json")["weights_digest"]
    )  # the Python run's network, trained in the script, is the file the CLI loaded
    assert "own_cnn.pt" in block["weights"] and block["model"] == args[args.index("-m") + 1]
    assert block["normalization"] == {"mean": [run.mean], "std": [run.std], "default": False}
    # where the CLI's top-1 class is the true class the script explained, the maps are the same
    manifest = json.loads((folder / "manifest.json").read_text())
    same = 0
    for image, path in zip(manifest["images"], run.digits[:EXPLAINED], strict=True):
        if image["target"] == int(path.stem.split("_")[1]):
            cli_maps = torch.load(folder / f"{path.stem}.pt", weights_only=True)
            py_maps = torch.load(out / "attribute" / f"{path.stem}.pt", weights_only=True)
            assert cli_maps.keys() == py_maps.keys() == {"saliency", "gradcam"}
            for method in cli_maps:
                torch.testing.assert_close(cli_maps[method], py_maps[method])
            same += 1
    assert same >= 1
