"""Benchmark `vizcnn mine`: throughput against the truncated forward alone, memory against size.

1. Throughput. The limit is the model's forward pass cut at the mined layer, run on in-memory
   batches and doing nothing with the output. Ours is `mine_topk` over the same images held in
   an in-memory data set: DataLoader, collation, content hashing (dedupe), the forward pass and
   the top-k bookkeeping. Ratio = ours / limit in images per second (goal >= 0.9): the median
   over interleaved pairs of runs (alternating which runs first) of limit time / our time.
2. Memory. A fresh subprocess per data-set size mines N synthetic images (generated on the fly
   from their index) and reports its resident memory, sampled after every batch, and the
   process high-water mark. Ratio = peak while mining, 20,000 / 1,000 images (goal <= 1.1).

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_mine.py             # everything, markdown table
    python benchmarks/bench_mine.py --quick                       # fewer repeats, smaller sizes
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import ImageSource, TensorImages
from vizcnn.hooks import capture
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.models.loading import load_model


class SyntheticImages(ImageSource):
    """N noise images made on demand from their index: no storage that grows with N."""

    def __init__(self, count: int, size: int) -> None:
        super().__init__(3, (size, size))
        self.count = count
        self.names = _Names(count)  # type: ignore[assignment]

    def load(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(index)
        return torch.rand(3, *self.size, generator=generator)

    def fingerprint(self) -> str:
        return f"synthetic-{self.count}-{self.size}"


class _Names:
    """A lazy list of names, so that the data set itself is O(1) in memory."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:
        return f"synthetic:{index}"


def throughput(size: int, layer: str, batch: int, batches: int, repeats: int) -> dict:
    loaded = load_model("efficientnet_lite0", size=size)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch * batches, 3, size, size, generator=generator)
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    data = TensorImages(images)
    config = MineConfig(layer=layer, k=9)
    limit_times, our_times = [], []

    def limit_run() -> float:
        started = time.perf_counter()
        with (
            torch.inference_mode(),
            capture(loaded.module, [layer], stop_early=True, detach=True) as acts,
        ):
            for chunk in chunks:
                acts.run(loaded.normalize(chunk))
        return time.perf_counter() - started

    def our_run() -> float:
        started = time.perf_counter()
        mine_topk(loaded, data, config, run=RunOptions(batch=batch, workers=0))
        return time.perf_counter() - started

    limit_run(), our_run()  # warm-up: allocator, oneDNN kernels
    for repeat in range(repeats):
        # Alternate which goes first, so that a drift in machine load hits both alike.
        if repeat % 2:
            our_times.append(our_run())
            limit_times.append(limit_run())
        else:
            limit_times.append(limit_run())
            our_times.append(our_run())
    count = len(images)
    limit_rate = count / statistics.median(limit_times)
    our_rate = count / statistics.median(our_times)
    pair_ratio = statistics.median(
        lim / our for lim, our in zip(limit_times, our_times, strict=True)
    )
    return {
        "setting": f"lite0 {size}px, {layer}, batch {batch}, all channels, k=9",
        "limit_img_s": limit_rate,
        "ours_img_s": our_rate,
        "ratio": pair_ratio,
    }


def resident_mb() -> float:
    """Current resident set size of this process (Linux), in MB."""
    with open("/proc/self/statm") as file:
        pages = int(file.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def memory_child(count: int, size: int, layer: str) -> None:
    loaded = load_model("efficientnet_lite0", size=size)
    config = MineConfig(layer=layer, k=9)
    baseline = resident_mb()
    peak = [baseline]

    def sample(done: int, total: int, message: str) -> None:
        peak.append(resident_mb())  # once per batch: the high-water mark of the mining phase

    started = time.perf_counter()
    top = mine_topk(
        loaded,
        SyntheticImages(count, size),
        config,
        progress=sample,
        run=RunOptions(batch=64, workers=0),
    )
    elapsed = time.perf_counter() - started
    peak.append(resident_mb())
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "count": count,
                "seen": top.images_seen,
                "before_mb": baseline,
                "peak_mb": max(peak),
                "process_peak_mb": process_peak,
                "seconds": elapsed,
            }
        )
    )


def memory(counts: list[int], size: int, layer: str) -> list[dict]:
    rows = []
    for count in counts:
        ran = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-child",
                str(count),
                "--size",
                str(size),
                "--layer",
                layer,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(ran.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-child", type=int, default=None)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--layer", default="_blocks.4")
    args = parser.parse_args()
    if args.memory_child is not None:
        memory_child(args.memory_child, args.size, args.layer)
        return
    repeats = 3 if args.quick else 7
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| throughput setting | limit img/s | ours img/s | ours/limit |")
    print("|---|---|---|---|")
    settings = [(224, "_blocks.6", 32, 2), (96, "_blocks.4", 64, 2)]
    if args.quick:
        settings = [(96, "_blocks.4", 32, 2)]
    for size, layer, batch, batches in settings:
        row = throughput(size, layer, batch, batches, repeats)
        print(
            f"| {row['setting']} | {row['limit_img_s']:.1f} | {row['ours_img_s']:.1f} | {row['ratio']:.3f} |",
            flush=True,
        )
    counts = [1000, 20000] if not args.quick else [200, 2000]
    rows = memory(counts, args.size, args.layer)
    print(
        f"\n| memory: lite0 {args.size}px, {args.layer}, batch 64, synthetic images "
        "| RSS before mining MB | peak RSS while mining MB | process peak RSS MB | seconds |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['count']} images | {row['before_mb']:.1f} | {row['peak_mb']:.1f} "
            f"| {row['process_peak_mb']:.1f} | {row['seconds']:.1f} |"
        )
    print(
        f"\npeak while mining, {counts[-1]} / {counts[0]} images: "
        f"{rows[-1]['peak_mb'] / rows[0]['peak_mb']:.3f}; process peak: "
        f"{rows[-1]['process_peak_mb'] / rows[0]['process_peak_mb']:.3f}"
    )


if __name__ == "__main__":
    main()
