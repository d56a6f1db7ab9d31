"""Which classes a channel votes for: the fall of each logit when the channel is zeroed.

The direct effect of channel c of a layer on class k, over images x (Microscope's and lucid's
"what does this neuron vote for", estimated by ablation rather than by the weights, so it holds
for any network after the layer):

    drop[c, k] = mean over x of ( logit_k(x) - logit_k(x with channel c of the layer set to 0) )

A large positive drop: the channel pushes class k up. Batched over channels: the layer's output
of a batch of B images is repeated once per channel, each copy with one channel zeroed, and the
rest of the network runs on the n * B copies in one call (the network before the layer runs once).
A network that feeds an earlier tensor past the layer (a skip connection around it, DenseNet's
concatenation) or reshapes by the input's batch size (lite0's head: `x.view(bs, -1)`) cannot
take a larger batch after the layer than before it: it is detected (an error or a wrong output
size) and the votes are then computed with the input images repeated instead, same numbers,
more compute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from vizcnn.core.distributed import all_gather, current_shard
from vizcnn.core.errors import VizError
from vizcnn.core.outputs import output_tensor
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import ImageSource, collate
from vizcnn.hooks import Layer, layer_name, model_guard, replace_output
from vizcnn.mining.streaming import layer_shape
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.models.preflight import preflight

DEFAULT_BATCH = 16  # images per batch
MAX_COPIES = 256  # images the rest of the network sees in one call (channels x images)


@dataclass
class ClassVotes:
    """Per channel of `layer` the mean fall of every logit when the channel is zeroed."""

    layer: str
    channels: tuple[int, ...]  # one row of `drops` each
    drops: torch.Tensor  # (C', classes) float64: mean of logit(intact) - logit(ablated)
    images: int  # images averaged over
    how: str  # "batched after the layer" or "input repeated" (see the module docstring)

    def top(self, row: int, count: int = 5) -> list[tuple[int, float]]:
        """(class index, drop) of the `count` classes whose logit falls most, largest first."""
        values, classes = self.drops[row].topk(min(count, self.drops.shape[1]))
        return [(int(k), float(v)) for k, v in zip(classes, values, strict=True)]


def _zeroed(output: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """`output` (B, C, ...) repeated once per channel, copy g with `channels[g]` zeroed."""
    copies = output.unsqueeze(0).repeat(len(channels), *([1] * output.dim()))
    groups = torch.arange(len(channels), device=output.device)
    copies[groups, :, torch.tensor(channels, device=output.device)] = 0
    return copies.flatten(0, 1)


def _each_zeroed(output: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """`output` of the repeated input (n * B, C, ...): copy g with `channels[g]` zeroed."""
    copies = output.unflatten(0, (len(channels), -1)).clone()
    groups = torch.arange(len(channels), device=output.device)
    copies[groups, :, torch.tensor(channels, device=output.device)] = 0
    return copies.flatten(0, 1)


def class_votes(
    model: ModelLike,
    dataset: ImageSource,
    layer: Layer,
    channels: tuple[int, ...] | None = None,
    *,
    limit: int | None = None,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> ClassVotes:
    """The mean fall of each logit when each of `channels` of `layer` is zeroed, over the data.

    Args:
        model: a `LoadedModel` or bare `nn.Module` giving logits; left unchanged.
        dataset: an `ImageSource` (items in [0, 1]); unreadable items are skipped.
        layer: a layer with a `(B, C, ...)` output.
        channels: the channels to ablate one at a time (None: every channel).
        limit: use only the first `limit` images.
        progress: called with (images done, images of this rank, message).
        run: `batch` images per batch (None: `DEFAULT_BATCH`).

    Example:
        >>> votes = class_votes(loaded, data, "_blocks.9", channels=(0, 1), limit=64)
        >>> [(loaded.labels[k], drop) for k, drop in votes.top(0, 3)]
    """
    loaded = as_loaded(model)
    run = as_run_options(run)
    with model_guard(loaded.module):
        name = layer_name(loaded.module, layer)
        preflight(loaded, [name])
        width = layer_shape(loaded, name)[0]
        rows = list(range(width)) if channels is None else [int(c) for c in channels]
        if not rows or any(c < 0 or c >= width for c in rows):
            raise VizError(
                f"channels of {name} must be in 0..{width - 1} and not empty, got {channels}"
            )
        if limit is not None and limit < 1:
            raise VizError(f"limit must be >= 1, got {limit}")
        total = len(dataset) if limit is None else min(limit, len(dataset))
        shard = current_shard()
        indices = shard.indices(total)
        loader: DataLoader[Any] = DataLoader(
            Subset(dataset, indices),
            batch_size=run.batch_or(DEFAULT_BATCH),
            shuffle=False,
            num_workers=run.workers,
            collate_fn=collate,
        )
        device = loaded.device
        sums: torch.Tensor | None = None
        seen, done = 0, 0
        batched: bool | None = None  # decided on the first batch
        message = f"class votes of {name}"
        progress(0, len(indices), message)
        with torch.inference_mode():
            for batch in loader:
                done += len(batch.errors)
                good = [i for i, error in enumerate(batch.errors) if not error]
                if good:
                    images = loaded.normalize(batch.images[good].to(device))
                    intact = _logits(loaded.module(images)).double()
                    if sums is None:
                        sums = torch.zeros(len(rows), intact.shape[1], dtype=torch.float64)
                    per_call = max(1, MAX_COPIES // len(good))
                    for start in range(0, len(rows), per_call):
                        chunk = rows[start : start + per_call]
                        ablated = None
                        if batched is not False:
                            ablated = _after_layer(loaded.module, images, name, chunk)
                            batched = ablated is not None
                        if ablated is None:
                            ablated = _input_repeated(loaded.module, images, name, chunk)
                        ablated = ablated.double().unflatten(0, (len(chunk), len(good)))
                        fall = (intact[None] - ablated).sum(1).cpu()
                        sums[start : start + len(chunk)] += fall
                    seen += len(good)
                progress(done, len(indices), message)
        if sums is None:
            sums = torch.zeros(len(rows), len(loaded.labels) or 1, dtype=torch.float64)
        if shard.world_size > 1:
            sums = torch.stack(all_gather(sums)).sum(0)
            seen = int(torch.stack(all_gather(torch.tensor([seen]))).sum())
        if seen == 0:
            raise VizError(f"no readable image among the first {total} for class votes")
        return ClassVotes(
            layer=name,
            channels=tuple(rows),
            drops=sums / seen,
            images=seen,
            how="batched after the layer" if batched is not False else "input repeated",
        )


def _logits(output: Any) -> torch.Tensor:
    tensor = output_tensor(output)
    if tensor is None or tensor.dim() != 2:
        raise VizError("class votes need a model that returns (B, classes) logits")
    return tensor


def _after_layer(
    module: torch.nn.Module, images: torch.Tensor, layer: str, chunk: list[int]
) -> torch.Tensor | None:
    """Logits with the layer's output repeated per channel; None if the network refuses it."""
    try:
        with replace_output(module, layer, lambda out: _zeroed(out, chunk)):
            logits = _logits(module(images))
    except (RuntimeError, VizError):
        return None  # a tensor from before the layer meets the larger batch
    if logits.shape[0] != len(chunk) * images.shape[0]:
        return None
    return logits


def _input_repeated(
    module: torch.nn.Module, images: torch.Tensor, layer: str, chunk: list[int]
) -> torch.Tensor:
    repeated = images.repeat(len(chunk), *([1] * (images.dim() - 1)))
    with replace_output(module, layer, lambda out: _each_zeroed(out, chunk)):
        return _logits(module(repeated))
