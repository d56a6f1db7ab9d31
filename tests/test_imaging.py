from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write, load_image, make_grid, read_png_metadata, save_png


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    array = np.zeros((4, 4, 4), dtype=np.uint8)
    array[..., 0] = 255  # red
    array[:2, :, 3] = 255  # top half opaque, bottom transparent
    Image.fromarray(array, "RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(image[:, 3, 0], torch.tensor([1.0, 1.0, 1.0]))


def test_grayscale_palette_and_16bit(tmp_path: Path) -> None:
    Image.fromarray(np.full((3, 5), 51, dtype=np.uint8), "L").save(tmp_path / "g.png")
    gray = load_image(tmp_path / "g.png")
    assert gray.shape == (3, 3, 5)
    torch.testing.assert_close(gray, torch.full((3, 3, 5), 0.2))
    assert load_image(tmp_path / "g.png", channels=1).shape == (1, 3, 5)
    Image.fromarray(np.full((2, 2, 3), 255, dtype=np.uint8)).convert("P").save(tmp_path / "p.png")
    torch.testing.assert_close(load_image(tmp_path / "p.png"), torch.ones(3, 2, 2))
    Image.fromarray(np.full((2, 2), 65535 // 2, dtype=np.uint16)).save(tmp_path / "d.png")
    torch.testing.assert_close(
        load_image(tmp_path / "d.png", 1), torch.full((1, 2, 2), (65535 // 2) / 65535)
    )


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((2, 4, 3), dtype=np.uint8)  # wide image
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (3, 4, 2)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(VizError, match="not found"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    with pytest.raises(VizError, match="cannot read image .*bad.jpg"):
        load_image(tmp_path / "bad.jpg")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(good)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(VizError, match="cut.png"):
        load_image(tmp_path / "cut.png")


def test_png_roundtrip_with_metadata(tmp_path: Path) -> None:
    image = torch.rand(3, 5, 7)
    path = save_png(image, tmp_path / "x.png", {"layer": "_blocks.9", "steps": 10})
    assert read_png_metadata(path) == {"layer": "_blocks.9", "steps": "10"}
    torch.testing.assert_close(load_image(path), (image * 255).round() / 255)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_text("old")

    def explode(file) -> None:
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_grid_places_tiles() -> None:
    tiles = [torch.full((1, 2, 2), float(i)) for i in range(3)]
    sheet = make_grid(tiles, columns=2, padding=1, background=9.0)
    assert sheet.shape == (1, 7, 7)
    assert (
        sheet[0, 1, 1] == 0 and sheet[0, 1, 4] == 1 and sheet[0, 4, 1] == 2 and sheet[0, 4, 4] == 9
    )


def test_atomic_files_get_the_usual_permissions(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        path = save_png(torch.zeros(3, 2, 2), tmp_path / "p.png")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644  # what open() gives, not mkstemp's 0600
