"""`vizcnn models`, `vizcnn layers` and `vizcnn train-digits`: what models there are, their layers,
and the bundled digits model's weights."""

from __future__ import annotations

import json
from typing import Any

import click

from vizcnn.models.loading import available_models
from vizcnn.models.preflight import preflight
from vizcnn.models.structure import format_stages, stages_view
from vizcnn.receptive.table import FIELD_BUDGET_S

from .common import device_from, friendly_errors, progress_enabled, run_options
from .flags import as_flags
from .model_options import model_options, open_model
from .progress import progress_bar


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly_errors
def models_command(as_json: bool) -> None:
    """List the models vizcnn knows and whether their weights are on disk (usable offline)."""
    rows = available_models()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(row["name"]) for row in rows)
    click.echo(f"{'model':<{width}}  {'kind':<11}  {'input':>5}  weights")
    for row in rows:
        state = "present" if row["weights_present"] else f"absent: {row['get_weights']}"
        if row["weights_present"] is None:  # weights from a file the user gives (timm:NAME)
            state = as_flags(row["get_weights"])
        size = row["input_size"] or "any"
        click.echo(f"{row['name']:<{width}}  {row['kind']:<11}  {size:>5}  {state}")


@click.command("layers")
@model_options
@run_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the table as JSON (a stable interface for scripts).",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also list modules that never run in a forward pass.",
)
@click.option(
    "--stages",
    "show_stages",
    is_flag=True,
    help="Show the stage boundaries (name, channels, stride) and each technique's default layers.",
)
@click.option(
    "--field-budget",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds of receptive-field measuring, for layers the traced graph does not explain "
    f"(default {FIELD_BUDGET_S:g}); layers left get 'not known' with the reason.",
)
@friendly_errors
def layers_command(
    as_json: bool, show_all: bool, show_stages: bool, field_budget: float | None, **options: Any
) -> None:
    """Print every layer: name, type, output shape, parameters, receptive field, stride, offset.

    With --stages: the stages instead (where each ends, channels, stride) and the layers each
    technique takes by default, with why.

    The input box of unit (y, x) of a layer is rows offset_y + y*stride_y ... + rf_y - 1 and
    columns offset_x + x*stride_x ... + rf_x - 1 (it may extend past the image edge: padding).
    A module called more than once per forward pass gets one row per call, named `name#k`; use
    that name wherever a layer is asked for.
    """
    from vizcnn.receptive.table import layer_table

    loaded = open_model(options, device_from(options))
    preflight(loaded)  # a size the model cannot take: one line, not a traceback from tracing
    if show_stages:
        view = stages_view(loaded)
        click.echo(json.dumps(view, indent=2) if as_json else format_stages(view))
        return
    # on stderr (plain lines when not a terminal): `--json` output on stdout stays clean
    with progress_bar(progress_enabled(options), unit="step") as progress:
        table = layer_table(
            loaded.module,
            (loaded.channels, *loaded.input_size),
            field_budget_s=FIELD_BUDGET_S if field_budget is None else field_budget,
            progress=progress,
        )
    if as_json:
        click.echo(json.dumps(table.to_dict(loaded.name), indent=2))
        return
    click.echo(table.format(show_all=show_all))
    if not options["quiet"]:
        click.echo(
            f"{loaded.name}: {len(table.rows)} layers at input {loaded.channels}x{loaded.input_size[0]}x{loaded.input_size[1]}; weights: {loaded.weights}"
        )


@click.command("train-digits")
@click.option(
    "-o",
    "--output",
    default="lenet5_digits.pt",
    show_default=True,
    help="Where to write the state dict (use it with -m lenet5_digits --weights FILE).",
)
@click.option(
    "--replace-bundled",
    is_flag=True,
    help="Write the weights file inside the installed package instead (what -m lenet5_digits loads).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=30, show_default=True, help="Training epochs."
)
@click.option(
    "--seed", default=0, show_default=True, help="Random seed (initialization and batches)."
)
@friendly_errors
def train_digits_command(output: str, replace_bundled: bool, epochs: int, seed: int) -> None:
    """Train LeNet-5 on scikit-learn's digits (the `lenet5_digits` model) and save its weights.

    \b
    Examples:
      vizcnn train-digits                          writes ./lenet5_digits.pt
      vizcnn dream sample:coffee -m lenet5_digits --weights lenet5_digits.pt -o d.png
      vizcnn train-digits --replace-bundled        overwrites the package's own weights
    """
    from vizcnn.runs.digits import digits_weights_file

    run = digits_weights_file(output, epochs=epochs, seed=seed, replace_bundled=replace_bundled)
    click.echo(f"test accuracy {run.accuracy:.4f}; wrote {run.path}")
