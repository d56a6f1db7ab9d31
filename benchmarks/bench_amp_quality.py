"""Quality under bfloat16 (`amp=True`) against float32, for render and dream (issue 9).

1. Channel renders: 16 channels (`--units`, default `_blocks.6:0:16`), same seed, float32 and bf16.
   The objective reached is `RenderResult.values`: each unit's channel mean on the final,
   untransformed image (resized to the input size), computed in float32 outside autocast.
   Reported: bf16 / float32 per unit, its min / median / max, and how many are within 5 %.
2. The espresso class render (ImageNet class 967), float32 and bf16: p(espresso) from lite0
   itself (float32, final image resized to 224) and from efficientnet_lite1 (240 px, its own
   preprocessing), with each network's top-1 class.
3. Dream of sample:coffee with the default settings: mean |bf16 - float32| in 0..255 units, next to
   how far the float32 dream moved the photo.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_amp_quality.py [--steps 128] [--class-steps 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from vizcnn import load_model
from vizcnn.core.precision import cpu_bf16_supported
from vizcnn.core.run_options import RunOptions
from vizcnn.data import sample_image
from vizcnn.deepdream import DreamConfig, dream
from vizcnn.io.imaging import resize, save_png
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis import RenderConfig, render
from vizcnn.optvis import objectives as obj

ESPRESSO = 967


def probabilities(loaded: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Softmax of `loaded` on `(B, 3, H, W)` images in [0, 1], float32, at its input size."""
    with torch.no_grad():
        logits = loaded.module(loaded.normalize(resize(images, loaded.input_size)))
    return logits.float().softmax(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", default="_blocks.6:0:16")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--class-steps", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for the espresso and dream PNGs")
    args = parser.parse_args()
    print(
        f"native bf16: {cpu_bf16_supported()}, threads {torch.get_num_threads()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    lite0 = load_model("efficientnet_lite0", device="cpu")
    lite1 = load_model("efficientnet_lite1", device="cpu")

    values: dict[bool, torch.Tensor] = {}
    for amp in (False, True):
        start = time.perf_counter()
        config = RenderConfig(steps=args.steps)
        values[amp] = render(
            lite0, args.units, config, seed=args.seed, run=RunOptions(batch=1, amp=amp)
        ).values
        print(f"render {args.units} amp={amp}: {time.perf_counter() - start:.1f} s")
    ratio = values[True] / values[False]
    within = int(((ratio - 1).abs() <= 0.05).sum())
    print("channel objective bf16 / float32:", " ".join(f"{r:.3f}" for r in ratio.tolist()))
    print(
        f"  min {float(ratio.min()):.3f}  median {statistics.median(ratio.tolist()):.3f}  "
        f"max {float(ratio.max()):.3f}; within 5 %: {within} of {len(ratio)}; "
        f"mean float32 {float(values[False].mean()):.3f}, bf16 {float(values[True].mean()):.3f}"
    )

    for amp in (False, True):
        start = time.perf_counter()
        config = RenderConfig(steps=args.class_steps, param="fft")  # as recorded
        image = render(
            lite0,
            [obj.class_logit(ESPRESSO)],
            config,
            seed=args.seed,
            run=RunOptions(batch=1, amp=amp),
        ).images
        seconds = time.perf_counter() - start
        if args.out:
            save_png(image[0], Path(args.out) / f"espresso_{'bf16' if amp else 'fp32'}.png")
        p0, p1 = probabilities(lite0, image)[0], probabilities(lite1, image)[0]
        print(
            f"espresso render amp={amp} ({args.class_steps} steps, {seconds:.1f} s): "
            f"lite0 p={float(p0[ESPRESSO]):.3f} (top-1 {lite0.labels[int(p0.argmax())]}), "
            f"lite1 p={float(p1[ESPRESSO]):.3f} (top-1 {lite1.labels[int(p1.argmax())]})"
        )

    photo = sample_image("coffee")
    dreams = {
        amp: dream(lite0, photo, DreamConfig(), run=RunOptions(amp=amp)) for amp in (False, True)
    }
    if args.out:
        for amp, picture in dreams.items():
            save_png(picture, Path(args.out) / f"dream_{'bf16' if amp else 'fp32'}.png")
    diff = float((dreams[True] - dreams[False]).abs().mean()) * 255
    moved = float((dreams[False] - photo).abs().mean()) * 255
    print(
        f"dream coffee (defaults): mean |bf16 - float32| {diff:.2f} / 255; "
        f"the float32 dream moved the photo {moved:.2f} / 255"
    )
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
