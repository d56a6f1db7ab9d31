"""Cost of the features techniques against the bare network work they cannot avoid.

- neighbours: `embed_dataset` (DataLoader, hashing, classifier-input pre-hook, cache write) vs the
  bare forward passes of the same batches; a cache hit vs computing the embeddings.
- equivariance: `measure_equivariance` (all stage outputs captured, per-layer comparisons in
  float64) vs the bare forward passes it needs (1 + shifts passes per batch).

Usage: python benchmarks/bench_features.py [--images 32] [--batch 16] [--shifts 4] [--repeats 3]
Variants run round-robin (interleaved) so that drifts in machine load hit them alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vizcnn import load_model
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import TensorImages
from vizcnn.features import EquivarianceConfig, embed_dataset, measure_equivariance


def interleaved_medians(
    variants: dict[str, Callable[[], object]], repeats: int
) -> dict[str, float]:
    """Median seconds per variant, run round-robin."""
    for fn in variants.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--shifts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--parts", default="neighbours,equivariance", help="Which parts to measure (comma list)."
    )
    args = parser.parse_args()
    loaded = load_model()
    module = loaded.module
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, 224, 224, generator=generator)
    data = TensorImages(images)
    cache = Path(tempfile.mkdtemp())

    def bare_embed() -> None:
        with torch.no_grad():
            for start in range(0, args.images, args.batch):
                module(loaded.normalize(images[start : start + args.batch]))

    def ours_embed() -> None:
        embed_dataset(loaded, data, run=RunOptions(batch=args.batch))

    embed_dataset(loaded, data, cache_dir=cache, run=RunOptions(batch=args.batch))  # fill the cache

    def cache_hit() -> None:
        assert embed_dataset(loaded, data, cache_dir=cache, run=RunOptions(batch=args.batch)).cached

    config = EquivarianceConfig(shifts=tuple(range(1, args.shifts + 1)))
    wide = torch.rand(args.images, 3, 224, 224 + args.shifts, generator=generator)

    def bare_equivariance() -> None:
        with torch.no_grad():
            for start in range(0, args.images, args.batch):
                batch = wide[start : start + args.batch]
                for shift in range(args.shifts + 1):
                    module(loaded.normalize(batch[..., shift : shift + 224]))

    def ours_equivariance() -> None:
        measure_equivariance(loaded, wide, config, run=RunOptions(batch=args.batch))

    variants: dict[str, Callable[[], object]] = {}
    if "neighbours" in args.parts:
        variants["neighbours: bare forward (limit)"] = bare_embed
        variants["neighbours: embed_dataset"] = ours_embed
        variants["neighbours: cache hit"] = cache_hit
    if "equivariance" in args.parts:
        variants["equivariance: bare forwards (limit)"] = bare_equivariance
        variants["equivariance: measure_equivariance"] = ours_equivariance
    medians = interleaved_medians(variants, args.repeats)
    print(
        f"efficientnet_lite0, 224 px, {args.images} images, batch {args.batch}, "
        f"{args.shifts} shifts, {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print("| measure | seconds | ratio |")
    print("|---|---|---|")
    if "neighbours" in args.parts:
        bare, ours = (
            medians["neighbours: bare forward (limit)"],
            medians["neighbours: embed_dataset"],
        )
        hit = medians["neighbours: cache hit"]
        print(f"| neighbours: bare forward (limit) | {bare:.3f} | 1.00 |")
        print(f"| neighbours: embed_dataset | {ours:.3f} | {ours / bare:.3f} x limit |")
        print(
            f"| neighbours: images/s ours / bare | {args.images / ours:.1f} / {args.images / bare:.1f} | |"
        )
        print(f"| neighbours: cache hit | {hit:.4f} | {hit / ours:.4f} x computing |")
    if "equivariance" in args.parts:
        eq_bare = medians["equivariance: bare forwards (limit)"]
        eq_ours = medians["equivariance: measure_equivariance"]
        print(f"| equivariance: bare forwards (limit) | {eq_bare:.3f} | 1.00 |")
        print(
            f"| equivariance: measure_equivariance | {eq_ours:.3f} | {eq_ours / eq_bare:.3f} x limit |"
        )


if __name__ == "__main__":
    main()
