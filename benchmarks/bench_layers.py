"""Benchmark the model probes: `vizcnn layers` time per model, and render in train vs eval mode.

1. layers: wall time of `layer_table` (what `vizcnn layers` computes: two forward passes, the
   traced graph's fields, fields measured within the default budget) at 224 px, per model,
   each model built with random weights (timm `pretrained=False`, torchvision `weights=None`),
   after one untimed warm-up call on the same model. Limit 10 s on 2 cores. The table also says
   how each field came about (graph / measured / not known).
2. render train / eval: `render` of one unit for `--steps` steps at the recipe's size on the
   model as its constructor returns it (train mode) and after `.eval()`, interleaved (train,
   eval, train, eval, ...) so both see the same load; medians of wall and CPU (process) time.
   Limit: ratio 1.1 (a model in train mode costs what it costs in eval mode).

The machine is shared: wall times move with the load (printed before and after); CPU times
less so.

Usage:
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_layers.py [--threads 2] [--steps 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

from vizcnn import RenderConfig, render
from vizcnn.receptive.table import layer_table

TIMM_MODELS = [
    "convnext_tiny",
    "regnety_002",
    "mobilenetv3_small_100",
    "efficientnet_b0",
    "resnet50",
    "densenet121",
]
TORCHVISION_MODELS = ["resnet18", "googlenet", "mobilenet_v3_large", "inception_v3"]
RENDER_MODELS = {"timm regnety_002": "s3:0", "torchvision resnet18": "layer3:0"}


def _torchvision(name: str) -> nn.Module:
    extra = (
        {"aux_logits": False, "init_weights": False}
        if name in {"googlenet", "inception_v3"}
        else {}
    )
    return getattr(torchvision.models, name)(weights=None, **extra)


def _timm(name: str) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False)


def _builders() -> dict[str, Callable[[], nn.Module]]:
    builders: dict[str, Callable[[], nn.Module]] = {}
    for name in TIMM_MODELS:
        builders[f"timm {name}"] = lambda name=name: _timm(name)  # type: ignore[misc]
    for name in TORCHVISION_MODELS:
        builders[f"torchvision {name}"] = lambda name=name: _torchvision(name)  # type: ignore[misc]
    return builders


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def bench_layers() -> None:
    print(f"layers (load {_load()})")
    print(f"{'model':34} {'layers':>6} {'wall s':>7} {'cpu s':>7}  fields")
    for label, build in _builders().items():
        torch.manual_seed(0)
        net = build()
        size = (3, 299, 299) if label.endswith("inception_v3") else (3, 224, 224)
        layer_table(net, size)  # warm-up: oneDNN primitives, lazy imports
        wall, cpu = time.perf_counter(), time.process_time()
        table = layer_table(net, size)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        methods = collections.Counter(
            "not known" if row.field_note else row.field.method
            for row in table.rows
            if row.field is not None or row.field_note
        )
        how = ", ".join(f"{method} {count}" for method, count in sorted(methods.items()))
        print(f"{label:34} {len(table.rows):6d} {wall:7.2f} {cpu:7.2f}  {how}", flush=True)


def bench_cli_layers(specs: list[str]) -> None:
    """`vizcnn layers -m SPEC --weights none -q` as a user runs it: a fresh process each (imports,
    building the network, the table), wall time; limit 10 s on 2 cores."""
    vizcnn = Path(sys.executable).with_name("vizcnn")
    print(f"vizcnn layers, cold process per model (load {_load()})")
    for spec in specs:
        wall = time.perf_counter()
        done = subprocess.run(
            [str(vizcnn), "layers", "-m", spec, "--weights", "none", "-q"],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - wall
        rows = sum(1 for line in done.stdout.splitlines() if line and not line.startswith("-"))
        status = "ok" if done.returncode == 0 else done.stderr.strip().splitlines()[-1][:80]
        print(f"{spec:34} {wall:7.2f} s  {rows:4d} lines  {status}", flush=True)


def bench_render(steps: int, repeats: int) -> None:
    print(f"render train / eval, {steps} steps (load {_load()})")
    config = RenderConfig(steps=steps)
    builders = {
        "timm regnety_002": lambda: _timm("regnety_002"),
        "torchvision resnet18": lambda: _torchvision("resnet18"),
    }
    for label, build in builders.items():
        torch.manual_seed(0)
        net = build()
        unit = RENDER_MODELS[label]
        times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        render(net, unit, config)  # warm-up
        for _ in range(repeats):
            for training in (True, False):
                net.train(training)
                wall, cpu = time.perf_counter(), time.process_time()
                render(net, unit, config)
                times[training].append((time.perf_counter() - wall, time.process_time() - cpu))
        train_wall = statistics.median(t[0] for t in times[True])
        eval_wall = statistics.median(t[0] for t in times[False])
        train_cpu = statistics.median(t[1] for t in times[True])
        eval_cpu = statistics.median(t[1] for t in times[False])
        print(
            f"{label:24} train {train_wall:6.2f} s (cpu {train_cpu:6.2f})  eval {eval_wall:6.2f} s "
            f"(cpu {eval_cpu:6.2f})  ratio wall {train_wall / eval_wall:.2f} cpu {train_cpu / eval_cpu:.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="also time `vizcnn layers` per model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs")
    bench_layers()
    bench_render(args.steps, args.repeats)
    if args.cli:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from model_matrix import model_specs

        bench_cli_layers(model_specs())
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
