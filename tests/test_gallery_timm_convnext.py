"""The timm ConvNeXt gallery script, shrunk: trains, saves, loads by spec and draws its picture."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from click.testing import CliRunner

from vizcnn.cli.main import app

pytest.importorskip("timm")
pytestmark = pytest.mark.slow  # trains a ConvNeXt for 16 steps

GALLERY = Path(__file__).resolve().parents[1] / "gallery"


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    """The gallery script as a module, importable as it is for `python gallery/...`."""
    sys.path.insert(0, str(GALLERY))
    try:
        yield importlib.import_module("plot_timm_convnext")
    finally:
        sys.path.remove(str(GALLERY))
        sys.modules.pop("plot_timm_convnext", None)


def test_timm_convnext_gallery(script: ModuleType, tmp_path: Path) -> None:
    # 256 training digits, 2 epochs: 36% of the 450 test digits right with seed 0 (chance: 10%)
    run = script.main(tmp_path, 2, channels=2, explained=3, render_steps=4, train_size=256, lr=3e-3)
    assert (tmp_path / "timm_convnext.png").stat().st_size > 1000
    assert run.accuracy > 0.2
    # the model loaded by spec (`timm:convnext_atto`, weights=PATH) is the trained network
    torch.testing.assert_close(run.loaded_logits, run.trained_logits, rtol=1e-4, atol=1e-4)
    assert (run.cam_layer, run.render_layer) == ("stages.2", "stages.1")
    # the printed command runs: Grad-CAM maps of the three digit files
    result = CliRunner().invoke(app, run.commands["attribute"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cli" / "attribute").glob("*.png"))) == 3  # one map per digit
