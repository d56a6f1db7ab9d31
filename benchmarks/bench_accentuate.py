"""Cost of one feature-accentuation step against the network's forward+backward on its batch.

`accentuate` on efficientnet_lite0 (224 px photos from the bundled samples, unit `_blocks.9:56`,
regularized at the default `_blocks.2`, `--crops` crops per image, `--images` images) against
the work it cannot avoid: one forward pass of the same batch (images x crops at 224 px),
stopped at the unit's layer (`capture(stop_early=True)`), and its backward to the input. The
step's time is the median gap between `observe` calls (the loop only, no set-up). Then the
step's parts, each timed alone on the same sizes: the phase parameterization (forward and
backward), the paired crops (`transform_pair`), the photograph's truncated forward to the
regularized layer (the target), the extra hook at the regularized layer in the main pass, and
the Adam update (the crops and the target on all `--crops` crops: a step's photograph pass
takes `reg_crops` of them, all at the balancing step). Precision as `accentuate`'s default
(`RunOptions().amp`: bf16 where the CPU has it) for every variant. `--reg-crops 8,2` times
each value given (default: `accentuate`'s own), their order turning each round.

Times are the process's CPU seconds unless `--clock wall` (run with OMP_NUM_THREADS=1).

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_accentuate.py [--quick] [--images 1]
       [--crops 8] [--reg-crops 8,2] [--steps 24] [--rounds 3] [--clock cpu|wall]
Variants alternate (baseline, accentuate, ...) so that drifts in machine load hit them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from vizcnn import load_model
from vizcnn.core.adam import Adam
from vizcnn.core.devices import make_generator
from vizcnn.core.precision import choose_precision
from vizcnn.core.run_options import RunOptions
from vizcnn.data.samples import sample_image
from vizcnn.hooks import capture, model_guard
from vizcnn.io.imaging import resize
from vizcnn.optvis.accent_regularizer import transform_pair
from vizcnn.optvis.accentuation import accent_transforms, accentuate
from vizcnn.optvis.param import ImagePhaseParam

UNIT_LAYER, CHANNEL, REG = "_blocks.9", 56, "_blocks.2"
# CPU seconds of this process by default: on a shared machine (other jobs time-sharing the
# cores) wall time swings by 2x between identical passes, CPU time far less; with
# OMP_NUM_THREADS=1 the process's CPU time is the work done. `--clock wall` for wall time.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]
SAMPLES = ("coffee", "chelsea", "astronaut", "rocket")


def median_time(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        work()
        times.append(clock() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument(
        "--reg-crops", default="", help="comma-separated reg_crops to time (default: accentuate's)"
    )
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    steps, rounds = (8, 1) if args.quick else (args.steps, args.rounds)

    loaded = load_model("efficientnet_lite0")
    size = loaded.input_size
    photos = torch.stack(
        [resize(sample_image(SAMPLES[i % 4])[None], size)[0] for i in range(args.images)]
    ).clamp(0, 1)
    batch = args.images * args.crops
    precision = choose_precision(loaded.device, RunOptions().amp)
    inputs = torch.rand(batch, 3, *size, generator=make_generator(0))
    # the layout `accentuate` gives the network (channels-last where the run uses it: CUDA,
    # and the CPU under bf16), so the baseline runs the same kernels
    fast = RunOptions().channels_last and precision.channels_last
    layout = torch.channels_last if fast else torch.contiguous_format
    print(
        f"lite0 {UNIT_LAYER}:{CHANNEL}, reg {REG}; {args.images} image(s) x {args.crops} crops = "
        f"batch {batch} at {size[0]} px; {precision.name}, {layout}; {args.clock} clock; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load {os.getloadavg()[0]:.2f}"
    )

    def network(layers: list[str], repeats: int) -> float:
        """Median time of one forward+backward, the model guarded and hooked once (as in a run)."""
        times = []
        with (
            model_guard(loaded.module),
            capture(loaded.module, layers, stop_early=True) as acts,
        ):
            for _ in range(repeats):
                start = clock()
                x = loaded.normalize(inputs).contiguous(memory_format=layout).requires_grad_(True)
                with precision.autocast():
                    acts.run(x)
                    loss = -acts[UNIT_LAYER][:, CHANNEL].float().mean()
                loss.backward()
                times.append(clock() - start)
        return statistics.median(times)

    def accent(reg_crops: int | None) -> float:
        """Median seconds per step of one accentuation (the gaps between `observe` calls)."""
        stamps: list[float] = []
        accentuate(
            loaded, photos, f"{UNIT_LAYER}:{CHANNEL}", reg_layer=REG, steps=steps,
            crops=args.crops, reg_crops=reg_crops, observe=lambda _s, _i: stamps.append(clock()),
        )  # fmt: skip
        return statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:], strict=False))

    variants: list[int | None] = [int(v) for v in args.reg_crops.split(",") if v] or [None]
    network([UNIT_LAYER], 1)  # warm-up
    accentuate(loaded, photos, f"{UNIT_LAYER}:{CHANNEL}", reg_layer=REG, steps=2, crops=1)
    ratios: dict[int | None, list[float]] = {v: [] for v in variants}
    bases = []
    for number in range(rounds):
        base = network([UNIT_LAYER], steps)
        bases.append(base)
        line = f"round {number + 1}: forward+backward {base * 1000:7.1f} ms"
        # the variants' order turns each round, so that none always runs right after the baseline
        turn = number % len(variants)
        for variant in variants[turn:] + variants[:turn]:
            step = accent(variant)
            ratios[variant].append(step / base)
            line += (
                f"; reg_crops {variant or 'default'}: step {step * 1000:6.1f} ms, {step / base:.3f}"
            )
        print(f"{line} (load {os.getloadavg()[0]:.2f})")
    base = statistics.median(bases)
    for variant, values in ratios.items():
        print(
            f"reg_crops {variant or 'default'}: median ratio step / (forward+backward of the same "
            f"batch) {statistics.median(values):.3f}"
        )

    # the parts of a step, each alone
    param = ImagePhaseParam(photos)
    generator = make_generator(1)
    repeats = 3 if args.quick else 7

    def param_work() -> None:
        param().sum().backward()

    def crops_work() -> None:
        images = param().detach().repeat(args.crops, 1, 1, 1).requires_grad_(True)
        out, _ = transform_pair(
            images, photos.repeat(args.crops, 1, 1, 1), accent_transforms(), size, generator,
            then=loaded.normalize,
        )  # fmt: skip
        out.sum().backward()

    def passes(repeats: int) -> dict[str, float]:
        """Median seconds of the plain pass, the pass hooked at both layers, and the target
        pass, interleaved iteration by iteration inside one guard (as in a run)."""
        times: dict[str, list[float]] = {"plain": [], "both": [], "target": []}
        with model_guard(loaded.module):
            for _ in range(repeats):
                for kind, layers in (("plain", [UNIT_LAYER]), ("both", [REG, UNIT_LAYER])):
                    with capture(loaded.module, layers, stop_early=True) as acts:
                        start = clock()
                        x = (
                            loaded.normalize(inputs)
                            .contiguous(memory_format=layout)
                            .requires_grad_(True)
                        )
                        with precision.autocast():
                            acts.run(x)
                            loss = -acts[UNIT_LAYER][:, CHANNEL].float().mean()
                        loss.backward()
                        times[kind].append(clock() - start)
                with (
                    torch.no_grad(),
                    capture(loaded.module, [REG], stop_early=True, detach=True) as acts,
                ):
                    start = clock()
                    with precision.autocast():
                        acts.run(loaded.normalize(inputs).contiguous(memory_format=layout))
                    times["target"].append(clock() - start)
        return {kind: statistics.median(values) for kind, values in times.items()}

    measured = passes(repeats)
    adam = Adam(param.parameters(), lr=0.05)
    param().sum().backward()
    parts = {
        "phase parameterization fwd+bwd": median_time(param_work, repeats),
        "paired crops (transform_pair, all crops) fwd+bwd": median_time(crops_work, repeats),
        f"photograph's forward to {REG} (target, all crops)": measured["target"],
        f"main pass hooked at {REG} too (minus plain)": measured["both"] - measured["plain"],
        "Adam update": median_time(adam.step, repeats),
    }
    for name, seconds in parts.items():
        print(f"  {name:52s} {seconds * 1000:8.1f} ms  ({seconds / base:5.1%} of fwd+bwd)")
    print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
