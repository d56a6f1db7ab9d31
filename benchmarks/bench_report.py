"""Benchmark `vizcnn report`: wall time per stage of the default report, and of a re-run.

The default report (efficientnet_lite0, its three report layers, 16 units each, the bundled
samples) is built into a fresh temporary folder through the same Python API the CLI calls; the
table gives seconds per stage and the whole, against the 10-minute budget on 2 CPU cores. A
second build into the same folder measures the cache: every artifact is reused, so it costs the
model load, the plan (weights digest, input checks) and the pages.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_report.py                 # the default report
    python benchmarks/bench_report.py --steps 32 --units 4              # a quick look
    python benchmarks/bench_report.py --keep site/                      # keep the site
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vizcnn.microscope import ArtifactStore, ReportConfig, build_report, plan_report
from vizcnn.models.loading import load_model

BUDGET = 600.0  # seconds: the default report's goal on 2 CPU cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=ReportConfig.steps)
    parser.add_argument("--units", type=int, default=ReportConfig.units_per_layer)
    parser.add_argument("--image-size", type=int, default=ReportConfig.image_size)
    parser.add_argument("--layers", default="", help="comma-separated (default: the model's)")
    parser.add_argument("--keep", default=None, help="build into this folder and keep it")
    args = parser.parse_args()
    print(f"threads {torch.get_num_threads()}")
    config = ReportConfig(
        layers=tuple(x for x in args.layers.split(",") if x),
        units_per_layer=args.units,
        steps=args.steps,
        image_size=args.image_size,
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or Path(scratch) / "site")
        times = []
        for run in ("first", "again"):
            started = time.perf_counter()
            loaded = load_model("efficientnet_lite0")
            plan = plan_report(loaded, config)
            planned = time.perf_counter() - started
            result = build_report(loaded, plan, ArtifactStore(folder, force=True))
            total = time.perf_counter() - started
            times.append((run, planned, result, total))
    print(
        f"\nefficientnet_lite0, layers {', '.join(layer for layer, _ in plan.layers)}, "
        f"{config.units_per_layer} units x {config.steps} steps at {config.image_size} px, "
        f"data {config.data} ({len(plan.dataset or [])} images), images {', '.join(config.images)}\n"
    )
    print("| run | stage | seconds | share of the 600 s budget |")
    print("|---|---|---:|---:|")
    for run, planned, result, total in times:
        print(f"| {run} | load model + plan | {planned:.1f} | {planned / BUDGET:.1%} |")
        for stage, seconds in result.seconds.items():
            print(f"| {run} | {stage} | {seconds:.1f} | {seconds / BUDGET:.1%} |")
        print(
            f"| {run} | **total** ({len(result.computed)} computed, {len(result.reused)} reused) "
            f"| **{total:.1f}** | **{total / BUDGET:.1%}** |"
        )


if __name__ == "__main__":
    main()
