"""`vizcnn mine` as a user meets it: resume checks, interruption, bad input, provenance."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import vizcnn.cli.mine as mine_cli
import vizcnn.runs.mine as mine_run
from mine_helpers import TinyMiner, huge_png, random_images, write_pngs
from vizcnn.cli.main import app
from vizcnn.io.imaging import read_png_metadata
from vizcnn.io.provenance import weights_digest
from vizcnn.io.resume import stored_provenance
from vizcnn.models.loading import freeze

TINY = ["-m", "mine_helpers:tiny_miner", "--input-size", "32", "--mean", "0.5,0.5,0.5"]
TINY += ["--std", "0.25,0.25,0.25"]
VOLATILE = ("command", "created", "seconds")  # provenance keys that describe a run, not a result


def invoke(*args: str):
    return CliRunner().invoke(
        app, ["mine", *args, *TINY, "--device", "cpu", "-q", "--workers", "0"]
    )


def run(*args: str) -> tuple[int, str]:
    result = invoke(*args)
    return result.exit_code, result.output


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_pngs(data, random_images(20, seed=5))
    return data


def stable(manifest: dict) -> dict:
    block = {k: v for k, v in manifest["provenance"].items() if k not in VOLATILE}
    return {**{k: v for k, v in manifest.items() if k not in VOLATILE}, "provenance": block}


def test_resume_with_changed_options_names_each_option(folder: Path, tmp_path: Path) -> None:
    """Every option, one by one, is in test_mining.py; here the CLI's flags reach the check."""
    out = tmp_path / "out"
    options = {"-l": "conv3", "--channels": "0:4", "-k": "3", "-o": str(out)}

    def with_(**changed: str) -> list[str]:
        merged = {
            **options,
            **{f"-{k}" if len(k) == 1 else f"--{k}": v for k, v in changed.items()},
        }
        return [str(folder), *(part for pair in merged.items() for part in pair)]

    base = with_()
    code, output = run(*base)
    assert code == 0, output
    for changed, named in (
        ({"k": "4"}, "-k: 3 in the checkpoint, 4 now"),
        ({"limit": "10"}, "the list of images"),
    ):
        code, output = run(*with_(**changed), "--resume")
        assert code == 1 and named in output, (changed, output)
        assert "start over with --overwrite instead of --resume" in output  # flags, not fields
        assert output.strip().count("\n") == 0
    # the untouched checkpoint still resumes to the same manifest
    first = json.loads((out / "manifest.json").read_text())
    code, output = run(*base, "--resume")
    assert code == 0 and "resumed after 20 images" in output, output
    assert stable(json.loads((out / "manifest.json").read_text())) == stable(first)


