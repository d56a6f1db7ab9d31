"""Cost of concept discovery: memory flat in the number of images, time near a truncated forward.

`find_concepts` on efficientnet_lite0 at `_blocks.6._swish#1` (480 channels, 14 x 14 map,
224 px input) over N images of `samples` (the 16 bundled photos, N / 16 seeded random crops of
each, decoded and resized on the fly, so the data itself never sits in memory), k = 8, the
default cap of 20,000 sampled positions, batch 32. Each measurement runs in a fresh subprocess:

- `concepts N`: `find_concepts`; reports its wall time, its pass and its factorization, and the
  process's peak RSS (`ru_maxrss`);
- `forward N`: the same images through the same DataLoader, the forward pass stopped at the
  layer (`vizcnn.hooks.capture(stop_early=True)`): the work discovery cannot avoid.

Reports peak RSS at the largest N over the smallest (the sample's cap makes it flat), and
find_concepts / (truncated forward + factorization) with the factorization's share.

Usage: python benchmarks/bench_concepts.py [--images 400 4000] [--forward-images 400] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

LAYER = "_blocks.6._swish#1"
K = 8


def _data(count: int):  # noqa: ANN202 - an ImageSource, imported in the child only
    from vizcnn.data.datasets import open_dataset

    crops = -(-count // 16)
    return open_dataset("samples", 3, (224, 224), limit=count, crops_per_image=crops, seed=0)


def child(mode: str, count: int, batch: int) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader

    from vizcnn import load_model
    from vizcnn.concepts import find_concepts
    from vizcnn.core.run_options import RunOptions
    from vizcnn.data.datasets import collate
    from vizcnn.hooks import capture, model_guard

    loaded = load_model("efficientnet_lite0")
    data = _data(count)
    start = time.perf_counter()
    result: dict[str, float] = {}
    if mode == "concepts":
        concepts = find_concepts(loaded, data, LAYER, K, run=RunOptions(batch=batch))
        result.update(
            stream=concepts.seconds["stream"],
            factorize=concepts.seconds["factorize"],
            error=concepts.reconstruction_error,
            sampled=concepts.sampled,
            seen=concepts.positions_seen,
        )
    else:
        loader = DataLoader(data, batch_size=batch, collate_fn=collate)
        with (
            model_guard(loaded.module),
            torch.no_grad(),
            capture(loaded.module, [LAYER], stop_early=True, detach=True) as acts,
        ):
            for item in loader:
                acts.run(loaded.normalize(item.images))
    result["wall"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def measure(mode: str, count: int, batch: int) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(count), "--batch", str(batch)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, nargs="+", default=[400, 4000])
    parser.add_argument(
        "--forward-images",
        type=int,
        nargs="*",
        default=None,
        help="the N at which the truncated forward is timed too (default: every N; none: "
        "peak RSS only)",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.batch)))
        return
    print(f"load before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    found = {}
    timed = args.images if args.forward_images is None else args.forward_images
    for count in args.images:
        concepts = measure("concepts", count, args.batch)
        found[count] = concepts
        line = (
            f"N={count}: find_concepts {concepts['wall']:.1f} s (pass {concepts['stream']:.1f} s, "
            f"NMF {concepts['factorize']:.2f} s = {concepts['factorize'] / concepts['wall']:.1%}); "
            f"peak RSS {concepts['peak_rss_mb']:.0f} MB; {int(concepts['sampled'])} of "
            f"{int(concepts['seen'])} positions, error {concepts['error']:.3f}"
        )
        if count in timed:
            forward = measure("forward", count, args.batch)
            ratio = concepts["wall"] / (forward["wall"] + concepts["factorize"])
            line += (
                f"; truncated forward {forward['wall']:.1f} s (peak RSS "
                f"{forward['peak_rss_mb']:.0f} MB), find_concepts / (forward + NMF) {ratio:.3f}"
            )
        print(line, f"[load {os.getloadavg()[0]:.2f}]", flush=True)
    small, large = min(found), max(found)
    print(
        f"peak RSS {large} / {small} images: "
        f"{found[large]['peak_rss_mb'] / found[small]['peak_rss_mb']:.3f}"
    )
    print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
