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
from vizcnn.core.run_options import RunOptions
from vizcnn.hooks import forward_to
from vizcnn.io.imaging import load_image, read_png_metadata
from vizcnn.models.loading import load_model
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.rendering import render

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
    block = manifest["provenance"]
    assert block["model"] == "lenet5_digits" and block["options"]["steps"] == 6
    assert block["technique"] == "render" and block["seed"] == 0 and block["weights_digest"]
    assert block["options"]["param"] == "fft" and block["options"]["lr"] == 0.05
    meta = read_png_metadata(tmp_path / "features.3_c0007.png")
    stored = json.loads(meta["provenance"])
    assert meta["unit"] == "features.3:7" and stored["options"]["steps"] == 6
    assert stored["options"]["unit"] == "features.3:7" and stored["options"]["position"] == 1
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
    assert code == 0, out  # bf16 on this CPU, or float32 with a note (tests/test_precision.py)


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
        (["--lr", "1e308", "-c", "0"], "lower --lr, or check the objective"),
        (["-l", "features.3:0-99"], "layer 'features.3': channel 16 out of range"),
        (["-l", "features.3@x"], "bad weight"),
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
        "--image-size",
        "--deterministic",
        "--overwrite",
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


@pytest.mark.parametrize("option", ["--lr", "--diversity-weight"])
@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_float_options_reject_inf_and_nan(tmp_path: Path, option: str, value: str) -> None:
    code, out = run(option, value, "-o", str(tmp_path))
    assert code == 2 and "is not a finite number" in out
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_library_render_equals_the_cli_pictures(tmp_path: Path) -> None:
    """Oracle: render(model, units, config, seed=s, run=...) gives the CLI's PNGs, up to 8-bit
    rounding."""
    args = ["-l", "features.3:0:3", "--batch", "2", "--seed", "5"]
    code, out = run(*args, "-o", str(tmp_path))
    assert code == 0, out
    loaded = load_model("lenet5_digits")
    config = RenderConfig(steps=6)
    result = render(loaded, ["features.3:0:3"], config, seed=5, run=RunOptions(batch=2))
    assert result.units == ["features.3:0", "features.3:1", "features.3:2"]
    for row in range(3):  # unit 2 sits in the second chunk: its own seed, in both
        saved = load_image(tmp_path / f"features.3_c{row:04d}.png", 1)
        assert_close(saved, result.images[row], rtol=0, atol=0.5 / 255 + 1e-6)


def test_the_grammar_selects_the_same_channels_as_the_options(tmp_path: Path) -> None:
    for name, args in {
        "spec": ["-l", "features.3:2-4"],
        "slice": ["-l", "features.3:2:5"],
        "option": ["-l", "features.3", "--channels", "2:5"],
    }.items():
        assert run(*args, "-o", str(tmp_path / name))[0] == 0
        units = json.loads((tmp_path / name / "manifest.json").read_text())["units"]
        assert [u["unit"] for u in units] == ["features.3:2", "features.3:3", "features.3:4"]
    code, out = run("-l", "features.3:2", "-c", "3", "-o", str(tmp_path / "both"))
    assert code == 2 and "one way" in out


def test_resume_after_changed_options_refuses_or_overwrites(tmp_path: Path) -> None:
    assert run("--channels", "0:2", "-o", str(tmp_path))[0] == 0
    before = (tmp_path / "features.3_c0000.png").read_bytes()
    code, out = run("--channels", "0:2", "--steps", "7", "-o", str(tmp_path))
    assert code == 1 and out.strip().count("\n") == 0, out
    assert "features.3_c0000.png was made with other settings" in out
    assert "steps 6 in the file, 7 now" in out and "--overwrite" in out
    assert (tmp_path / "features.3_c0000.png").read_bytes() == before  # nothing touched
    code, out = run("--channels", "0:2", "--seed", "1", "-o", str(tmp_path))
    assert code == 1 and "seed 0 in the file, 1 now" in out
    code, out = run("--channels", "0:2", "--steps", "7", "--overwrite", "-o", str(tmp_path))
    assert code == 0 and "rendered 2 unit(s)" in out and "2 re-rendered" in out, out
    # oracle: the overwritten pictures are those of a fresh run with the new settings
    assert run("--channels", "0:2", "--steps", "7", "-o", str(tmp_path / "fresh"))[0] == 0
    for channel in range(2):
        name = f"features.3_c{channel:04d}.png"
        assert torch.equal(load_image(tmp_path / name, 1), load_image(tmp_path / "fresh" / name, 1))
    # same settings again: nothing to do, and no stray empty progress line
    code, out = run("--channels", "0:2", "--steps", "7", "-o", str(tmp_path))
    assert code == 0 and "rendered 0 unit(s)" in out and "2 already done" in out


