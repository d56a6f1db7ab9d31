"""`vizcnn mine`: top-k dataset patches per channel (Zeiler & Fergus), with resume and torchrun."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from vizcnn.core.distributed import current_shard, init_from_env, shutdown
from vizcnn.core.errors import VizError
from vizcnn.core.units import DEFAULT_CHANNELS, resolve_unit
from vizcnn.data.datasets import SAMPLES, ImageSource, open_dataset
from vizcnn.io.imaging import save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.io.provenance import provenance
from vizcnn.mining.patches import (
    MinedPatches,
    channel_grid,
    check_patch_options,
    layer_sheet,
    mine_patches,
)
from vizcnn.mining.streaming import (
    MineConfig,
    TopK,
    config_dict,
    layer_shape,
    mine_topk,
)

from .common import (
    device_from,
    friendly_errors,
    model_options,
    open_model,
    progress_enabled,
    run_options,
)
from .options import FINITE_FLOAT
from .progress import progress_bar

CHECKPOINT_DIR = "checkpoint"


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
@click.option("-k", "k", type=int, default=9, show_default=True, help="Images per channel.")
@click.option(
    "--rank",
    type=click.Choice(["max", "mean"]),
    default="max",
    show_default=True,
    help="Score of an image for a channel: spatial max or mean of its map.",
)
@click.option("--batch", type=int, default=64, show_default=True, help="Images per forward pass.")
@click.option(
    "--workers", type=int, default=2, show_default=True, help="Image-decoding worker processes."
)
@click.option("--limit", type=int, default=None, help="Use only the first N images.")
@click.option(
    "--projections",
    type=click.Choice(["deconv", "guided", "none"]),
    default="none",
    show_default=True,
    help="Show each patch next to its deconvnet or guided-backprop projection.",
)
@click.option("--thumbnail", type=int, default=64, show_default=True, help="Tile size in pixels.")
@click.option(
    "--crops", type=int, default=32, show_default=True, help="samples: crops per bundled photo."
)
@click.option(
    "--checkpoint-every",
    type=int,
    default=20,
    show_default=True,
    help="Save the running state in OUT/checkpoint/ every N batches ...",
)
@click.option(
    "--checkpoint-seconds",
    type=FINITE_FLOAT,
    default=60.0,
    show_default=True,
    help="... or every S seconds, whichever comes first (also on Ctrl-C / SIGTERM).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/checkpoint/.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start over in an -o folder that holds an earlier run (finished or interrupted).",
)
@run_options
@click.option("-o", "--output", required=True, help="Output folder.")
@friendly_errors
def mine_command(
    data: str,
    layer: str | None,
    channels: str | None,
    all_channels: bool,
    k: int,
    rank: str,
    batch: int,
    workers: int,
    limit: int | None,
    projections: str,
    thumbnail: int,
    crops: int,
    checkpoint_every: int,
    checkpoint_seconds: float,
    resume: bool,
    overwrite: bool,
    output: str,
    **options: Any,
) -> None:
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
    if all_channels and channels:
        raise click.UsageError("give --channels or --all, not both")
    if resume and overwrite:
        raise click.UsageError("give --resume (continue) or --overwrite (start over), not both")
    device = init_from_env(device_from(options))
    try:
        started = time.perf_counter()
        loaded = open_model(options, device)
        layer_name, chosen = resolve_unit(
            layer or loaded.layers_for("mine")[0],
            lambda name: layer_shape(loaded, name)[0],
            channels=channels,
            all_channels=all_channels,
        )
        config = MineConfig(
            layer=layer_name,
            channels=chosen,
            k=k,
            rank=rank,
            batch_size=batch,
            workers=workers,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
        )
        # Everything that could fail after the mining pass is checked before it.
        check_patch_options(loaded, layer_name, projections, thumbnail)
        dataset = open_dataset(
            data,
            loaded.channels,
            loaded.input_size,
            limit=limit,
            crops_per_image=crops,
            seed=options["seed"],
        )
        out = ensure_writable(output, "folder")
        shard = current_shard()
        checkpoint = out / CHECKPOINT_DIR / f"rank{shard.rank}-of-{shard.world_size}.pt"
        if not (resume or overwrite):
            refuse_earlier_run(out, checkpoint)
        if resume and not checkpoint.is_file():
            others = sorted(p.name for p in (out / CHECKPOINT_DIR).glob("rank*-of-*.pt"))
            if others:  # a checkpoint of another layout would be silently ignored: say so
                raise VizError(
                    f"--resume found checkpoints for another number of processes ({', '.join(others)}) "
                    f"but none for rank {shard.rank} of {shard.world_size}; resume with the same "
                    "number of processes, or start over with --overwrite instead of --resume"
                )
            if shard.is_main:
                click.echo(
                    f"no checkpoint found in {checkpoint.parent}/; starting from the beginning",
                    err=True,
                )
        show = progress_enabled(options) and shard.is_main
        mining_started = time.perf_counter()
        counted: list[int] = []  # this shard's images done: at the first and the latest report

        try:
            with progress_bar(show, unit="img") as bar:

                def report(done: int, total: int, message: str) -> None:
                    if not counted:
                        counted.append(done)
                    counted[1:] = [done]
                    bar(done, total, message)

                top = mine_topk(
                    loaded, dataset, config, progress=report, checkpoint=checkpoint, resume=resume
                )
        except KeyboardInterrupt:
            if shard.is_main:
                _say_interrupted(
                    checkpoint, counted[-1] if counted else 0, dataset, shard.world_size
                )
            sys.exit(130)
        elapsed = time.perf_counter() - mining_started
        if not shard.is_main:
            return
        with progress_bar(show, unit="patch") as progress:
            mined = mine_patches(
                loaded,
                dataset,
                top,
                projections=projections,
                thumbnail_size=thumbnail,
                progress=progress,
            )
        block = provenance(
            technique="mine",
            model_name=loaded.name,
            weights=loaded.weights,
            module=loaded.module,
            normalization=loaded.normalization,
            options={
                "layer": layer_name,
                "channels": list(chosen),
                "k": k,
                "rank": rank,
                "limit": limit,
                "crops": crops if data == SAMPLES else None,
                "projections": projections,
                "thumbnail": thumbnail,
                "input_size": list(loaded.input_size),
            },
            data=data,
            seed=options["seed"],
            device=device,
            dtype=loaded.dtype,
            seconds=time.perf_counter() - started,
        )
        written = _write(out, block, dataset, config, top, mined)
        # images this call pushed through (a resumed run did the rest earlier), all ranks
        rate = (counted[-1] - counted[0]) * shard.world_size / max(elapsed, 1e-9)
        skipped = f"{len(top.skipped)} skipped" + (
            ", listed in manifest.json" if top.skipped else ""
        )
        resumed = f", resumed after {top.resumed_from} images" if top.resumed_from else ""
        click.echo(
            f"mined {layer_name} ({len(chosen)} channels, k={k}) over {top.images_seen} images "
            f"({skipped}) at {rate:.1f} img/s{resumed}; wrote {written} files to {out}/"
        )
    finally:
        shutdown()


def refuse_earlier_run(out: Path, checkpoint: Path) -> None:
    """Stop before a run would replace an earlier one's finished or saved work in `out`.

    Each rank looks at its own checkpoint only: under torchrun another rank may already be
    writing its own when this one checks.
    """
    if (out / "manifest.json").is_file():
        raise VizError(
            f"{out}/ already holds a finished run (manifest.json); choose another -o folder, "
            "or add --overwrite to replace it"
        )
    if checkpoint.is_file():
        raise VizError(
            f"{checkpoint.parent}/ holds an interrupted run; add --resume to continue it, "
            "or --overwrite to start over"
        )


def _say_interrupted(checkpoint: Path, done: int, dataset: ImageSource, ranks: int) -> None:
    share = "images" if ranks == 1 else "images of this process's share"
    if checkpoint.is_file():
        click.echo(
            f"interrupted after {done} {share}; the state is saved in {checkpoint.parent}/: "
            "run the same command with --resume to continue",
            err=True,
        )
    else:
        click.echo(f"interrupted after {done} {share}, before any checkpoint", err=True)


def _write(
    out: Path,
    block: dict[str, Any],
    dataset: ImageSource,
    config: MineConfig,
    top: TopK,
    mined: MinedPatches,
) -> int:
    meta = {"provenance": block, "layer": config.layer, "k": config.k, "rank": config.rank}
    channel_rows = []
    written = 0
    for channel in top.channels:
        hits = mined.hits.get(channel, [])
        tile = f"channel_{channel:04d}.png" if hits else None
        if tile is not None:
            save_png(channel_grid(hits), out / tile, {**meta, "channel": channel})
            written += 1
        channel_rows.append(
            {
                "channel": channel,
                "tile": tile,
                "hits": [
                    {
                        "rank": hit.rank,
                        "image": hit.image,
                        "image_id": hit.image_id,
                        "value": hit.value,
                        "position": list(hit.position),
                        "box": list(hit.box),
                    }
                    for hit in hits
                ],
            }
        )
    if mined.hits:
        save_png(layer_sheet(mined), out / "sheet.png", meta)
        written += 1
    field = mined.field
    manifest = {
        "provenance": block,  # model, weights and digest, data, options, seed, device, versions
        "images": len(dataset),
        "images_seen": top.images_seen,
        "layer": config.layer,
        "layer_shape": list(top.layer_shape),
        "config": config_dict(config),
        "field": {
            "size": list(field.size),
            "stride": list(field.stride),
            "offset": list(field.offset),
            "method": field.method,
        },
        "box_note": "(top, left, bottom, right) in the preprocessed model input, bottom/right "
        "exclusive; may extend past the image (padded)",
        "skipped": [{"image": name, "reason": reason} for name, reason in top.skipped],
        "channels": channel_rows,
    }
    save_json(manifest, out / "manifest.json")
    return written + 1
