"""`vizcnn neighbors`: each query image beside its nearest data images in a layer's feature space."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.features.neighbors import DEFAULT_BATCH, NeighborsConfig
from vizcnn.runs.features import png_target
from vizcnn.runs.neighbors import CACHE_DIR, neighbors_file

from .common import device_from, friendly_errors, run_options
from .features import SAMPLES_EPILOG
from .model_options import model_options, open_model
from .options import batch_option, data_options, output_options, run_from, workers_option
from .progress import progress_bar


@click.command("neighbors", epilog=SAMPLES_EPILOG)
@click.argument("inputs", nargs=-1, required=True, metavar="QUERY [QUERY ...] DATA")
@model_options
@click.option(
    "-l",
    "--layer",
    default=None,
    help="Embedding layer (maps averaged over space). Default: the input of the last Linear.",
)
@click.option("-k", "k", default=NeighborsConfig.k, show_default=True, help="Neighbours per query.")
@click.option(
    "--metric",
    type=click.Choice(["l2", "cosine"]),
    default=NeighborsConfig.metric,
    show_default=True,
    help="Distance.",
)
@batch_option(DEFAULT_BATCH)
@workers_option
@data_options(NeighborsConfig.crops, what="data images")
@click.option(
    "--cache",
    default=None,
    help=f"Folder for cached embeddings (default: {CACHE_DIR}/ beside the output).",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached embeddings.")
@output_options("PNG (a .json beside it).", default="neighbors.png")
@run_options
@friendly_errors
def neighbors_command(
    inputs: tuple[str, ...],
    layer: str | None,
    k: int,
    metric: str,
    limit: int | None,
    crops: int,
    cache: str | None,
    no_cache: bool,
    output: str,
    **options: Any,
) -> None:
    """Nearest neighbours of each QUERY among the DATA images, in a layer's feature space.

    QUERY is an image path or sample:NAME; DATA is a folder of images, a .txt list of paths,
    or `samples` (crops of the bundled photos). Embeddings of DATA are cached per
    (weights, layer, data): a second query against the same data is one forward pass.

    \b
    Examples:
      vizcnn neighbors sample:coffee sample:chelsea samples -o neighbors.png
      vizcnn neighbors query.jpg photos/ -m resnet18 -l layer3 --metric cosine -k 8 -o nn.png
    """
    if len(inputs) < 2:
        raise click.UsageError("give at least one QUERY and then DATA")
    queries, data = inputs[:-1], inputs[-1]
    config = NeighborsConfig(layer, k, metric, limit, crops)  # type: ignore[arg-type]
    png_target(output)
    loaded = open_model(options, device_from(options))
    with progress_bar(not options["quiet"], unit="img") as progress:
        run = neighbors_file(
            loaded,
            queries,
            data,
            output,
            config,
            seed=options["seed"],
            cache=False if no_cache else cache or True,
            progress=progress,
            run=run_from(options),
        )
    how = "cached" if run.embeddings.cached else f"embedded in {run.seconds:.1f} s"
    click.echo(
        f"wrote {run.path} ({len(queries)} queries x {k} neighbours among {run.data_images} "
        f"images, {loaded.name} {run.layer} ({run.embeddings.vectors.shape[1]} dims, {how}), "
        f"{metric}) and {run.path.with_suffix('.json').name}"
    )
