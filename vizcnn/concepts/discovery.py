"""Concept discovery (CRAFT, Fel et al. 2023): a layer's activations over a data set, factorized
into k non-negative concept directions.

Every spatial position of every image is one row of C channel activations. One streaming pass
keeps a **uniform sample of positions with a stated cap** (`max_positions`;
`vizcnn.mining.reservoir.PositionReservoir`: each position gets a uniform key drawn from
(seed, image id, y, x) and the `max_positions` smallest keys are kept), so memory is fixed after
the first batch however many images stream by. The sample is then factorized by NMF
(`vizcnn.concepts.nmf`, HALS in torch): `A (n, C) ~ U (n, k) W (k, C)`; the rows of W are the
concepts. `concepts_from_sample` factorizes a sample taken elsewhere (the report's one data
pass, `vizcnn.mining.layers.data_pass`, samples the same positions for the same seed).

NMF needs non-negative activations: a layer with a negative value (a block output before its
ReLU, a linear bottleneck) is refused with the names of layers that fit (ReLU / ReLU6 outputs).

Class-conditional mode (CRAFT's): only the images the model predicts as the class are
factorized, and the concepts are ranked by their removal importance for that class
(`vizcnn.concepts.views.concept_importance`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader

from vizcnn.concepts.nmf import nmf
from vizcnn.concepts.sources import ConceptData, open_concept_data
from vizcnn.core.devices import Seed, draw_seed
from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.outputs import require_output_tensor
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import SAMPLE_CROPS, ImageSource, collate
from vizcnn.hooks import Layer, capture, layer_name, layer_output_shape, model_guard
from vizcnn.mining.reservoir import DEFAULT_MAX_POSITIONS, PositionReservoir, PositionSample
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.nonnegative import negative_layer_error, nonnegative_layers
from vizcnn.models.preflight import preflight

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_MAX_POSITIONS",
    "IMPORTANCE_IMAGES",
    "Concepts",
    "check_concept_layer",
    "concepts_from_sample",
    "find_concepts",
    "nonnegative_layers",
]

DEFAULT_BATCH = 32  # images per forward pass where `RunOptions.batch` is None
IMPORTANCE_IMAGES = 32  # class mode: images the concepts' importance is averaged over


@dataclass
class Concepts:
    """k concepts of one layer: directions, the sample they were found on, and its fit."""

    layer: str  # layer spec (dotted name, `name#k` for the k-th call)
    W: torch.Tensor  # (k, C) concept directions, non-negative, unit L2 norm per row
    coefficients: torch.Tensor  # (n, k) the sampled positions' coefficients U (A ~ U W)
    positions: torch.Tensor  # (n, 3) int64 (image id, y, x) of each sampled position
    reconstruction_error: float  # ||A - U W||_F / ||A||_F on the sample
    image_ids: list[int]  # images whose positions were eligible (class mode: predicted as it)
    image_names: list[str]  # their names
    map_size: tuple[int, int]  # (h, w) of the layer's map
    max_positions: int  # the sampling cap
    positions_seen: int  # eligible positions streamed (the sample is min(cap, this) of them)
    model: str = ""
    data: str = ""
    seed: int = 0  # the reservoir's keys
    target_class: int | None = None  # class mode: the class (logit index)
    class_name: str | None = None  # its name, where the model has names
    importances: torch.Tensor | None = None  # (k,) removal importance, where computed
    importance_target: str = ""  # what the importances are measured on
    iterations: int = 0  # NMF sweeps
    converged: bool = True
    unreadable: list[str] = field(default_factory=list)  # names of images skipped
    seconds: dict[str, float] = field(default_factory=dict)  # "stream", "factorize", ...

    @property
    def k(self) -> int:
        return int(self.W.shape[0])

    @property
    def channels(self) -> int:
        return int(self.W.shape[1])

    @property
    def sampled(self) -> int:
        """Positions in the factorized sample."""
        return int(self.positions.shape[0])

    def share(self) -> torch.Tensor:
        """`(k,)` each concept's share of the sample's coefficient mass (sums to 1)."""
        mass = self.coefficients.double().sum(0)
        return (mass / mass.sum().clamp_min(1e-30)).float()

    def reordered(self, order: list[int]) -> Concepts:
        """The same concepts in another order (`order[i]` = old index of new concept i)."""
        index = torch.tensor(order, dtype=torch.long)
        copy = Concepts(**{**self.__dict__})
        copy.W = self.W[index.to(self.W.device)]
        copy.coefficients = self.coefficients[:, index.to(self.coefficients.device)]
        if self.importances is not None:
            copy.importances = self.importances[index.to(self.importances.device)]
        return copy

    def to_dict(self) -> dict[str, Any]:
        """Everything but the sample itself, JSON-ready (directions as lists)."""
        return {
            "layer": self.layer,
            "k": self.k,
            "channels": self.channels,
            "directions": self.W.cpu().tolist(),
            "share": self.share().tolist(),
            "importances": self.importances.cpu().tolist()
            if self.importances is not None
            else None,
            "importance": "removal importance: mean fall of the "
            f"{self.importance_target or 'target'} logit when the concept is removed from the "
            "layer's activations"
            if self.importances is not None
            else None,
            "reconstruction_error": self.reconstruction_error,
            "sampling": {
                "method": "uniform sample of positions (reservoir, keys seeded per image)",
                "max_positions": self.max_positions,
                "sampled": self.sampled,
                "positions_seen": self.positions_seen,
                "seed": self.seed,
            },
            "images": {"count": len(self.image_ids), "names": self.image_names},
            "unreadable": self.unreadable,
            "class": None
            if self.target_class is None
            else {"index": self.target_class, "name": self.class_name},
            "map_size": list(self.map_size),
            "model": self.model,
            "data": self.data,
            "nmf": {
                "solver": "HALS (torch)",
                "iterations": self.iterations,
                "converged": self.converged,
            },
            "seconds": self.seconds,
        }


def check_concept_layer(model: ModelLike, layer: Layer, k: int) -> tuple[str, int]:
    """The layer's spec and channel count; VizError, in one line, unless it gives a
    `(B, C, H, W)` map with at least `k` channels (`k >= 1`)."""
    loaded = as_loaded(model)
    name = layer_name(loaded.module, layer)
    preflight(loaded, [name])
    shape = layer_output_shape(loaded.module, (loaded.channels, *loaded.input_size), name)
    if len(shape) != 3:
        raise VizError(f"layer {name!r} gives shape {shape}; concepts need a (B, C, H, W) map")
    if not 1 <= k <= shape[0]:
        raise VizError(f"k must be between 1 and the {shape[0]} channels of {name!r}, got {k}")
    return name, shape[0]


def class_of(loaded: LoadedModel, label: str | int) -> tuple[int, str | None]:
    """(index, name or None) of a class given by name or index."""
    index = loaded.class_index(label)
    return index, loaded.labels[index] if index < len(loaded.labels) else None


def find_concepts(
    model: ModelLike,
    data: ConceptData,
    layer: Layer,
    k: int,
    *,
    target_class: str | int | None = None,
    max_positions: int = DEFAULT_MAX_POSITIONS,
    seed: Seed = 0,
    run: RunOptions | None = None,
    progress: ProgressCallback | None = None,
    limit: int | None = None,
    crops: int = SAMPLE_CROPS,
    importance_images: int = IMPORTANCE_IMAGES,
    max_iter: int = 400,
) -> Concepts:
    """Find k concepts of `layer`: NMF of a capped uniform sample of its activation positions.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`; left as found.
        data: images `(N, C, H, W)` in [0, 1], an `ImageSource`, a folder, a `.txt` list of
            paths or `"samples"` (crops of the bundled photos).
        layer: a non-negative layer (a ReLU / ReLU6 output, `name#k` for its k-th call;
            `nonnegative_layers` lists them), or the submodule.
        k: concepts, 1 <= k <= the layer's channels.
        target_class: class mode (CRAFT's): factorize only the images the model predicts as
            this class (name or logit index) and rank the concepts by removal importance for it.
        max_positions: the cap of the sample of positions that is factorized.
        seed: the sampling keys (and `samples` crops); a generator gives one draw.
        run: `RunOptions` (`batch` images per forward, None: `DEFAULT_BATCH`; `workers`).
        progress: called after each batch with (images done, images, message).
        limit, crops: for a folder / `samples`: first `limit` images, crops per photo.
        importance_images: class mode: the first this many class images give the importances.
        max_iter: NMF sweeps at most.

    Returns:
        `Concepts`: directions `W (k, C)` (largest share first; in class mode most important
        first), the sample's coefficients and positions, the relative reconstruction error.

    Example:
        >>> concepts = find_concepts(load_model("efficientnet_lite0"), "samples",
        ...                          "_blocks.6._swish#1", 8, limit=64)
        >>> concepts.W.shape, concepts.reconstruction_error
    """
    progress = progress or no_progress
    loaded = as_loaded(model)
    run = as_run_options(run)
    if max_positions < 1:
        raise VizError(f"max_positions must be at least 1, got {max_positions}")
    if importance_images < 1:
        raise VizError(f"importance_images must be at least 1, got {importance_images}")
    key_seed = draw_seed(seed)
    spec, _channels = check_concept_layer(loaded, layer, k)
    wanted_class, class_name = (
        class_of(loaded, target_class) if target_class is not None else (None, None)
    )
    if wanted_class is not None:
        preflight(loaded, [spec], output=True)
    source, data_name = open_concept_data(loaded, data, limit=limit, crops=crops, seed=key_seed)

    start = time.perf_counter()
    sample, unreadable = _stream(
        loaded, source, spec, wanted_class, max_positions, key_seed, run, progress
    )
    stream_seconds = time.perf_counter() - start
    if not sample.image_ids:
        if wanted_class is not None:
            raise VizError(
                f"no image of {data_name!r} is predicted as class {wanted_class}"
                f"{f' ({class_name})' if class_name else ''}; choose another class or more data"
            )
        raise VizError(f"no readable image in {data_name!r}; concepts need at least one")
    concepts = concepts_from_sample(
        loaded, sample, k, names=source.names, data=data_name, max_iter=max_iter
    )
    concepts.target_class, concepts.class_name = wanted_class, class_name
    concepts.unreadable = unreadable
    concepts.seconds = {"stream": stream_seconds, **concepts.seconds}
    if wanted_class is None:
        return concepts
    from vizcnn.concepts.views import concept_importance  # views build on this module

    start = time.perf_counter()
    images = torch.stack([source.image(i) for i in concepts.image_ids[:importance_images]])
    importances = concept_importance(loaded, concepts, images, wanted_class, run=run)
    concepts.importances = importances
    concepts.importance_target = f"class {wanted_class}" + (
        f" ({class_name})" if class_name else ""
    )
    concepts.seconds["importance"] = time.perf_counter() - start
    order = torch.argsort(importances, descending=True).tolist()
    return concepts.reordered(order)


def concepts_from_sample(
    model: ModelLike,
    sample: PositionSample,
    k: int,
    *,
    names: Sequence[str] | None = None,
    data: str = "",
    max_iter: int = 400,
) -> Concepts:
    """k concepts of a sample of a layer's positions: the NMF of its rows (no data pass).

    Args:
        model: the model the sample was taken from (its name goes into the result).
        sample: a `PositionSample` (`find_concepts`'s own pass, or the report's data pass
            `vizcnn.mining.layers.data_pass`).
        k: concepts, 1 <= k <= the layer's channels and the sampled positions.
        names: the data's image names, indexed by image id (None: the ids as text).
        data: the data's name, for the record.
        max_iter: NMF sweeps at most.

    Returns:
        `Concepts`, largest share first; its coefficients and positions are the sample's.

    Example:
        >>> found = data_pass(loaded, data, [], [SampleConfig("_blocks.6._swish#1")])
        >>> concepts = concepts_from_sample(loaded, found.samples["_blocks.6._swish#1"], 8)
    """
    loaded = as_loaded(model)
    spec, _channels = check_concept_layer(loaded, sample.layer, k)
    if sample.sampled < k:
        raise VizError(
            f"{sample.sampled} positions sampled but k = {k}; use a smaller k or more data"
        )
    start = time.perf_counter()
    found = nmf(sample.rows, k, max_iter=max_iter)
    factorize_seconds = time.perf_counter() - start
    return Concepts(
        layer=spec,
        W=found.W,
        coefficients=found.U,
        positions=sample.positions,
        reconstruction_error=found.error,
        image_ids=list(sample.image_ids),
        image_names=[names[i] if names is not None else str(i) for i in sample.image_ids],
        map_size=sample.map_size,
        max_positions=sample.cap,
        positions_seen=sample.positions_seen,
        model=loaded.name,
        data=data,
        seed=sample.seed,
        iterations=found.iterations,
        converged=found.converged,
        seconds={"factorize": factorize_seconds},
    )


def _stream(
    loaded: LoadedModel,
    source: ImageSource,
    spec: str,
    wanted_class: int | None,
    cap: int,
    seed: int,
    run: RunOptions,
    progress: ProgressCallback,
) -> tuple[PositionSample, list[str]]:
    """One pass: the sample of positions of the images used, and the unreadable images."""
    reservoir = PositionReservoir(cap, seed)
    unreadable: list[str] = []
    loader: DataLoader[Any] = DataLoader(
        source,
        batch_size=run.batch_or(DEFAULT_BATCH),
        shuffle=False,
        num_workers=run.workers,
        collate_fn=collate,
    )
    total, done = len(source), 0
    message = f"concepts {spec}"
    progress(0, total, message)
    module = loaded.module
    with (
        model_guard(module),
        torch.no_grad(),
        capture(module, [spec], stop_early=wanted_class is None, detach=True) as acts,
    ):
        for batch in loader:
            if done == 0:
                warn_if_normalized(batch.images, stacklevel=4)
            readable = torch.tensor([not error for error in batch.errors], dtype=torch.bool)
            unreadable += [source.names[int(i)] for i in batch.indices[~readable]]
            done += len(batch.indices)
            if bool(readable.any()):
                inputs = loaded.normalize(batch.images.to(loaded.device, loaded.dtype))
                output = acts.run(inputs)
                keep = readable
                if wanted_class is not None:
                    predicted = require_output_tensor(output).float().argmax(dim=1).cpu()
                    keep = keep & (predicted == wanted_class)
                layer_acts = acts[spec]
                if bool(keep.any()):
                    # per image first: a boolean index of the whole map would copy it
                    lowest = layer_acts.flatten(1).amin(dim=1).cpu()[keep]
                    if float(lowest.min()) < 0:
                        raise negative_layer_error(loaded, spec, float(lowest.min()))
                    chosen = (
                        layer_acts if bool(keep.all()) else layer_acts[keep.to(layer_acts.device)]
                    )
                    reservoir.add(chosen, batch.indices[keep])
            progress(done, total, message)
    return reservoir.sample(spec), unreadable
