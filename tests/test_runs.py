"""The library's runs: `render_folder` writes what `vizcnn render` writes, resumes, refuses a
folder made otherwise, and one folder takes one run at a time (`folder_lock`)."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from folder_helpers import folder_contents
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.models.loading import load_model
from vizcnn.optvis.config import RenderConfig
from vizcnn.runs import channel_units, class_units, folder_lock, render_folder
from vizcnn.runs.lock import LOCK_NAME


def test_cli_render_equals_the_library_call(tmp_path: Path) -> None:
    args = ["render", "-m", "lenet5_digits", "-l", "features.3", "-c", "1", "-c", "4"]
    cli = tmp_path / "cli"
    result = CliRunner().invoke(app, [*args, "--steps", "5", "--seed", "3", "-q", "-o", str(cli)])
    assert result.exit_code == 0, result.output
    loaded = load_model("lenet5_digits", device="cpu")
    run = render_folder(loaded, "features.3:1,4", tmp_path / "lib", RenderConfig(steps=5), seed=3)
    assert run.files == ["features.3_c0001.png", "features.3_c0004.png"]
    assert run.rendered == 2 and run.skipped == 0
    assert folder_contents(cli) == folder_contents(tmp_path / "lib")


def test_library_resume_and_refusal(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    config = RenderConfig(steps=4)
    first = render_folder(loaded, channel_units(loaded, "features.3", [0, 1]), tmp_path, config)
    before = (tmp_path / "features.3_c0000.png").read_bytes()
    again = render_folder(loaded, "features.3:0-2", tmp_path, config)
    assert (again.rendered, again.skipped) == (1, 2)
    assert (tmp_path / "features.3_c0000.png").read_bytes() == before  # kept, not redone
    assert again.values[:2] == first.values
    with pytest.raises(VizError, match=r"made with other settings \(steps 4 in the file, 5 now\)"):
        render_folder(loaded, "features.3:0", tmp_path, RenderConfig(steps=5))
    redone = render_folder(loaded, "features.3:0", tmp_path, RenderConfig(steps=5), overwrite=True)
    assert (redone.rendered, redone.replaced) == (1, 1)
    assert not (tmp_path / LOCK_NAME).exists()  # the lock goes with the run


def test_class_units_and_duplicate_files_refused(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    assert [u.stem for u in class_units(loaded, ["3", 3, 7])] == [
        "class_0003_3",
        "class_0007_7",
    ]
    with pytest.raises(VizError, match="same file features.3_c0001.png"):
        render_folder(loaded, ["features.3:1", "features.3:1"], tmp_path, RenderConfig(steps=1))


def _hold(folder: str, ready: Any, release: Any) -> None:
    with folder_lock(folder):
        ready.set()
        release.wait(30)


def test_a_second_run_on_a_folder_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(VizError) as refused, folder_lock(tmp_path):
            pass
        message = str(refused.value)
        assert f"process {holder.pid} on" in message and "\n" not in message
        loaded = load_model("lenet5_digits", device="cpu")
        with pytest.raises(VizError, match="being written by another vizcnn run"):
            render_folder(loaded, "features.3:0", tmp_path, RenderConfig(steps=1))
        assert not (tmp_path / "features.3_c0000.png").exists()  # refused before any work
    finally:
        release.set()
        holder.join(60)
    with folder_lock(tmp_path, wait=5):  # free again once the holder is done
        pass


def test_a_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(60)
    assert holder.pid is not None
    os.kill(holder.pid, 9)  # no clean-up runs: the lock file stays behind
    holder.join(60)
    assert (tmp_path / LOCK_NAME).exists()
    start = time.monotonic()
    with folder_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - start < 5


def test_waiting_for_a_folder_gets_it_when_the_holder_finishes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(60)
    threading.Timer(1.0, release.set).start()  # the holder leaves while this process waits
    start = time.monotonic()
    with folder_lock(tmp_path, wait=30) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert time.monotonic() - start >= 0.9  # it did wait for the holder
    holder.join(60)


def test_a_run_that_writes_nothing_leaves_no_folder_behind(tmp_path: Path) -> None:
    from vizcnn.runs.lock import file_lock

    nested = tmp_path / "a" / "b" / "out"
    with pytest.raises(VizError, match="refused"), folder_lock(nested):
        assert nested.is_dir()
        raise VizError("refused before writing")  # e.g. a corrupt image found mid-way
    assert list(tmp_path.iterdir()) == []  # every folder the lock made is gone again
    with folder_lock(nested):
        (nested / "result.png").write_bytes(b"x")
    assert (nested / "result.png").is_file() and not (nested / LOCK_NAME).exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with folder_lock(kept):
        pass
    assert kept.is_dir()  # a folder that was there before stays, empty or not
    with file_lock(tmp_path / "c" / "dream.png"):
        pass
    assert not (tmp_path / "c").exists()


def test_attribute_with_a_corrupt_image_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "out" / "attr"
    result = CliRunner().invoke(
        app, ["attribute", str(bad), "--method", "gradcam", "-o", str(out), "-q"]
    )
    assert result.exit_code != 0
    assert "cannot read image" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
