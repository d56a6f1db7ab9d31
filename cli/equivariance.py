"""`vizcnn equivariance`: how translation-equivariant each layer is, and how invariant the output."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import torch

from vizcnn.core.errors import VizError
from vizcnn.data.datasets import open_dataset
from vizcnn.data.samples import resolve_image_argument
from vizcnn.features.equivariance import (
    EquivarianceConfig,
    measure_equivariance,
    parse_shifts,
    prepare_images,
)
from vizcnn.features.figures import equivariance_figure
from vizcnn.hooks import find_module, layer_names, parse_layer
from vizcnn.io.imaging import IMAGE_SUFFIXES, atomic_write, save_json, save_png
from vizcnn.io.paths import ensure_writable

from .common import (
    device_from,
    friendly_errors,
    model_options,
    open_model,
    progress_enabled,
    run_options,
)
from .features import SAMPLES_EPILOG
from .outputs import model_provenance
from .progress import progress_bar


def _is_single_image(data: str) -> bool:
    return data.startswith("sample:") or Path(data).suffix.lower() in IMAGE_SUFFIXES


@click.command("equivariance", epilog=SAMPLES_EPILOG)
@click.argument("data", default="samples")
@model_options
@click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    help="Layer to measure, repeatable (default: every stage).",
)
@click.option(
    "--shifts", default="1..16", show_default=True, help="Input shifts in pixels: 1..16, 1,2,4,8."
)
@click.option(
    "--direction",
    type=click.Choice(["x", "y", "xy"]),
    default="x",
    show_default=True,
    help="Shift horizontally, vertically or diagonally.",
)
@click.option(
    "--mode",
    type=click.Choice(["crop", "roll"]),
    default="crop",
    show_default=True,
    help="crop: windows of a wider image; roll: circular shift.",
)
@click.option(
    "--border",
    default=0.125,
    show_default=True,
    help="Share of each map side left out at both ends (padding effects).",
)
@click.option("--batch", default=8, show_default=True, help="Images per forward pass.")
@click.option("--limit", default=8, show_default=True, help="Images used from a data set.")
@click.option("-o", "--output", required=True, help="Output folder: JSON, markdown table, plot.")
@run_options
@friendly_errors
def equivariance_command(
    data: str,
    layers: tuple[str, ...],
    shifts: str,
    direction: str,
    mode: str,
    border: float,
    batch: int,
    limit: int,
    output: str,
    **options: Any,
) -> None:
    """Per layer: relative error between f(shift(x)) and shift(f(x)), shift scaled by stride.

    DATA is one image (path or sample:NAME), a folder of images, a .txt list, or `samples`
    (the bundled photos). Writes equivariance.json, equivariance.md and equivariance.png
    (error against depth: stride and pooling show where equivariance breaks).

    \b
    Examples:
      vizcnn equivariance -o eq/                         lite0 on 8 bundled photos
      vizcnn equivariance sample:coffee --shifts 1,2,4,8 -o eq/
      vizcnn equivariance photos/ -m resnet18 --limit 32 -o eq_resnet/
    """
    config = EquivarianceConfig(
        layers=tuple(layers),
        shifts=parse_shifts(shifts),
        direction=direction,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        border=border,
        batch_size=batch,
    )
    if limit < 1:
        raise VizError(f"--limit must be at least 1, got {limit}")
    folder = ensure_writable(output, "folder")
    device = device_from(options)
    loaded = open_model(options, device)
    for spec in layer_names(loaded.module, config.layers):
        find_module(loaded.module, parse_layer(spec).name)
    height, width = loaded.input_size
    if _is_single_image(data):
        picture, _ = resolve_image_argument(data, loaded.channels)
        images = prepare_images(loaded, [picture], config)
    else:
        margin = config.margin
        dataset = open_dataset(
            data,
            loaded.channels,
            (height + margin[0], width + margin[1]),
            limit=limit,
            crops_per_image=1,
        )
        items = [dataset[i] for i in range(len(dataset))]
        good = [item["image"] for item in items if not item["error"]]
        if not good:
            raise VizError(f"no readable images in {data!r}")
        images = torch.stack(good)
    start = time.perf_counter()
    with progress_bar(progress_enabled(options), unit="pass") as progress:
        result = measure_equivariance(loaded, images, config, progress=progress)
    block = model_provenance(
        "equivariance",
        loaded,
        {
            "layers": list(layers),
            "shifts": list(config.shifts),
            "direction": direction,
            "mode": mode,
            "border": border,
            "batch": batch,
            "limit": limit,
        },
        data=data,
        device=device,
        seed=options["seed"],
        seconds=time.perf_counter() - start,
    )
    save_json({"provenance": block, "result": result.to_dict()}, folder / "equivariance.json")
    table = f"# Translation equivariance of {loaded.name} ({data})\n\n" + result.markdown()
    atomic_write(folder / "equivariance.md", lambda file: file.write(table.encode("utf-8")))
    figure = equivariance_figure({loaded.name: result}, f"{loaded.name}: equivariance by depth")
    save_png(figure, folder / "equivariance.png", {"provenance": block})
    final = result.rows[-1]
    agreement = ""
    if result.top1_agreement:
        share = sum(result.top1_agreement.values()) / len(result.top1_agreement)
        agreement = f", top-1 unchanged {share:.0%}"
    click.echo(
        f"wrote {folder}/equivariance.json, .md, .png ({loaded.name}, {len(result.rows) - 1} layers, "
        f"{result.images} images, {len(config.shifts)} shifts; output error {final.mean():.3g}{agreement})"
    )
