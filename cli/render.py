"""`vizcnn render`: images that maximize channels, neurons, classes or a whole layer."""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click
import torch

from vizcnn.core.errors import VizError
from vizcnn.core.precision import AUTO, choose_precision
from vizcnn.core.units import DEFAULT_CHANNELS, parse_unit
from vizcnn.io.imaging import labeled_sheet, load_image, read_png_metadata, save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.io.provenance import provenance
from vizcnn.io.resume import first_difference, stored_provenance
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis.objectives import Objective, channel, class_logit, layer_l2, neuron
from vizcnn.optvis.rendering import (
    LR_SCHEDULES,
    PARAM_CHOICES,
    RenderConfig,
    layer_channels,
    render_iter,
)
from vizcnn.optvis.transforms import standard_transforms

from .common import (
    device_from,
    friendly_errors,
    model_options_with,
    open_model,
    reuse_freed_memory,
    run_options,
)
from .options import FINITE_FLOAT, deprecated_alias, resolve_alias
from .progress import progress_bar

OBJECTIVES = ("channel", "neuron", "class", "layer")


@dataclass(frozen=True)
class Unit:
    """One thing to render and where its pictures go."""

    objective: Objective  # what the image maximizes
    stem: str  # file name without suffix (a diversity copy adds _k)
    label: str  # caption on the contact sheet and `unit` in the manifest


@dataclass(frozen=True)
class RenderJob:
    """The parsed command line: what to render, how, and where."""

    kind: str  # channel | neuron | class | layer
    layer: str | None  # target layer (None for class objectives)
    units: tuple[Unit, ...]  # in request order
    config: RenderConfig  # the technique's settings, resolved for the units (RenderConfig.resolved)
    output: Path  # folder for PNGs, contact sheet, manifest
    seed: int  # random seed (initial images and transforms)


