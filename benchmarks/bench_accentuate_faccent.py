"""Cost of one feature-accentuation step: faccent (the reference code) against `accentuate`.

Same model (efficientnet_lite0, ImageNet weights), same photo (the bundled `coffee` sample
resized to 224 px), same unit (`_blocks.9` channel 56), same regularized layer (`_blocks.2`),
8 crops per step for both; each step's time against the work neither can avoid: one forward
of 8 crops at 224 px through the model, stopped at `_blocks.9` (`capture(stop_early=True)`),
and its backward to the input.

faccent is called as its README's notebook (API_demo.ipynb) calls it,
`render.render_vis(model, "_blocks_9:56", init_img=photo, accent_reg_layer="_blocks_2")`
(faccent names layers by their module path joined with `_`), on its own copy of the model
(faccent clears every submodule's hooks and switches off the weights' gradients), and with
faccent's defaults except:
  - `nb_transforms=8` (default 16): the same crop count as ours;
  - `img_size=(224, 224)` (default 512): the canvas is the photo's size, as ours
    (`--faccent-img-size 512` for faccent's default canvas, the 224 px photo upsampled);
  - `model_input_size=(224, 224)`, `model_input_range=(-2, 2)`: faccent's own default values,
    passed so that it does not warn (faccent normalizes by a linear range, not ImageNet's
    per-channel mean and std; same cost);
  - `out_thresholds=[0, 2, 4, ..., steps, steps + 1]`: the loop length (steps + 2 iterations;
    the default is 99), keeping the default's copy of the image every second step;
  - `inline_thresholds=()`, `progress=False`: no plots, no tqdm bar (notebook display), and
    its prints are captured.
So faccent runs: the default `param.fourier` parameterization from the photo, its standard
transforms (`box_crop_2` 5-99 %, `uniform_gaussian_noise(0.02)`, then antialiased resize to
224 and the range), the photo concatenated to the image (`forward_init_img`), so each step
is one forward of 2 x 8 = 16 crops through the whole model (every module hooked, no early
stop) and two backward passes (its transparency objective, then the full objective), Adam at
0.05, alpha 1 with its balance measured once before the loop. float32 (faccent has no bf16).

How faccent is timed: a forward pre-hook on its model (the top module, whose hooks faccent
leaves alone) records the clock at every model call; render_vis calls the model once before
the loop (the balance) and once per step, so the gap between two consecutive calls in the
loop is exactly one step's work (the rest of step k: forward, both backward passes, Adam;
then step k+1's image and crops). Ours: the gap between consecutive `observe` calls (as in
`bench_accentuate.py`). Both run steps + 2 steps and take the median of the last `steps`
gaps (the first step, with the optimizer's first update, is left out); set-up is not counted.

`accentuate` is timed twice: float32 (`run=RunOptions(amp=False)`, the like-for-like
comparison) and at its default precision (`RunOptions().amp`: bf16 autocast where the CPU has
it, channels-last then). The forward+backward baseline is timed in float32 and, where the
default precision differs, at that precision too (in the layout `accentuate` uses).

Times are the process's CPU seconds unless `--clock wall` (run with OMP_NUM_THREADS=1).

Needs faccent and what it imports at load time (decorator, einops, kornia, ipywidgets; its pin
kornia==0.4.1 does not matter here: kornia serves only its jitter and rotation transforms,
not the box transforms used by default with an init image).

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_accentuate_faccent.py [--quick]
       [--steps 16] [--rounds 3] [--clock cpu|wall] [--faccent-img-size 224]
Variants alternate within each round (baselines, faccent, ours float32, ours default) so that
drifts in machine load hit them alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import statistics
import time

import numpy as np
import torch
from faccent.render import render_vis

from vizcnn import load_model
from vizcnn.core.devices import make_generator
from vizcnn.core.precision import choose_precision
from vizcnn.core.run_options import RunOptions
from vizcnn.data.samples import sample_image
from vizcnn.hooks import capture, model_guard
from vizcnn.io.imaging import resize
from vizcnn.optvis.accentuation import accentuate

UNIT_LAYER, CHANNEL, REG = "_blocks.9", 56, "_blocks.2"
CROPS = 8
FACCENT_RANGE = (-2, 2)  # faccent's default_model_input_range
# CPU seconds of this process by default (see bench_accentuate.py); `--clock wall` for wall.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def faccent_name(layer: str) -> str:
    """faccent's name of a module: its path joined with `_` (`_blocks.9` -> `_blocks_9`)."""
    return layer.replace(".", "_")


