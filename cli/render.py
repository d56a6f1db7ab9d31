"""`vizcnn render`: images that maximize channels, neurons, classes or a whole layer."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import click

from vizcnn.core.errors import VizError
from vizcnn.core.precision import AUTO
from vizcnn.core.units import DEFAULT_CHANNELS, parse_unit
from vizcnn.io.paths import ensure_writable
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis.rendering import LR_SCHEDULES, PARAM_CHOICES, RenderConfig, layer_channels
from vizcnn.runs.render import (
    RenderRun,
    RenderUnit,
    channel_units,
    class_units,
    layer_unit,
    render_folder,
)

from .common import (
    as_flags,
    device_from,
    friendly_errors,
    model_options_with,
    open_model,
    reuse_freed_memory,
    run_options,
)
from .options import FINITE_FLOAT
from .progress import progress_bar

OBJECTIVES = ("channel", "neuron", "class", "layer")


def _position(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise VizError(f"bad --position {text!r}; write Y,X (e.g. 3,5)") from None
    return y, x


def _class_only(options: dict[str, Any], kind: str) -> None:
    """Usage errors of --class: it renders logits, so no layer-unit option goes with it."""
    if kind != "class":
        raise click.UsageError(f"--class renders class logits; drop it or --objective {kind}")
    given = [
        flag
        for flag, key in (
            ("-l", "layer"),
            ("-c", "channel"),
            ("--channels", "channels"),
            ("--all", "all_channels"),
            ("--position", "position"),
        )
        if options[key]
    ]
    if given:
        raise click.UsageError(
            f"--class renders class logits; {', '.join(given)} select layer units "
            "(render those in a separate command)"
        )


def build_units(loaded: LoadedModel, options: dict[str, Any]) -> list[RenderUnit]:
    """The units the options ask for, made by the library's unit constructors."""
    classes: tuple[str, ...] = options["classes"]
    kind = options["objective"] or ("class" if classes else "channel")
    if classes:
        _class_only(options, kind)
        return class_units(loaded, classes)
    if kind == "class":
        raise VizError("--objective class needs --class NAME or index (e.g. --class espresso)")
    spec = parse_unit(options["layer"] or loaded.layers_for("render")[0])
    layer = spec.layer_spec
    if kind == "layer":
        if spec.channels_text is not None:
            raise VizError(f"--objective layer renders the whole layer; drop :{spec.channels_text}")
        return [layer_unit(layer)]
    ways = [spec.channels_text is not None, *(bool(options[k]) for k in _CHANNEL_OPTIONS)]
    if sum(ways) > 1:
        raise click.UsageError(
            "choose channels one way: -l LAYER:CHANNELS, --channels, -c or --all"
        )
    indices: tuple[int, ...] | None
    if options["all_channels"]:
        indices = None
    elif options["channel"]:
        indices = tuple(options["channel"])
    else:  # --channels, LAYER:CHANNELS, or the default selection
        text = options["channels"] or spec.channels_text
        count = layer_channels(loaded, layer)
        indices = replace(spec, channels_text=text).channels(count) or ()
    at = _position(options["position"]) if kind == "neuron" else None
    return channel_units(loaded, layer, indices, neuron_at=at, weight=spec.weight)


