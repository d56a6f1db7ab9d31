"""`vizcnn render`: images that maximize channels, neurons, classes or a whole layer."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import torch

from vizcnn import __version__
from vizcnn.core.channels import parse_channels
from vizcnn.core.devices import make_generator
from vizcnn.core.errors import VizError
from vizcnn.io.imaging import labeled_sheet, load_image, read_png_metadata, save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis.objectives import Objective, channel, class_logit, layer_l2, neuron
from vizcnn.optvis.rendering import RenderConfig, layer_channels, render_iter

from .common import device_from, friendly_errors, model_options_with, open_model, run_options
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
    config: RenderConfig  # the technique's settings
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
    if kind == "class":
        if not classes:
            raise VizError("--objective class needs --class NAME or index (e.g. --class espresso)")
        units = []
        for label in classes:
            index = loaded.class_index(label)
            name = loaded.labels[index] if loaded.labels else str(index)
            units.append(
                Unit(class_logit(index), f"class_{index:04d}_{_safe(name)}", f"{index} {name}")
            )
        return kind, None, units
    layer = options["layer"] or loaded.layers_for("render")[0]
    if kind == "layer":
        return kind, layer, [Unit(layer_l2(layer), f"{_safe(layer)}_l2", f"{layer} L2")]
    count = layer_channels(loaded, layer)
    if options["all_channels"]:
        indices = list(range(count))
    elif options["channels"]:
        indices = list(parse_channels(options["channels"], count))
    elif options["channel"]:
        indices = list(options["channel"])
    else:
        indices = list(range(min(8, count)))
    for index in indices:
        if not 0 <= index < count:
            raise VizError(
                f"channel {index} out of range for layer {layer!r}; valid: 0..{count - 1}"
            )
    y, x = _position(options["position"])
    where = "" if y is None else f"_y{y}_x{x}"
    units = []
    for index in dict.fromkeys(indices):
        if kind == "neuron":
            objective = neuron(layer, index, y, x)
            stem = f"{_safe(layer)}_n{index:04d}{where}"
        else:
            objective = channel(layer, index)
            stem = f"{_safe(layer)}_c{index:04d}"
        units.append(Unit(objective, stem, f"{layer}:{index}"))
    return kind, layer, units


def _files(unit: Unit, copies: int) -> list[str]:
    if copies == 1:
        return [f"{unit.stem}.png"]
    return [f"{unit.stem}_{k}.png" for k in range(copies)]


def _settings(job: RenderJob, loaded: LoadedModel, device: torch.device) -> dict[str, Any]:
    config = asdict(job.config)
    config["transforms"] = "lucid (pad 12, jitter 8, scale 0.9-1.1, rotate 10, jitter 4)"
    config["size"] = list(job.config.image_size(loaded))
    config["input_size"] = list(job.config.input_size or loaded.input_size)
    config["amp"] = job.config.amp and device.type == "cuda"
    return {
        "model": loaded.name,
        "weights": loaded.weights,
        "objective": job.kind,
        "layer": job.layer,
        "seed": job.seed,
        "device": str(device),
        "vizcnn": __version__,
        **config,
    }


CHUNK_SEED_STRIDE = 1_000_003  # batch n of a run draws from seed + n * stride


def run_render(job: RenderJob, loaded: LoadedModel, device: torch.device, show: bool) -> str:
    """Render the units whose PNGs are missing, then write the sheet and manifest; a summary."""
    copies = job.config.diversity
    per_chunk = max(1, job.config.batch // copies)

    def done(unit: Unit) -> bool:
        return all((job.output / f).is_file() for f in _files(unit, copies))

    # Batches are fixed by unit position and each draws from its own seed, so a resumed run
    # renders exactly the pictures that an uninterrupted run would have made.
    chunks = [
        (number, job.units[start : start + per_chunk])
        for number, start in enumerate(range(0, len(job.units), per_chunk))
    ]
    pending = [(number, chunk) for number, chunk in chunks if not all(map(done, chunk))]
    missing = {id(unit) for _, chunk in pending for unit in chunk if not done(unit)}
    settings = _settings(job, loaded, device)
    started = time.perf_counter()
    total_steps = sum(len(chunk) for _, chunk in pending) * job.config.steps
    with progress_bar(show and bool(pending), unit="step") as progress:
        finished_steps = 0
        for number, chunk in pending:

            def report(count: int, _total: int, message: str, offset: int = finished_steps) -> None:
                progress(offset + count, total_steps, message)

            results = render_iter(
                loaded,
                [u.objective for u in chunk],
                job.config,
                generator=make_generator(job.seed + CHUNK_SEED_STRIDE * number, device),
                progress=report,
            )
            for result in results:
                for row, (index, image) in enumerate(
                    zip(result.unit_index, result.images, strict=True)
                ):
                    unit = chunk[index]
                    if id(unit) not in missing:
                        continue  # rendered again only to keep its batch-mates reproducible
                    copy = row % copies if copies > 1 else 0
                    name = _files(unit, copies)[copy]
                    value = float(result.values[row])
                    save_png(
                        image, job.output / name, {**settings, "unit": unit.label, "value": value}
                    )
            finished_steps += len(chunk) * job.config.steps
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
    sheet = job.output / "sheet.png"
    save_png(labeled_sheet(images, labels), sheet, {"model": loaded.name, "layer": str(job.layer)})
    save_json({"settings": settings, "units": entries}, job.output / "manifest.json")
    seconds = time.perf_counter() - started
    rendered = len(missing)
    skipped = len(job.units) - rendered
    what = job.layer if job.layer else "classes"
    return (
        f"rendered {rendered} unit(s) of {what} ({skipped} already done) in {seconds:.0f}s "
        f"-> {job.output}/ (sheet.png, manifest.json)"
    )


@click.command("render")
@model_options_with("--input-size")
@click.option(
    "-l",
    "--layer",
    default=None,
    help="Target layer (default: the model's render layer; see `vizcnn layers`).",
)
@click.option(
    "-c",
    "--channel",
    type=int,
    multiple=True,
    help="Channel to render; repeat for more (-c 3 -c 17).",
)
@click.option("--channels", default=None, help="Channel range or list: 0:64, 0:64:2, 3,17,40.")
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
    "--size",
    type=int,
    default=None,
    help="Image size in pixels (default 128, or the model's input size when smaller); upsampled to the model's input.",
)
@click.option(
    "--param",
    type=click.Choice(["fft", "pixel"]),
    default="fft",
    show_default=True,
    help="Parameterization: fft (Fourier, 1/f scaled) or pixel.",
)
@click.option(
    "--decorrelate/--no-decorrelate",
    default=True,
    show_default=True,
    help="Optimize colours in ImageNet's decorrelated colour space (3-channel models).",
)
@click.option("--lr", type=float, default=0.05, show_default=True, help="Adam learning rate.")
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
    type=float,
    default=1e2,
    show_default=True,
    help="Weight of the diversity penalty.",
)
@click.option("--amp", is_flag=True, help="bfloat16 autocast (CUDA only; ignored elsewhere).")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder; units whose PNG is already there are skipped (resume).",
)
@run_options
@friendly_errors
def render_command(output: str, **options: Any) -> None:
    """Render images that excite channels, neurons, a class or a whole layer.

    \b
    Examples (offline, default model efficientnet_lite0):
      vizcnn render -l _blocks.9 -c 3 -c 17 -o render/
      vizcnn render -l _blocks.4 --all --steps 256 -o blocks4/
      vizcnn render --class espresso -o espresso/
      vizcnn render -m lenet5_digits -l features.3 --all -o lenet/

    Writes one PNG per unit (settings in its text chunks), sheet.png with every unit labelled,
    and manifest.json (unit, file, final objective value, settings).
    """
    device = device_from(options)
    loaded = open_model(options, device)
    kind, layer, units = build_units(loaded, options)
    config = RenderConfig(
        steps=options["steps"],
        size=options["size"],
        param=options["param"],
        decorrelate=options["decorrelate"],
        lr=options["lr"],
        batch=options["batch"],
        diversity=options["diversity"],
        diversity_weight=options["diversity_weight"],
        amp=options["amp"],
    )
    config.validate()
    ensure_writable(output, "folder")
    job = RenderJob(kind, layer, tuple(units), config, Path(output), options["seed"])
    summary = run_render(job, loaded, device, show=not options["quiet"])
    if options["amp"] and device.type != "cuda":
        summary += f" (--amp ignored on {device.type})"
    click.echo(summary)
