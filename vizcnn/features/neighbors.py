"""A CNN as a feature extractor: embed a data set at one layer and find each query's neighbours.

The default embedding is the input of the classifier (the last `nn.Linear`), caught by a forward
pre-hook; a named layer's output is used instead when one is given, averaged over space if it is
a map `(B, C, H, W)`. Embeddings are cached on disk per (weights digest, layer, data digest), so a
second query against the same data costs one forward pass per query image.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import FileImages, ImageSource, collate
from vizcnn.hooks import Layer, capture, find_module, layer_name, model_guard, parse_layer
from vizcnn.io.imaging import atomic_write
from vizcnn.io.provenance import files_digest, weights_digest
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight

Metric = Literal["l2", "cosine"]
CLASSIFIER_INPUT = "classifier-input"  # the layer name recorded for the default embedding


DEFAULT_BATCH = 32  # images per forward pass where `RunOptions.batch` is None


@dataclass(frozen=True)
class NeighborsConfig:
    """How to embed a data set and find each query's neighbours (`vizcnn.runs.neighbors_file`)."""

    # embedding layer, a spec or the submodule (maps averaged over space); None = the input
    # of the last nn.Linear (the classifier)
    layer: Layer | None = None
    k: int = 5  # neighbours per query
    metric: Metric = "l2"  # l2 (Euclidean) or cosine (1 - cosine similarity)
    limit: int | None = None  # use only the first N data images (None: all)
    crops: int = 4  # data `samples`: random crops per bundled photo

    def __post_init__(self) -> None:
        if self.k < 1:
            raise VizError(f"k must be at least 1, got {self.k}")
        if self.metric not in ("l2", "cosine"):
            raise VizError(f"metric {self.metric!r} invalid; use l2 or cosine")


