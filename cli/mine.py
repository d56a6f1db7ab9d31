"""`vizcnn mine`: top-k dataset patches per channel (Zeiler & Fergus), with resume and torchrun."""

from __future__ import annotations

import sys
from typing import Any

import click

from vizcnn.core.distributed import init_from_env, shutdown
from vizcnn.core.units import DEFAULT_CHANNELS, resolve_unit
from vizcnn.data.datasets import SAMPLE_CROPS
from vizcnn.mining.patches import CUTTING, DEFAULT_PROJECTIONS, DEFAULT_THUMBNAIL, PROJECTIONS
from vizcnn.mining.streaming import DEFAULT_BATCH, RANKS, MineConfig, layer_shape
from vizcnn.runs.mine import MineInterrupted, MineRun, mine_folder

from .common import device_from, friendly_errors, run_options
from .flags import as_flags
from .model_options import model_options, note_default_layer, open_model
from .options import (
    FINITE_FLOAT,
    batch_option,
    data_options,
    output_options,
    run_from,
    shown,
    workers_option,
)
from .progress import progress_bar


def _summary(run: MineRun) -> str:
    skipped = f"{len(run.skipped)} skipped" + (", listed in manifest.json" if run.skipped else "")
    resumed = f", resumed after {run.resumed_from} images" if run.resumed_from else ""
    return (
        f"mined {run.layer} ({len(run.channels)} channels, k={run.config.k}) over "
        f"{run.images_seen} images ({skipped}) at {run.rate:.1f} img/s{resumed}; "
        f"wrote {len(run.files)} files to {run.folder}/"
    )


@click.command("mine")
@click.argument("data")
@model_options
@click.option(
    "-l",
    "--layer",
    default=None,
    metavar="LAYER[#k][:CHANNELS]",
    help="Layer to mine, optionally with channels: _blocks.4:0-15 (default: the model's mine layer).",
)
@click.option(
    "--channels",
    default=None,
    help=f"Channels: 0:64 (a slice), 0-15, 3,5,9 or 7 (default {DEFAULT_CHANNELS}).",
)
@click.option("--all", "all_channels", is_flag=True, help="Mine every channel of the layer.")
@shown("-k", "k", default=MineConfig.k, help="Images per channel.")
@shown("--rank", type=click.Choice(RANKS), default=MineConfig.rank, help="Score of an image "
        "for a channel: spatial max or mean of its map.")  # fmt: skip
@batch_option(DEFAULT_BATCH)
@workers_option
@data_options(SAMPLE_CROPS)
@shown("--projections", type=click.Choice(PROJECTIONS), default=DEFAULT_PROJECTIONS,
        help="Show each patch next to its deconvnet or guided-backprop projection.")  # fmt: skip
@shown("--thumbnail", default=DEFAULT_THUMBNAIL, help="Tile size in pixels.")
@shown("--checkpoint-every", default=MineConfig.checkpoint_every,
        help="Save the running state in OUT/checkpoint/ every N batches ...")  # fmt: skip
@shown("--checkpoint-seconds", type=FINITE_FLOAT, default=MineConfig.checkpoint_seconds,
        help="... or every S seconds, whichever comes first (also on Ctrl-C / SIGTERM).")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/checkpoint/.")
@run_options
@output_options(
    "Output folder.",
    overwrite="Start over in an -o folder that holds an earlier run (finished or interrupted).",
)
@friendly_errors
def mine_command(data: str, layer: str | None, output: str, **options: Any) -> None:
    """Find the k images that excite each channel most; save their patches and a manifest.

    DATA is a folder of images (any tree, e.g. ImageFolder), a .txt list of paths, or `samples`
    (random crops of the photos bundled with scikit-image and scikit-learn). Writes
    OUT/channel_NNNN.png (3x3 grid per channel), OUT/sheet.png (the layer) and OUT/manifest.json.
    Under `torchrun --nproc-per-node N --no-python vizcnn mine ...` the ranks share the data.

    The running state goes to OUT/checkpoint/ every --checkpoint-every batches or
    --checkpoint-seconds seconds and when the run is stopped (Ctrl-C, SIGTERM); the same
    command with --resume continues it to the same result. A resume with other options is
    refused, naming them; an -o folder that holds an earlier run is refused unless --resume or
    --overwrite. Images larger than 179 megapixels are skipped (listed in the
    manifest); set VIZCNN_MAX_PIXELS to allow them.

    \b
    Examples:
      vizcnn mine samples -l _blocks.4 --channels 0:16 -o mined/
      vizcnn mine ~/photos -l _blocks.6 --all -o big/ --resume
    """
    if options["all_channels"] and options["channels"]:
        raise click.UsageError("give --channels or --all, not both")
    if options["resume"] and options["overwrite"]:
        raise click.UsageError("give --resume (continue) or --overwrite (start over), not both")
    device = init_from_env(device_from(options))  # under torchrun: this rank's device
    try:
        loaded = open_model(options, device)
        if not layer:
            note_default_layer(loaded, "mine", options)
        layer_name, chosen = resolve_unit(
            layer or loaded.layers_for("mine")[0],
            lambda name: layer_shape(loaded, name)[0],
            channels=options["channels"],
            all_channels=options["all_channels"],
        )
        config = MineConfig(
            layer=layer_name,
            channels=chosen,
            k=options["k"],
            rank=options["rank"],
            checkpoint_every=options["checkpoint_every"],
            checkpoint_seconds=options["checkpoint_seconds"],
        )
        show = not options["quiet"]
        with progress_bar(show, unit="img") as images, progress_bar(show, unit="patch") as patches:

            def progress(done: int, total: int, message: str) -> None:
                (patches if message == CUTTING else images)(done, total, message)

            run = mine_folder(
                loaded,
                data,
                output,
                config,
                projections=options["projections"],
                thumbnail=options["thumbnail"],
                limit=options["limit"],
                crops=options["crops"],
                seed=options["seed"],
                resume=options["resume"],
                overwrite=options["overwrite"],
                progress=progress,
                run=run_from(options),
            )
    except MineInterrupted as stopped:
        if stopped.is_main:
            click.echo(as_flags(str(stopped)), err=True)
        sys.exit(130)
    finally:
        shutdown()
    for note in run.notes:
        click.echo(note, err=True)
    if run.is_main:
        click.echo(_summary(run))
