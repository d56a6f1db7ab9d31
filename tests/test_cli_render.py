"""`vizcnn render` through click's CliRunner on the bundled 1-channel LeNet (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.testing import assert_close

from vizcnn.cli.main import app
from vizcnn.core.channels import parse_channels
from vizcnn.core.errors import VizError
from vizcnn.hooks import forward_to
from vizcnn.io.imaging import load_image, read_png_metadata
from vizcnn.models.loading import load_model

BASE = ["render", "-m", "lenet5_digits", "--steps", "6", "-q"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*BASE, *args])
    return result.exit_code, result.output


def test_channels_files_sheet_manifest_and_metadata(tmp_path: Path) -> None:
    code, out = run("-l", "features.3", "-c", "3", "-c", "7", "-o", str(tmp_path))
    assert code == 0, out
    assert out.count("\n") == 1 and "rendered 2 unit(s) of features.3" in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["features.3_c0003.png", "features.3_c0007.png", "manifest.json", "sheet.png"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [u["unit"] for u in manifest["units"]] == ["features.3:3", "features.3:7"]
    settings = manifest["settings"]
    assert settings["model"] == "lenet5_digits" and settings["steps"] == 6
    assert settings["param"] == "fft" and settings["lr"] == 0.05 and settings["seed"] == 0
    meta = read_png_metadata(tmp_path / "features.3_c0007.png")
    assert meta["unit"] == "features.3:7" and json.loads(meta["steps"]) == 6
    # the recorded value is the channel mean of the saved picture (up to 8-bit rounding)
    loaded = load_model("lenet5_digits")
    image = load_image(tmp_path / "features.3_c0007.png", channels=1)
    with torch.no_grad():
        acts = forward_to(loaded.module, loaded.normalize(image[None]), ["features.3"])[
            "features.3"
        ]
    assert_close(acts[0, 7].mean().item(), float(meta["value"]), atol=0.05, rtol=0.02)
    assert manifest["units"][1]["value"] == pytest.approx(float(meta["value"]))
    assert load_image(tmp_path / "sheet.png").shape[-1] > 2 * 32


def test_resume_skips_existing_pngs(tmp_path: Path) -> None:
    assert run("--channels", "0:3", "-o", str(tmp_path))[0] == 0
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*_c*.png")}
    assert len(first) == 3
    (tmp_path / "features.3_c0001.png").unlink()
    code, out = run("--channels", "0:3", "-o", str(tmp_path))
    assert code == 0 and "rendered 1 unit(s)" in out and "2 already done" in out
    second = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*_c*.png")}
    assert second["features.3_c0000.png"] == first["features.3_c0000.png"]
    assert len(json.loads((tmp_path / "manifest.json").read_text())["units"]) == 3
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_all_neuron_layer_class_and_diversity(tmp_path: Path) -> None:
    code, out = run("--all", "-o", str(tmp_path / "all"))
    assert code == 0, out
    assert len(list((tmp_path / "all").glob("features.3_c*.png"))) == 16  # the default layer
    code, out = run(
        "--objective", "neuron", "-c", "2", "--position", "1,3", "-o", str(tmp_path / "n")
    )
    assert code == 0 and (tmp_path / "n" / "features.3_n0002_y1_x3.png").is_file()
    code, out = run("--objective", "layer", "-l", "features.0", "-o", str(tmp_path / "l"))
    assert code == 0 and (tmp_path / "l" / "features.0_l2.png").is_file()
    code, out = run("--class", "7", "--class", "3", "-o", str(tmp_path / "c"))
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "c").glob("class_*")) == [
        "class_0003_3.png",
        "class_0007_7.png",
    ]
    code, out = run(
        "-c", "1", "--diversity", "2", "--diversity-weight", "5", "-o", str(tmp_path / "d")
    )
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "d").glob("*_c*")) == [
        "features.3_c0001_0.png",
        "features.3_c0001_1.png",
    ]
    code, out = run(
        "-c", "0", "--amp", "--param", "pixel", "--no-decorrelate", "-o", str(tmp_path / "a")
    )
    assert code == 0 and "--amp ignored on cpu" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "99"], "channel 99 out of range for layer 'features.3'; valid: 0..15"),
        (["--channels", "0:40"], "valid: 0..15"),
        (["--channels", "a:b"], "START:STOP"),
        (["--class", "eleven"], "unknown class 'eleven'"),
        (["--class", "12"], "class 12 out of range"),
        (["--objective", "class"], "needs --class"),
        (["-l", "features.33"], "did you mean"),
        (["--position", "3"], "Y,X"),
        (["--steps", "0"], "steps must be at least 1"),
        (["--lr", "1e308", "-c", "0"], "non-finite"),
    ],
)
def test_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    extra = ["--objective", "neuron", "-c", "0"] if "--position" in args else []
    code, out = run(*args, *extra, "-o", str(tmp_path))
    assert code == 1, out
    assert message in out and out.strip().count("\n") == 0


def test_parse_channels() -> None:
    assert parse_channels("0:4", 10) == (0, 1, 2, 3)
    assert parse_channels("0:10:3,7", 10) == (0, 3, 6, 9, 7)
    assert parse_channels(":3", 10) == (0, 1, 2)
    assert parse_channels("8:", 10) == (8, 9)
    assert parse_channels("2-4,3", 10) == (2, 3, 4)
    for bad in ("0:11", "x", "1:2:3:4", "3:3", "0:4:0"):
        with pytest.raises(VizError):
            parse_channels(bad, 10)


def test_help_lists_the_options() -> None:
    out = CliRunner().invoke(app, ["render", "--help"]).output
    for option in (
        "--channels",
        "--all",
        "--objective",
        "--class",
        "--steps",
        "--size",
        "--param",
        "--no-decorrelate",
        "--lr",
        "--batch",
        "--diversity",
        "--seed",
        "--device",
        "--amp",
        "--input-size",
    ):
        assert option in out


def test_resumed_run_makes_the_same_pictures_as_an_uninterrupted_one(tmp_path: Path) -> None:
    args = ["-l", "features.3", "--channels", "0:5", "--batch", "2"]
    code, out = run(*args, "-o", str(tmp_path / "full"))
    assert code == 0, out
    # an interrupted run: the second batch (channels 2, 3) and the last (4) never got written
    code, out = run(*args[:3], "0:2", "--batch", "2", "-o", str(tmp_path / "resumed"))
    assert code == 0, out
    code, out = run(*args, "-o", str(tmp_path / "resumed"))
    assert code == 0 and "rendered 3 unit(s)" in out and "(2 already done)" in out, out
    for channel in range(5):
        name = f"features.3_c{channel:04d}.png"
        assert_close(
            load_image(tmp_path / "resumed" / name, 1),
            load_image(tmp_path / "full" / name, 1),
            rtol=0,
            atol=0,
        )
