"""`dream_file`: `vizcnn dream`'s files from one library call; keep, refuse, overwrite; locks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from folder_helpers import folder_contents
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.data.samples import sample_image
from vizcnn.deepdream.dreaming import DreamConfig, dream
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.io.imaging import to_pil
from vizcnn.models.base import describe
from vizcnn.models.loading import load_model
from vizcnn.runs import dream_file, file_lock
from vizcnn.runs.lock import LOCK_NAME

ARGS = ["-m", "lenet5_digits", "--steps", "2", "--octaves", "2", "--jitter", "5", "--seed", "3"]
CONFIG = DreamConfig(steps=2, octaves=2, jitter=5)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["dream", *args])


def _both(tmp_path: Path, output: str, cli_args: list[str], **library: Any) -> tuple[Any, Any]:
    """The CLI's files and the library call's files, written to the same path one after the
    other (the recorded command names the output, so both must write the same one)."""
    folder = tmp_path / "out"
    shutil.rmtree(folder, ignore_errors=True)
    result = _cli("sample:coins", *ARGS, *cli_args, "-q", "-o", str(folder / output))
    assert result.exit_code == 0, result.output
    cli = folder_contents(folder)
    shutil.rmtree(folder)
    loaded = load_model("lenet5_digits", device="cpu")
    run = dream_file(loaded, "sample:coins", str(folder / output), CONFIG, seed=3, **library)
    assert run.made and not run.replaced
    return cli, folder_contents(folder)


def test_cli_still_equals_the_library_call_and_dream(tmp_path: Path) -> None:
    cli, library = _both(tmp_path, "d.png", [])
    assert sorted(cli) == ["d.json", "d.png"]
    assert cli == library
    block = library["d.json"]["provenance"]
    assert block["command"].startswith("vizcnn dream sample:coins -m lenet5_digits -l ")
    assert block["seed"] == 3 and block["options"]["image_digest"]
    # and the pixels of `dream` called as the README shows, float image in, same seed
    loaded = load_model("lenet5_digits", device="cpu")
    out = dream(loaded, sample_image("coins", 1), CONFIG, seed=3)
    assert [to_pil(out).tobytes()] == library["d.png"][0]


def test_cli_zoom_frames_and_gif_equal_the_library_call(tmp_path: Path) -> None:
    zoom = ["--frames", "2", "--zoom", "1.1", "--blend", "0.3", "--fps", "5"]
    cli, library = _both(
        tmp_path, "frames", zoom, zoom=ZoomConfig(frames=2, zoom=1.1, blend=0.3), fps=5
    )
    assert sorted(cli) == ["frames/dream.json", "frames/frame_0000.png", "frames/frame_0001.png"]
    assert cli == library
    loaded = load_model("lenet5_digits", device="cpu")
    expected = dream_frames(
        loaded, sample_image("coins", 1), CONFIG, ZoomConfig(frames=2, zoom=1.1, blend=0.3), seed=3
    )
    for index, frame in enumerate(expected):
        assert library[f"frames/frame_{index:04d}.png"][0] == [to_pil(frame).tobytes()]
    cli, library = _both(
        tmp_path, "z.gif", zoom, zoom=ZoomConfig(frames=2, zoom=1.1, blend=0.3), fps=5
    )
    assert sorted(cli) == ["z.gif", "z.json"] and cli == library
    assert len(library["z.gif"][0]) == 2


def test_a_dream_file_is_kept_refused_or_overwritten(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    out = tmp_path / "d.png"
    first = dream_file(loaded, "sample:coins", out, CONFIG)
    before = out.read_bytes()
    again = dream_file(loaded, "sample:coins", out, CONFIG)
    assert first.made and not again.made and out.read_bytes() == before  # kept, not redone
    with pytest.raises(VizError, match=r"made with other settings \(steps 2 in the file, 3 now\)"):
        dream_file(loaded, "sample:coins", out, DreamConfig(steps=3, octaves=2, jitter=5))
    assert out.read_bytes() == before
    # another photo under the same name is another dream: the input is recorded by content
    photo = tmp_path / "photo.png"
    Image.new("L", (30, 24), 90).save(photo)
    dream_file(loaded, photo, tmp_path / "p.png", CONFIG)
    Image.new("L", (30, 24), 160).save(photo)
    with pytest.raises(VizError, match=r"\(image_digest \w+ in the file, \w+ now\)"):
        dream_file(loaded, photo, tmp_path / "p.png", CONFIG)
    redone = dream_file(loaded, "sample:coins", out, CONFIG, seed=1, overwrite=True)
    assert redone.made and redone.replaced and out.read_bytes() != before
    assert json.loads(out.with_suffix(".json").read_text())["provenance"]["seed"] == 1
    assert not list(tmp_path.glob(f"*{LOCK_NAME}"))  # the lock goes with the run


def test_a_shorter_zoom_over_a_longer_one_leaves_no_stale_frames(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    config = DreamConfig(steps=1, octaves=1)
    dream_file(loaded, "sample:coins", tmp_path / "f", config, zoom=ZoomConfig(frames=3))
    with pytest.raises(VizError, match="frames 3 in the file, 2 now"):
        dream_file(loaded, "sample:coins", tmp_path / "f", config, zoom=ZoomConfig(frames=2))
    run = dream_file(
        loaded, "sample:coins", tmp_path / "f", config, zoom=ZoomConfig(frames=2), overwrite=True
    )
    assert run.replaced
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names == ["dream.json", "frame_0000.png", "frame_0001.png"]


def test_cli_keeps_refuses_in_flags_and_overwrites(tmp_path: Path) -> None:
    out = str(tmp_path / "d.png")
    assert _cli("sample:coins", *ARGS, "-q", "-o", out).exit_code == 0
    kept = _cli("sample:coins", *ARGS, "-q", "-o", out)
    assert kept.exit_code == 0 and kept.output.startswith("kept ")
    refused = _cli("sample:coins", *ARGS, "--steps", "3", "-q", "-o", out)
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "use --overwrite to redo it" in refused.output and "overwrite=True" not in refused.output
    redone = _cli("sample:coins", *ARGS, "--steps", "3", "--overwrite", "-q", "-o", out)
    assert redone.exit_code == 0 and redone.output.startswith("wrote ")


def test_an_output_in_use_is_refused_and_others_beside_it_go_on(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    config = DreamConfig(steps=1, octaves=1)
    with file_lock(tmp_path / "a.json"):  # the sidecar names a still's (and a video's) lock
        with pytest.raises(VizError, match="a.json is being written by another vizcnn run"):
            dream_file(loaded, "sample:coins", tmp_path / "a.png", config)
        assert dream_file(loaded, "sample:coins", tmp_path / "b.png", config).made
    assert not (tmp_path / "a.png").exists()


def test_a_tensor_and_a_bare_module(tmp_path: Path) -> None:
    """A script's own network and image: the file records the tensor by digest and this
    process's command line (no `vizcnn dream` command can load a bare module)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    loaded = describe(net, input_size=32, default_layers={"dream": ["1"]})
    image = torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(1))
    run = dream_file(loaded, image, tmp_path / "t.png", DreamConfig(steps=2, octaves=1))
    block = json.loads(run.sidecar.read_text())["provenance"]
    assert block["data"] == f"tensor {block['options']['image_digest']}"
    assert not block["command"].startswith("vizcnn dream")
    with Image.open(run.output) as picture:
        assert picture.size == (24, 20)


def test_output_checks_name_arguments(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    with pytest.raises(VizError, match="3 zoom frames make a video"):
        dream_file(loaded, "sample:coins", tmp_path / "d.png", zoom=ZoomConfig(frames=3))
    with pytest.raises(VizError, match="use .png for a dream"):
        dream_file(loaded, "sample:coins", tmp_path / "d.jpg")
    with pytest.raises(VizError, match="fps must be > 0"):
        dream_file(loaded, "sample:coins", tmp_path / "z.gif", fps=0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VizError, match="choose another output$"):
        dream_file(loaded, "sample:coins", blocker / "d.png")
