"""Benchmark what mining's checkpoints cost: the same `mine_topk` with and without them.

Three settings over the same in-memory images, interleaved (the order rotates per repeat):
none (no checkpoint file), default (a checkpoint file with the CLI's defaults, 20 batches or
60 s: the settings fingerprint with the weights and data digests, and the final save) and
every batch (`checkpoint_seconds` tiny: an atomic, fsynced save after every batch). Ratio =
time with checkpoints / time without (goal for the default: <= 1.05), the median over repeats.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_mine_checkpoint.py
    python benchmarks/bench_mine_checkpoint.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vizcnn.data.datasets import TensorImages
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats, count = (2, 128) if args.quick else (5, 512)
    loaded = load_model("efficientnet_lite0", size=96, device="cpu")
    images = torch.rand(count, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    data = TensorImages(images)
    settings = {
        "none": (None, MineConfig("_blocks.4", k=9)),
        "default": ("ckpt", MineConfig("_blocks.4", k=9)),
        "every batch": (
            "ckpt",
            MineConfig("_blocks.4", k=9, checkpoint_seconds=1e-9),
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in settings}
    names = list(settings)
    with tempfile.TemporaryDirectory() as folder:
        mine_topk(loaded, data, settings["none"][1])  # warm-up
        for repeat in range(repeats):
            for name in names[repeat % 3 :] + names[: repeat % 3]:
                path, config = settings[name]
                target = Path(folder) / f"{name}-{repeat}.pt" if path else None
                start = time.perf_counter()
                mine_topk(loaded, data, config, checkpoint=target)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["none"])
    print(f"lite0 96 px, _blocks.4, {count} images, batch 64, {repeats} repeats")
    print("| setting | median s | img/s | ratio to none |")
    print("|---|---|---|---|")
    for name in names:
        median = statistics.median(times[name])
        print(f"| {name} | {median:.2f} | {count / median:.1f} | {median / base:.3f} |")


if __name__ == "__main__":
    main()
