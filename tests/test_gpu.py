"""Smoke tests of every technique on CUDA: amp, channels-last, projections, capture, NCCL.

Skipped without a GPU (`-m gpu` selects them). Where a CPU run of the same thing is a fair
oracle (mining, patches, projections, capture), the CUDA result is compared with it; TF32 is
switched off for those comparisons so that only ordinary float32 rounding differs.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision
from torch import nn

from conftest import assert_same_state, model_state
from vizcnn.core.devices import make_generator
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.deepdream.dreaming import DreamConfig, dream
from vizcnn.hooks import capture
from vizcnn.mining.patches import mine_patches, project
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.models.base import LoadedModel, describe
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.rendering import render

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = torch.device("cuda")


@pytest.fixture
def no_tf32() -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def resnet(device: torch.device | str = "cpu") -> LoadedModel:
    torch.manual_seed(0)  # weights only
    net = torchvision.models.resnet18(weights=None).eval().to(device)
    return describe(net, input_size=64, name="resnet18")


def googlenet(device: torch.device | str = "cpu") -> LoadedModel:
    torch.manual_seed(0)  # weights only
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    return describe(net.eval().to(device), input_size=64, name="googlenet")


def images(count: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_render_amp_channels_last() -> None:
    loaded = resnet(CUDA)
    before = model_state(loaded.module)
    config = RenderConfig(steps=8, size=64)
    result = render(
        loaded,
        ["layer3:0", "layer3:5"],
        config,
        seed=make_generator(0, CUDA),
        run=RunOptions(batch=2, amp=True, channels_last=True, check_every=4),
    )
    assert result.images.shape == (2, 3, 64, 64) and result.images.device.type == "cpu"
    assert torch.isfinite(result.images).all() and torch.isfinite(result.values).all()
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    assert_same_state(before, model_state(loaded.module))


def test_dream_amp() -> None:
    loaded = resnet(CUDA)
    image = images(1, 96)[0].to(CUDA)
    before = model_state(loaded.module)
    config = DreamConfig(layers=("layer2",), octaves=2, steps=3, jitter=4)
    out = dream(loaded, image, config, seed=make_generator(0, CUDA), run=RunOptions(amp=True))
    assert out.shape == image.shape and out.device.type == CUDA.type
    assert torch.isfinite(out).all() and float(out.min()) >= 0 and float(out.max()) <= 1
    assert (out - image).abs().max() > 1 / 255  # the dream changed the picture
    assert_same_state(before, model_state(loaded.module))


def test_mine_topk_on_cuda_equals_cpu(no_tf32: None) -> None:
    data = TensorImages(images(10, seed=1))
    config = MineConfig("layer2", channels=(0, 3, 7), k=3)
    gpu = mine_topk(resnet(CUDA), data, config, run=RunOptions(batch=4))
    cpu = mine_topk(resnet("cpu"), data, config, run=RunOptions(batch=4))
    assert torch.equal(gpu.image_ids, cpu.image_ids)
    assert torch.equal(gpu.positions, cpu.positions)
    torch.testing.assert_close(gpu.values, cpu.values, rtol=1e-4, atol=1e-5)


def test_mine_patches_with_projections_on_cuda_equals_cpu(no_tf32: None) -> None:
    # GoogLeNet's ReLUs are functional calls: the projection rule must reach them on CUDA too
    data = TensorImages(images(6, seed=2))
    config = MineConfig("inception3a", channels=(1, 4), k=2)
    results = []
    for device in (CUDA, torch.device("cpu")):
        loaded = googlenet(device)
        before = model_state(loaded.module)
        top = mine_topk(loaded, data, config, run=RunOptions(batch=3))
        results.append(mine_patches(loaded, data, top, projections="guided", thumbnail_size=16))
        assert_same_state(before, model_state(loaded.module))
    gpu, cpu = results
    assert gpu.field == cpu.field and list(gpu.hits) == list(cpu.hits)
    for channel, hits in cpu.hits.items():
        for ours, theirs in zip(gpu.hits[channel], hits, strict=True):
            assert (ours.image_id, ours.position, ours.box) == (
                theirs.image_id,
                theirs.position,
                theirs.box,
            )
            assert ours.projection is not None and theirs.projection is not None
            torch.testing.assert_close(ours.projection, theirs.projection, rtol=1e-3, atol=2e-3)


def test_projection_on_cuda_is_not_the_plain_gradient(no_tf32: None) -> None:
    loaded = googlenet(CUDA)
    batch = images(2, seed=3)
    units = torch.tensor([[5, 3, 3], [17, 4, 2]])
    guided = project(loaded, batch, "inception3a", units, "guided")
    on_cpu = project(googlenet("cpu"), batch, "inception3a", units, "guided")
    torch.testing.assert_close(guided.cpu(), on_cpu, rtol=1e-3, atol=1e-5)
    x = loaded.normalize(batch.to(CUDA)).requires_grad_(True)
    with torch.enable_grad(), capture(loaded.module, ["inception3a"], stop_early=True) as acts:
        acts.run(x)
        chosen = acts["inception3a"][torch.arange(2), units[:, 0], units[:, 1], units[:, 2]]
        (plain,) = torch.autograd.grad(chosen.sum(), x)
    assert not torch.allclose(guided, plain, atol=1e-6)


def test_capture_on_cuda_equals_cpu(no_tf32: None) -> None:
    loaded = resnet("cpu")
    twin = copy.deepcopy(loaded.module).to(CUDA)
    x = loaded.normalize(images(2, seed=4))
    layers = ["layer1.0.relu#1", "layer2", "fc"]
    with torch.no_grad(), capture(loaded.module, layers) as cpu:
        loaded.module(x)
    with torch.no_grad(), capture(twin, layers, stop_early=True) as gpu:
        assert gpu.run(x.to(CUDA)) is None  # stopped after fc, the last requested layer
    for layer in layers:
        assert gpu[layer].device.type == CUDA.type
        torch.testing.assert_close(gpu[layer].cpu(), cpu[layer], rtol=1e-4, atol=1e-4)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nccl_worker(rank: int, world: int, port: int, out: str) -> None:
    from vizcnn.core.distributed import init_from_env, shutdown

    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    device = init_from_env(CUDA)
    try:
        assert dist.get_backend() == "nccl" and device.index == rank
        loaded = resnet(device)
        top = mine_topk(loaded, TensorImages(images(9, seed=5)), MineConfig("layer2", (0, 2), k=3))
        torch.save({"ids": top.image_ids, "values": top.values}, Path(out) / f"rank{rank}.pt")
    finally:
        shutdown()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs a GPU per rank")
def test_two_nccl_ranks_equal_one_process(tmp_path: Path, no_tf32: None) -> None:
    mp.spawn(_nccl_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = mine_topk(
        resnet(CUDA), TensorImages(images(9, seed=5)), MineConfig("layer2", (0, 2), k=3)
    )
    for rank in range(2):  # every rank holds the merged result
        merged = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert torch.equal(merged["ids"], single.image_ids)
        torch.testing.assert_close(merged["values"], single.values, rtol=1e-4, atol=1e-5)


def test_torchrun_cli_mine_on_cuda(tmp_path: Path) -> None:
    # one process per GPU (NCCL refuses two ranks on one device); with one GPU this checks
    # that the CLI runs under the launcher on CUDA
    from mine_helpers import random_images, write_pngs

    data = tmp_path / "data"
    write_pngs(data, random_images(8, seed=6))
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    ranks = str(min(torch.cuda.device_count(), 2))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", ranks,
        "--master-port", str(_free_port()), "--no-python", sys.executable,
        "-c", "from vizcnn.cli.main import main; main()",
        "mine", str(data), "-m", "mine_helpers:tiny_miner", "--input-size", "32", "-l", "act3",
        "--all", "-k", "2", "--batch", "4", "--device", "cuda", "-q", "-o", str(tmp_path / "out"),
    ]  # fmt: skip
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_model_left_as_found_on_cuda() -> None:
    # train mode with a child in eval mode: every technique runs eval and restores the flags
    loaded = resnet(CUDA)
    net = loaded.module
    assert isinstance(net, torchvision.models.ResNet)
    net.train()
    net.layer1.eval()
    before = model_state(net)
    norm = net.bn1
    assert isinstance(norm, nn.BatchNorm2d)
    assert norm.running_mean is not None and norm.num_batches_tracked is not None
    stats = norm.running_mean.clone(), norm.num_batches_tracked.clone()
    dream(loaded, images(1)[0].to(CUDA), DreamConfig(layers=("layer2",), octaves=1, steps=1))
    mine_topk(loaded, TensorImages(images(4)), MineConfig("layer2", (0,), k=2))
    assert_same_state(before, model_state(net))
    assert torch.equal(norm.running_mean, stats[0])
    assert torch.equal(norm.num_batches_tracked, stats[1])
    assert isinstance(loaded.module, nn.Module)
