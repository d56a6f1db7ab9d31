"""`vizcnn equivariance`: how translation-equivariant each layer is, and how invariant the output."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.features.equivariance import DEFAULT_BATCH, EquivarianceConfig, parse_shifts
from vizcnn.io.paths import ensure_writable
from vizcnn.runs.equivariance import EQUIVARIANCE_LIMIT, equivariance_folder

from .common import device_from, friendly_errors, run_options
from .features import SAMPLES_EPILOG
from .model_options import model_options, open_model
from .options import batch_option, output_options, run_from
from .progress import progress_bar


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
    "--shifts",
    default=f"{min(EquivarianceConfig.shifts)}..{max(EquivarianceConfig.shifts)}",
    show_default=True,
    help="Input shifts in pixels: 1..16, 1,2,4,8.",
)
@click.option(
    "--direction",
    type=click.Choice(["x", "y", "xy"]),
    default=EquivarianceConfig.direction,
    show_default=True,
    help="Shift horizontally, vertically or diagonally.",
)
@click.option(
    "--mode",
    type=click.Choice(["crop", "roll"]),
    default=EquivarianceConfig.mode,
    show_default=True,
    help="crop: windows of a wider image; roll: circular shift.",
)
@click.option(
    "--border",
    default=EquivarianceConfig.border,
    show_default=True,
    help="Share of each map side left out at both ends (padding effects).",
)
@batch_option(DEFAULT_BATCH)
@click.option(
    "--limit", default=EQUIVARIANCE_LIMIT, show_default=True, help="Images used from a data set."
)
@output_options("Output folder: JSON, markdown table, plot.")
@run_options
@friendly_errors
def equivariance_command(
    data: str,
    layers: tuple[str, ...],
    shifts: str,
    direction: str,
    mode: str,
    border: float,
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
    )
    ensure_writable(output, "folder")
    loaded = open_model(options, device_from(options))
    with progress_bar(not options["quiet"], unit="pass") as progress:
        run = equivariance_folder(
            loaded,
            data,
            output,
            config,
            limit=limit,
            seed=options["seed"],
            progress=progress,
            run=run_from(options),
        )
    result = run.result
    agreement = ""
    if result.top1_agreement:
        share = sum(result.top1_agreement.values()) / len(result.top1_agreement)
        agreement = f", top-1 unchanged {share:.0%}"
    click.echo(
        f"wrote {run.folder}/equivariance.json, .md, .png ({loaded.name}, "
        f"{len(result.rows) - 1} layers, {result.images} images, {len(config.shifts)} shifts; "
        f"output error {result.rows[-1].mean():.3g}{agreement})"
    )
