"""Bad outputs and images as a new user meets them: one line, exit 1, nothing written."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from mine_helpers import huge_png, random_images, write_pngs
from vizcnn.cli.common import friendly_errors, run_options
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write, load_image, max_pixels, save_json
from vizcnn.io.paths import ensure_writable


def tree(root: Path) -> list[tuple[str, str]]:
    """Every path under `root` with its content (files) or "dir"."""
    return sorted(
        (str(p.relative_to(root)), "dir" if p.is_dir() else p.read_bytes().hex())
        for p in root.rglob("*")
    )


def test_ensure_writable_checks_and_leaves_nothing(tmp_path: Path) -> None:
    assert ensure_writable(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"
    assert ensure_writable(tmp_path / "x" / "dream.png", "file") == tmp_path / "x" / "dream.png"
    assert tree(tmp_path) == []  # the missing folders were made for the test write, then removed
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("keep")
    before = tree(tmp_path)
    for path, kind, message in (
        (blocker / "out", "folder", f"'{blocker}' is a file, not a folder; choose another output"),
        (blocker / "deep" / "er.png", "file", f"'{blocker}' is a file, not a folder"),
        (blocker, "folder", "it is a file, not a folder; choose another output"),
        (tmp_path, "file", "it is a folder; give a file name with output"),
    ):
        with pytest.raises(VizError) as info:
            ensure_writable(path, kind)
        assert message in str(info.value) and str(info.value).startswith("cannot write to")
    assert tree(tmp_path) == before
    with pytest.raises(VizError, match="unknown kind"):
        ensure_writable(tmp_path, "socket")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_ensure_writable_read_only_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(VizError, match="permission denied; choose another output"):
            ensure_writable(locked / "out")
        with pytest.raises(VizError, match="cannot write .*permission denied"):
            save_json({}, locked / "m.json")
    finally:
        locked.chmod(0o700)


def test_atomic_write_errors_are_one_line_viz_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(VizError, match=r"cannot write '.*f/out/m.json': ") as info:
        save_json({"a": 1}, blocker / "out" / "m.json")
    assert "\n" not in str(info.value)

    def full_disk(file) -> None:
        file.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(VizError, match="no space left on device"):
        atomic_write(tmp_path / "t.bin", full_disk)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # no temporary file left


def test_image_size_limit_one_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [path] = write_pngs(tmp_path, random_images(1, size=20))
    expected = load_image(path)
    with pytest.raises(VizError) as info:
        load_image(path, limit=399)
    text = str(info.value)
    assert "is 20x20 (0.0 megapixels), over the limit" in text
    assert "set VIZCNN_MAX_PIXELS=400 (0 = no limit)" in text and "\n" not in text
    torch.testing.assert_close(load_image(path, limit=400), expected)
    monkeypatch.setenv("VIZCNN_MAX_PIXELS", "399")
    assert max_pixels() == 399
    with pytest.raises(VizError, match="20x20"):
        load_image(path)
    monkeypatch.setenv("VIZCNN_MAX_PIXELS", "0")
    assert max_pixels() is None
    torch.testing.assert_close(load_image(path), expected)
    monkeypatch.setenv("VIZCNN_MAX_PIXELS", "lots")
    with pytest.raises(VizError, match="not a whole number"):
        load_image(path)
    monkeypatch.delenv("VIZCNN_MAX_PIXELS")
    # Pillow alone would warn between its limit and twice it: vizcnn neither warns nor
    # changes Pillow's setting for other code.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(load_image(path), expected)
    assert Image.MAX_IMAGE_PIXELS == 300
    with pytest.raises(VizError):
        load_image(path, limit=10)
    assert Image.MAX_IMAGE_PIXELS == 300


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(VizError, match="is a folder, not an image file"):
        load_image(tmp_path)


@pytest.fixture(scope="module")
def huge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return huge_png(tmp_path_factory.mktemp("huge") / "huge.png")


def dream(*args: str):
    return CliRunner().invoke(app, ["dream", *args, "-m", "lenet5_digits", "--steps", "1", "-q"])


def test_dream_bad_image_and_output_messages(tmp_path: Path, huge: Path) -> None:
    result = dream(str(huge), "-o", str(tmp_path / "d.png"))
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "is 14000x14000 (196.0 megapixels)" in result.output
    assert "VIZCNN_MAX_PIXELS=196000000" in result.output
    result = dream(str(tmp_path), "-o", str(tmp_path / "d.png"))
    assert result.exit_code == 1, result.output
    assert "is a folder; give one image file or sample:NAME (astronaut, coffee," in result.output
    result = dream(str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "d.png"))
    assert "image" in result.output and "not found; give an image file or sample:NAME" in (
        result.output
    )
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("x")
    before = tree(tmp_path)
    for target in (blocker / "out.png", blocker / "frames"):
        frames = ["--frames", "2"] if target.suffix == "" else []
        result = dream("sample:coffee", *frames, "-o", str(target))
        assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
        assert f"cannot write to '{target}'" in result.output
    assert tree(tmp_path) == before


def test_render_unwritable_output_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("x")
    result = CliRunner().invoke(
        app, ["render", "-m", "lenet5_digits", "--steps", "2", "-q", "-o", str(blocker / "out")]
    )
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert f"cannot write to '{blocker / 'out'}'" in result.output
    assert tree(tmp_path) == [("somefile.txt", b"x".hex())]


def test_quiet_silences_pillow_warnings() -> None:
    @click.command()
    @run_options
    @friendly_errors
    def noisy(**options: object) -> None:
        warnings.warn("big image", Image.DecompressionBombWarning, stacklevel=1)
        click.echo("done")

    for flags, count in (([], 1), (["-q"], 0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = CliRunner().invoke(noisy, flags)
        assert result.exit_code == 0 and result.output == "done\n"
        assert len([w for w in caught if w.category is Image.DecompressionBombWarning]) == count
