"""Cost of linear probes: K layers in one pass vs one truncated forward to the deepest layer.

`probe_layers` over K stage outputs of efficientnet_lite0 (224 px) on `sample-crops`, the
images decoded once beforehand (both variants get the same in-memory images), against the work
it cannot avoid: one forward pass per batch stopped at the deepest probed layer
(`vizcnn.hooks.capture(stop_early=True)`), plus the K regressions. Reports the probe's wall
time, its pass and its regressions (the regressions' share), and the ratio
probe / (truncated forward + regressions).

Usage: python benchmarks/bench_probe.py [--crops 20] [--batch 32] [--repeats 1]
Variants alternate (baseline, probe, ...), so that drifts in machine load hit them alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vizcnn import load_model
from vizcnn.core.run_options import RunOptions
from vizcnn.data.labelled import open_labelled_images
from vizcnn.features.probes import ProbeConfig, probe_layers, stage_outputs
from vizcnn.hooks import capture, model_guard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crops", type=int, default=20, help="crops per bundled photo (x16)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    loaded = load_model("efficientnet_lite0")
    data = open_labelled_images(
        "sample-crops", 3, loaded.input_size, crops_per_image=args.crops, seed=0
    )
    images = torch.stack([data.images.image(i) for i in range(len(data))])
    labels = torch.tensor(data.labels)
    layers = stage_outputs(loaded)
    deepest = layers[-1]
    config = ProbeConfig(layers=tuple(layers), model_classes="off")
    run = RunOptions(batch=args.batch)
    print(f"{len(images)} images, {len(layers)} layers: {', '.join(layers)}; batch {args.batch}")

    def truncated() -> float:
        start = time.perf_counter()
        module = loaded.module
        with (
            model_guard(module),
            torch.no_grad(),
            capture(module, [deepest], stop_early=True, detach=True) as acts,
        ):
            for first in range(0, len(images), args.batch):
                acts.run(loaded.normalize(images[first : first + args.batch]))
        return time.perf_counter() - start

    probe_layers(loaded, (images[:64], labels[:64]), config, run=run)  # warm-up, preflight
    base, walls, passes, fits = [], [], [], []
    for _ in range(args.repeats):
        base.append(truncated())
        start = time.perf_counter()
        result = probe_layers(loaded, (images, labels), config, run=run)
        walls.append(time.perf_counter() - start)
        passes.append(result.forward_seconds)
        fits.append(result.fit_seconds)
    forward, wall = statistics.median(base), statistics.median(walls)
    fit, one_pass = statistics.median(fits), statistics.median(passes)
    print(f"truncated forward to {deepest}: {forward:.2f} s")
    print(f"probe_layers wall: {wall:.2f} s (pass {one_pass:.2f} s, regressions {fit:.2f} s)")
    print(f"pass / truncated forward: {one_pass / forward:.3f}")
    print(f"regressions' share of the probe: {fit / wall:.3f}")
    print(f"probe / (truncated forward + regressions): {wall / (forward + fit):.3f}")
    print("held-out accuracy:", {p.layer: round(p.test_accuracy, 3) for p in result.layers})


if __name__ == "__main__":
    main()
