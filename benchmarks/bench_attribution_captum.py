"""Benchmark `vizcnn.attribution.attribute`, per method, against the limit and against captum.

For each method on efficientnet_lite0 (224 px, batch B of bundled photos):

- ours: `attribute(loaded, images, [m])` (model guard, in-place flags,
  relu_rule for guided/deconv, normalization inside the differentiated function).
- limit: the model's own forward + backward for the same batch (input gradient of the summed
  target logits; the top-1 target can come from that same forward), times the number of passes
  the method needs by definition (IG: steps,
  SmoothGrad: samples, guided Grad-CAM: 2, occlusion: windows x forward only). ours / limit is
  the overhead of everything around the network.
- anchor: captum called directly as its tutorials do: a forward pass for the prediction, then
  `Saliency(model).attribute(x, target=t)` on the normalized batch (same steps / samples / window). For guided and deconv on lite0 that
  call silently returns plain gradients (its ReLU6 modules are not `nn.ReLU`): it is timed anyway.

Runs are interleaved (ours, anchor, limit per repeat) and the table reports medians.

Usage:
    .venv/bin/python benchmarks/bench_attribution_captum.py [--batch 4] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)

from vizcnn import attribution as viz
from vizcnn import load_model
from vizcnn.attribution import METHODS, attribute
from vizcnn.attribution.methods import default_layer, occlusion_geometry
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import preprocess
from vizcnn.data.samples import sample_image
from vizcnn.hooks import find_module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model("efficientnet_lite0")
    model = loaded.module
    names = ["coffee", "chelsea", "astronaut", "rocket", "motorcycle_left", "camera"]
    images = torch.stack(
        [
            preprocess(sample_image(names[i % len(names)]), loaded.input_size)
            for i in range(args.batch)
        ]
    )
    ig = viz.IntegratedGradients(
        loaded, batch=args.batch * 4
    )  # as `vizcnn attribute --batch B` ran
    smooth = viz.SmoothGrad(loaded, batch=args.batch * 4)
    with torch.no_grad():
        targets = model(loaded.normalize(images)).argmax(1)
    x = loaded.normalize(images)
    layer = find_module(model, default_layer(loaded))
    window, stride = occlusion_geometry(
        viz.Occlusion.window, viz.Occlusion.stride, images.shape[-2:]
    )
    windows = ((224 - window) // stride + 1) ** 2

    def forward_backward() -> None:
        leaf = x.clone().requires_grad_(True)
        model(leaf).gather(1, targets.view(-1, 1)).sum().backward()

    def forward_only() -> None:
        with torch.no_grad():
            model(x)

    anchors: dict[str, Callable[[], object]] = {
        "saliency": lambda: Saliency(model).attribute(x, target=targets),
        "ig": lambda: IntegratedGradients(model).attribute(
            x, target=targets, n_steps=ig.steps, internal_batch_size=ig.batch
        ),
        "smoothgrad": lambda: NoiseTunnel(Saliency(model)).attribute(
            x,
            nt_type="smoothgrad",
            nt_samples=smooth.samples,
            stdevs=0.15,
            target=targets,
            nt_samples_batch_size=max(1, smooth.batch // args.batch),
        ),  # fmt: skip
        "guided": lambda: GuidedBackprop(model).attribute(x, target=targets),
        "deconv": lambda: Deconvolution(model).attribute(x, target=targets),
        "gradcam": lambda: LayerAttribution.interpolate(
            LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True),
            (224, 224),
            "bilinear",
        ),
        "guided-gradcam": lambda: GuidedGradCam(model, layer).attribute(x, target=targets),
        "occlusion": lambda: Occlusion(model).attribute(
            x,
            sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride),
            target=targets,
            perturbations_per_eval=max(1, 32 // args.batch),
        ),  # fmt: skip
    }
    passes = {"ig": ig.steps, "smoothgrad": smooth.samples, "guided-gradcam": 2}

    def timed(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    forward_backward()  # warm-up
    print(
        f"efficientnet_lite0, batch {args.batch}, 224 px, {args.threads} threads, medians of {args.repeats}"
    )
    print("| method | ours s | limit s | ours / limit | captum direct s | ours / captum |")
    print("|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        ours_t, anchor_t, limit_t = [], [], []
        for _ in range(args.repeats):
            ours_t.append(
                timed(
                    lambda m=method: attribute(
                        loaded,
                        images,
                        [{"ig": ig, "smoothgrad": smooth}.get(m, m)],
                        run=RunOptions(batch=args.batch),
                    )
                )
            )
            anchor_t.append(timed(lambda m=method: (forward_only(), anchors[m]())))
            if method == "occlusion":
                limit_t.append(timed(forward_only) * (windows + 1))
            else:
                limit_t.append(timed(forward_backward) * passes.get(method, 1))
        ours, anchor, limit = (statistics.median(v) for v in (ours_t, anchor_t, limit_t))
        print(
            f"| {method} | {ours:.2f} | {limit:.2f} | {ours / limit:.2f} | {anchor:.2f} | {ours / anchor:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