_CHANNEL_OPTIONS = ("channels", "channel", "all_channels")


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
@model_options_with("--input-size")
@click.option(
    "-l",
    "--layer",
    default=None,
    metavar="LAYER[#k][:CHANNELS][@WEIGHT]",
    help="Target layer, optionally with channels: _blocks.9, _blocks.9:0-15, _blocks.9:0:64:2 "
    "(default: the model's render layer; see `vizcnn layers`). Without channels: the first "
    f"{DEFAULT_CHANNELS.split(':')[1]}.",
)
@click.option(
    "-c",
    "--channel",
    type=int,
    multiple=True,
    help="Channel to render; repeat for more (-c 3 -c 17).",
)
@click.option(
    "--channels", default=None, help="Channel range or list: 0:64, 0:64:2, 0-15, 3,17,40."
)
@click.option("--all", "all_channels", is_flag=True, help="Render every channel of the layer.")
@click.option(
    "--objective",
    type=click.Choice(OBJECTIVES),
    default=None,
    help="What to maximize: channel mean, neuron (one position), class logit, or layer L2 (DeepDream). Default: channel, or class when --class is given.",
)
@click.option(
    "--class",
    "classes",
    multiple=True,
    help="Class name (case-insensitive) or index; repeat for more.",
)
@click.option(
    "--position", default=None, help="Neuron position Y,X in the layer's map (default: the centre)."
)
@click.option("--steps", type=int, default=512, show_default=True, help="Optimizer steps.")
@click.option(
    "--image-size",
    "image_size",
    type=int,
    default=None,
    help="Rendered image side in pixels (default 128, or the model's input size when smaller); "
    "upsampled to the model's --input-size.",
)
@click.option(
    "--param",
    type=click.Choice(PARAM_CHOICES),
    default=RenderConfig.param,
    show_default=True,
    help="Parameterization: maco (Fourier phase only, amplitude fixed to a natural-image "
    "spectrum; random crops), fft (lucid's recipe: Fourier, 1/f scaled; pad/jitter/scale/rotate), "
    "pixel, or auto: maco for --class renders (a second network recognizes them more often), "
    "fft for channels, neurons and layers (higher activation).",
)
@click.option(
    "--crops",
    type=int,
    default=RenderConfig.crops,
    show_default=True,
    help="Transformed copies of each image per step, objective averaged (each costs a "
    "forward and backward pass).",
)
@click.option(
    "--lr-schedule",
    type=click.Choice(LR_SCHEDULES),
    default=None,
    help="Learning rate over the steps: constant, or cosine decay to 0 "
    "(default: the --param recipe's: constant for fft and pixel, cosine for maco).",
)
@click.option(
    "--decorrelate/--no-decorrelate",
    default=True,
    show_default=True,
    help="Optimize colours in ImageNet's decorrelated colour space (3-channel models).",
)
@click.option(
    "--lr",
    type=FINITE_FLOAT,
    default=None,
    help="Adam learning rate (default: the --param recipe's: 0.05 for fft and pixel, 0.2 for "
    "maco).",
)
@click.option(
    "--batch",
    type=int,
    default=16,
    show_default=True,
    help="Images optimized together (units in one batch).",
)
@click.option(
    "--diversity",
    type=int,
    default=1,
    show_default=True,
    help="Images per unit; above 1 they are pushed apart (Gram similarity penalty).",
)
@click.option(
    "--diversity-weight",
    type=FINITE_FLOAT,
    default=1e2,
    show_default=True,
    help="Weight of the diversity penalty.",
)
@click.option(
    "--amp/--no-amp",
    default=None,
    help="bfloat16 autocast for the network (parameterization, optimizer and objective stay "
    "float32). Default (neither flag): auto, on where the hardware runs bf16 natively (CPUs with "
    "AVX512-BF16 or AMX, CUDA Ampere+), float32 elsewhere. --amp forces it (a note where it "
    "cannot run); --no-amp forces float32.",
)
@click.option(
    "--deterministic",
    is_flag=True,
    help="Deterministic kernels, so that the same seed gives the same images on CUDA too "
    "(slower; torch warns about any op without one). CPU runs are deterministic anyway.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; units whose PNG is already there with the same settings are skipped "
    "(resume); a PNG made with other settings stops the run unless --overwrite.",
)
@click.option(
    "--overwrite", is_flag=True, help="Re-render PNGs in -o that were made with other settings."
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
    if options["deterministic"]:  # cuBLAS reads it when CUDA starts, before the model loads
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    config = RenderConfig(
        steps=options["steps"],
        size=options["image_size"],
        param=options["param"],
        decorrelate=options["decorrelate"],
        lr=options["lr"],  # None: the --param recipe's
        lr_schedule=options["lr_schedule"],
        crops=options["crops"],
        batch=options["batch"],
        diversity=options["diversity"],
        diversity_weight=options["diversity_weight"],
        amp=AUTO if options["amp"] is None else options["amp"],
        deterministic=options["deterministic"],
    )
    ensure_writable(output, "folder")
    loaded = open_model(options, device_from(options))
    units = build_units(loaded, options)
    with progress_bar(not options["quiet"], unit="step") as progress:
        run = render_folder(
            loaded,
            units,
            output,
            config,
            seed=options["seed"],
            overwrite=overwrite,
            progress=progress,
        )
    click.echo(_summary(run))
