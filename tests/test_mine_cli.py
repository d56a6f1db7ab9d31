"""`vizcnn mine` through click: files, manifest, bad data, duplicates, resume after a crash."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mine_helpers import random_images, write_pngs
from vizcnn.cli.main import app
from vizcnn.io.imaging import read_png_metadata

TINY = [
    "-m",
    "mine_helpers:tiny_miner",
    "--input-size",
    "32",
    "--mean",
    "0.5,0.5,0.5",
    "--std",
    "0.25,0.25,0.25",
]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["mine", *args, *TINY, "--device", "cpu", "-q", "--workers", "0"]
    )
    return result.exit_code, result.output


def hits_by_channel(out: Path) -> dict[int, list[tuple[str, float]]]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        row["channel"]: [(h["image"], h["value"]) for h in row["hits"]]
        for row in manifest["channels"]
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_pngs(data / "a", random_images(7, seed=1), "x")
    write_pngs(data / "b", random_images(6, seed=2), "y")
    return data


def test_mine_writes_grids_sheet_and_manifest(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = run(
        str(folder),
        "-l",
        "conv3",
        "--channels",
        "0:4",
        "-k",
        "9",
        "-o",
        str(out),
        "--thumbnail",
        "16",
    )
    assert code == 0, output
    assert output.strip().count("\n") == 0 and "over 13 images" in output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [row["channel"] for row in manifest["channels"]] == [0, 1, 2, 3]
    assert manifest["images_seen"] == 13 and manifest["skipped"] == []
    field = manifest["field"]
    for row in manifest["channels"]:
        assert (out / row["tile"]).is_file()
        assert len(row["hits"]) == 9
        values = [hit["value"] for hit in row["hits"]]
        assert values == sorted(values, reverse=True)
        for hit in row["hits"]:
            y, x = hit["position"]
            top = field["offset"][0] + y * field["stride"][0]
            left = field["offset"][1] + x * field["stride"][1]
            assert hit["box"] == [top, left, top + field["size"][0], left + field["size"][1]]
            assert Path(hit["image"]).is_file()
    assert (out / "sheet.png").is_file()
    assert read_png_metadata(out / "channel_0002.png")["channel"] == "2"


def test_txt_list_corrupt_missing_and_duplicate_files(folder: Path, tmp_path: Path) -> None:
    good = sorted(folder.rglob("*.png"))
    (folder / "truncated.png").write_bytes(good[0].read_bytes()[:200])
    (folder / "text.jpg").write_text("not an image at all")
    (folder / "empty.png").write_bytes(b"")
    shutil.copy(good[3], folder / "copy_of_x003.png")  # same content, another name
    listing = tmp_path / "list.txt"
    names = [str(p.relative_to(tmp_path)) for p in sorted(folder.rglob("*.png"))]
    listing.write_text(
        "\n".join([*names, "data/text.jpg", "data/missing.png", "# a comment"]) + "\n"
    )
    out = tmp_path / "out"
    code, output = run(
        str(listing), "-l", "conv3", "--all", "-k", "20", "-o", str(out), "--batch", "4"
    )
    assert code == 0, output
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = {Path(item["image"]).name: item["reason"] for item in manifest["skipped"]}
    assert set(skipped) == {"truncated.png", "text.jpg", "empty.png", "missing.png"}
    assert "not found" in skipped["missing.png"]
    assert manifest["images_seen"] == 14
    for channel, hits in hits_by_channel(out).items():
        images = [Path(name).name for name, _ in hits]
        assert len(hits) == 13, channel  # 14 readable files, one a duplicate
        assert not {"x003.png", "copy_of_x003.png"} <= set(images), channel


def test_empty_data_and_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, output = run(str(tmp_path / "empty"), "-l", "conv3", "-o", str(tmp_path / "o"))
    assert code == 1 and "no images in" in output and output.strip().count("\n") == 0
    code, output = run(str(tmp_path / "nowhere"), "-l", "conv3", "-o", str(tmp_path / "o"))
    assert code == 1 and "not found" in output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("nope")
    code, output = run(str(tmp_path / "bad"), "-l", "conv3", "-o", str(tmp_path / "o"))
    assert code == 1 and "no readable image" in output
    code, output = run("samples", "-l", "conv3", "--channels", "99", "-o", str(tmp_path / "o"))
    assert code == 1 and "out of range" in output
    code, output = run(
        "samples", "-l", "conv3", "--all", "--channels", "1", "-o", str(tmp_path / "o")
    )
    assert code == 2


class Crash(Exception):
    pass


def test_resume_after_crash_gives_the_same_manifest(
    folder: Path, tmp_path: Path, monkeypatch
) -> None:
    args = [
        str(folder),
        "-l",
        "act3",
        "--all",
        "-k",
        "5",
        "--batch",
        "2",
        "--checkpoint-every",
        "2",
    ]
    code, output = run(*args, "-o", str(tmp_path / "full"))
    assert code == 0, output

    import vizcnn.cli.mine as mine_cli

    @contextmanager
    def crashing_bar(enabled: bool, unit: str = "step") -> Iterator:
        def progress(done: int, total: int, message: str) -> None:
            if done >= 9:
                raise Crash

        yield progress

    out = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(mine_cli, "progress_bar", crashing_bar)
        result = CliRunner().invoke(
            app, ["mine", *args, *TINY, "--device", "cpu", "--workers", "0", "-o", str(out)]
        )
    assert isinstance(result.exception, Crash)
    assert not (out / "manifest.json").exists()
    state = torch.load(out / "checkpoint" / "rank0-of-1.pt", weights_only=True)
    assert state["position"] == 10  # saved when the exception stopped the run
    code, output = run(*args, "-o", str(out), "--resume")
    assert code == 0, output
    full = json.loads((tmp_path / "full" / "manifest.json").read_text())
    resumed = json.loads((out / "manifest.json").read_text())
    for key in ("command", "created", "seconds"):  # describe the run, not the result
        del full["provenance"][key], resumed["provenance"][key]
    assert resumed == full


def test_samples_are_seeded_crops(tmp_path: Path) -> None:
    from vizcnn.data.datasets import open_dataset
    from vizcnn.data.samples import sample_names

    one = open_dataset("samples", 3, (32, 32), crops_per_image=3, seed=5)
    two = open_dataset("samples", 3, (32, 32), crops_per_image=3, seed=5)
    other = open_dataset("samples", 3, (32, 32), crops_per_image=3, seed=6)
    assert one.names == two.names == other.names
    assert one.fingerprint() == two.fingerprint() != other.fingerprint()
    assert not torch.equal(one[20]["image"], other[20]["image"])
    assert len(one) == 3 * len(sample_names())
    assert one.names[0].startswith("sample:") and "#" not in one.names[0] and "#" in one.names[-1]
    torch.testing.assert_close(one[20]["image"], two[20]["image"])
    assert one[20]["image"].shape == (3, 32, 32)
    assert len(open_dataset("samples", 1, (16, 16), limit=5)) == 5


@pytest.mark.slow
def test_default_model_on_samples_with_guided_projections(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["mine", "samples", "--limit", "16", "--channels", "0:2", "--projections", "guided"]
    result = CliRunner().invoke(
        app, [*args, "--batch", "8", "--workers", "0", "--device", "cpu", "-q", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["provenance"]["model"] == "efficientnet_lite0" and manifest["layer"] == "_blocks.6"
    )
    assert manifest["field"]["size"] == [115, 115] and manifest["field"]["method"].startswith(
        "graph"
    )
    assert [len(row["hits"]) for row in manifest["channels"]] == [9, 9]
    assert all(
        hit["image"].startswith("sample:") for row in manifest["channels"] for hit in row["hits"]
    )
    assert (out / "channel_0001.png").is_file() and (out / "sheet.png").is_file()


@pytest.mark.slow
def test_lite0_projection_uses_relu_rule_and_restores_relu6(lite0) -> None:
    from torch import nn

    from conftest import assert_same_state, model_state
    from vizcnn.data.datasets import preprocess
    from vizcnn.data.samples import sample_image
    from vizcnn.mining.patches import project

    image = preprocess(sample_image("coffee"), lite0.input_size)[None]
    before = model_state(lite0.module)
    units = torch.tensor([[3, 6, 6]])
    deconv = project(lite0, image, "_blocks.4", units, "deconv")
    guided = project(lite0, image, "_blocks.4", units, "guided")
    assert_same_state(before, model_state(lite0.module))
    assert sum(isinstance(m, nn.ReLU6) for m in lite0.module.modules()) == 17
    assert deconv.abs().sum() > 0 and not torch.allclose(deconv, guided)


def test_resume_with_another_number_of_processes_is_refused(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "rank0-of-2.pt").write_bytes(b"from a two-process run")
    code, output = run(str(folder), "-l", "act3", "--all", "--resume", "-o", str(out))
    assert code == 1 and "rank0-of-2.pt" in output and "same number of processes" in output
    assert output.strip().count("\n") == 0