def test_resume_without_a_checkpoint_says_so(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(str(folder), "-l", "conv3", "--channels", "0:2", "--resume", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        f"no checkpoint found in {out / 'checkpoint'}/; starting from the beginning"
    )
    assert result.stdout.strip().count("\n") == 0 and "resumed" not in result.stdout


def test_sigterm_saves_and_resume_equals_a_full_run(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM after 6 of 20 images with the default intervals (20 batches, 60 s): the state
    is saved anyway, and --resume gives the manifest of an uninterrupted run. (Ctrl-C takes
    the same path: the CLI turns SIGTERM into KeyboardInterrupt.)"""
    args = [str(folder), "-l", "act3", "--channels", "0:3", "-k", "4", "--batch", "3"]
    code, output = run(*args, "-o", str(tmp_path / "full"))
    assert code == 0, output

    @contextmanager
    def stopping_bar(enabled: bool, unit: str = "step") -> Iterator:
        def progress(done: int, total: int, message: str) -> None:
            if done >= 6:  # SIGTERM is what torchrun, schedulers and `kill` send
                os.kill(os.getpid(), signal.SIGTERM)

        yield progress

    out = tmp_path / "stopped"
    handler = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(mine_cli, "progress_bar", stopping_bar)
        result = invoke(*args, "-o", str(out))
    assert signal.getsignal(signal.SIGTERM) == handler  # the CLI restores the handler
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == (
        f"interrupted after 6 images; the state is saved in {out / 'checkpoint'}/: "
        "run the same command with --resume to continue"
    )
    assert not (out / "manifest.json").exists()
    assert torch.load(out / "checkpoint" / "rank0-of-1.pt", weights_only=True)["position"] == 6
    code, output = run(*args, "-o", str(out), "--resume")
    assert code == 0 and "resumed after 6 images" in output, output
    full = json.loads((tmp_path / "full" / "manifest.json").read_text())
    resumed = json.loads((out / "manifest.json").read_text())
    assert stable(resumed) == stable(full)


def test_patch_option_errors_come_before_mining(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("mining started before the options were checked")

    monkeypatch.setattr(mine_run, "mine_topk", never)  # the library call mines
    out = tmp_path / "out"
    code, output = run(str(folder), "-l", "conv3", "--thumbnail", "4", "-o", str(out))
    assert code == 1 and "--thumbnail must be at least 8" in output
    assert not out.exists()


def test_bad_data_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("nope")
    (tmp_path / "bad" / "b.jpg").write_bytes(b"")
    code, output = run(str(tmp_path / "bad"), "-l", "conv3", "-o", str(out))
    assert code == 1 and "no readable image among 2" in output
    (tmp_path / "empty").mkdir()
    code, output = run(str(tmp_path / "empty"), "-l", "conv3", "-o", str(out))
    assert code == 1 and "no images in" in output
    assert not out.exists()


def test_a_single_image_or_sample_is_not_called_missing(tmp_path: Path) -> None:
    [image] = write_pngs(tmp_path, random_images(1))
    code, output = run(str(image), "-l", "conv3", "-o", str(tmp_path / "o"))
    assert code == 1 and "is a single image file; give a folder of images" in output, output
    code, output = run("sample:coffee", "-l", "conv3", "-o", str(tmp_path / "o"))
    assert code == 1 and "is one bundled photo; give 'samples'" in output, output
    assert "not found" not in output


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_float_options_refuse_inf_and_nan(tmp_path: Path, value: str) -> None:
    code, output = run("samples", "-l", "conv3", "--checkpoint-seconds", value, "-o", str(tmp_path))
    assert code == 2 and "not a finite number" in output, output


def test_unwritable_output_fails_first_in_one_line(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("mining started before the output was checked")

    monkeypatch.setattr(mine_run, "mine_topk", never)  # the library call mines
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("a file, not a folder")
    before = sorted(tmp_path.rglob("*"))
    code, output = run(str(folder), "-l", "conv3", "-o", str(blocker / "out"))
    assert code == 1 and output.strip().count("\n") == 0, output
    assert f"cannot write to '{blocker / 'out'}'" in output and "choose another -o" in output
    code, output = run(str(folder), "-l", "conv3", "-o", str(blocker))
    assert code == 1 and "it is a file, not a folder" in output
    assert sorted(tmp_path.rglob("*")) == before and blocker.read_text() == "a file, not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_folder(folder: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, output = run(str(folder), "-l", "conv3", "-o", str(locked / "out"))
        assert code == 1 and "permission denied; choose another -o" in output
    finally:
        locked.chmod(0o700)


def test_outputs_carry_the_provenance_block_and_skipped_huge_images(
    folder: Path, tmp_path: Path
) -> None:
    huge_png(folder / "zz_huge.png")
    out = tmp_path / "out"
    code, output = run(str(folder), "-l", "conv3", "--channels", "1,3", "-k", "2", "-o", str(out))
    assert code == 0, output
    assert "over 20 images (1 skipped, listed in manifest.json)" in output
    manifest = json.loads((out / "manifest.json").read_text())
    [skipped] = manifest["skipped"]
    assert skipped["image"].endswith("zz_huge.png")
    assert "14000x14000" in skipped["reason"] and "VIZCNN_MAX_PIXELS=196000000" in skipped["reason"]
    digest = weights_digest(freeze(TinyMiner()))
    block = manifest["provenance"]
    assert block["technique"] == "mine" and block["weights_digest"] == digest
    assert block["options"]["k"] == 2 and block["options"]["channels"] == [1, 3]
    assert block["device"] == "cpu" and block["dtype"] == "float32"
    assert block["versions"]["vizcnn"] and "command" in block
    assert block["data"] == str(folder) and block["seed"] == 0
    assert stored_provenance(out / "manifest.json") == block
    chunks = read_png_metadata(out / "channel_0003.png")
    stored = stored_provenance(out / "channel_0003.png")
    assert stored["weights_digest"] == digest and stored["technique"] == "mine"
    assert stored["options"] == block["options"] and chunks["channel"] == "3"
    assert stored_provenance(out / "sheet.png")["weights_digest"] == digest


def test_an_earlier_run_is_not_replaced_without_overwrite(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [str(folder), "-l", "conv3", "--channels", "0:2", "-k", "2", "-o", str(out)]
    code, output = run(*args)
    assert code == 0, output
    finished = (out / "manifest.json").read_bytes()
    code, output = run(*args)  # same folder, neither --resume nor --overwrite
    assert code == 1 and "already holds a finished run" in output and "--overwrite" in output
    assert (out / "manifest.json").read_bytes() == finished  # untouched
    (out / "manifest.json").unlink()  # as if interrupted: only the checkpoint is left
    code, output = run(*args)
    assert code == 1 and "holds an interrupted run; add --resume" in output
    code, output = run(*args, "--resume", "--overwrite")
    assert code == 2 and "not both" in output
    code, output = run(*args, "--overwrite")  # starts over, to the same result
    assert code == 0, output
    assert stable(json.loads((out / "manifest.json").read_bytes())) == stable(json.loads(finished))
