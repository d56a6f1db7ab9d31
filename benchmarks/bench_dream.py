"""Benchmark `vizcnn.dream`: overhead against the raw network, tiled peak memory, seconds per image.

Measures, on the default model (efficientnet_lite0, default dream layers and parameters):

1. Overhead = total dream time / sum over octaves of steps x (raw forward+backward time at that
   octave's size). "Raw" is the bare truncated forward to the dream layers plus the backward of
   0.5*||a||^2 on one whole image, nothing else (no roll, tiles, normalization, clamping). Limit 1.15.
2. Peak memory with tiling: peak RSS of a fresh process dreaming a 4096x4096 image over that of one
   dreaming 1024x1024, same tile (512). Limit 1.5. One step per octave: the peak does not depend on
   the number of steps, and it keeps the 4096 run to about a minute. The untiled 1024 run shows
   what the tiles save.
3. Seconds per image at 512 and 1024 px on the given thread count.

Dream and raw timings are interleaved and repeated; the table reports medians.

Usage:
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_dream.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

from vizcnn import load_model
from vizcnn.data.samples import sample_image
from vizcnn.deepdream.dreaming import DreamConfig, dream, octave_sizes
from vizcnn.hooks import capture
from vizcnn.io.imaging import resize
from vizcnn.models.loading import LoadedModel


def photo(size: int) -> torch.Tensor:
    """The bundled coffee photo stretched to `size` x `size`, `(C, H, W)` uint8 as the CLI uses."""
    image = resize(sample_image("coffee")[None], (size, size))[0]
    return image.mul_(255).round_().clamp_(0, 255).to(torch.uint8)


def raw_step_seconds(loaded: LoadedModel, size: tuple[int, int], layers: list[str]) -> float:
    """One bare forward (truncated at the deepest layer) + backward at `size`."""
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    x = loaded.normalize(x).requires_grad_(True)
    with capture(loaded.module, layers, stop_early=True) as acts:
        start = time.perf_counter()
        acts.run(x)
        objective = sum(0.5 * acts[name].square().sum() for name in layers)
        torch.autograd.grad(objective, x)
        return time.perf_counter() - start


def overhead(loaded: LoadedModel, size: int, repeats: int) -> dict[str, float]:
    """Dream runs alternated with the same schedule of raw steps (octave sizes x steps)."""
    config = DreamConfig()
    image = photo(size)
    layers = [t.layer for t in config.targets(loaded)]
    sizes = octave_sizes(loaded, (size, size), config)
    module = sys.modules["vizcnn.deepdream.dreaming"]
    original = module.rolled_gradient
    inside: list[float] = [0.0]

    def timed_rolled_gradient(x, shift, tile, grad_fn, dtype=None):  # type: ignore[no-untyped-def]
        def timed(piece: torch.Tensor) -> torch.Tensor:
            start = time.perf_counter()
            grad = grad_fn(piece)
            inside[-1] += time.perf_counter() - start
            return grad

        return original(x, shift, tile, timed, dtype)

    module.rolled_gradient = timed_rolled_gradient
    dream_times, raw_times, network_times = [], [], []
    try:
        # Warm-up: the first passes in a process pay one-off costs (kernel set-up, thread pool).
        dream(loaded, image, replace(config, steps=1))
        for shape in sizes:
            raw_step_seconds(loaded, shape, layers)
        for _ in range(repeats):
            inside.append(0.0)
            start = time.perf_counter()
            dream(loaded, image, config, seed=0)
            dream_times.append(time.perf_counter() - start)
            network_times.append(inside[-1])
            raw_times.append(
                sum(raw_step_seconds(loaded, s, layers) for s in sizes for _ in range(config.steps))
            )
    finally:
        module.rolled_gradient = original
    seconds, raw = statistics.median(dream_times), statistics.median(raw_times)
    return {
        "size": size,
        "seconds": seconds,
        "raw": raw,
        "ratio": seconds / raw,
        # The same ratio inside each dream run (network time measured in the run itself), which
        # other processes' load disturbs far less than runs minutes apart.
        "in_run": statistics.median(d / n for d, n in zip(dream_times, network_times, strict=True)),
    }


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc (VmRSS now, VmHWM peak), in MiB.

    Not getrusage's ru_maxrss: under fork + exec it keeps the parent's peak (Linux).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(size: int, tile: int) -> None:
    """Run in a fresh process: dream one `size` image, print RSS before and peak (MiB) as JSON."""
    loaded = load_model()
    image = photo(size)
    base = _status_mib("VmRSS")
    start = time.perf_counter()
    dream(loaded, image, DreamConfig(steps=1, tile=tile))
    seconds = time.perf_counter() - start
    peak = _status_mib("VmHWM")
    print(json.dumps({"size": size, "tile": tile, "before": base, "peak": peak, "s": seconds}))


def peak_rss(size: int, tile: int, threads: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-child",
            str(size),
            str(tile),
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-child", nargs=2, type=int, metavar=("SIZE", "TILE"))
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only-memory", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    loaded = load_model()
    print(f"torch {torch.__version__}, {args.threads} threads, efficientnet_lite0, defaults\n")
    print(
        "| image | dream s | raw fwd+bwd s, octaves x steps | overhead (limit 1.15) "
        "| dream / its own network time |"
    )
    print("|---|---|---|---|---|")
    for size in () if args.only_memory else (512, 1024):
        row = overhead(loaded, size, args.repeats)
        print(
            f"| {size}x{size} | {row['seconds']:.2f} | {row['raw']:.2f} | {row['ratio']:.3f} "
            f"| {row['in_run']:.3f} |"
        )
    if args.skip_memory:
        return
    print("\n| run | tile | RSS before the dream MiB | peak RSS MiB | dream s (1 step/octave) |")
    print("|---|---|---|---|---|")
    small = peak_rss(1024, 512, args.threads)
    big = peak_rss(4096, 512, args.threads)
    untiled = peak_rss(1024, 0, args.threads)
    for name, row in (("1024x1024", small), ("4096x4096", big), ("1024x1024 untiled", untiled)):
        print(
            f"| {name} | {row['tile']} | {row['before']:.0f} | {row['peak']:.0f} | {row['s']:.1f} |"
        )
    print(f"\npeak 4096 / peak 1024 at tile 512: {big['peak'] / small['peak']:.3f} (limit 1.5)")
    print(f"peak 1024 untiled / tiled: {untiled['peak'] / small['peak']:.3f}")


if __name__ == "__main__":
    main()