def median_gap(stamps: list[float], steps: int) -> float:
    """Median of the last `steps` gaps between consecutive stamps."""
    gaps = [b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True)]
    return statistics.median(gaps[-steps:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny: 2 steps, 1 round")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument(
        "--faccent-img-size", type=int, default=224,
        help="faccent's canvas (img_size); 224 = the photo's size, 512 = faccent's default",
    )  # fmt: skip
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    steps, rounds = (2, 1) if args.quick else (args.steps, args.rounds)

    loaded = load_model("efficientnet_lite0")
    size = loaded.input_size
    photo = resize(sample_image("coffee")[None], size).clamp(0, 1)  # (1, 3, 224, 224)
    unit = f"{UNIT_LAYER}:{CHANNEL}"
    faccent_unit = f"{faccent_name(UNIT_LAYER)}:{CHANNEL}"
    precision = choose_precision(loaded.device, RunOptions().amp)
    fast = RunOptions().channels_last and precision.channels_last
    layout = torch.channels_last if fast else torch.contiguous_format
    f32 = choose_precision(loaded.device, False)
    inputs = torch.rand(CROPS, 3, *size, generator=make_generator(0))

    fmodel = copy.deepcopy(loaded.module).eval()  # faccent clears hooks, freezes weights
    img_size = (args.faccent_img_size, args.faccent_img_size)
    iterations = steps + 2
    faccent_kwargs = {
        "nb_transforms": CROPS,
        "img_size": img_size,
        "model_input_size": tuple(size),
        "model_input_range": FACCENT_RANGE,
        "out_thresholds": [*range(0, iterations - 1, 2), iterations - 1],
        "inline_thresholds": (),
        "progress": False,
    }
    print(
        f"lite0 {unit}, reg {REG}; photo coffee at {size[0]} px; {CROPS} crops; "
        f"{steps} timed steps x {rounds} round(s); {args.clock} clock; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} "
        f"(torch threads {torch.get_num_threads()}); load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"faccent: render_vis(model, {faccent_unit!r}, init_img=photo, "
        f"accent_reg_layer={faccent_name(REG)!r}, "
        + ", ".join(f"{k}={v!r}" for k, v in faccent_kwargs.items())
        + "); defaults otherwise: param.fourier, standard_box_transforms, Adam 0.05, alpha 1, "
        "float32"
    )
    print(
        f"ours: accentuate(loaded, photo, {unit!r}, reg_layer={REG!r}, crops={CROPS}), "
        f"float32 (amp=False) and default ({precision.name}, {layout})"
    )

    def network(prec, memory_format, repeats: int) -> float:
        """Median time of one forward (to the unit's layer) + backward to the input."""
        times = []
        with (
            model_guard(loaded.module),
            capture(loaded.module, [UNIT_LAYER], stop_early=True) as acts,
        ):
            for _ in range(repeats):
                start = clock()
                x = (
                    loaded.normalize(inputs)
                    .contiguous(memory_format=memory_format)
                    .requires_grad_(True)
                )
                with prec.autocast():
                    acts.run(x)
                    loss = -acts[UNIT_LAYER][:, CHANNEL].float().mean()
                loss.backward()
                times.append(clock() - start)
        return statistics.median(times)

    def faccent_run(n: int) -> tuple[list[float], str]:
        """Clock stamps at faccent's loop's model calls (n steps), and what it printed."""
        stamps: list[float] = []
        handle = fmodel.register_forward_pre_hook(lambda _m, _i: stamps.append(clock()))
        torch.manual_seed(0)  # faccent draws its crops and noise from the global generators
        np.random.seed(0)
        printed = io.StringIO()
        kwargs = dict(faccent_kwargs, out_thresholds=[*range(0, n - 1, 2), n - 1])
        try:
            with contextlib.redirect_stdout(printed):
                render_vis(
                    fmodel, faccent_unit, init_img=photo,
                    accent_reg_layer=faccent_name(REG), **kwargs,
                )  # fmt: skip
        finally:
            handle.remove()
        # one model call before the loop (the balance), then one per step
        if len(stamps) != n + 1:
            raise RuntimeError(f"faccent called the model {len(stamps)} times, expected {n + 1}")
        return stamps[1:], printed.getvalue()

    def faccent_step() -> float:
        stamps, _ = faccent_run(iterations)
        return median_gap(stamps, steps)

    def ours_step(run: RunOptions) -> float:
        stamps: list[float] = []
        accentuate(
            loaded, photo, unit, reg_layer=REG, steps=iterations, crops=CROPS, run=run,
            observe=lambda _s, _i: stamps.append(clock()),
        )  # fmt: skip
        return median_gap(stamps, steps)

    # warm-up: each variant once, briefly
    network(f32, torch.contiguous_format, 1)
    network(precision, layout, 1)
    _, printed = faccent_run(2)
    ratio_line = [line for line in printed.splitlines() if "ratio" in line]
    print(f"faccent says: {'; '.join(ratio_line) or '(nothing about its balance)'}")
    for run in (RunOptions(amp=False), RunOptions()):
        accentuate(loaded, photo, unit, reg_layer=REG, steps=2, crops=CROPS, run=run)

    default_differs = precision.name != f32.name
    names = ["fwd+bwd float32"]
    if default_differs:
        names.append(f"fwd+bwd {precision.name}")
    names += ["faccent float32", "ours float32", f"ours default ({precision.name})"]
    results: dict[str, list[float]] = {name: [] for name in names}
    repeats = max(3, steps // 3)
    for number in range(rounds):
        measured = {"fwd+bwd float32": network(f32, torch.contiguous_format, repeats)}
        if default_differs:
            measured[f"fwd+bwd {precision.name}"] = network(precision, layout, repeats)
        measured["faccent float32"] = faccent_step()
        measured["ours float32"] = ours_step(RunOptions(amp=False))
        measured[f"ours default ({precision.name})"] = ours_step(RunOptions())
        for name, seconds in measured.items():
            results[name].append(seconds)
        print(
            f"round {number + 1}: "
            + ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in measured.items())
            + f" (load {os.getloadavg()[0]:.2f})"
        )

    medians = {name: statistics.median(values) for name, values in results.items()}
    base = medians["fwd+bwd float32"]
    own_base = medians[f"fwd+bwd {precision.name}"] if default_differs else base
    print(
        f"\nmedians over {rounds} round(s); fwd+bwd = {CROPS} crops at {size[0]} px to "
        f"{UNIT_LAYER} and back to the input"
    )
    print(f"{'variant':28s} {'ms/step':>9s} {'/ fwd+bwd f32':>14s} {'/ fwd+bwd same prec':>20s}")
    for name in names:
        seconds = medians[name]
        same = own_base if name.startswith("ours default") or name == names[1] else base
        print(f"{name:28s} {seconds * 1000:9.1f} {seconds / base:14.2f} {seconds / same:20.2f}")
    print(
        f"faccent / ours float32: {medians['faccent float32'] / medians['ours float32']:.2f}; "
        f"faccent / ours default: "
        f"{medians['faccent float32'] / medians[f'ours default ({precision.name})']:.2f}"
    )
    print(f"load after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
