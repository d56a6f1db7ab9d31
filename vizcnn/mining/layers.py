"""Several layers mined in one pass over the data: one forward per batch feeds every layer.

Per layer: the top-k of `mine_topk` (same `MineState` updates, so the same result exactly), the
mean activation of each channel (over every image and position, float64 sums) and a histogram of
its activations (every position of every image; `RunningHistogram`: power-of-two bins per
channel that coarsen as the range grows, merged exactly). The forward stops at the deepest layer.
Under torchrun each rank takes every world_size-th image and the ranks' results are merged
(top-k and histograms exactly, the means' float64 sums in rank order). No checkpoints: the
report caches each layer's result instead.

`data_pass` also takes a capped uniform sample of positions of other layers from the same
forwards (`vizcnn.mining.reservoir`; the report's concepts pages factorize it), merged exactly
over the ranks too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from vizcnn.core.distributed import all_gather, all_gather_objects, current_shard
from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import ImageSource, collate
from vizcnn.hooks import capture, layer_name, model_guard
from vizcnn.mining.histogram import HISTOGRAM_BINS, RunningHistogram
from vizcnn.mining.reservoir import PositionReservoir, PositionSample, SampleConfig
from vizcnn.mining.streaming import (
    DEFAULT_BATCH,
    MineConfig,
    MineState,
    finish,
    layer_shape,
    selected,
    update_state,
)
from vizcnn.mining.topk import MAX_IMAGES, TopK
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.nonnegative import negative_layer_error
from vizcnn.models.preflight import preflight


@dataclass
class LayerMined:
    """One layer's share of the pass: rows follow `top.channels`."""

    top: TopK  # as `mine_topk` gives it
    means: torch.Tensor  # (C',) float64 mean over images and positions
    counts: torch.Tensor  # (C', bins) int64 histogram of the activations
    edges: torch.Tensor  # (C', bins + 1) float64 bin edges (numpy.histogram's convention)

    @property
    def channels(self) -> tuple[int, ...]:
        return self.top.channels


@dataclass
class _Running:
    """A layer's running sums and histogram (allocated from its first batch)."""

    sums: torch.Tensor
    positions: int
    histogram: RunningHistogram


@dataclass
class DataPass:
    """What one pass over the data gave: each mined layer and each sampled layer."""

    mined: dict[str, LayerMined]  # {dotted layer name: top-k, means, histograms}
    samples: dict[str, PositionSample]  # {layer spec: its sample of positions}


