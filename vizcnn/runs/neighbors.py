"""`neighbors_file`: what `vizcnn neighbors` writes, byte for byte but for timestamps.

A PNG (each query beside its nearest data images, provenance in its text chunks) and a JSON
beside it. The data set's embeddings are cached in `.vizcnn_cache/` beside the PNG (or a folder
given): the cache file's name is a digest of every setting that shapes the vectors
(`vizcnn.features.neighbors.cache_path`), so a run with other settings never reuses another
run's vectors; it adds its own entry. A second query against the same data is then one
forward pass per query image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import open_dataset, preprocess
from vizcnn.features.neighbors import (
    CLASSIFIER_INPUT,
    DEFAULT_BATCH,
    Embeddings,
    NeighborsConfig,
    embed,
    embed_dataset,
    embedding_layer,
    nearest,
)
from vizcnn.hooks import find_module, layer_name, parse_layer
from vizcnn.io.imaging import save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.runs.features import image_argument, png_target
from vizcnn.runs.lock import file_lock
from vizcnn.runs.store import model_block

__all__ = ["CACHE_DIR", "NeighborsRun", "neighbors_file"]

CACHE_DIR = ".vizcnn_cache"  # the embedding cache's folder beside the output, by default


@dataclass
class NeighborsRun:
    """What `neighbors_file` wrote and found."""

    path: Path  # the PNG; its JSON sidecar is `path.with_suffix(".json")`
    layer: str  # the embedding layer's name (CLASSIFIER_INPUT for the default)
    embeddings: Embeddings  # of the data set (`cached` says whether read from the cache)
    distances: torch.Tensor  # (Q, k) ascending
    indices: torch.Tensor  # (Q, k) into the data set
    data_images: int  # images in the data set
    seconds: float


def _cache_folder(cache: str | Path | bool, target: Path) -> Path | None:
    if cache is False:
        return None
    folder = target.parent / CACHE_DIR if cache is True else Path(cache)
    return ensure_writable(folder, "folder", flag="cache")


def neighbors_file(
    model: ModelLike,
    queries: Sequence[str | Path | torch.Tensor],
    data: str | Path,
    path: str | Path,
    config: NeighborsConfig | None = None,
    *,
    seed: int = 0,
    cache: str | Path | bool = True,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> NeighborsRun:
    """Nearest neighbours of each query among the data images in a layer's feature space:
    `path` (PNG) and its `.json` sidecar (names, indices, distances).

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        queries: images as paths, `sample:NAME` or tensors `(C, H, W)` in [0, 1].
        data: a folder of images, a `.txt` list of paths, or `samples` (crops of the bundled
            photos).
        path: the PNG to write (the JSON goes beside it, same stem).
        config: layer, k, metric, limit, crops.
        seed: the random crops of `samples`.
        cache: True: embeddings cached in `.vizcnn_cache/` beside `path`; a folder: there;
            False: neither read nor written.
        progress: called after each batch of data images embedded.
        run: how it runs (`RunOptions`: `batch`, `workers`), as for `embed_dataset`.

    Example:
        >>> run = neighbors_file(loaded, ["sample:coffee"], "samples", "nn.png",
        ...                      NeighborsConfig(k=8, metric="cosine"))
    """
    from vizcnn.features.figures import neighbors_figure  # matplotlib: only when drawing

    config = config or NeighborsConfig()
    run = as_run_options(run)
    if not queries:
        raise VizError("no queries; give at least one query image")
    target = png_target(path)
    cache_dir = _cache_folder(cache, target)
    loaded = as_loaded(model)
    if config.layer is None:
        layer = embedding_layer(loaded)
    else:
        layer = layer_name(loaded.module, config.layer)
        find_module(loaded.module, parse_layer(layer).name)
    pictures, names = [], []
    for query in queries:
        picture, name, _ = image_argument(query, loaded.channels)
        pictures.append(preprocess(picture, loaded.input_size, loaded.resize_crop))
        names.append(name)
    dataset = open_dataset(
        data,
        loaded.channels,
        loaded.input_size,
        limit=config.limit,
        crops_per_image=config.crops,
        seed=seed,
        resize_crop=loaded.resize_crop,
    )
    if config.k > len(dataset):
        raise VizError(f"k={config.k} is more than the {len(dataset)} images in {str(data)!r}")
    start = time.perf_counter()
    embeddings = embed_dataset(
        loaded,
        dataset,
        layer,
        cache_dir=cache_dir,
        progress=progress,
        run=run,
    )
    query_vectors = embed(loaded, torch.stack(pictures), layer)
    dist, index = nearest(
        query_vectors, embeddings.vectors, config.k, config.metric, embeddings.valid
    )
    figure = neighbors_figure(
        pictures,
        names,
        [[dataset.image(int(i)) for i in row] for row in index],
        [[embeddings.names[int(i)] for i in row] for row in index],
        dist,
        config.metric,
    )
    options = {
        "queries": names,
        "layer": layer or CLASSIFIER_INPUT,
        "k": config.k,
        "metric": config.metric,
        "batch": run.batch_or(DEFAULT_BATCH),  # recorded as before `RunOptions` existed
        "limit": config.limit,
        "crops": config.crops,
    }
    seconds = time.perf_counter() - start
    block = model_block("neighbors", loaded, options, data=str(data), seed=seed, seconds=seconds)
    # the picture and its JSON as one result: a second run on the same file waits its turn
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
            for row, query in enumerate(names)
        ],
    }
    with file_lock(target.with_suffix(".json")):
        save_png(figure, target, {"provenance": block})
        save_json({"provenance": block, "result": result}, target.with_suffix(".json"))
    return NeighborsRun(
        target, layer or CLASSIFIER_INPUT, embeddings, dist, index, len(dataset), seconds
    )
