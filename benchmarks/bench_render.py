"""Benchmark `vizcnn.render`: overhead against the raw truncated network, and speed per unit
against the anchors' way (one unit at a time through the whole network, as lucent's render_vis).

Workload: `--units` channels of `--layer` of the default model (efficientnet_lite0), rendered
as one batch at the recipe's settings (128 px Fourier images with decorrelated colour, upsampled
to 224, lucid's transforms, Adam lr 0.05). Ratios are per optimization step, so a few steps do.

1. ours / limit: seconds per step of `render` over seconds per step of the bare forward (stopped
   at the layer) + backward of the same channel objectives on the same batch of 224 px inputs,
   with no parameterization, transforms, normalization or optimizer. Limit 1.15.
2. anchors' way / ours, per unit: lucent's loop re-implemented faithfully: batch 1, Fourier
   image, transforms as five separate ops (pad, jitter by crop, scale by interpolate, rotate by
   affine grid, jitter) then upsample to 224, a forward hook on every module, the whole network
   run, model parameters left trainable (lucent never freezes them, so backward also computes
   every weight gradient). Goal >= 2. A second row freezes the weights, to show what part of the
   gain comes from truncation and batching alone.

Timings are interleaved and repeated; the table reports medians.

Usage:
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_render.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vizcnn import load_model
from vizcnn.hooks import capture
from vizcnn.models import LoadedModel
from vizcnn.objectives import stack
from vizcnn.param import ImageParam
from vizcnn.render import RenderConfig, render


def ours_per_step(loaded: LoadedModel, units: list[str], steps: int, device: torch.device) -> float:
    config = RenderConfig(steps=steps, batch=len(units))
    generator = torch.Generator(device=device).manual_seed(0)
    start = time.perf_counter()
    render(loaded, units, config, generator=generator)
    return (time.perf_counter() - start) / steps


def limit_per_step(
    loaded: LoadedModel, units: list[str], steps: int, device: torch.device
) -> float:
    """Bare truncated forward + backward of the same objectives on a fixed batch."""
    objective = stack(units)
    layer = units[0].rpartition(":")[0]
    x = torch.randn(len(units), 3, *loaded.input_size, device=device, requires_grad=True)
    from vizcnn.objectives import ObjectiveContext

    groups = torch.arange(len(units), device=device)
    with capture(loaded.module, [layer], stop_early=True) as acts:
        start = time.perf_counter()
        for _ in range(steps):
            acts.run(x)
            loss = -objective(ObjectiveContext(acts.outputs, x, groups)).sum()
            (grad,) = torch.autograd.grad(loss, x)
        _sync(device)
        return (time.perf_counter() - start) / steps


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lucent_transforms(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """lucent's standard_transforms + upsample, one op after another, on a (1, C, H, W) image."""

    def jitter(x: torch.Tensor, d: int) -> torch.Tensor:
        dx, dy = (int(v) for v in torch.randint(d, (2,), generator=gen))
        return x[:, :, dx : dx + x.shape[2] - d, dy : dy + x.shape[3] - d]

    x = F.pad(image, (12, 12, 12, 12), mode="constant", value=0.5)
    x = jitter(x, 8)
    scales = [1 + (i - 5) / 50.0 for i in range(11)]
    scale = scales[int(torch.randint(len(scales), (1,), generator=gen))]
    x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)
    angle = math.radians(float(torch.randint(-10, 11, (1,), generator=gen)))
    theta = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]],
        device=x.device,
    ).unsqueeze(0)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False)
    x = jitter(x, 4)
    return F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=True)


def anchor_per_unit_step(
    loaded: LoadedModel, units: list[str], steps: int, device: torch.device, trainable: bool
) -> float:
    """lucent's render_vis, one unit after another (seconds per unit per step)."""
    module = loaded.module
    saved = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(trainable)
    features: dict[str, torch.Tensor] = {}
    handles = []
    for name, sub in module.named_modules():  # lucent's hook_model: every module

        def hook(_m: torch.nn.Module, _i: object, out: object, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                features[name] = out

        handles.append(sub.register_forward_hook(hook))
    gen = torch.Generator().manual_seed(0)
    try:
        start = time.perf_counter()
        for unit in units:
            layer, _, index = unit.rpartition(":")
            param = ImageParam("fft", 1, 3, (128, 128), generator=gen, device=device)
            optimizer = torch.optim.Adam(param.parameters(), lr=0.05)
            for _ in range(steps):
                optimizer.zero_grad()
                module(loaded.normalize(lucent_transforms(param(), gen)))
                loss = -features[layer][:, int(index)].mean()
                loss.backward()
                optimizer.step()
        _sync(device)
        return (time.perf_counter() - start) / (steps * len(units))
    finally:
        for handle in handles:
            handle.remove()
        for parameter, flag in zip(module.parameters(), saved, strict=True):
            parameter.requires_grad_(flag)
        module.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_blocks.7")
    parser.add_argument("--units", type=int, default=32, help="channels rendered in one batch")
    parser.add_argument("--steps", type=int, default=8, help="steps per batched measurement")
    parser.add_argument("--anchor-units", type=int, default=2)
    parser.add_argument("--anchor-steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loaded = load_model(device=device)
    units = [f"{args.layer}:{c}" for c in range(args.units)]
    anchor_units = units[: args.anchor_units]
    # warm-up (allocator, kernels) outside the timings
    ours_per_step(loaded, units[:2], 1, device)
    anchor_per_unit_step(loaded, anchor_units[:1], 1, device, trainable=True)

    runs: dict[str, list[float]] = {"ours": [], "limit": [], "anchor": [], "anchor_frozen": []}
    jobs: dict[str, Callable[[], float]] = {
        "ours": lambda: ours_per_step(loaded, units, args.steps, device),
        "limit": lambda: limit_per_step(loaded, units, args.steps, device),
        "anchor": lambda: anchor_per_unit_step(
            loaded, anchor_units, args.anchor_steps, device, trainable=True
        ),
        "anchor_frozen": lambda: anchor_per_unit_step(
            loaded, anchor_units, args.anchor_steps, device, trainable=False
        ),
    }
    for repeat in range(args.repeats):
        for name, job in jobs.items():
            runs[name].append(job())
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in runs.items()))
    median = {name: statistics.median(values) for name, values in runs.items()}
    ours_unit = median["ours"] / args.units
    print()
    print(
        f"efficientnet_lite0, {args.units} channels of {args.layer}, 128 px -> 224, batch "
        f"{args.units}, {args.threads} threads on {device}, medians of {args.repeats}:"
    )
    print()
    print("| measure | seconds per step | ratio | goal |")
    print("|---|---|---|---|")
    print(f"| ours (batch of {args.units}) | {median['ours']:.3f} | | |")
    print(f"| limit: bare truncated fwd+bwd, same batch | {median['limit']:.3f} | | |")
    print(f"| **ours / limit** | | **{median['ours'] / median['limit']:.3f}** | <= 1.15 |")
    print(f"| ours per unit | {ours_unit:.4f} | | |")
    print(f"| anchors' way per unit (lucent render_vis) | {median['anchor']:.4f} | | |")
    print(
        f"| **anchors' way / ours, per unit** | | **{median['anchor'] / ours_unit:.2f}** | >= 2 |"
    )
    print(f"| anchors' way, weights frozen, per unit | {median['anchor_frozen']:.4f} | | |")
    print(
        f"| anchors' way frozen / ours, per unit | | {median['anchor_frozen'] / ours_unit:.2f} | |"
    )


if __name__ == "__main__":
    main()
