"""`vizcnn ablate`: layer-removal ablations (Zeiler & Fergus) and block lesions (Veit et al.)."""

from __future__ import annotations

from typing import Any

import click
import torch

from vizcnn.ablation.training import RETRAIN, TrainConfig
from vizcnn.ablation.variants import parse_units, parse_variant
from vizcnn.core.distributed import current_shard, init_from_env, shutdown
from vizcnn.io.paths import ensure_writable
from vizcnn.runs.ablate import (
    ABLATE_CROPS,
    DIGITS_CONFIG,
    AblationRun,
    LesionRun,
    ablate_folder,
    experiment_config,
    lesion_folder,
)

from .common import device_from, friendly_errors, run_options
from .model_options import model_options, open_model
from .options import FINITE_FLOAT, batch_option, output_options, run_from, shown
from .progress import progress_bar


def _summary(run: AblationRun | LesionRun, model: str) -> str:
    if isinstance(run, LesionRun):
        kept = sum(les.scores is not None for les in run.result.lesions)
        worst = run.worst
        done = f"lesioned {kept} of {len(run.result.lesions)} blocks over "
        done += f"{run.result.intact.images} images"
        if worst is not None and worst.scores is not None:
            done += f"; worst {worst.block} agrees on {100 * (worst.scores.agreement or 0):.1f}%"
    else:
        retrain, count, base = run.result.config.retrain, len(run.variants), run.baseline
        top1 = base.scores.top1_accuracy
        measured = f"{base.name} top-1 {100 * top1:.1f}%" if top1 is not None else "no labels"
        done = f"ablated {count} variant{'s' if count != 1 else ''} of {model} "
        done += f"(retraining: {retrain}); {measured}"
    return f"{done}; wrote {run.folder}/results.md"


@click.command("ablate")
@click.argument("data")
@model_options
@click.option(
    "--variant",
    "variant_specs",
    multiple=True,
    help="NAME=LAYER[,LAYER...]: remove these layers (repeat for more variants).",
)
@click.option(
    "--units",
    "unit_specs",
    multiple=True,
    help="LAYER:CHANNELS: zero these output channels (e.g. features.3:0,5,9); one variant each.",
)
@click.option(
    "--blocks",
    is_flag=True,
    help="Lesion study: remove each block alone (identity), no retraining, compare predictions.",
)
@click.option(
    "--retrain",
    type=click.Choice(RETRAIN),
    default=None,
    help="What each variant and the control retrain: none, head (new layers + classifier), all. "
    "[default: head; the built-in digits experiment: all, from scratch]",
)
@click.option(
    "--from-scratch", is_flag=True, help="Re-initialize every layer first (--retrain all)."
)
@click.option(
    "--epochs",
    type=int,
    default=None,
    help=f"Training epochs per variant. [default: {TrainConfig.epochs}; built-in digits "
    f"experiment: {DIGITS_CONFIG.epochs}]",
)
@shown("--lr", type=FINITE_FLOAT, default=TrainConfig.lr, help="Adam learning rate.")
@batch_option(TrainConfig.batch_size, "Images per training step / evaluation pass.")
@click.option(
    "--train-data",
    default=None,
    help="ImageFolder to retrain on (default for DATA=digits: the digits training split).",
)
@shown("--crops", type=int, default=ABLATE_CROPS, help="samples: crops per photo.")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for torch (default: torch's choice). 1 is fastest for tiny networks such "
    "as LeNet-5 on a busy machine.",
)
@run_options
@output_options("Output folder (results.md, results.json, chart.png).",
                overwrite="Redo results and retrained rows in -o made with other settings (refused otherwise; same settings resume).")  # fmt: skip
@friendly_errors
def ablate_command(data: str, output: str, **options: Any) -> None:
    """Remove layers (or zero channels) on copies of a model, retrain fairly, compare accuracy.

    DATA is `digits` (scikit-learn's digits, the fixed test split of lenet5_digits), an
    ImageFolder (class folders in the model's class order), or `samples` / a flat image folder
    (no labels: only agreement with the intact model is measured). A removed layer becomes the
    identity where shapes agree; otherwise a re-fitted linear layer or a 1x1-conv adapter is
    trained, and the table says so. Writes OUT/results.md, OUT/results.json and OUT/chart.png.

    \b
    Examples:
      vizcnn ablate digits -m lenet5_digits -o ablate-digits/   Z&F Table 3 on digits
      vizcnn ablate digits -m lenet5_digits --variant no-fc2=classifier.3,classifier.4 \\
          --retrain head --epochs 2 -o out/
      vizcnn ablate samples -m efficientnet_lite0 --blocks -o lesion/   Veit et al. lesions
      vizcnn ablate digits -m lenet5_digits --units features.3:0,5,9 --retrain none -o units/
    """
    specs = (options["variant_specs"], options["unit_specs"])
    if options["blocks"] and (any(specs) or options["retrain"]):
        raise click.UsageError(
            "--blocks runs the lesion study alone; drop --variant/--units/--retrain"
        )
    if options["threads"] is not None:  # the CLI owns the process; the library never does this
        torch.set_num_threads(options["threads"])
    device = init_from_env(device_from(options))
    try:
        ensure_writable(output, "folder")
        loaded = open_model(options, device)
        show = not options["quiet"] and current_shard().is_main
        variants = [*map(parse_variant, specs[0]), *map(parse_units, specs[1])]
        keys = ("retrain", "epochs", "from_scratch", "lr")
        given = {key: options[key] for key in keys}
        with progress_bar(show, unit="img" if options["blocks"] else "step") as bar:
            shared = {"crops": options["crops"], "seed": options["seed"], "progress": bar,
                      "overwrite": options["overwrite"]}  # fmt: skip
            run: AblationRun | LesionRun
            if options["blocks"]:
                run = lesion_folder(loaded, data, output, run=run_from(options), **shared)
            else:
                config = experiment_config(not variants, batch_size=options["batch"], **given)
                run = ablate_folder(
                    loaded, data, output, variants or None, config,
                    train_data=options["train_data"], **shared
                )  # fmt: skip
        if current_shard().is_main:
            click.echo(_summary(run, loaded.name))
    finally:
        shutdown()
