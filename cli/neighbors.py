"""`vizcnn neighbors`: each query image beside its nearest data images in a layer's feature space."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import torch

from vizcnn.core.errors import VizError
from vizcnn.data.datasets import open_dataset, preprocess
from vizcnn.data.samples import resolve_image_argument
from vizcnn.features.figures import neighbors_figure
from vizcnn.features.neighbors import (
    CLASSIFIER_INPUT,
    Metric,
    classifier_layer,
    embed,
    embed_dataset,
    nearest,
)
from vizcnn.hooks import find_module, parse_layer
from vizcnn.io.imaging import save_json, save_png
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
from .outputs import check_writable_file, model_provenance
from .progress import progress_bar

CACHE_DIR = ".vizcnn_cache"


@click.command("neighbors", epilog=SAMPLES_EPILOG)
@click.argument("inputs", nargs=-1, required=True, metavar="QUERY [QUERY ...] DATA")
@model_options
@click.option(
    "-l",
    "--layer",
    default=None,
    help="Embedding layer (maps averaged over space). Default: the input of the last Linear.",
)
@click.option("-k", "k", default=5, show_default=True, help="Neighbours per query.")
@click.option(
    "--metric",
    type=click.Choice(["l2", "cosine"]),
    default="l2",
    show_default=True,
    help="Distance.",
)
@click.option("--batch", default=32, show_default=True, help="Images per forward pass.")
@click.option("--workers", default=0, show_default=True, help="Image-decoding worker processes.")
@click.option("--limit", type=int, default=None, help="Use only the first N data images.")
@click.option("--crops", default=4, show_default=True, help="samples: crops per bundled photo.")
@click.option(
    "--cache",
    default=None,
    help=f"Folder for cached embeddings (default: {CACHE_DIR}/ beside the output).",
)
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached embeddings.")
@click.option(
    "-o", "--output", default="neighbors.png", show_default=True, help="PNG (a .json beside it)."
)
@run_options
@friendly_errors
def neighbors_command(
    inputs: tuple[str, ...],
    layer: str | None,
    k: int,
    metric: str,
    batch: int,
    workers: int,
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
    if k < 1:
        raise VizError(f"-k must be at least 1, got {k}")
    if batch < 1:
        raise VizError(f"--batch must be at least 1, got {batch}")
    target = check_writable_file(output)
    cache_dir = None if no_cache else Path(cache) if cache else target.parent / CACHE_DIR
    if cache_dir is not None:
        ensure_writable(cache_dir, "folder")
    device = device_from(options)
    loaded = open_model(options, device)
    if layer is not None:
        find_module(loaded.module, parse_layer(layer).name)
    else:
        classifier_layer(loaded.module)
    pictures = []
    for query in queries:
        picture, _ = resolve_image_argument(query, loaded.channels)
        pictures.append(preprocess(picture, loaded.input_size))
    dataset = open_dataset(
        data,
        loaded.channels,
        loaded.input_size,
        limit=limit,
        crops_per_image=crops,
        seed=options["seed"],
    )
    if k > len(dataset):
        raise VizError(f"-k {k} is more than the {len(dataset)} images in {data!r}")
    start = time.perf_counter()
    with progress_bar(progress_enabled(options), unit="img") as progress:
        embeddings = embed_dataset(
            loaded,
            dataset,
            layer,
            batch_size=batch,
            workers=workers,
            cache_dir=cache_dir,
            progress=progress,
        )
    query_vectors = embed(loaded, torch.stack(pictures), layer)
    distance: Metric = "cosine" if metric == "cosine" else "l2"
    dist, index = nearest(query_vectors, embeddings.vectors, k, distance, embeddings.valid)
    figure = neighbors_figure(
        pictures,
        list(queries),
        [[dataset.image(int(i)) for i in row] for row in index],
        [[embeddings.names[int(i)] for i in row] for row in index],
        dist,
        metric,
    )
    block = model_provenance(
        "neighbors",
        loaded,
        {
            "queries": list(queries),
            "layer": layer or CLASSIFIER_INPUT,
            "k": k,
            "metric": metric,
            "batch": batch,
            "limit": limit,
            "crops": crops,
        },
        data=data,
        device=device,
        seconds=time.perf_counter() - start,
    )
    save_png(figure, target, {"provenance": block})
    result = {
        "embedding_dim": int(embeddings.vectors.shape[1]),
        "data_images": len(embeddings.names),
        "unreadable": [
            n for n, ok in zip(embeddings.names, embeddings.valid, strict=True) if not ok
        ],
        "cached": embeddings.cached,
        "neighbors": [
            {
                "query": query,
                "names": [embeddings.names[int(i)] for i in index[row]],
                "indices": [int(i) for i in index[row]],
                "distances": [round(float(d), 6) for d in dist[row]],
            }
            for row, query in enumerate(queries)
        ],
    }
    save_json({"provenance": block, "result": result}, target.with_suffix(".json"))
    how = "cached" if embeddings.cached else f"embedded in {block['seconds']:.1f} s"
    click.echo(
        f"wrote {target} ({len(queries)} queries x {k} neighbours among {len(dataset)} images, "
        f"{loaded.name} {layer or CLASSIFIER_INPUT} ({embeddings.vectors.shape[1]} dims, {how}), "
        f"{metric}) and {target.with_suffix('.json').name}"
    )