@pytest.mark.parametrize("param", ["maco", "fft", "pixel"])
def test_param_choices_render_and_match_the_library(tmp_path: Path, param: str) -> None:
    code, out = run(
        "-l", "features.3", "-c", "2", "--param", param, "--crops", "2", "--lr-schedule",
        "cosine", "-o", str(tmp_path),
    )  # fmt: skip
    assert code == 0, out
    meta = read_png_metadata(tmp_path / "features.3_c0002.png")
    options = json.loads(meta["provenance"])["options"]
    assert (options["param"], options["crops"], options["lr_schedule"]) == (param, 2, "cosine")
    loaded = load_model("lenet5_digits")
    config = RenderConfig(steps=6, param=param, crops=2, lr_schedule="cosine")
    expected = render(loaded, ["features.3:2"], config).images[0]
    assert_close(load_image(tmp_path / "features.3_c0002.png", 1), expected, atol=1 / 255, rtol=0)


@pytest.mark.parametrize(
    ("args", "param", "name"),
    [
        (["--class", "3", "--class", "5"], "maco", "class_0003_3.png"),
        (["-l", "features.3", "-c", "1"], "fft", "features.3_c0001.png"),
    ],
)
def test_auto_param_is_recorded_resolved_and_renders_as_that_param(
    tmp_path: Path, args: list[str], param: str, name: str
) -> None:
    code, out = run(*args, "-o", str(tmp_path / "auto"))  # --param auto is the default
    assert code == 0, out
    options = json.loads(read_png_metadata(tmp_path / "auto" / name)["provenance"])["options"]
    assert options["param"] == param
    code, out = run(*args, "--param", param, "-o", str(tmp_path / "explicit"))
    assert code == 0, out
    assert torch.equal(
        load_image(tmp_path / "auto" / name, 1), load_image(tmp_path / "explicit" / name, 1)
    )
    # a folder rendered with the explicit param resumes under auto: the same settings
    code, out = run(*args, "-o", str(tmp_path / "explicit"))
    assert code == 0 and "rendered 0 unit(s)" in out, out


def test_param_is_validated_with_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*BASE, "--param", "lucid", "-o", str(tmp_path)])
    assert result.exit_code == 2
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error")]
    assert "'lucid' is not one of 'auto', 'maco', 'fft', 'pixel'" in line
    code, out = run("-c", "0", "--crops", "0", "-o", str(tmp_path))
    assert code == 1 and "crops must be at least 1" in out and out.strip().count("\n") == 0


@pytest.mark.parametrize("native", [True, False])
def test_provenance_records_the_precision_actually_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """Default (auto) follows the CPU's bf16 capability; --amp / --no-amp force it; resume
    compares the precision used, so an auto run continues an --amp run's folder."""
    monkeypatch.setattr("vizcnn.core.precision.cpu_bf16_supported", lambda: native)
    used = "bfloat16" if native else "float32"
    for flags, expected in (([], used), (["--no-amp"], "float32"), (["--amp"], used)):
        out = tmp_path / ("x" + "".join(flags))
        code, text = run("-l", "features.3", "-c", "1", *flags, "-o", str(out))
        assert code == 0, text
        assert ("no native bfloat16" in text) == (flags == ["--amp"] and not native)
        block = json.loads((out / "manifest.json").read_text())["provenance"]
        assert block["options"]["precision"] == expected and "amp" not in block["options"]
        stored = json.loads(read_png_metadata(out / "features.3_c0001.png")["provenance"])
        assert stored["options"]["precision"] == expected
    code, text = run("-l", "features.3", "-c", "1", "--amp", "-o", str(tmp_path / "x"))
    assert code == 0 and "(1 already done)" in text, text  # auto and --amp: the same pictures
    code, text = run("-l", "features.3", "-c", "1", "-o", str(tmp_path / "x--no-amp"))
    assert (code == 0) != native, text  # bf16 now, float32 then: refused unless --overwrite


def test_a_class_named_twice_is_one_unit_and_a_rerun_skips(tmp_path: Path) -> None:
    code, out = run("--class", "3", "--class", "3", "-o", str(tmp_path))
    assert code == 0 and "rendered 1 unit(s)" in out, out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [entry["file"] for entry in manifest["units"]] == ["class_0003_3.png"]
    code, out = run("--class", "3", "--class", "3", "-o", str(tmp_path))
    assert code == 0 and "rendered 0 unit(s)" in out and "1 already done" in out, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--class", "3", "-c", "2"], "-c select layer units"),
        (["--class", "3", "-l", "features.3:1"], "-l select layer units"),
        (["--class", "3", "--position", "1,1"], "--position select layer units"),
        (["--class", "3", "--objective", "channel"], "drop it or --objective channel"),
    ],
)
def test_class_with_layer_options_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, [*BASE, *args, "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "x").exists()


def test_changing_the_recipe_names_param_among_the_differences(tmp_path: Path) -> None:
    assert run("--class", "3", "-o", str(tmp_path))[0] == 0  # auto: maco, lr 0.2, cosine
    code, out = run("--class", "3", "--param", "fft", "-o", str(tmp_path))
    assert code == 1 and "param maco in the file, fft now" in out, out
    assert "lr 0.2 in the file, 0.05 now" in out and out.strip().count("\n") == 0
