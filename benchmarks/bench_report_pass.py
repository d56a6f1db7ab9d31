"""The report's data pass: every layer in one pass vs one truncated forward, and vs per-layer passes.

efficientnet_lite0 (224 px) on crops of the bundled photos, decoded once beforehand (every
variant gets the same in-memory images), the report's default layers (`_blocks.2`, `_blocks.6`,
`_blocks.9`), 16 channels each, k = 9, batch 32:

- `truncated`: one forward per batch stopped at the deepest report layer
  (`vizcnn.hooks.capture(stop_early=True)`): the work no data pass can avoid;
- `one pass`: `mine_layers` (top-k, means and histograms of all three layers, one forward per
  batch), what `vizcnn report` runs now;
- `per layer`: what the report ran before: `mine_topk` once per layer (three passes) plus one
  pass for the three layers' means;
- `one pass + samples`: `data_pass`, the one pass plus the samples of positions of the default
  report's concepts layers (`_blocks.2._swish`, ... : each report layer's first ReLU6 output
  inside or after it; cap 4096, seed 0), what `vizcnn report` runs now;
- `one pass + concept passes`: what the report ran before for its concepts pages: the one pass,
  then per concepts layer `find_concepts`' own sampling pass and `concept_patches`' pass (with
  concepts factorized once beforehand, outside the timing: only the passes are timed).

Usage: python benchmarks/bench_report_pass.py [--crops 8] [--batch 32] [--repeats 3]
Small settings (a quick look on a busy machine): --crops 2 --repeats 1
Variants alternate (truncated, one pass, per layer, ...), so drifts in machine load hit them
alike; the medians and their ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from vizcnn import load_model
from vizcnn.concepts import concept_patches, concepts_from_sample
from vizcnn.concepts.discovery import _stream
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import SAMPLES, TensorImages, open_dataset
from vizcnn.hooks import capture, model_guard
from vizcnn.mining.layers import data_pass, mine_layers
from vizcnn.mining.reservoir import SampleConfig
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.report.builder.plan import concept_layers
from vizcnn.report.config import ReportConfig

LAYERS = ("_blocks.2", "_blocks.6", "_blocks.9")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crops", type=int, default=8, help="crops per bundled photo (x16)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    loaded = load_model("efficientnet_lite0")
    source = open_dataset(SAMPLES, 3, loaded.input_size, crops_per_image=args.crops, seed=0)
    images = torch.stack([source.image(i) for i in range(len(source))])
    data = TensorImages(images, source.names)
    configs = [MineConfig(layer, channels=tuple(range(16)), k=9) for layer in LAYERS]
    run = RunOptions(batch=args.batch)
    cap = ReportConfig().concept_positions
    samples = [SampleConfig(c, cap, 0) for c in concept_layers(loaded, list(LAYERS)).values()]
    print(f"concepts layers {', '.join(str(c.layer) for c in samples)} (cap {cap})")
    # the concepts the former concepts pages cut patches of (factorized once, not timed)
    sampled = data_pass(loaded, data, [], samples, run=run).samples
    concepts = [
        concepts_from_sample(loaded, sampled[str(c.layer)], ReportConfig().concepts)
        for c in samples
    ]
    print(
        f"{len(images)} images, layers {', '.join(LAYERS)} (16 channels each), batch "
        f"{args.batch}, torch threads {torch.get_num_threads()}, device {loaded.device}"
    )

    def truncated() -> float:
        start = time.perf_counter()
        with (  # the deepest report layer: deeper than every concepts layer
            model_guard(loaded.module),
            torch.inference_mode(),
            capture(loaded.module, [LAYERS[-1]], stop_early=True, detach=True) as acts,
        ):
            for first in range(0, len(images), args.batch):
                acts.run(loaded.normalize(images[first : first + args.batch]))
        return time.perf_counter() - start

    def one_pass() -> float:
        start = time.perf_counter()
        mine_layers(loaded, data, configs, run=run)
        return time.perf_counter() - start

    def per_layer() -> float:
        start = time.perf_counter()
        for config in configs:
            mine_topk(loaded, data, config, run=run)
        with (  # the former report's means: one more pass feeding the three layers
            model_guard(loaded.module),
            torch.inference_mode(),
            capture(loaded.module, list(LAYERS), stop_early=True, detach=True) as acts,
        ):
            for first in range(0, len(images), args.batch):
                acts.run(loaded.normalize(images[first : first + args.batch]))
                for layer in LAYERS:
                    acts[layer].double().mean(dim=(2, 3)).sum(0)
        return time.perf_counter() - start

    def with_samples() -> float:
        start = time.perf_counter()
        data_pass(loaded, data, configs, samples, run=run)
        return time.perf_counter() - start

    def concept_passes() -> float:
        start = time.perf_counter()
        mine_layers(loaded, data, configs, run=run)
        for config, found in zip(samples, concepts, strict=True):
            _stream(loaded, data, str(config.layer), None, cap, 0, run, lambda *a: None)
            concept_patches(loaded, found, data, 9, thumbnail_size=64, run=run)
        return time.perf_counter() - start

    mine_layers(loaded, TensorImages(images[:8]), configs, run=run)  # warm-up
    variants = (
        ("truncated", truncated),
        ("one pass", one_pass),
        ("per layer", per_layer),
        ("one pass + samples", with_samples),
        ("one pass + concept passes", concept_passes),
    )
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for _ in range(args.repeats):
        for name, variant in variants:
            times[name].append(variant())
            print(f"  {name}: {times[name][-1]:.2f} s", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["truncated"]
    print("| variant | median s | img/s | time / truncated forward |")
    print("|---|---|---|---|")
    for name, seconds in median.items():
        print(f"| {name} | {seconds:.2f} | {len(images) / seconds:.1f} | {seconds / base:.3f} |")
    print(f"per layer / one pass: {median['per layer'] / median['one pass']:.2f}")
    before, now = median["one pass + concept passes"], median["one pass + samples"]
    print(f"one pass + concept passes / one pass + samples: {before / now:.2f}")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