def mine_layers(
    model: ModelLike,
    dataset: ImageSource,
    configs: Sequence[MineConfig],
    *,
    bins: int = HISTOGRAM_BINS,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> dict[str, LayerMined]:
    """Mine every config's layer in one pass over `dataset`: one forward per batch.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`; left unchanged.
        dataset: an `ImageSource`; items are `(C, H, W)` in [0, 1].
        configs: one `MineConfig` per layer (layer, channels, k, rank); distinct layers.
        bins: histogram bins per channel.
        progress: called with (images done, images in this rank's shard, message).
        run: `batch` images per forward (None: `DEFAULT_BATCH`), `workers`; neither changes
            the result.

    Returns:
        {dotted layer name: `LayerMined`} in the order of `configs`.

    Example:
        >>> mined = mine_layers(loaded, data, [MineConfig("_blocks.4"), MineConfig("_blocks.9")])
        >>> mined["_blocks.4"].top.hits(0)[0], mined["_blocks.4"].means[0]
    """
    if not configs:
        raise VizError("mine_layers needs at least one MineConfig (one per layer)")
    return data_pass(model, dataset, configs, bins=bins, progress=progress, run=run).mined


def data_pass(
    model: ModelLike,
    dataset: ImageSource,
    configs: Sequence[MineConfig],
    samples: Sequence[SampleConfig] = (),
    *,
    bins: int = HISTOGRAM_BINS,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> DataPass:
    """`mine_layers` that also samples positions of other layers, from the same forwards.

    Every mined and sampled layer is captured at once: one forward per batch, stopped at the
    deepest. A sampled layer keeps a `PositionReservoir` (`SampleConfig`: cap, seed): the same
    sample `vizcnn.concepts.find_concepts` takes of the same data and seed, for
    `vizcnn.concepts.concepts_from_sample`. Under torchrun the ranks' samples merge exactly.

    Args:
        configs: one `MineConfig` per mined layer (may be empty when `samples` is not).
        samples: one `SampleConfig` per sampled layer; each must be non-negative (a ReLU /
            ReLU6 output: a negative activation is refused, naming layers that fit).
        model, dataset, bins, progress, run: as `mine_layers` takes them.

    Returns:
        `DataPass`: `mined` as `mine_layers` returns it, `samples` {layer spec: `PositionSample`}
        in the order of `samples`.

    Example:
        >>> found = data_pass(loaded, data, [MineConfig("_blocks.4")],
        ...                   [SampleConfig("_blocks.6._swish#1", cap=20_000, seed=0)])
        >>> found.samples["_blocks.6._swish#1"].rows.shape
    """
    loaded = as_loaded(model)
    run = as_run_options(run)
    if not configs and not samples:
        raise VizError("a data pass needs at least one MineConfig or SampleConfig")
    if bins < 2:
        raise VizError(f"bins must be at least 2, got {bins}")
    with model_guard(loaded.module):
        configs = [replace(c, layer=layer_name(loaded.module, c.layer)) for c in configs]
        samples = [replace(c, layer=layer_name(loaded.module, c.layer)) for c in samples]
        names = [str(c.layer) for c in configs]
        sampled = [str(c.layer) for c in samples]
        for kind, listed in (("mine_layers", names), ("the data pass's samples", sampled)):
            if len(set(listed)) != len(listed):
                raise VizError(f"{kind} got a layer twice: {', '.join(listed)}")
        captured = list(dict.fromkeys([*names, *sampled]))
        preflight(loaded, captured)
        if len(dataset) > MAX_IMAGES:
            raise VizError(
                f"{len(dataset)} images is more than mining handles ({MAX_IMAGES}); "
                "pass fewer images (limit=)"
            )
        device = loaded.device
        shard = current_shard()
        indices = shard.indices(len(dataset))
        loader: DataLoader[Any] = DataLoader(
            Subset(dataset, indices),
            batch_size=run.batch_or(DEFAULT_BATCH),
            shuffle=False,
            num_workers=run.workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
        )
        states = {name: MineState() for name in names}
        running: dict[str, _Running] = {}
        reservoirs = {str(c.layer): PositionReservoir(c.cap, c.seed) for c in samples}
        lowest = dict.fromkeys(sampled, 0.0)  # each sampled layer's smallest activation
        position = 0
        parts = [f"{len(names)} layer{'s' if len(names) != 1 else ''}"] if names else []
        if sampled:
            parts.append(f"{len(sampled)} sample{'s' if len(sampled) != 1 else ''}")
        message = f"mining {' + '.join(parts)}"
        progress(0, len(indices), message)
        with (
            torch.inference_mode(),
            capture(loaded.module, captured, stop_early=True, detach=True, strict=False) as acts,
        ):
            for batch in loader:
                if position == 0:
                    warn_if_normalized(batch.images, stacklevel=3)
                position += len(batch.errors)
                errors = [
                    (int(i), e)
                    for i, e in zip(batch.indices.tolist(), batch.errors, strict=True)
                    if e
                ]
                valid = torch.tensor([not e for e in batch.errors], dtype=torch.bool)
                for name in names:  # every layer's state counts the batch's position
                    state = states[name]
                    states[name] = replace(
                        state,
                        position=position,
                        skipped=[*state.skipped, *errors] if errors else state.skipped,
                    )
                if bool(valid.any()):
                    images = batch.images.to(device, non_blocking=True)
                    acts.run(loaded.normalize(images))  # one forward for every layer
                    good = valid.to(device)
                    for config in configs:
                        name = str(config.layer)
                        output = acts[name]
                        states[name] = update_state(
                            states[name], output, config, batch, valid, device
                        )
                        _count(running, name, selected(output, states[name].channels)[good], bins)
                    every = bool(valid.all())
                    for name in sampled:
                        # a boolean index would copy the whole map: only where an image is bad
                        output = acts[name] if every else acts[name][good]
                        if output.dim() != 4:
                            raise VizError(
                                f"layer {name!r} gives shape {tuple(output.shape[1:])}; a sample "
                                "of positions needs a (B, C, H, W) map"
                            )
                        minimum = float(output.amin()) if output.numel() else 0.0
                        lowest[name] = min(lowest[name], minimum)
                        if lowest[name] < 0 and shard.world_size == 1:
                            raise negative_layer_error(loaded, name, lowest[name])
                        reservoirs[name].add(output, batch.indices[valid])
                progress(position, len(indices), message)
        result = {}
        for config in configs:
            name = str(config.layer)
            state = states[name]
            if state.top is None and shard.world_size > 1:
                # This rank saw no readable image but must still take part in the merges.
                state = state.started(config, layer_shape(loaded, name), device)
            if name not in running and state.top is not None:
                _count(
                    running, name, torch.zeros(0, len(state.channels), 1, 1, device=device), bins
                )
            top = finish(state, config, dataset.names, name)
            result[name] = _merged(top, running[name])
        return DataPass(result, _samples(loaded, reservoirs, lowest))


def _samples(
    loaded: LoadedModel, reservoirs: dict[str, PositionReservoir], lowest: dict[str, float]
) -> dict[str, PositionSample]:
    """Each sampled layer's sample, merged over the ranks; a negative layer refused on every
    rank (a rank may have seen none of the negative values)."""
    if current_shard().world_size > 1:
        for name in reservoirs:
            minimum = min(all_gather_objects(lowest[name]))
            if minimum < 0:
                raise negative_layer_error(loaded, name, minimum)
    samples = {}
    for name, reservoir in reservoirs.items():
        # a rank that saw no readable image needs the width of the others' rows
        channels = 0
        if reservoir.rows is None and current_shard().world_size > 1:
            channels = layer_shape(loaded, name)[0]
        samples[name] = reservoir.sample(name, channels, ranks=True, device=loaded.device)
    return samples


def _count(running: dict[str, _Running], name: str, output: torch.Tensor, bins: int) -> None:
    """Add a batch's `(B, C', H, W)` activations to the layer's sums and histogram."""
    channels = output.shape[1]
    if name not in running:
        running[name] = _Running(
            torch.zeros(channels, dtype=torch.float64, device=output.device),
            0,
            RunningHistogram.empty(channels, bins, output.device),
        )
    held = running[name]
    flat = output.transpose(0, 1).flatten(1)  # (C', B*H*W)
    if flat.shape[1] == 0:
        return
    held.sums = held.sums + flat.double().sum(1)
    held.positions += flat.shape[1]
    held.histogram.update(flat)


def _merged(top: TopK, held: _Running) -> LayerMined:
    sums, positions, histogram = held.sums, held.positions, held.histogram
    if current_shard().world_size > 1:
        sums = torch.stack(all_gather(sums)).sum(0)
        positions = int(
            torch.stack(all_gather(torch.tensor([positions], device=sums.device))).sum()
        )
        parts = [
            RunningHistogram(*tensors)
            for tensors in zip(
                *(
                    all_gather(t)
                    for t in (
                        histogram.counts,
                        histogram.exponent,
                        histogram.low,
                        histogram.vmin,
                        histogram.vmax,
                    )
                ),
                strict=True,
            )
        ]
        histogram = parts[0].merge(parts[1:])
    return LayerMined(
        top=top,
        means=(sums / max(positions, 1)).cpu(),
        counts=histogram.counts.cpu(),
        edges=histogram.edges().cpu(),
    )