def classifier_layer(model: nn.Module) -> str:
    """Dotted name of the last `nn.Linear` (the classifier), or a VizError if there is none."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise VizError(
            "the model has no nn.Linear classifier; name an embedding layer (NeighborsConfig.layer)"
        )
    return linears[-1]


def embedding_layer(loaded: LoadedModel) -> str | None:
    """The default embedding: None for the classifier's input (the last `nn.Linear`'s); for a
    model without one (a 1x1-conv classifier, timm's DLA) the last stage's output, averaged over
    space as the global pool before such a classifier does (`layer_choice("gradcam")`)."""
    if any(isinstance(m, nn.Linear) for m in loaded.module.modules()):
        return None
    return loaded.layer_choice("gradcam").layers[0]


@contextmanager
def capture_input(model: nn.Module, layer: Layer) -> Iterator[dict[str, torch.Tensor]]:
    """Record the (first tensor) input of `layer` on each forward pass; the hook is removed after.

    Example:
        >>> with capture_input(net, "fc") as seen:
        ...     net(images)
        >>> seen["input"].shape  # (B, 512) for a ResNet-18
    """
    module = find_module(model, layer_name(model, layer))
    seen: dict[str, torch.Tensor] = {}

    def hook(_module: nn.Module, inputs: Any) -> None:
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        if tensors:
            seen["input"] = tensors[0].detach()

    handle = module.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@dataclass
class Embeddings:
    """One vector per data-set item."""

    vectors: torch.Tensor  # (N, D) float32 on the CPU; zeros where `valid` is False
    valid: torch.Tensor  # (N,) bool: False for unreadable items
    names: list[str]  # display name of each item
    layer: str  # the layer spec, or CLASSIFIER_INPUT for the default
    cached: bool = False  # True when read from the cache rather than computed


def _pool(features: torch.Tensor) -> torch.Tensor:
    features = features.float()
    if features.dim() == 4:  # a map: the average over positions, as a global pool would
        return features.mean(dim=(2, 3))
    return features.flatten(1)


def embed(
    model: ModelLike,
    images: torch.Tensor,
    layer: Layer | None = None,
) -> torch.Tensor:
    """Embeddings `(B, D)` of images `(B, C, H, W)` in [0, 1] at the model's input size.

    Args:
        layer: a layer spec or submodule whose output is used (maps averaged over space);
            None = the input of the last `nn.Linear` (`embedding_layer`).
    """
    loaded = as_loaded(model)
    layer = embedding_layer(loaded) if layer is None else layer_name(loaded.module, layer)
    warn_if_normalized(images)
    preflight(loaded, [layer] if layer else [], output=layer is None, size=images.shape[-2:])
    with model_guard(loaded.module):
        return _embed_guarded(loaded, images, layer)


def _embed_guarded(loaded: LoadedModel, images: torch.Tensor, layer: str | None) -> torch.Tensor:
    """`embed` for a caller that already holds `model_guard` (one guard per pass, not per batch)."""
    module = loaded.module
    inputs = loaded.normalize(images.to(loaded.device, loaded.dtype))
    with torch.no_grad():
        if layer is None:
            with capture_input(module, classifier_layer(module)) as seen:
                module(inputs)
            if "input" not in seen:
                raise VizError(
                    "the classifier never ran in the forward pass; name a layer (NeighborsConfig.layer)"
                )
            return _pool(seen["input"]).cpu()
        with capture(module, [layer], stop_early=True, detach=True) as acts:
            acts.run(inputs)
        return _pool(acts[parse_layer(layer).spec]).cpu()


def data_digest(dataset: ImageSource) -> str:
    """Identifies a data set's content: its names and size, and for files their sizes and times."""
    parts = [dataset.fingerprint()]
    if isinstance(dataset, FileImages):
        parts.append(files_digest(dataset.paths[: len(dataset)]))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cache_path(
    cache_dir: Path, loaded: LoadedModel, layer: str | None, dataset: ImageSource
) -> Path:
    """The cache file of one (weights, layer, data, normalization) set of settings.

    The name is a digest of every setting that shapes the vectors: the weights digest (which
    covers the dtype), the layer, the data (names, image size, crop seed, file sizes and
    times) and the normalization. A run with other settings gets its own entry beside this one
    instead of reusing or overwriting it.
    """
    key = f"{weights_digest(loaded.module)}|{layer or CLASSIFIER_INPUT}|{data_digest(dataset)}"
    key += f"|{loaded.mean}|{loaded.std}"
    return Path(cache_dir) / f"embeddings-{hashlib.sha256(key.encode()).hexdigest()[:20]}.pt"


def embed_dataset(
    model: ModelLike,
    dataset: ImageSource,
    layer: Layer | None = None,
    *,
    cache_dir: str | Path | None = None,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> Embeddings:
    """Embed every item of `dataset`, in batches; read and write `cache_dir` when given.

    Args:
        model: a `LoadedModel` or bare `nn.Module`.
        dataset: from `open_dataset` (items already at the model's input size).
        layer: embedding layer, a spec or the submodule itself (recorded as its dotted name,
            `vizcnn.hooks.layer_name`); None: the classifier's input (`embedding_layer`).
        cache_dir: folder for `embeddings-*.pt` files; None = no cache.
        progress: called after each batch with images done / total.
        run: how it runs (`RunOptions`): `batch` images per forward pass (None:
            `DEFAULT_BATCH`), `workers` DataLoader processes; neither changes the result.

    Example:
        >>> data = open_dataset("samples", 3, (224, 224), crops_per_image=2)
        >>> emb = embed_dataset(load_model(), data, cache_dir="cache/")
    """
    loaded = as_loaded(model)
    if layer is not None:
        layer = layer_name(loaded.module, layer)
        find_module(loaded.module, parse_layer(layer).name)
    else:
        layer = embedding_layer(loaded)
    if len(dataset) == 0:
        raise VizError("no images to embed")
    run = as_run_options(run)
    preflight(loaded, [layer] if layer else [], output=layer is None)
    name = layer or CLASSIFIER_INPUT
    path = cache_path(Path(cache_dir), loaded, layer, dataset) if cache_dir is not None else None
    if path is not None and path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("names") == list(dataset.names[: len(dataset)]):
            progress(len(dataset), len(dataset), "embeddings (cached)")
            return Embeddings(stored["vectors"], stored["valid"], stored["names"], name, True)
    loader = DataLoader(
        dataset,
        batch_size=run.batch_or(DEFAULT_BATCH),
        num_workers=run.workers,
        collate_fn=collate,
        shuffle=False,
    )
    vectors: list[torch.Tensor] = []
    valid: list[torch.Tensor] = []
    done = 0
    # one guard for the whole pass: its copy of the buffers is not per-batch work
    with model_guard(loaded.module):
        for batch in loader:
            if not vectors:  # the first batch only: one reduction per pass
                warn_if_normalized(batch.images)
            vectors.append(_embed_guarded(loaded, batch.images, layer))
            valid.append(torch.tensor([not e for e in batch.errors], dtype=torch.bool))
            done += len(batch.errors)
            progress(done, len(dataset), "embedding")
    result = Embeddings(
        torch.cat(vectors), torch.cat(valid), list(dataset.names[: len(dataset)]), name
    )
    result.vectors[~result.valid] = 0
    if path is not None:
        payload = {"vectors": result.vectors, "valid": result.valid, "names": result.names}
        atomic_write(path, lambda file: torch.save(payload, file))
    return result


def distances(queries: torch.Tensor, keys: torch.Tensor, metric: Metric = "l2") -> torch.Tensor:
    """Distance matrix `(Q, N)` between rows of `queries` `(Q, D)` and `keys` `(N, D)`.

    l2: Euclidean distance; cosine: 1 - cosine similarity (0 for equal directions, 2 opposite).
    """
    if metric not in ("l2", "cosine"):
        raise VizError(f"metric {metric!r} invalid; use l2 or cosine")
    if queries.shape[-1] != keys.shape[-1]:
        raise VizError(f"query vectors have {queries.shape[-1]} features, data {keys.shape[-1]}")
    q, k = queries.double(), keys.double()
    if metric == "cosine":
        q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        k = k / k.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (1 - q @ k.T).clamp_min(0)
    # |q|^2 + |k|^2 - 2 q.k in float64: exact enough, and one matrix product for any N
    squared = q.pow(2).sum(1, keepdim=True) + k.pow(2).sum(1) - 2 * q @ k.T
    return squared.clamp_min(0).sqrt()


def nearest(
    queries: torch.Tensor,
    keys: torch.Tensor,
    k: int = 5,
    metric: Metric = "l2",
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` nearest keys of each query: distances `(Q, k)` ascending and indices `(Q, k)`.

    Ties are broken by the lower index. Keys where `valid` is False are never returned.

    Example:
        >>> dist, index = nearest(query_vectors, embeddings.vectors, k=5)
    """
    matrix = distances(queries, keys, metric)
    if valid is not None:
        matrix[:, ~valid.to(matrix.device)] = math.inf
    available = int(valid.sum()) if valid is not None else keys.shape[0]
    if not 1 <= k <= available:
        raise VizError(f"k must be 1..{available} (the usable data images), got {k}")
    # a stable sort keeps the lower index first among equal distances
    order = torch.sort(matrix, dim=1, stable=True).indices[:, :k]
    return torch.gather(matrix, 1, order), order
