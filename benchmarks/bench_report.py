"""Benchmark `vizcnn report`: time per stage of the default report, and of a re-run.

The default report (efficientnet_lite0, its three report layers, 16 units each, the bundled
samples, two images) is built into a fresh folder through the Python API the CLI calls. Per stage
it records wall seconds and the process's CPU seconds (all threads). On a machine shared with
other jobs the wall time is inflated by waiting for a core; CPU seconds / threads is what the
stage would take on an idle machine with that many cores (assuming the threads keep busy, which
the 2-thread kernels nearly do), so the table gives both against the 600 s budget on 2 cores.
A second build into the same folder measures the cache: every artifact is reused.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_report.py                 # the default report
    python benchmarks/bench_report.py --steps 32 --units 4              # a quick look
    python benchmarks/bench_report.py --keep site/                      # keep the site
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

import vizcnn.core.precision as precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.models.loading import load_model
from vizcnn.report import ArtifactStore, ReportConfig, build_report, plan_report

BUDGET = 600.0  # seconds: the default report's goal on 2 CPU cores


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=ReportConfig().render.steps)
    parser.add_argument("--units", type=int, default=ReportConfig.units_per_layer)
    parser.add_argument("--image-size", type=int, default=ReportConfig().render.size)
    parser.add_argument("--layers", default="", help="comma-separated (default: the model's)")
    parser.add_argument("--keep", default=None, help="build into this folder and keep it")
    parser.add_argument(
        "--float32",
        action="store_true",
        help="no bf16 even where the CPU has it (what a CPU without native bf16 runs)",
    )
    args = parser.parse_args()
    if args.float32:  # amp="auto" asks this; a benchmark may pretend the CPU lacks bf16
        precision.cpu_bf16_supported = lambda: False
    threads = torch.get_num_threads()
    config = ReportConfig(
        layers=tuple(x for x in args.layers.split(",") if x),
        units_per_layer=args.units,
        render=replace(ReportConfig().render, steps=args.steps, size=args.image_size),
    )
    rows: list[tuple[str, str, float, float]] = []  # run, stage, wall, cpu

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or Path(scratch) / "site")
        for run in ("first", "again"):
            started, cpu_started = time.perf_counter(), time.process_time()

            @contextmanager
            def stage(name: str, unit: str, run: str = run) -> Iterator[ProgressCallback]:
                wall, cpu = time.perf_counter(), time.process_time()
                yield no_progress
                rows.append((run, name, time.perf_counter() - wall, time.process_time() - cpu))
                print(
                    f"  {run} {name}: {rows[-1][2]:.1f} s wall, {rows[-1][3]:.1f} s CPU", flush=True
                )

            loaded = load_model("efficientnet_lite0")
            plan = plan_report(loaded, config)
            rows.append(
                (run, "load model + plan", time.perf_counter() - started,
                 time.process_time() - cpu_started)
            )  # fmt: skip
            pages_wall, pages_cpu = time.perf_counter(), time.process_time()
            result = build_report(
                loaded, plan, ArtifactStore(folder, allow_nonempty=True), stage=stage
            )
            rows.append(
                (run, "pages", result.seconds.get("pages", 0.0),
                 (time.process_time() - pages_cpu) - sum(r[3] for r in rows if r[0] == run and r[1] not in ("load model + plan",)))
            )  # fmt: skip
            del pages_wall
            rows.append(
                (run, f"**total** ({len(result.computed)} computed, {len(result.reused)} reused)",
                 time.perf_counter() - started, time.process_time() - cpu_started)
            )  # fmt: skip
    print(
        f"\nefficientnet_lite0, layers {', '.join(layer for layer, _ in plan.layers)}, "
        f"{config.units_per_layer} units x {config.render.steps} steps at {config.render.size} px, "
        f"data {config.data} ({len(plan.dataset or [])} images), images "
        f"{', '.join(config.images)}; torch threads {threads}, load average "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print(
        f"| run | stage | wall s | CPU s | CPU s / {threads} threads | share of 600 s (CPU / threads) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for run, name, wall, cpu in rows:
        idle = cpu / threads
        print(f"| {run} | {name} | {wall:.1f} | {cpu:.1f} | {idle:.1f} | {idle / BUDGET:.1%} |")


if __name__ == "__main__":
    main()
