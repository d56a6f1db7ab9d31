"""`vizcnn render`: images that maximize channels, neurons, classes or a whole layer."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.core.units import DEFAULT_CHANNELS
from vizcnn.io.paths import ensure_writable
from vizcnn.optvis.config import DEFAULT_BATCH, LR_SCHEDULES, PARAM_CHOICES, RenderConfig
from vizcnn.runs.render import RenderRun, render_folder

from .common import as_flags, device_from, friendly_errors, run_options
from .memory import reuse_freed_memory
from .model_options import model_options, open_model
from .options import (
    FINITE_FLOAT,
    batch_option,
    output_options,
    precision_options,
    run_from,
    shown,
)
from .progress import progress_bar
from .render_units import OBJECTIVES, build_units

R = RenderConfig


def _summary(run: RenderRun) -> str:
    layers = {unit.layer for unit in run.units}
    what = "classes" if layers == {None} else ", ".join(sorted(str(v) for v in layers))
    again = f", {run.replaced} re-rendered with new settings" if run.replaced else ""
    note = f" ({as_flags(run.precision_note)})" if run.precision_note else ""
    return (
        f"rendered {run.rendered} unit(s) of {what} ({run.skipped} already done{again}) in "
        f"{run.seconds:.0f}s -> {run.folder}/ (sheet.png, manifest.json){note}"
    )


@click.command("render")
@model_options
@click.option("-l", "--layer", default=None, metavar="LAYER[#k][:CHANNELS][@WEIGHT]",
              help="Target layer, optionally with channels: _blocks.9, _blocks.9:0-15, "
              "_blocks.9:0:64:2 (default: the model's render layer; see `vizcnn layers`). "
              f"Without channels: the first {DEFAULT_CHANNELS.split(':')[1]}.")  # fmt: skip
@click.option("-c", "--channel", type=int, multiple=True,
              help="Channel to render; repeat for more (-c 3 -c 17).")  # fmt: skip
@click.option("--channels", help="Channel range or list: 0:64, 0:64:2, 0-15, 3,17,40.")
@click.option("--all", "all_channels", is_flag=True, help="Render every channel of the layer.")
@click.option("--objective", type=click.Choice(OBJECTIVES),
              help="What to maximize: channel mean, neuron (one position), class logit, or layer "
              "L2 (DeepDream). Default: channel, or class when --class is given.")  # fmt: skip
@click.option("--class", "classes", multiple=True,
              help="Class name (case-insensitive) or index; repeat for more.")  # fmt: skip
@click.option("--position", help="Neuron position Y,X in the layer's map (default: the centre).")
@shown("--steps", type=int, default=R.steps, help="Optimizer steps.")
@click.option("--image-size", "image_size", type=int, default=R.size,
              help="Rendered image side in pixels (default 128, or the model's input size when "
              "smaller); upsampled to the model's --input-size.")  # fmt: skip
@shown("--param", type=click.Choice(PARAM_CHOICES), default=R.param,
       help="Parameterization: maco (Fourier phase only, amplitude fixed to a natural-image "
       "spectrum; random crops), fft (lucid's recipe: Fourier, 1/f scaled; pad/jitter/scale/"
       "rotate), pixel, or auto: maco for --class renders (a second network recognizes them "
       "more often), fft for channels, neurons and layers (higher activation).")  # fmt: skip
@shown("--crops", type=int, default=R.crops, help="Transformed copies of each image per step, "
       "objective averaged (each costs a forward and backward pass).")  # fmt: skip
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=R.lr_schedule,
              help="Learning rate over the steps: constant, or cosine decay to 0 (default: the "
              "--param recipe's: constant for fft and pixel, cosine for maco).")  # fmt: skip
@shown(
    "--decorrelate/--no-decorrelate",
    default=R.decorrelate,
    help="Optimize colours in ImageNet's decorrelated colour space (3-channel models).",
)
@click.option("--lr", type=FINITE_FLOAT, default=R.lr, help="Adam learning rate (default: the "
              "--param recipe's: 0.05 for fft and pixel, 0.2 for maco).")  # fmt: skip
@batch_option(DEFAULT_BATCH, "Images optimized together (units in one batch); it decides "
              "which units share a seed, so another batch gives other images.")  # fmt: skip
@shown(
    "--diversity",
    type=int,
    default=R.diversity,
    help="Images per unit; above 1 they are pushed apart (Gram similarity penalty).",
)
@shown("--diversity-weight", type=FINITE_FLOAT, default=R.diversity_weight,
       help="Weight of the diversity penalty.")  # fmt: skip
@precision_options("images")
@output_options(
    "Output folder; units whose PNG is already there with the same settings are skipped "
    "(resume); a PNG made with other settings stops the run unless --overwrite.",
    overwrite="Re-render PNGs in -o that were made with other settings.",
    type=click.Path(file_okay=False),
)
@run_options
@friendly_errors
def render_command(output: str, overwrite: bool, **options: Any) -> None:
    """Render images that excite channels, neurons, a class or a whole layer.

    \b
    Examples (offline, default model efficientnet_lite0):
      vizcnn render -l _blocks.9 -c 3 -c 17 -o render/
      vizcnn render -l _blocks.9:0-7 -o render/
      vizcnn render -l _blocks.4 --all --steps 256 -o blocks4/
      vizcnn render --class espresso -o espresso/
      vizcnn render -m lenet5_digits -l features.3 --all -o lenet/

    Writes one PNG per unit (provenance in its text chunks), sheet.png with every unit labelled,
    and manifest.json (unit, file, final objective value, provenance). The same --seed gives the
    same images as the Python API's render(..., seed=...) and as an uninterrupted run; on CUDA
    add --deterministic for bit-identical repeats.
    """
    reuse_freed_memory()  # a process setting: steps page-fault their activations back otherwise
    run = run_from(options)  # before the model loads (--deterministic's cuBLAS setting)
    config = RenderConfig(
        steps=options["steps"],
        size=options["image_size"],
        param=options["param"],
        decorrelate=options["decorrelate"],
        lr=options["lr"],  # None: the --param recipe's
        lr_schedule=options["lr_schedule"],
        crops=options["crops"],
        diversity=options["diversity"],
        diversity_weight=options["diversity_weight"],
    )
    ensure_writable(output, "folder")
    loaded = open_model(options, device_from(options))
    units = build_units(loaded, options)
    with progress_bar(not options["quiet"], unit="step") as progress:
        result = render_folder(
            loaded,
            units,
            output,
            config,
            seed=options["seed"],
            overwrite=overwrite,
            progress=progress,
            run=run,
        )
    click.echo(_summary(result))