def _safe(text: str) -> str:
    """A file-name stem that keeps a layer's own name (`_blocks.9` stays `_blocks.9`)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip(".") or "unit"


def _position(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise VizError(f"bad --position {text!r}; write Y,X (e.g. 3,5)") from None
    return y, x


def build_units(loaded: LoadedModel, options: dict[str, Any]) -> tuple[str, str | None, list[Unit]]:
    """The objective kind, target layer and units that the options ask for."""
    classes: tuple[str, ...] = options["classes"]
    kind = options["objective"] or ("class" if classes else "channel")
    if classes and kind != "class":
        raise click.UsageError(f"--class renders class logits; drop it or --objective {kind}")
    if kind == "class":
        if not classes:
            raise VizError("--objective class needs --class NAME or index (e.g. --class espresso)")
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
        units = []
        # a class named twice (`--class espresso --class 967`) is one unit, as a channel is
        for index in dict.fromkeys(loaded.class_index(label) for label in classes):
            name = loaded.labels[index] if loaded.labels else str(index)
            units.append(
                Unit(class_logit(index), f"class_{index:04d}_{_safe(name)}", f"{index} {name}")
            )
        return kind, None, units
    spec = parse_unit(options["layer"] or loaded.layers_for("render")[0])
    layer = spec.layer_spec
    if kind == "layer":
        if spec.channels_text is not None:
            raise VizError(f"--objective layer renders the whole layer; drop :{spec.channels_text}")
        return kind, layer, [Unit(layer_l2(layer), f"{_safe(layer)}_l2", f"{layer} L2")]
    ways = [
        spec.channels_text is not None,
        bool(options["channels"]),
        bool(options["channel"]),
        bool(options["all_channels"]),
    ]
    if sum(ways) > 1:
        raise click.UsageError(
            "choose channels one way: -l LAYER:CHANNELS, --channels, -c or --all"
        )
    count = layer_channels(loaded, layer)
    if options["all_channels"]:
        indices: tuple[int, ...] = tuple(range(count))
    elif options["channels"]:
        indices = replace(spec, channels_text=options["channels"]).channels(count) or ()
    elif options["channel"]:
        indices = tuple(options["channel"])
        for index in indices:
            if not 0 <= index < count:
                raise VizError(
                    f"channel {index} out of range for layer {layer!r}; valid: 0..{count - 1}"
                )
    else:  # LAYER:CHANNELS, or the default selection
        indices = spec.channels(count) or ()
    y, x = _position(options["position"])
    where = "" if y is None else f"_y{y}_x{x}"
    units = []
    for index in dict.fromkeys(indices):
        objective: Objective
        if kind == "neuron":
            objective = neuron(layer, index, y, x)
            stem = f"{_safe(layer)}_n{index:04d}{where}"
        else:
            objective = channel(layer, index)
            stem = f"{_safe(layer)}_c{index:04d}"
        label = f"{layer}:{index}"
        if spec.weight != 1.0:  # in the label, so a resume with another weight is caught
            objective = spec.weight * objective
            label += f"@{spec.weight:g}"
        units.append(Unit(objective, stem, label))
    return kind, layer, units


def _files(unit: Unit, copies: int) -> list[str]:
    if copies == 1:
        return [f"{unit.stem}.png"]
    return [f"{unit.stem}_{k}.png" for k in range(copies)]


def _options(job: RenderJob, loaded: LoadedModel, device: torch.device) -> dict[str, Any]:
    """Every setting that shapes the pictures, for the provenance block."""
    config = asdict(job.config)
    chain = job.config.transform_chain()
    config["transforms"] = (
        "lucid (pad 12, jitter 8, scale 0.9-1.1, rotate 10, jitter 4)"
        if chain == standard_transforms()
        else ", ".join(map(repr, chain))
    )
    config["size"] = list(job.config.image_size(loaded))
    config["input_size"] = list(job.config.input_size or loaded.input_size)
    # the precision the network actually ran in, not the request: an `auto` run that used bf16
    # resumes an `--amp` run's folder, and a float32 run does not mix into a bf16 one
    del config["amp"]
    config["precision"] = choose_precision(device, job.config.amp).name
    return {"objective": job.kind, "layer": job.layer, **config}


def _unit_block(block: dict[str, Any], unit: Unit, position: int) -> dict[str, Any]:
    """A unit's provenance: the job's plus which unit, at which position (it fixes the seed)."""
    return {**block, "options": {**block["options"], "unit": unit.label, "position": position}}


def plan_resume(job: RenderJob, block: dict[str, Any], overwrite: bool) -> tuple[set[int], int]:
    """Unit positions whose PNGs exist with this job's settings, and how many will be replaced.

    A PNG made with other settings (its provenance differs) is re-rendered with `overwrite`,
    else the run stops before any work with a one-line error naming the first differing option.
    """
    copies = job.config.diversity
    done: set[int] = set()
    replaced = 0
    for position, unit in enumerate(job.units):
        paths = [job.output / name for name in _files(unit, copies)]
        if not all(path.is_file() for path in paths):
            continue
        wanted = _unit_block(block, unit, position)
        differ = [
            (path, why)
            for path in paths
            if (why := first_difference(stored_provenance(path), wanted)) is not None
        ]
        if not differ:
            done.add(position)
            continue
        if not overwrite:
            path, why = differ[0]
            raise VizError(
                f"{path} was rendered with other settings ({why}); "
                "use --overwrite to re-render it, or another -o folder"
            )
        replaced += 1
    return done, replaced


def run_render(
    job: RenderJob, loaded: LoadedModel, device: torch.device, show: bool, overwrite: bool = False
) -> str:
    """Render the units whose PNGs are missing (or stale), then the sheet and manifest; a summary."""
    copies = job.config.diversity
    block = provenance(
        technique="render",
        model_name=loaded.name,
        weights=loaded.weights,
        module=loaded.module,
        normalization=loaded.normalization,
        options=_options(job, loaded, device),
        seed=job.seed,
        device=device,
        dtype=loaded.dtype,
    )
    done, replaced = plan_resume(job, block, overwrite)
    started = time.perf_counter()
    pending = len(job.units) - len(done)
    with progress_bar(show and pending > 0, unit="step") as progress:
        results = render_iter(
            loaded,
            [unit.objective for unit in job.units],
            job.config,
            seed=job.seed,
            skip=done,
            progress=progress,
        )
        for result in results:
            for row, position in enumerate(result.unit_index):
                unit = job.units[position]
                name = _files(unit, copies)[result.copy[row]]
                metadata = {
                    "provenance": _unit_block(block, unit, position),
                    "unit": unit.label,
                    "value": float(result.values[row]),
                }
                save_png(result.images[row], job.output / name, metadata)
    entries: list[dict[str, Any]] = []
    images: list[torch.Tensor] = []
    labels: list[str] = []
    for unit in job.units:
        for name in _files(unit, copies):
            meta = read_png_metadata(job.output / name)
            final = float(meta["value"]) if "value" in meta else None
            entries.append({"unit": unit.label, "file": name, "value": final})
            images.append(load_image(job.output / name, loaded.channels))
            labels.append(unit.label if final is None else f"{unit.label} {final:.3g}")
    seconds = time.perf_counter() - started
    block["seconds"] = round(seconds, 3)
    sheet = job.output / "sheet.png"
    save_png(labeled_sheet(images, labels), sheet, {"provenance": block})
    save_json({"provenance": block, "units": entries}, job.output / "manifest.json")
    skipped = len(done)
    what = job.layer if job.layer else "classes"
    again = f", {replaced} re-rendered with new settings" if replaced else ""
    return (
        f"rendered {pending} unit(s) of {what} ({skipped} already done{again}) in {seconds:.0f}s "
        f"-> {job.output}/ (sheet.png, manifest.json)"
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
@deprecated_alias("--size", "--image-size", "image_size", type=int)
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
    resolve_alias(options, "image_size", "--image-size", "--size")
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
    device = device_from(options)
    loaded = open_model(options, device)
    kind, layer, units = build_units(loaded, options)
    # auto -> maco or fft, and the recipe's lr and schedule where the user left them: resolved
    # once, so that the provenance records exactly the config that renders
    config = config.resolved([unit.objective for unit in units])
    job = RenderJob(kind, layer, tuple(units), config, Path(output), options["seed"])
    summary = run_render(job, loaded, device, show=not options["quiet"], overwrite=overwrite)
    note = choose_precision(device, config.amp).note
    if note:
        summary += f" ({note})"
    click.echo(summary)
