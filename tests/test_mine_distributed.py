"""Two gloo processes mining shards merge to exactly the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gloo_helpers import free_port, join_cpu_group

from mine_helpers import loaded_tiny, random_images, write_pngs
from vizcnn.core.distributed import Shard, shutdown
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.mining.streaming import MineConfig, mine_topk

CONFIG = MineConfig("act3", k=6)


def dataset() -> TensorImages:
    images = random_images(23, seed=12)
    images[5] = images[2]  # a duplicate pair split across the two ranks (ids 2 and 5)
    images[9] = images[2]
    return TensorImages(images)


def worker(rank: int, world: int, port: int, out: str) -> None:
    join_cpu_group(rank, world, port)
    try:
        assert dist.get_backend() == "gloo"
        seen: list[int] = []
        top = mine_topk(
            loaded_tiny(),
            dataset(),
            CONFIG,
            progress=lambda d, t, m: seen.append(t),
            run=RunOptions(batch=4),
        )
        assert seen[-1] == len(Shard(rank, world).indices(23))  # this rank did its shard only
        torch.save(
            {
                "values": top.values,
                "ids": top.image_ids,
                "positions": top.positions,
                "seen": top.images_seen,
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        shutdown()


def test_two_gloo_processes_equal_one_process(tmp_path: Path) -> None:
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    single = mine_topk(loaded_tiny(), dataset(), CONFIG, run=RunOptions(batch=4))
    for rank in range(2):  # every rank holds the merged result
        merged = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert merged["seen"] == single.images_seen == 23
        torch.testing.assert_close(merged["ids"], single.image_ids, rtol=0, atol=0)
        torch.testing.assert_close(merged["positions"], single.positions, rtol=0, atol=0)
        torch.testing.assert_close(merged["values"], single.values, rtol=0, atol=0, equal_nan=True)
    assert not ((single.image_ids == 5) | (single.image_ids == 9)).any()  # duplicates of image 2


def test_shards_partition_the_data() -> None:
    shards = [set(Shard(rank, 3).indices(10)) for rank in range(3)]
    assert set().union(*shards) == set(range(10)) and sum(len(s) for s in shards) == 10


@pytest.mark.slow
def test_torchrun_cli_equals_single_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_pngs(data, random_images(11, seed=13))
    here = Path(__file__).parent
    args = [
        "mine", str(data), "-m", "mine_helpers:tiny_miner", "--input-size", "32", "-l", "act3", "--all",
        "-k", "4", "--batch", "3", "--workers", "0", "--device", "cpu", "-q",
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
    ]
    cli = ["-c", "from vizcnn.cli.main import main; main()"]
    ran = subprocess.run(
        [*launcher, "--no-python", sys.executable, *cli, *args, "-o", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    one = subprocess.run(
        [sys.executable, *cli, *args, "-o", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    manifests = [
        json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("one", "two")
    ]
    assert manifests[0]["channels"] == manifests[1]["channels"]
    assert manifests[0]["images_seen"] == manifests[1]["images_seen"] == 11
