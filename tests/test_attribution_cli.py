"""`vizcnn attribute` through click's CliRunner on the bundled 1-channel LeNet (fast)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from folder_helpers import folder_contents
from vizcnn.attribution import METHODS, attribute, make_methods
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import preprocess
from vizcnn.data.samples import sample_image
from vizcnn.models.loading import load_model
from vizcnn.runs import DeletionConfig, SanityConfig, attribute_folder
from vizcnn.runs.lock import LOCK_NAME

FAST = ["-m", "lenet5_digits", "--ig-steps", "4", "--smoothgrad-samples", "2", "-q"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["attribute", *args])
    return result.exit_code, result.output


def test_all_methods_files_and_maps_equal_the_library(tmp_path: Path) -> None:
    code, out = run("sample:coffee", "sample:camera", *FAST, "--all", "--deletion",
                    "--deletion-steps", "4", "--target", "3", "-o", str(tmp_path))  # fmt: skip
    assert code == 0, out
    assert f"2 image(s) x {len(METHODS)} method(s)" in out.splitlines()[-1]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["camera.png", "camera.pt", "coffee.png", "coffee.pt",
                     "deletion.json", "deletion.png", "manifest.json"]  # fmt: skip
    loaded = load_model("lenet5_digits")
    image = preprocess(sample_image("coffee", 1), loaded.input_size)[None]
    methods = make_methods(loaded, list(METHODS), steps=4, samples=2)
    expected = attribute(loaded, image, methods, targets=3).maps
    saved = torch.load(tmp_path / "coffee.pt")
    assert list(saved) == list(METHODS)
    for name in METHODS:
        if name != "smoothgrad":  # its noise depends on the batch the image was in
            torch.testing.assert_close(saved[name], expected[name][0], msg=name)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["provenance"]["technique"] == "attribute"
    assert manifest["provenance"]["weights_digest"]
    assert [entry["target"] for entry in manifest["images"]] == [3, 3]
    assert set(manifest["deletion"]["areas"]) == set(METHODS)


def test_folder_of_gray_and_rgba_images_and_sanity(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("L", (40, 40), 120).save(photos / "gray.png")
    rgba = Image.new("RGBA", (40, 30), (10, 200, 30, 128))
    rgba.save(photos / "clear.png")
    out_dir = tmp_path / "out"
    code, out = run(str(photos), *FAST, "--method", "saliency", "--sanity",
                    "--sanity-stages", "2", "-o", str(out_dir))  # fmt: skip
    assert code == 0, out
    sanity = json.loads((out_dir / "sanity.json").read_text())
    assert len(sanity["stages"]) == 2 and "saliency" in sanity["spearman"]
    assert (out_dir / "clear.pt").is_file() and (out_dir / "gray.pt").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sample:coffee", "--target", "sevn"], 1, "unknown class 'sevn'"),
        (["sample:cofee"], 1, "unknown sample 'cofee'"),
        (["missing.png"], 1, "not found"),
        (["sample:coffee", "--layer", "features.33"], 1, "features.3"),
        (["sample:coffee", "--method", "gradcan"], 2, "gradcan"),
        (["sample:coffee", "--batch", "0"], 1, "batch"),
    ],
)
def test_errors_are_one_line_and_come_before_any_work(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    out_dir = tmp_path / "out"
    got, out = run(*args, *FAST, "-o", str(out_dir))
    assert got == code, out
    assert message in out
    if code == 1:
        assert out.strip().count("\n") == 0
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_help_lists_samples_and_examples() -> None:
    out = CliRunner().invoke(app, ["attribute", "--help"]).output
    assert "sample:coffee" in out and "chelsea" in out and "--sanity" in out


def test_guided_equal_to_saliency_is_a_warning_line_and_in_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "silunet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softmax2d(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(
            app,
            ["attribute", "sample:coffee", "sample:camera", "-m", "silunet:build",
             "--input-size", "16", "--method", "saliency", "--method", "guided",
             "--batch", "1", "-q", "-o", "out"],
        )  # fmt: skip
    finally:
        sys.modules.pop("silunet", None)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1  # one warning for both batches of one image
    assert lines[0].startswith("warning: guided equals saliency on every image (")
    assert "Softmax2d" in lines[0]  # no activation the rules act on
    assert "2 image(s) x 2 method(s)" in result.stdout.splitlines()[-1]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["warnings"] == [
        {
            "message": lines[0].removeprefix("warning: "),
            "methods": ["guided", "saliency"],
            "images": ["coffee", "camera"],
        }
    ]


# --- the command is one library call ---------------------------------------------------------


def test_cli_folder_equals_the_library_call(tmp_path: Path) -> None:
    args = ["sample:coffee", "sample:camera", "sample:coffee", "-m", "lenet5_digits",
            "--method", "smoothgrad", "--method", "gradcam", "--method", "occlusion",
            "--layer", "features.0", "--smoothgrad-samples", "3", "--occlusion-window", "7",
            "--baseline", "0.25", "--target", "3", "--batch", "2", "--seed", "5",
            "--deletion", "--deletion-steps", "3", "--sanity", "--sanity-stages", "2", "-q"]  # fmt: skip
    code, out = run(*args, "-o", str(tmp_path / "cli"))
    assert code == 0, out
    loaded = load_model("lenet5_digits", device="cpu")
    methods = make_methods(loaded, ["smoothgrad", "gradcam", "occlusion"], layer="features.0",
                           samples=3, window=7, baseline=0.25, seed=5)  # fmt: skip
    library = attribute_folder(
        loaded,
        ["sample:coffee", "sample:camera", "sample:coffee"],
        tmp_path / "lib",
        methods,
        targets="3",
        deletion=DeletionConfig(steps=3, baseline=0.25),
        sanity=SanityConfig(stages=2),
        seed=5,
        run=RunOptions(batch=2),
    )
    assert library.names == ["coffee", "camera", "coffee_2"] and library.targets == [3, 3, 3]
    assert library.deletion is not None and set(library.deletion) == set(library.methods)
    assert library.sanity is not None and len(library.sanity.stages) == 2
    assert library.deletion_table() in out and library.sanity.table() in out
    assert folder_contents(tmp_path / "cli") == folder_contents(tmp_path / "lib")


def test_library_folder_is_kept_refused_or_redone(tmp_path: Path) -> None:
    loaded = load_model("lenet5_digits", device="cpu")
    images = ["sample:coffee", "sample:camera"]
    first = attribute_folder(loaded, images, tmp_path, ["saliency", "gradcam"], targets=[1, 7])
    assert first.targets == [1, 7] and not first.skipped
    before = (tmp_path / "coffee.pt").read_bytes()
    again = attribute_folder(loaded, images, tmp_path, ["saliency", "gradcam"], targets=[1, 7])
    assert again.skipped and again.targets == [1, 7] and again.names == first.names
    assert (tmp_path / "coffee.pt").read_bytes() == before
    with pytest.raises(
        VizError, match=r"made with other settings \(target \[1, 7\] in the file, 2 now\)"
    ):
        attribute_folder(loaded, images, tmp_path, ["saliency", "gradcam"], targets=2)
    redone = attribute_folder(loaded, images, tmp_path, "saliency", targets=2, overwrite=True)
    assert not redone.skipped and redone.targets == [2, 2] and redone.methods == ["saliency"]
    assert not (tmp_path / LOCK_NAME).exists()


# --- the CAM family, --method all, one --target per image -------------------------------------


def test_repeatable_cam_methods_and_a_target_per_image_equal_the_library(tmp_path: Path) -> None:
    code, out = run("sample:coffee", "sample:camera", *FAST, "--method", "gradcam++",
                    "--method", "layercam", "--method", "scorecam", "--target", "3",
                    "--target", "7", "-o", str(tmp_path))  # fmt: skip
    assert code == 0, out
    assert "2 image(s) x 3 method(s)" in out.splitlines()[-1]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [entry["target"] for entry in manifest["images"]] == [3, 7]
    loaded = load_model("lenet5_digits")
    for name, target in (("coffee", 3), ("camera", 7)):  # oracle: each image alone, its class
        image = preprocess(sample_image(name, 1), loaded.input_size)[None]
        expected = attribute(loaded, image, ["gradcam++", "layercam", "scorecam"], targets=target)
        saved = torch.load(tmp_path / f"{name}.pt")
        assert list(saved) == ["gradcam++", "layercam", "scorecam"]
        for method, maps in expected.maps.items():
            torch.testing.assert_close(saved[method], maps[0], msg=method)


def test_method_all_runs_every_method_and_help_lists_them(tmp_path: Path) -> None:
    code, out = run("sample:coffee", *FAST, "--method", "all", "--target", "2",
                    "-o", str(tmp_path))  # fmt: skip
    assert code == 0, out
    assert list(torch.load(tmp_path / "coffee.pt")) == list(METHODS)
    help_text = " ".join(CliRunner().invoke(app, ["attribute", "--help"]).output.split())
    for name in METHODS:
        assert name in help_text, name


@pytest.mark.parametrize("count", [2, 4])
def test_a_target_count_neither_one_nor_the_images_is_a_one_line_error(
    tmp_path: Path, count: int
) -> None:
    targets = [arg for i in range(count) for arg in ("--target", str(i))]
    out_dir = tmp_path / "out"
    code, out = run("sample:coffee", "sample:camera", "sample:chelsea", *FAST, *targets,
                    "-o", str(out_dir))  # fmt: skip
    assert code == 1 and out.strip().count("\n") == 0, out
    assert f"got {count} --target values for 3 images; give one per image, or one for all" in out
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_sanity_check_of_cam_methods(tmp_path: Path) -> None:
    code, out = run("sample:coffee", *FAST, "--method", "hirescam", "--method", "ablationcam",
                    "--method", "fullgrad", "--sanity", "--sanity-stages", "2",
                    "-o", str(tmp_path))  # fmt: skip
    assert code == 0, out
    sanity = json.loads((tmp_path / "sanity.json").read_text())
    assert set(sanity["spearman"]) == {"hirescam", "ablationcam", "fullgrad"}
    assert all(len(values) == 2 for values in sanity["spearman"].values())


def test_method_all_skips_with_a_note_what_the_model_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gnnet.py").write_text(
        "import torch.nn as nn\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(),\n"
        "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))\n"
    )
    monkeypatch.chdir(tmp_path)
    base = ["attribute", "sample:coffee", "-m", "gnnet:build", "--input-size", "16",
            "--ig-steps", "2", "--smoothgrad-samples", "2", "-q"]  # fmt: skip
    try:
        every = CliRunner().invoke(app, [*base, "--method", "all", "-o", "all"])
        alone = CliRunner().invoke(app, [*base, "--method", "fullgrad", "-o", "alone"])
    finally:
        sys.modules.pop("gnnet", None)
    assert every.exit_code == 0, every.output
    assert "note: fullgrad skipped: FullGrad sums the bias-gradients" in every.stderr
    assert list(torch.load(tmp_path / "all" / "coffee.pt")) == [
        m for m in METHODS if m != "fullgrad"
    ]
    assert alone.exit_code == 1 and alone.output.strip().count("\n") == 0
    assert "biased GroupNorm layers (1)" in alone.output
