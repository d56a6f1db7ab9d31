"""Benchmark `vizcnn.render`: overhead against the raw truncated network, and speed per unit
against the anchors' way (one unit at a time through the whole network, as lucent's render_vis).

Workload: `--units` channels of `--layer` of the default model (efficientnet_lite0), rendered as
one batch with the recipe's settings (128 px Fourier images with decorrelated colour, lucid's
transforms, upsampled to 224, Adam lr 0.05). Ratios are per optimization step.

1. ours / limit: one steady-state step of `render` over one step of the bare forward (stopped at
   the layer) + backward of the same channel objectives on the same batch of 224 px inputs, with
   no parameterization, transforms, normalization or optimizer. Limit 1.15.
2. anchors' way / ours, per unit: lucent's loop, re-implemented faithfully: batch 1, Fourier
   image, transforms as five separate ops (pad, jitter by crop, scale by interpolate, rotate by
   affine grid, jitter) then upsample to 224, a forward hook on every module, the whole network,
   model parameters left trainable (lucent never freezes them, so backward also computes every
   weight gradient). Goal >= 2. A second variant freezes the weights, to show how much of the
   gain comes from batching and truncation alone.

The machine is shared, so the measurements are interleaved step by step: after every step of
`render` (from its progress callback) one step of each of the other three runs, on copies of the
model (no hooks shared); the time spent in the callback is not counted as ours. Medians.

Usage:
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_render.py [--threads 2] [--steps 8] [--units 32]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from vizcnn import load_model
from vizcnn.core.run_options import RunOptions
from vizcnn.hooks import capture
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.objectives import ObjectiveContext, stack
from vizcnn.optvis.param import ImageParam
from vizcnn.optvis.rendering import render


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Limit:
    """The bare truncated forward + backward of the same objectives on a fixed batch."""

    def __init__(self, loaded: LoadedModel, units: list[str], device: torch.device) -> None:
        self.module = copy.deepcopy(loaded.module)
        self.objective = stack(units)
        self.layer = units[0].rpartition(":")[0]
        self.x = torch.randn(len(units), 3, *loaded.input_size, device=device, requires_grad=True)
        self.groups = torch.arange(len(units), device=device)

    def step(self) -> None:
        with capture(self.module, [self.layer], stop_early=True) as acts:
            acts.run(self.x)
            values = self.objective(ObjectiveContext(acts.outputs, self.x, self.groups))
            torch.autograd.grad(-values.sum(), self.x)


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


class Anchor:
    """lucent's render_vis for one unit at a time, one step per call."""

    def __init__(
        self, loaded: LoadedModel, units: list[str], device: torch.device, trainable: bool
    ) -> None:
        self.loaded = loaded
        self.module = copy.deepcopy(loaded.module).requires_grad_(trainable)
        self.features: dict[str, torch.Tensor] = {}
        for name, sub in self.module.named_modules():  # lucent's hook_model: every module
            sub.register_forward_hook(self._keeper(name))
        self.units = units
        self.device = device
        self.gen = torch.Generator().manual_seed(0)
        self.count = 0

    def _keeper(self, name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            if isinstance(out, torch.Tensor):
                self.features[name] = out

        return hook

    def step(self) -> None:
        unit = self.units[self.count % len(self.units)]
        if self.count % 64 == 0:  # a fresh image now and then, as for the next unit
            self.param = ImageParam("fft", 1, 3, (128, 128), generator=self.gen, device=self.device)
            self.optimizer = torch.optim.Adam(self.param.parameters(), lr=0.05)
        self.count += 1
        layer, _, index = unit.rpartition(":")
        self.optimizer.zero_grad()
        self.module(self.loaded.normalize(lucent_transforms(self.param(), self.gen)))
        loss = -self.features[layer][:, int(index)].mean()
        loss.backward()
        self.optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="_blocks.7")
    parser.add_argument("--units", type=int, default=32, help="channels rendered in one batch")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    loaded = load_model(device=device)
    units = [f"{args.layer}:{c}" for c in range(args.units)]
    others = {
        "limit": Limit(loaded, units, device),
        "anchor": Anchor(loaded, units, device, trainable=True),
        "anchor_frozen": Anchor(loaded, units, device, trainable=False),
    }
    times: dict[str, list[float]] = {"ours": [], **{name: [] for name in others}}
    marks = {"left": 0.0}

    def progress(done: int, total: int, message: str) -> None:
        _sync(device)
        entered = time.perf_counter()
        if marks["left"]:
            times["ours"].append(entered - marks["left"])
        for name, job in others.items():
            start = time.perf_counter()
            job.step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
        marks["left"] = time.perf_counter()

    for job in others.values():  # warm-up outside the timings
        job.step()
    started = time.perf_counter()
    render(
        loaded,
        units,
        # float32 and fft, like the comparison loops (auto would pick bf16 on a bf16 CPU)
        RenderConfig(steps=args.steps, param="fft"),
        seed=0,
        progress=progress,
        run=RunOptions(batch=len(units), amp=False),
    )
    wall = time.perf_counter() - started - sum(sum(times[name]) for name in others)
    for name in others:
        times[name] = times[name][1:]  # the first step of each includes set-up, as ours' does
    med = {name: statistics.median(values) for name, values in times.items()}
    ours_unit = med["ours"] / args.units
    print(
        f"efficientnet_lite0, {args.units} channels of {args.layer}, 128 px -> 224, batch "
        f"{args.units}, {args.threads} threads on {device}; medians over {len(times['ours'])} "
        "interleaved steps:"
    )
    print()
    print("| measure | seconds per step | ratio | goal |")
    print("|---|---|---|---|")
    print(f"| ours, batch of {args.units} | {med['ours']:.3f} | | |")
    print(
        f"| ours, whole call incl. set-up and final pass, per step | {wall / args.steps:.3f} | | |"
    )
    print(f"| limit: bare truncated fwd+bwd, same batch | {med['limit']:.3f} | | |")
    print(f"| **ours / limit** | | **{med['ours'] / med['limit']:.3f}** | <= 1.15 |")
    print(f"| ours per unit | {ours_unit:.4f} | | |")
    print(f"| anchors' way per unit (lucent render_vis) | {med['anchor']:.4f} | | |")
    print(f"| **anchors' way / ours, per unit** | | **{med['anchor'] / ours_unit:.2f}** | >= 2 |")
    print(f"| anchors' way with frozen weights, per unit | {med['anchor_frozen']:.4f} | | |")
    print(f"| anchors' way frozen / ours, per unit | | {med['anchor_frozen'] / ours_unit:.2f} | |")


if __name__ == "__main__":
    main()
