"""`vizcnn accentuate`: push a unit up in real photographs, staying close to them."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.optvis.accentuation import (
    ACCENT_BATCH,
    DEFAULT_CROPS,
    DEFAULT_LR,
    DEFAULT_REG_CROPS,
    DEFAULT_REG_WEIGHT,
    DEFAULT_STEPS,
    DISTANCES,
)
from vizcnn.optvis.objectives import Unit, class_logit
from vizcnn.runs.accentuate import AccentuateRun, accentuate_files, accentuate_output

from .common import device_from, echo_warnings, friendly_errors, progress_enabled, run_options
from .dream import SAMPLES_EPILOG
from .model_options import model_options, open_model
from .options import FINITE_FLOAT, batch_option, output_options, precision_options, run_from, shown
from .progress import progress_bar


def _summary(run: AccentuateRun) -> str:
    where = run.manifest.parent if run.manifest is not None else run.files[0]
    if not run.made:
        return f"kept {where}: it holds these accentuations already"
    rises = ", ".join(f"{a:.3g} -> {b:.3g}" for a, b in zip(run.start, run.end, strict=True))
    figures = f" and {len(run.figures)} figure(s)" if run.figures else ""
    return (
        f"wrote {where}{figures} ({run.unit}, held at {run.reg_layer}; activation {rises}; "
        f"{run.seconds:.1f} s)"
    )


@click.command("accentuate", epilog=SAMPLES_EPILOG)
@click.argument("images", nargs=-1, required=True)
@model_options
@click.option("-l", "--layer", "unit", metavar="LAYER:CHANNEL",
              help="The unit to accentuate, e.g. _blocks.9:56 (one channel of the unit grammar; "
              "see `vizcnn layers`).")  # fmt: skip
@click.option("--class", "class_name", metavar="NAME",
              help="Accentuate a class logit instead (name or index).")  # fmt: skip
@click.option("--reg-layer", default=None, metavar="LAYER",
              help="Layer whose activations stay close to the photo's; must run before the "
              "unit. Default: an early stage output (_blocks.2 on efficientnet_lite0).")  # fmt: skip
@shown("--reg-weight", type=FINITE_FLOAT, default=DEFAULT_REG_WEIGHT,
       help="How hard the photo's activations hold (1: balanced with the unit's pull at the "
       "start; 0: plain activation maximization from the photo).")  # fmt: skip
@shown("--steps", type=int, default=DEFAULT_STEPS, help="Adam steps.")
@shown("--lr", type=FINITE_FLOAT, default=DEFAULT_LR, help="Adam learning rate (on phases).")
@shown("--crops", type=int, default=DEFAULT_CROPS, help="Random crops per image and step.")
@click.option("--reg-crops", type=int, default=None, metavar="N",
              help=f"Of those, how many the regularizer reads each step, 1 to --crops (all of "
              f"them at the balancing step). Default: {DEFAULT_REG_CROPS}, or --crops if fewer. "
              "Equal to --crops is faccent's, about 10% slower per step.")  # fmt: skip
@shown("--distance", type=click.Choice(DISTANCES), default="l2",
       help="Distance at the reg layer: l2 (faccent's) or cosine (direction only).")  # fmt: skip
@click.option("--image-size", "size", type=int, default=None,
              help="Side of the pictures (each photo is scaled to cover it and centre-cropped). "
              "Default: the model's input size.")  # fmt: skip
@click.option("--figure", is_flag=True,
              help="Also write NAME_figure.png: original | accentuated | difference.")  # fmt: skip
@precision_options("pictures")
@batch_option(ACCENT_BATCH, help="Images optimized together (each with --crops crops per forward).")
@output_options(
    "out.png for one image, a folder for several. Outputs made with these settings are kept; "
    "others stop the run unless --overwrite.",
    overwrite="Redo outputs made with other settings.",
)
@run_options
@friendly_errors
def accentuate_command(
    images: tuple[str, ...], output: str, overwrite: bool, **options: Any
) -> None:
    """Accentuate a unit in IMAGE(s) (paths or sample:NAME): what in each photo drives it.

    \b
    Examples:
      vizcnn accentuate sample:coffee -l _blocks.9:56 -o coffee_56.png --figure
      vizcnn accentuate a.jpg b.jpg -l _blocks.9:56 --reg-weight 2 -o accents/
      vizcnn accentuate sample:chelsea --class tabby -o cat.png

    The same --seed gives the same pictures as accentuate_files(...) in Python.
    """
    if (options["unit"] is None) == (options["class_name"] is None):
        raise click.UsageError("give the unit: -l LAYER:CHANNEL or --class NAME (one of them)")
    run = run_from(options)
    accentuate_output(output, len(images))  # a wrong -o fails before the model loads
    loaded = open_model(options, device_from(options))
    unit: Unit = (
        class_logit(options["class_name"]) if options["class_name"] is not None else options["unit"]
    )
    with echo_warnings(), progress_bar(progress_enabled(options), unit="step") as progress:
        made = accentuate_files(
            loaded,
            list(images),
            output,
            unit,
            reg_layer=options["reg_layer"],
            reg_weight=options["reg_weight"],
            steps=options["steps"],
            lr=options["lr"],
            crops=options["crops"],
            reg_crops=options["reg_crops"],
            distance=options["distance"],
            size=options["size"],
            figure=options["figure"],
            seed=options["seed"],
            overwrite=overwrite,
            progress=progress,
            run=run,
        )
    click.echo(_summary(made))
