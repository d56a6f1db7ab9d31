"""`mine_folder`: the library call writes what `vizcnn mine` writes, resumes an interrupted
folder from a script, refuses a folder holding another run in one line, and runs under torchrun."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner

from folder_helpers import TIMESTAMPS, folder_contents
from mine_helpers import random_images, write_pngs
from vizcnn.cli.main import app
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.mining.streaming import MineConfig
from vizcnn.models.loading import LoadedModel, load_model
from vizcnn.runs import MineInterrupted, mine_folder
from vizcnn.runs.lock import LOCK_NAME

TINY = ["-m", "mine_helpers:tiny_miner", "--input-size", "32", "--mean", "0.5,0.5,0.5"]
TINY += ["--std", "0.25,0.25,0.25"]


def tiny() -> LoadedModel:
    """The model `TINY` names, loaded as the CLI loads it."""
    return load_model(
        "mine_helpers:tiny_miner", size=32, mean=[0.5] * 3, std=[0.25] * 3, device="cpu"
    )


def stable(manifest: dict[str, Any]) -> dict[str, Any]:
    """A manifest without what describes a run rather than its result."""
    block = {k: v for k, v in manifest["provenance"].items() if k not in {*TIMESTAMPS, "command"}}
    return {**manifest, "provenance": block}


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["mine", *args, *TINY, "--device", "cpu", "-q"])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    write_pngs(folder, random_images(14, seed=3))
    return folder


def test_cli_mine_equals_the_library_call(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = [str(data), "-l", "conv3", "--channels", "1,4,6", "-k", "4", "--batch", "5"]
    result = cli(*args, "--projections", "deconv", "--thumbnail", "16", "-o", str(out))
    assert result.exit_code == 0, result.output
    config = MineConfig("conv3", channels=(1, 4, 6), k=4)
    run = mine_folder(
        tiny(),
        str(data),
        tmp_path / "lib",
        config,
        projections="deconv",
        thumbnail=16,
        run=RunOptions(batch=5),
    )
    names = ["channel_0001.png", "channel_0004.png", "channel_0006.png", "sheet.png"]
    assert run.files == [*names, "manifest.json"]
    assert run.images_seen == 14 and run.resumed_from == 0 and run.is_main
    assert (tmp_path / "lib" / "checkpoint" / "rank0-of-1.pt").is_file()
    assert not (tmp_path / "lib" / LOCK_NAME).exists()
    assert folder_contents(out) == folder_contents(tmp_path / "lib")
    # the CLI's defaults are the library's: both folders record the same config
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["workers"] == RunOptions.workers == 0
    assert manifest["config"]["checkpoint_every"] == MineConfig.checkpoint_every


def test_a_script_resumes_an_interrupted_mine_folder(data: Path, tmp_path: Path) -> None:
    """SIGTERM after 6 of 14 images (the default intervals would not have saved yet): the
    library saves the state, says how to go on, and `resume=True` ends where an uninterrupted
    run ends."""
    config = MineConfig("act3", channels=(0, 1, 2), k=4)
    loaded = tiny()
    full = mine_folder(loaded, str(data), tmp_path / "full", config, run=RunOptions(batch=3))

    def stop_after_six(done: int, total: int, message: str) -> None:
        if done >= 6:  # what torchrun, schedulers and `kill` send
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "stopped"
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(MineInterrupted) as stopped:
        mine_folder(
            loaded, str(data), out, config, progress=stop_after_six, run=RunOptions(batch=3)
        )
    assert signal.getsignal(signal.SIGTERM) == handler  # restored
    assert isinstance(stopped.value, KeyboardInterrupt) and stopped.value.saved
    assert str(stopped.value) == (
        f"interrupted after 6 images; the state is saved in {out / 'checkpoint'}/: "
        "call mine_folder again with resume=True to continue"
    )
    assert not (out / "manifest.json").exists() and not (out / LOCK_NAME).exists()
    assert torch.load(out / "checkpoint" / "rank0-of-1.pt", weights_only=True)["position"] == 6
    with pytest.raises(VizError, match="holds an interrupted run; pass resume=True"):
        mine_folder(
            loaded, str(data), out, config, run=RunOptions(batch=3)
        )  # neither resume nor overwrite
    resumed = mine_folder(loaded, str(data), out, config, resume=True, run=RunOptions(batch=3))
    assert resumed.resumed_from == 6 and resumed.images_mined == 8 and resumed.notes == []
    assert resumed.files == full.files
    manifests = [json.loads((f / "manifest.json").read_text()) for f in (tmp_path / "full", out)]
    assert stable(manifests[1]) == stable(manifests[0])


def test_a_folder_holding_another_run_is_refused_naming_the_settings(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    loaded = tiny()
    config = MineConfig("conv3", channels=(0, 1, 2), k=3)
    mine_folder(loaded, str(data), out, config)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    other = MineConfig("conv3", channels=(0, 1, 2), k=4)
    with pytest.raises(VizError) as refused:
        mine_folder(loaded, str(data), out, other)
    message = str(refused.value)
    assert "already holds a finished run made with other settings (k 3 in the file, 4 now)" in (
        message
    )
    assert "pass overwrite=True to replace it" in message and "\n" not in message
    with pytest.raises(VizError, match=r"finished run with these settings .*overwrite=True"):
        mine_folder(loaded, str(data), out, config)
    with pytest.raises(VizError, match=r"thumbnail 64 in the file, 32 now"):
        mine_folder(loaded, str(data), out, config, thumbnail=32)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # untouched
    # the CLI says the same with its flags
    args = [str(data), "-l", "conv3", "--channels", "0:3", "-k", "4", "-o", str(out)]
    result = cli(*args)
    assert result.exit_code == 1 and "(k 3 in the file, 4 now)" in result.output
    assert "add --overwrite to replace it, or another -o folder" in result.output
    assert "=True" not in result.output
    # an interrupted run (only its checkpoint left) made otherwise: named, resume not offered
    (out / "manifest.json").unlink()
    with pytest.raises(VizError) as refused:
        mine_folder(loaded, str(data), out, other)
    assert (
        "holds an interrupted run made with other settings (MineConfig.k: 3 in the checkpoint, 4 now)"
        in (str(refused.value))
    )
    assert "pass overwrite=True to start over" in str(refused.value)
    result = cli(*args[:-4], "-k", "3", "-o", str(out))
    assert result.exit_code == 1, result.output
    assert (
        "holds an interrupted run; add --resume to continue it, or --overwrite to start over"
        in (result.output)
    )
    # overwrite starts over: the earlier run's files go, none is left to mix with the new one
    run = mine_folder(loaded, str(data), out, replace_channels(other, (2,)), overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([*run.files, "checkpoint"])
    assert run.files[0] == "channel_0002.png"
    with pytest.raises(VizError, match="resume=True .* or overwrite=True .*, not both"):
        mine_folder(loaded, str(data), out, other, resume=True, overwrite=True)


def replace_channels(config: MineConfig, channels: tuple[int, ...]) -> MineConfig:
    from dataclasses import replace

    return replace(config, channels=channels)


def test_a_failed_run_leaves_no_folder_and_channels_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_text("not an image")
    out = tmp_path / "out"
    with pytest.raises(VizError, match="no readable image among 1"):
        mine_folder(tiny(), str(bad), out, MineConfig("conv3"))
    assert not out.exists()
    with pytest.raises(VizError, match=r"channel 16 out of range for layer 'conv3'; valid: 0..15"):
        mine_folder(tiny(), "samples", out, MineConfig("conv3", channels=(0, 16)))
    # an ImageSource is recorded by its kind and fingerprint; every channel when None
    from vizcnn.data.datasets import TensorImages

    images = TensorImages(random_images(5, seed=1))
    run = mine_folder(tiny(), images, out, MineConfig("conv3", k=2))
    assert run.channels == tuple(range(16)) and run.config.channels == tuple(range(16))
    block = json.loads((out / "manifest.json").read_text())["provenance"]
    assert block["data"] == f"TensorImages:{images.fingerprint()}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    import torch.distributed as dist

    # the script does not join the process group: mine_folder does, and leaves it
    config = MineConfig("act3", channels=(0, 3, 5), k=4)
    run = mine_folder(tiny(), data, out, config, run=RunOptions(batch=2))
    assert not dist.is_initialized()
    assert run.is_main == (rank == 0) and (run.files != []) == (rank == 0)
    assert run.images_seen == 11


def test_two_torchrun_processes_write_the_single_process_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_pngs(data, random_images(11, seed=13))
    two = tmp_path / "two"
    mp.spawn(_rank, args=(2, _free_port(), str(data), str(two)), nprocs=2, join=True)
    config = MineConfig("act3", channels=(0, 3, 5), k=4)
    mine_folder(tiny(), str(data), tmp_path / "one", config, run=RunOptions(batch=2))
    checkpoints = sorted(p.name for p in (two / "checkpoint").iterdir())
    assert checkpoints == ["rank0-of-2.pt", "rank1-of-2.pt"]
    one, merged = (json.loads((f / "manifest.json").read_text()) for f in (tmp_path / "one", two))
    assert merged["channels"] == one["channels"] and merged["images_seen"] == 11
    assert not (two / LOCK_NAME).exists()
