"""One randomness convention: `seed: int | torch.Generator`, never torch's global generator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from _render_models import tiny_loaded

from vizcnn.core.devices import as_generator, draw_seed, seed_record
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.deepdream.dreaming import DreamConfig, dream
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.rendering import render, render_iter
from vizcnn.runs import dream_file, render_folder

RENDER = RenderConfig(steps=3, size=16)
DREAM = DreamConfig(octaves=1, steps=2, jitter=3, step_size=10)
UNITS = ["features.0:0-2"]


def _loaded() -> Any:
    loaded = tiny_loaded(size=32)
    loaded.default_layers["dream"] = ["features.2"]
    return loaded


def _image() -> torch.Tensor:
    return torch.rand(3, 24, 20, generator=torch.Generator().manual_seed(9))


def test_as_generator_and_draw_seed() -> None:
    assert torch.equal(
        torch.rand(4, generator=as_generator(5)),
        torch.rand(4, generator=torch.Generator().manual_seed(5)),
    )
    mine = torch.Generator().manual_seed(2)
    assert as_generator(mine) is mine
    twin = torch.Generator().manual_seed(2)
    assert draw_seed(mine) == draw_seed(twin) and draw_seed(7) == 7
    for bad in (1.5, True, "3", None):
        with pytest.raises(VizError, match="seed must be an int or a torch.Generator"):
            as_generator(bad)  # type: ignore[arg-type]


def test_render_with_a_generator_is_the_render_of_its_first_draw() -> None:
    loaded = _loaded()
    generator = torch.Generator().manual_seed(11)
    twin = torch.Generator().manual_seed(11)
    drawn = render(loaded, UNITS, RENDER, seed=generator, run=RunOptions(batch=2))
    by_int = render(loaded, UNITS, RENDER, seed=draw_seed(twin), run=RunOptions(batch=2))
    assert torch.equal(drawn.images, by_int.images)
    assert torch.equal(generator.get_state(), twin.get_state())  # advanced by the one draw
    again = render(
        loaded, UNITS, RENDER, seed=generator, run=RunOptions(batch=2)
    )  # the generator ran on
    assert not torch.equal(again.images, drawn.images)


def test_dream_and_frames_int_seed_equal_a_cpu_generator() -> None:
    loaded, image = _loaded(), _image()
    by_int = dream(loaded, image, DREAM, seed=4)
    by_generator = dream(loaded, image, DREAM, seed=torch.Generator().manual_seed(4))
    assert torch.equal(by_int, by_generator)
    assert not torch.equal(by_int, dream(loaded, image, DREAM, seed=5))
    zoom = ZoomConfig(frames=2, zoom=1.1)
    frames = list(dream_frames(loaded, image, DREAM, zoom, seed=4))
    again = list(dream_frames(loaded, image, DREAM, zoom, seed=torch.Generator().manual_seed(4)))
    assert all(torch.equal(a, b) for a, b in zip(frames, again, strict=True))


CALLS: dict[str, Callable[[Any, Path], object]] = {
    "render": lambda m, _: render(m, UNITS, RENDER, seed=1, run=RunOptions(batch=2)),
    "render generator": lambda m, _: render(
        m, UNITS, RENDER, seed=torch.Generator(), run=RunOptions(batch=2)
    ),
    "render_iter": lambda m, _: list(
        render_iter(m, UNITS, RENDER, seed=2, run=RunOptions(batch=2))
    ),
    "dream": lambda m, _: dream(m, _image(), DREAM, seed=1),
    "dream_frames": lambda m, _: list(dream_frames(m, _image(), DREAM, ZoomConfig(frames=2))),
    "render_folder": lambda m, tmp: render_folder(
        m, UNITS, tmp / "r", RENDER, seed=1, run=RunOptions(batch=2)
    ),
    "dream_file": lambda m, tmp: dream_file(m, _image(), tmp / "d.gif", DREAM, seed=1),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_global_generator_is_left_alone(name: str, tmp_path: Path) -> None:
    torch.manual_seed(123)
    loaded = _loaded()  # building the test model draws (layer init); the technique must not
    before = torch.get_rng_state()
    CALLS[name](loaded, tmp_path)
    assert torch.equal(torch.get_rng_state(), before)


def test_run_calls_record_a_generator_by_its_state(tmp_path: Path) -> None:
    loaded = _loaded()
    record = seed_record(torch.Generator().manual_seed(3))
    assert isinstance(record, str) and record.startswith("generator ")
    assert record == seed_record(torch.Generator().manual_seed(3)) != seed_record(4)
    run = render_folder(
        loaded,
        UNITS,
        tmp_path,
        RENDER,
        seed=torch.Generator().manual_seed(3),
        run=RunOptions(batch=2),
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["provenance"]["seed"] == record
    # the same generator state resumes: every unit is found done
    again = render_folder(
        loaded,
        UNITS,
        tmp_path,
        RENDER,
        seed=torch.Generator().manual_seed(3),
        run=RunOptions(batch=2),
    )
    assert (run.rendered, again.rendered, again.skipped) == (3, 0, 3)
    with pytest.raises(VizError, match="seed generator"):
        render_folder(
            loaded,
            UNITS,
            tmp_path,
            RENDER,
            seed=torch.Generator().manual_seed(4),
            run=RunOptions(batch=2),
        )
