"""Benchmark `vizcnn ablate`: evaluation against the bare forward, training against a plain loop.

1. Evaluation. The limit is the bare model forward (no_grad) over the same in-memory batches,
   doing nothing with the logits. Ours is `evaluate` over a data set holding the same images:
   DataLoader over the rank's shard, collation, normalization, `model_guard`, top-1/top-5 and
   agreement counting. Ratio = ours / limit in images per second (goal >= 0.9), median over
   interleaved pairs (alternating which runs first). Two cases: LeNet-5 on the 450 digits test
   images (overhead-bound) and efficientnet_lite0 on 64 images of 224 px (compute-bound).
2. Training. The anchor is the loop users write: `torch.optim.Adam`, shuffled index batches,
   forward, cross-entropy, backward, step, on a copy of LeNet-5 over the digits training split.
   Ours is `train(..., retrain="all")` with the same batch size. Ratio = our seconds per step /
   the plain loop's (goal <= 1.1), median over interleaved epochs.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_ablation.py            # markdown table
    python benchmarks/bench_ablation.py --quick
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vizcnn.ablation.data import TensorData, digits
from vizcnn.ablation.evaluate import evaluate
from vizcnn.ablation.surgery import ablate
from vizcnn.ablation.training import TrainConfig, train
from vizcnn.core.run_options import RunOptions
from vizcnn.models.loading import load_model


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def bench_eval(name: str, data: TensorData, batch: int, repeats: int) -> tuple[float, float, float]:
    loaded = load_model(name)
    module = loaded.module
    batches = [loaded.normalize(data.images[i : i + batch]) for i in range(0, len(data), batch)]

    def limit() -> None:
        with torch.no_grad():
            for inputs in batches:
                module(inputs)

    def ours() -> None:
        evaluate({"net": module}, data, loaded.normalize, run=RunOptions(batch=batch))

    ours()  # warm-up: first-call costs on both sides
    limit()
    ratios, limit_times, our_times = [], [], []
    for i in range(repeats):
        first, second = (limit, ours) if i % 2 == 0 else (ours, limit)
        t1, t2 = _timed(first), _timed(second)
        t_limit, t_ours = (t1, t2) if i % 2 == 0 else (t2, t1)
        ratios.append(t_limit / t_ours)
        limit_times.append(t_limit)
        our_times.append(t_ours)
    n = len(data)
    return (
        statistics.median(ratios),
        n / statistics.median(limit_times),
        n / statistics.median(our_times),
    )


def bench_train(repeats: int, batch: int = 64) -> tuple[float, float, float]:
    loaded = load_model("lenet5_digits")
    data = digits("train")
    steps = -(-len(data) // batch)

    def plain() -> None:
        net = copy.deepcopy(loaded.module).train().requires_grad_(True)
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            loss = F.cross_entropy(net(loaded.normalize(data.images[idx])), data.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()

    def ours() -> None:
        cut = ablate(loaded, [])
        train(cut, data, loaded.normalize, TrainConfig(retrain="all", epochs=1, batch_size=batch))

    plain()
    ours()
    ratios, plain_times, our_times = [], [], []
    for i in range(repeats):
        first, second = (plain, ours) if i % 2 == 0 else (ours, plain)
        t1, t2 = _timed(first), _timed(second)
        t_plain, t_ours = (t1, t2) if i % 2 == 0 else (t2, t1)
        ratios.append(t_ours / t_plain)
        plain_times.append(t_plain)
        our_times.append(t_ours)
    return (
        statistics.median(ratios),
        statistics.median(plain_times) / steps,
        statistics.median(our_times) / steps,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    rows = []
    ratio, lim, our = bench_eval("lenet5_digits", digits("test"), 256, repeats)
    rows.append(
        (
            "evaluate / bare forward, LeNet-5, 450 digits, img/s",
            ratio,
            f"{our:.0f} vs {lim:.0f} img/s",
        )
    )
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(64, 3, 224, 224, generator=generator)
    lite = TensorData(images, torch.zeros(64, dtype=torch.int64))
    ratio, lim, our = bench_eval("efficientnet_lite0", lite, 32, max(2, repeats // 2))
    rows.append(
        (
            "evaluate / bare forward, lite0, 64 x 224 px, img/s",
            ratio,
            f"{our:.1f} vs {lim:.1f} img/s",
        )
    )
    ratio, plain_step, our_step = bench_train(repeats)
    rows.append(
        ("train step / plain Adam loop, LeNet-5 digits, batch 64", ratio,
         f"{1000 * our_step:.1f} vs {1000 * plain_step:.1f} ms/step")
    )  # fmt: skip
    print("| measure | ratio | figures |")
    print("|---|---:|---|")
    for label, value, figures in rows:
        print(f"| {label} | {value:.3f} | {figures} |")


if __name__ == "__main__":
    main()
