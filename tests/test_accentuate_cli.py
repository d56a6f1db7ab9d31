"""`accentuate_files` and `vizcnn accentuate`: files, provenance, resume, refusals, the CLI on
the default model, a torchvision and a timm model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _render_models import tiny_loaded
from click.testing import CliRunner
from torch.testing import assert_close

from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.io.imaging import load_image, read_png_metadata
from vizcnn.optvis.accentuation import accentuate
from vizcnn.runs.accentuate import MANIFEST, accentuate_files, difference_image

UNIT, REG = "features.3:0", "features.1"


def photos(count: int = 2) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    # 8-bit values at the model's input size: the run call takes them as they are
    return [(torch.randint(30, 220, (3, 16, 16), generator=gen) / 255.0) for _ in range(count)]


def test_files_are_the_library_pictures_and_a_rerun_keeps_them(tmp_path: Path) -> None:
    loaded, images = tiny_loaded(), photos()
    out = tmp_path / "out"
    made = accentuate_files(
        loaded, images, out, UNIT, reg_layer=REG, steps=3, crops=2, figure=True, seed=4
    )
    oracle = accentuate(loaded, torch.stack(images), UNIT, reg_layer=REG, steps=3, crops=2, seed=4)
    for index, path in enumerate(made.files):
        assert_close(load_image(path), oracle.images[index], rtol=0, atol=1 / 255 + 1e-6)
        meta = read_png_metadata(path)
        block = json.loads(meta["provenance"])
        assert block["technique"] == "accentuate" and block["options"]["reg_layer"] == REG
        assert float(meta["activation_end"]) == pytest.approx(float(oracle.values[index]))
    assert [p.name for p in made.figures] == ["image_figure.png", "image_2_figure.png"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert [e["file"] for e in manifest["images"]] == ["image.png", "image_2.png"]
    again = accentuate_files(
        loaded, images, out, UNIT, reg_layer=REG, steps=3, crops=2, figure=True, seed=4
    )
    assert not again.made
    with pytest.raises(VizError, match=r"steps 3 in the file, 4 now") as info:
        accentuate_files(loaded, images, out, UNIT, reg_layer=REG, steps=4, crops=2, seed=4)
    assert "\n" not in str(info.value) and "overwrite=True" in str(info.value)
    redone = accentuate_files(
        loaded, images, out, UNIT, reg_layer=REG, steps=4, crops=2, seed=4, overwrite=True
    )
    assert redone.made


def test_difference_image_is_grey_where_nothing_changed() -> None:
    original = torch.full((3, 4, 4), 0.3)
    changed = original.clone()
    changed[:, 0, 0] = 0.5
    picture = difference_image(original, changed)
    assert picture[:, 1:, 1:].eq(0.5).all() and picture[:, 0, 0].gt(0.9).all()


def test_refusals_before_any_work(tmp_path: Path) -> None:
    loaded = tiny_loaded()
    cases = [
        ((photos(2), tmp_path / "a.png", UNIT), "2 images need a folder"),
        ((photos(1), tmp_path / "b.jpg", UNIT), "use out.png for one image or a folder"),
        ((photos(1), tmp_path / "c", "features.3:0-2"), "selects 3 units"),
        ((["missing.jpg"], tmp_path / "d", UNIT), "not found"),
        (([], tmp_path / "e", UNIT), "no images given"),
    ]
    for (images, out, unit), message in cases:
        with pytest.raises(VizError, match=message) as info:
            accentuate_files(loaded, images, out, unit, reg_layer=REG, steps=2)
        assert "\n" not in str(info.value)
        assert not Path(out).exists()


def test_cli_on_the_default_model(tmp_path: Path) -> None:
    out = tmp_path / "coffee.png"
    args = ["accentuate", "sample:coffee", "-l", "_blocks.9:3", "--steps", "2", "--crops", "1",
            "--figure", "-q", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    options = json.loads(read_png_metadata(out)["provenance"])["options"]
    assert options["reg_layer"] == "_blocks.2" and options["size"] == "224x224"
    assert options["reg_crops"] == 1  # the default 2, capped by --crops 1
    assert (tmp_path / "coffee_figure.png").is_file()
    assert "held at _blocks.2" in result.output


@pytest.mark.parametrize("model", ["resnet18", "timm:resnet18"])
def test_cli_on_torchvision_and_timm(tmp_path: Path, model: str) -> None:
    out = tmp_path / "out"
    args = ["accentuate", "sample:coffee", "sample:chelsea", "-m", model, "--weights", "none",
            "--input-size", "64", "-l", "layer2:5", "--steps", "2", "--crops", "1", "-q",
            "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["provenance"]["options"]["reg_layer"] == "layer1"
    assert [e["file"] for e in manifest["images"]] == ["coffee.png", "chelsea.png"]
    assert load_image(out / "coffee.png").shape == (3, 64, 64)


def test_cli_errors_name_flags(tmp_path: Path) -> None:
    base = ["accentuate", "sample:coffee", "-m", "lenet5_digits", "--steps", "2"]
    result = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "-l LAYER:CHANNEL or --class NAME" in result.output
    result = CliRunner().invoke(
        app, [*base, "-l", "features.3:0", "--reg-weight", "-1", "-o", str(tmp_path / "y.png")]
    )
    assert result.exit_code == 1 and "--reg-weight must be >= 0" in result.output
    result = CliRunner().invoke(
        app, [*base, "sample:camera", "-l", "features.3:0", "-o", str(tmp_path / "z.png")]
    )
    assert result.exit_code == 1 and "give -o a folder" in result.output
    result = CliRunner().invoke(
        app, [*base, "-l", "features.3:0", "--crops", "2", "--reg-crops", "3",
              "-o", str(tmp_path / "w.png")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--reg-crops must be from 1 to --crops (2), got 3" in result.output
    assert not any(tmp_path.iterdir())


def test_reg_crops_reaches_the_library_and_the_provenance(tmp_path: Path) -> None:
    loaded, images = tiny_loaded(), photos(1)
    out = tmp_path / "one.png"
    accentuate_files(loaded, images, out, UNIT, reg_layer=REG, steps=4, crops=3, reg_crops=1)
    oracle = accentuate(
        loaded, torch.stack(images), UNIT, reg_layer=REG, steps=4, crops=3, reg_crops=1
    )
    assert_close(load_image(out), oracle.images[0], rtol=0, atol=1 / 255 + 1e-6)
    assert json.loads(read_png_metadata(out)["provenance"])["options"]["reg_crops"] == 1
    with pytest.raises(VizError, match=r"reg_crops must be an int from 1 to crops \(3\)"):
        accentuate_files(loaded, images, tmp_path / "two.png", UNIT, reg_layer=REG, crops=3,
                         reg_crops=4)  # fmt: skip
    assert not (tmp_path / "two.png").exists()
