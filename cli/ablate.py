"""`vizcnn ablate`: layer-removal ablations (Zeiler & Fergus) and block lesions (Veit et al.)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import torch

from vizcnn.ablation.data import DIGITS, digits, open_labelled
from vizcnn.ablation.experiment import plan, run_ablation
from vizcnn.ablation.lesion import lesion_study
from vizcnn.ablation.summary import (
    lesion_chart,
    lesion_dict,
    lesion_markdown,
    results_chart,
    results_dict,
    results_markdown,
)
from vizcnn.ablation.training import RETRAIN, TrainConfig
from vizcnn.ablation.variants import DIGITS_VARIANTS, Variant, parse_units, parse_variant
from vizcnn.core.distributed import current_shard, init_from_env, shutdown
from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write, save_json, save_png
from vizcnn.io.paths import ensure_writable

from .common import (
    device_from,
    friendly_errors,
    model_options,
    open_model,
    progress_enabled,
    run_options,
)
from .options import FINITE_FLOAT
from .outputs import model_provenance
from .progress import progress_bar

DIGITS_EPOCHS = 15  # the built-in digits experiment: every row trained from scratch this long


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
    help=f"Training epochs per variant. [default: 3; built-in digits experiment: {DIGITS_EPOCHS}]",
)
@click.option(
    "--lr", type=FINITE_FLOAT, default=2e-3, show_default=True, help="Adam learning rate."
)
@click.option("--batch", type=int, default=64, show_default=True, help="Images per step / pass.")
@click.option(
    "--train-data",
    default=None,
    help="ImageFolder to retrain on (default for DATA=digits: the digits training split).",
)
@click.option("--crops", type=int, default=4, show_default=True, help="samples: crops per photo.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for torch (default: torch's choice). 1 is fastest for tiny networks such "
    "as LeNet-5 on a busy machine.",
)
@run_options
@click.option(
    "-o", "--output", required=True, help="Output folder (results.md, results.json, chart.png)."
)
@friendly_errors
def ablate_command(
    data: str,
    variant_specs: tuple[str, ...],
    unit_specs: tuple[str, ...],
    blocks: bool,
    retrain: str | None,
    from_scratch: bool,
    epochs: int | None,
    lr: float,
    batch: int,
    train_data: str | None,
    crops: int,
    threads: int | None,
    output: str,
    **options: Any,
) -> None:
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
    started = time.perf_counter()
    if blocks and (variant_specs or unit_specs or retrain):
        raise click.UsageError(
            "--blocks runs the lesion study alone; drop --variant/--units/--retrain"
        )
    if threads is not None:
        if threads < 1:
            raise click.BadParameter(f"must be at least 1, got {threads}", param_hint="--threads")
        torch.set_num_threads(threads)  # the CLI owns the process; the library never does this
    out = Path(output)
    device = init_from_env(device_from(options))
    try:
        ensure_writable(out, "folder")
        loaded = open_model(options, device)
        show = progress_enabled(options) and current_shard().is_main
        test_set = open_labelled(
            data, loaded.channels, loaded.input_size, crops_per_image=crops, seed=options["seed"]
        )
        if blocks:
            with progress_bar(show, unit="img") as bar:
                lesions = lesion_study(
                    loaded, test_set, batch_size=batch, device=device, progress=bar
                )
            if not current_shard().is_main:
                return
            block = model_provenance(
                "ablate",
                loaded,
                {"blocks": True, "batch": batch, "crops": crops},
                data=data,
                seed=options["seed"],
                device=device,
                seconds=time.perf_counter() - started,
            )
            save_json({**lesion_dict(lesions), "provenance": block}, out / "results.json")
            atomic_write(out / "results.md", lambda f: f.write(lesion_markdown(lesions).encode()))
            save_png(lesion_chart(lesions), out / "chart.png", {"provenance": block})
            kept = [les for les in lesions.lesions if les.scores is not None]
            worst = min(kept, key=lambda les: les.scores.agreement or 0.0) if kept else None  # type: ignore[union-attr]
            click.echo(
                f"lesioned {len(kept)} of {len(lesions.lesions)} blocks over {lesions.intact.images} images"
                + (
                    f"; worst {worst.block} agrees on {100 * (worst.scores.agreement or 0):.1f}%"
                    if worst and worst.scores
                    else ""
                )
                + f"; wrote {out}/results.md"
            )
            return

        builtin = not variant_specs and not unit_specs
        if builtin and not (data == DIGITS and loaded.name == "lenet5_digits"):
            raise click.UsageError(
                "give --variant NAME=LAYER[,LAYER...] or --units LAYER:CHANNELS (the built-in "
                "variant set is for `digits -m lenet5_digits`), or --blocks"
            )
        variants: list[Variant] = (
            list(DIGITS_VARIANTS)
            if builtin
            else [*(parse_variant(v) for v in variant_specs), *(parse_units(u) for u in unit_specs)]
        )
        config = TrainConfig(
            retrain=retrain or ("all" if builtin else "head"),
            epochs=epochs if epochs is not None else (DIGITS_EPOCHS if builtin else 3),
            lr=lr,
            batch_size=batch,
            seed=options["seed"],
            from_scratch=from_scratch or (builtin and retrain is None),
        )
        train_set = None
        if config.retrain != "none":
            if train_data is not None:
                train_set = open_labelled(train_data, loaded.channels, loaded.input_size)
            elif data == DIGITS:
                train_set = digits("train")
            else:
                raise VizError(f"--retrain {config.retrain} needs --train-data (an ImageFolder)")
        planned = plan(loaded, variants, config)  # every variant checked before training starts
        with progress_bar(show, unit="step") as bar:
            result = run_ablation(
                loaded,
                variants,
                test_set,
                config,
                train_data=train_set,
                batch_size=max(batch, 256),
                device=device,
                planned=planned,
                progress=lambda _: bar,
            )
        if not current_shard().is_main:
            return
        block = model_provenance(
            "ablate",
            loaded,
            {**vars(config), "variants": [vars(v) for v in variants], "train_data": train_data},
            data=data,
            seed=options["seed"],
            device=device,
            seconds=time.perf_counter() - started,
        )
        save_json({**results_dict(result), "provenance": block}, out / "results.json")
        atomic_write(out / "results.md", lambda f: f.write(results_markdown(result).encode()))
        save_png(results_chart(result), out / "chart.png", {"provenance": block})
        base = result.rows[1] if config.retrain != "none" else result.rows[0]
        top1 = base.scores.top1_accuracy
        measured = f"{base.name} top-1 {100 * top1:.1f}%" if top1 is not None else "no labels"
        click.echo(
            f"ablated {len(variants)} variant{'s' if len(variants) != 1 else ''} of {loaded.name} "
            f"(retraining: {config.retrain}); "
            f"{measured}; wrote {out}/results.md"
        )
    finally:
        shutdown()
