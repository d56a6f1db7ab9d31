"""bfloat16 on the CPU (`amp=True`, the `auto` default where native) against float32, in one process.

Render (8 channels of `_blocks.6`, 32 steps, batch 8) and dream (coffee 600x400, 2 octaves x 5
steps, default layers `_blocks.9` + `_blocks.11`), each against float32 on the same work, next to
the network's own limit: forward + backward to the input of the same truncated network on the
same shapes (render: batch 8 at 224 px to `_blocks.6`; dream: batch 1, its 400x300 tile, to
`_blocks.11`), in float32, under plain `torch.autocast` (NCHW), and under vizcnn's bf16 context
(channels-last inputs, float32 input gradients for strided depthwise convolutions).

Variants are interleaved round by round; each is timed in process CPU seconds (steadier than wall
time on a shared machine; run with one thread so that no thread spins waiting for another) and
wall seconds; medians. Quality is in bench_amp_quality.py.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_amp_cpu.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable

import torch

from vizcnn import load_model
from vizcnn.core.precision import choose_precision, cpu_bf16_supported
from vizcnn.data import sample_image
from vizcnn.deepdream import DreamConfig, dream
from vizcnn.deepdream.targets import dream_objective
from vizcnn.hooks import capture, model_guard
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis import RenderConfig, render


def network_pass(
    loaded: LoadedModel, batch: int, shape: tuple[int, int], layers: list[str], how: str
) -> Callable[[], None]:
    """One forward + backward to the input of the truncated network, run `how`."""
    targets = DreamConfig(layers=tuple(layers)).targets(loaded)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *shape, generator=gen)
    if how == "bf16 (vizcnn)":
        context = choose_precision(torch.device("cpu"), True).autocast()
        x = x.contiguous(memory_format=torch.channels_last)
    elif how == "bf16 (plain autocast)":
        context = torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        context = contextlib.nullcontext()

    def step() -> None:
        with model_guard(loaded.module), capture(loaded.module, layers, stop_early=True) as acts:
            piece = x.clone(memory_format=torch.preserve_format).requires_grad_(True)
            with context:
                acts.run(piece)
            torch.autograd.grad(dream_objective(acts, targets), piece)

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"native bf16: {cpu_bf16_supported()}, threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()}")  # fmt: skip
    loaded = load_model(device="cpu")
    units = [f"_blocks.6:{c}" for c in range(8)]
    photo = sample_image("coffee")
    work: dict[str, Callable[[], object]] = {}
    for amp in (False, True):
        name = "bf16" if amp else "float32"
        config = RenderConfig(steps=args.steps)
        work[f"render {name}"] = lambda c=config: render(loaded, units, c, seed=0)
        dream_config = DreamConfig(octaves=2, steps=5)
        work[f"dream {name}"] = lambda c=dream_config: dream(loaded, photo, c)
    nets: dict[str, Callable[[], None]] = {}
    for how in ("float32", "bf16 (plain autocast)", "bf16 (vizcnn)"):
        nets[f"net render {how}"] = network_pass(loaded, 8, (224, 224), ["_blocks.6"], how)
        nets[f"net dream {how}"] = network_pass(
            loaded, 1, (400, 300), ["_blocks.9", "_blocks.11"], how
        )
    for step in nets.values():  # warm-up: oneDNN primitive caches, first allocations
        step()
    work.update(nets)
    cpu: dict[str, list[float]] = {k: [] for k in work}
    wall: dict[str, list[float]] = {k: [] for k in work}
    for _ in range(args.repeats):
        for name, step in work.items():
            start_cpu, start = time.process_time(), time.perf_counter()
            step()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    med = {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in work}
    print(f"medians of {args.repeats}; load {os.getloadavg()}")
    print("| work | float32 cpu s | bf16 cpu s | cpu ratio | wall ratio |")
    print("|---|---|---|---|---|")
    for what, label in (
        ("render", f"render 8 units x {args.steps} steps, batch 8 (whole call)"),
        ("dream", "dream coffee 600x400, 2 octaves x 5 steps (whole call)"),
    ):
        f32, b16 = med[f"{what} float32"], med[f"{what} bf16"]
        print(f"| {label} | {f32[0]:.2f} | {b16[0]:.2f} | {f32[0] / b16[0]:.2f} | "
              f"{f32[1] / b16[1]:.2f} |")  # fmt: skip
    for what, label in (
        ("net render", "network limit: fwd+bwd batch 8, 224 px, to _blocks.6"),
        ("net dream", "network limit: fwd+bwd batch 1, 400x300, to _blocks.11"),
    ):
        f32 = med[f"{what} float32"]
        for how in ("bf16 (plain autocast)", "bf16 (vizcnn)"):
            b16 = med[f"{what} {how}"]
            print(f"| {label}, {how} | {f32[0]:.3f} | {b16[0]:.3f} | {f32[0] / b16[0]:.2f} | "
                  f"{f32[1] / b16[1]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
