"""bfloat16 autocast on the CPU (`--amp`) against float32, for render and dream, in one process.

Ratios of interleaved runs (float32 time / amp time), and quality: each render's channel
objective measured in float32 on the final image, amp relative to float32; the dream's mean
absolute difference from the float32 dream, in 0..255 pixel units.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_amp_cpu.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vizcnn import load_model
from vizcnn.core.precision import cpu_bf16_supported
from vizcnn.data import sample_image
from vizcnn.deepdream import DreamConfig, dream
from vizcnn.optvis import RenderConfig, render


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"native bf16: {cpu_bf16_supported()}, threads {torch.get_num_threads()}")
    loaded = load_model(device="cpu")
    units = [f"_blocks.6:{c}" for c in range(8)]
    photo = sample_image("coffee")
    times: dict[str, list[float]] = {k: [] for k in ("render32", "render16", "dream32", "dream16")}
    values: dict[bool, torch.Tensor] = {}
    dreams: dict[bool, torch.Tensor] = {}
    for _ in range(args.repeats):
        for amp in (False, True):
            config = RenderConfig(steps=args.steps, batch=8, amp=amp)
            start = time.perf_counter()
            result = render(loaded, units, config, seed=0)
            times["render16" if amp else "render32"].append(time.perf_counter() - start)
            values[amp] = result.values
            start = time.perf_counter()
            out = dream(loaded, photo, DreamConfig(octaves=2, steps=5, amp=amp))
            times["dream16" if amp else "dream32"].append(time.perf_counter() - start)
            dreams[amp] = out
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"render 8 units x {args.steps} steps: float32 {med['render32']:.2f} s, amp "
          f"{med['render16']:.2f} s, ratio {med['render32'] / med['render16']:.2f}")  # fmt: skip
    print(f"dream coffee 2 octaves x 5 steps: float32 {med['dream32']:.2f} s, amp "
          f"{med['dream16']:.2f} s, ratio {med['dream32'] / med['dream16']:.2f}")  # fmt: skip
    relative = (values[True] / values[False]).tolist()
    print("render objective amp / float32 per unit:", ", ".join(f"{r:.3f}" for r in relative))
    diff = float((dreams[True] - dreams[False]).abs().mean()) * 255
    change = float((dreams[False] - photo).abs().mean()) * 255
    print(f"dream mean |amp - float32| {diff:.2f} / 255 (the float32 dream moved {change:.2f})")


if __name__ == "__main__":
    main()
