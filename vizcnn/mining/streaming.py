"""Top-k dataset mining (Zeiler & Fergus 2013): per channel, the images that excite it most.

One streaming pass over the data: the forward pass stops at the mined layer, each image gives
per channel its spatial maximum (or mean) and where the best unit is, and a `RunningTopK` keeps
the k best per channel (each image at most once per channel) in O(channels x k) memory. The
running state and the position in the data are checkpointed atomically (every few batches or
seconds, and when the run is interrupted), so an interrupted run resumes to the same result;
under torchrun each rank mines a shard and the shards merge exactly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from vizcnn.core.channels import parse_channels as parse_channel_text
from vizcnn.core.distributed import Shard, all_gather, all_gather_objects, current_shard
from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import Batch, ImageSource, collate
from vizcnn.hooks import Layer, capture, layer_name, layer_output_shape, model_guard
from vizcnn.io.provenance import weights_digest
from vizcnn.mining.checkpoint import load_checkpoint, save_checkpoint
from vizcnn.mining.topk import MAX_IMAGES, RunningTopK, TopK, decode
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.models.preflight import preflight

RANKS = ("max", "mean")
DEFAULT_BATCH = 64  # images per forward pass where `RunOptions.batch` is None


@dataclass(frozen=True)
class MineConfig:
    """Options of a mining run (the `vizcnn mine` options map one to one onto these).

    The second stage's options (projections, thumbnail size) belong to `mine_patches`.
    """

    # layer to mine: dotted named_modules() path (`name#k` for the k-th call) or the submodule
    # itself; `mine_topk` mines and records it under its dotted name (`layer_name`)
    layer: Layer
    channels: tuple[int, ...] | None = None  # channels to mine; None = every channel
    k: int = 9  # images kept per channel
    rank: str = "max"  # score of an image for a channel: spatial "max" or "mean"
    checkpoint_every: int = 20  # batches between checkpoints (when a checkpoint path is given)
    checkpoint_seconds: float = 60.0  # ... or seconds, whichever comes first

    def __post_init__(self) -> None:
        if self.k < 1:
            raise VizError(f"MineConfig.k must be at least 1, got {self.k}")
        if self.rank not in RANKS:
            raise VizError(f"unknown MineConfig.rank {self.rank!r}; use max or mean")
        if self.checkpoint_every < 1:
            raise VizError(
                f"MineConfig.checkpoint_every must be at least 1 batch, got {self.checkpoint_every}"
            )
        if not (math.isfinite(self.checkpoint_seconds) and self.checkpoint_seconds > 0):
            raise VizError(
                "MineConfig.checkpoint_seconds must be a finite number above 0, "
                f"got {self.checkpoint_seconds}"
            )
        if self.channels is not None and (
            not self.channels or any(int(c) < 0 for c in self.channels)
        ):
            raise VizError(
                f"channels must be a non-empty list of indices >= 0, got {self.channels}"
            )


def parse_channels(text: str | None, available: int) -> tuple[int, ...]:
    """Mining's channel choice: the shared syntax with slices cut at the layer (`0:64` fits all)."""
    return parse_channel_text(text, available, clip_slices=True)


def layer_shape(loaded: LoadedModel, layer: Layer) -> tuple[int, int, int]:
    """`(C, H, W)` of `layer`'s output for one input image (VizError if not a 4-D map)."""
    shape = layer_output_shape(loaded.module, (loaded.channels, *loaded.input_size), layer)
    if len(shape) != 3:
        raise VizError(f"layer {layer!r} gives shape {shape}; mining needs a (B, C, H, W) map")
    return shape[0], shape[1], shape[2]


def run_fields(
    loaded: LoadedModel, dataset: ImageSource, config: MineConfig, shard: Shard
) -> dict[str, Any]:
    """The settings a checkpoint is made with (stored, and compared one by one on resume)."""
    return {
        "model": loaded.name,
        "weights": weights_digest(loaded.module),  # a random network differs per seed
        "layer": config.layer,
        "channels": list(config.channels) if config.channels is not None else "all",
        "k": config.k,
        "rank": config.rank,
        "data": dataset.fingerprint(),
        "data_content": dataset.content_digest(),  # file sizes and times, or tensor bytes
        "process": f"rank {shard.rank} of {shard.world_size}",
    }


@dataclass
class MineState:
    """Everything a resumed run needs: the running top-k and where in the shard we are.

    The top-k is allocated from the first batch's layer output (no separate probe pass). A
    state is never changed in place once the loop holds it: each batch makes a new one (see
    `_mine_batch`), so an interruption at any point leaves a consistent state to save.
    """

    top: RunningTopK | None = None
    shape: tuple[int, int, int] = (0, 0, 0)  # (C, H, W) of the layer output
    channels: tuple[int, ...] = ()  # mined channels, one per top-k row
    position: int = 0  # items of this rank's shard already consumed
    images_seen: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)

    def started(
        self, config: MineConfig, shape: tuple[int, ...], device: torch.device
    ) -> MineState:
        """This state with the top-k allocated for a layer output of `shape` = (C, H, W)."""
        if len(shape) != 3:
            raise VizError(
                f"layer {config.layer!r} gives shape (B, {', '.join(map(str, shape))}); "
                "mining needs a (B, C, H, W) map"
            )
        size = (int(shape[0]), int(shape[1]), int(shape[2]))
        if config.channels is None:
            channels = tuple(range(size[0]))
        else:
            channels = parse_channels(",".join(map(str, config.channels)), size[0])
        top = (
            self.top if self.top is not None else RunningTopK.empty(len(channels), config.k, device)
        )
        return replace(self, top=top, shape=size, channels=channels)

    def save(self, path: Path, fields: dict[str, Any]) -> None:
        save_checkpoint(
            path,
            fields,
            {
                "top": self.top.state_dict() if self.top is not None else None,
                "shape": list(self.shape),
                "channels": list(self.channels),
                "position": self.position,
                "images_seen": self.images_seen,
                "skipped": [list(item) for item in self.skipped],
            },
        )

    @classmethod
    def load(cls, path: Path, fields: dict[str, Any], device: torch.device) -> MineState:
        payload = load_checkpoint(path, fields)
        top = payload["top"]
        return cls(
            top=RunningTopK.from_state(top, device) if top is not None else None,
            shape=(int(payload["shape"][0]), int(payload["shape"][1]), int(payload["shape"][2])),
            channels=tuple(int(c) for c in payload["channels"]),
            position=int(payload["position"]),
            images_seen=int(payload["images_seen"]),
            skipped=[(int(a), str(b)) for a, b in payload["skipped"]],
        )


def mine_topk(
    model: ModelLike,
    dataset: ImageSource,
    config: MineConfig,
    *,
    progress: ProgressCallback = no_progress,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    run: RunOptions | None = None,
) -> TopK:
    """Stream `dataset` through the model up to `config.layer`; keep each channel's top k.

    Under an initialized `torch.distributed` process group (torchrun), each rank mines every
    world_size-th image and the ranks' results are merged exactly; all ranks get the result.

    With a `checkpoint` file, the running state is saved atomically every
    `config.checkpoint_every` batches or `config.checkpoint_seconds` seconds, at the end, and
    when the run stops early (KeyboardInterrupt, which `vizcnn.runs.mine_folder` also makes of
    SIGTERM, or any other exception); a run resumed from it gives the same result as an
    uninterrupted one.

    Args:
        model: a `LoadedModel` or a bare `nn.Module` (see `describe`); left unchanged.
        dataset: an `ImageSource`, e.g. from `open_dataset`; items are `(C, H, W)` in [0, 1].
        config: layer, channels, k, rank, checkpoint interval.
        progress: called with (images done, images in this rank's shard, message).
        checkpoint: file for the running state (one per rank); None = no checkpoints. Nothing
            is written before the first readable image.
        resume: continue from `checkpoint` if it exists (VizError naming every setting that
            differs if it was made by another run: model, weights, layer, channels, k, rank,
            data, data contents, process layout).
        run: how it runs (`RunOptions`): `batch` images per forward pass (None:
            `DEFAULT_BATCH`), `workers` DataLoader processes; neither changes the result
            (mining runs float32 and ignores `amp`).

    Example:
        >>> data = open_dataset("samples", 3, loaded.input_size, limit=64)
        >>> top = mine_topk(loaded, data, MineConfig(layer="_blocks.4", channels=(0, 1)))
        >>> top.hits(0)[0]  # (value, image id, y, x)
    """
    loaded = as_loaded(model)
    run = as_run_options(run)
    with model_guard(loaded.module):
        layer = layer_name(loaded.module, config.layer)
        config = replace(config, layer=layer)
        preflight(loaded, [layer])
        if len(dataset) > MAX_IMAGES:
            raise VizError(
                f"{len(dataset)} images is more than mining handles ({MAX_IMAGES}); pass fewer images (limit=)"
            )
        device = loaded.device
        shard = current_shard()
        path = Path(checkpoint) if checkpoint is not None else None
        fields = run_fields(loaded, dataset, config, shard) if path is not None else {}
        if resume and path is not None and path.is_file():
            state = MineState.load(path, fields, device)
        else:
            state = MineState()
        resumed_from = state.position

        indices = shard.indices(len(dataset))  # a range: O(1) memory however many images
        loader: DataLoader[Any] = DataLoader(
            Subset(dataset, indices[state.position :]),
            batch_size=run.batch_or(DEFAULT_BATCH),
            shuffle=False,
            num_workers=run.workers,
            collate_fn=collate,
            pin_memory=device.type == "cuda",
        )
        message = f"mining {config.layer}"
        progress(state.position, len(indices), message)
        saved = state  # the state the checkpoint file holds
        batches, last_save = 0, time.monotonic()
        checked = False
        try:
            # strict=False: a run whose batches were all unreadable never runs the model; that is
            # reported as "no readable image" below. Unknown layer names still fail here at once.
            with (
                torch.inference_mode(),
                capture(
                    loaded.module, [config.layer], stop_early=True, detach=True, strict=False
                ) as acts,
            ):
                for batch in loader:
                    if checked is False:  # the first batch only: one reduction per run
                        warn_if_normalized(batch.images, stacklevel=4)
                        checked = True
                    # One assignment swaps in the next state: an interrupt never sees half of it.
                    state = _mine_batch(loaded, acts, config, batch, state, device)
                    batches += 1
                    due = (
                        batches >= config.checkpoint_every
                        or time.monotonic() - last_save >= config.checkpoint_seconds
                        or state.position == len(indices)
                    )
                    if path is not None and due and state.top is not None:
                        state.save(path, fields)
                        saved, batches, last_save = state, 0, time.monotonic()
                    progress(state.position, len(indices), message)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or failed: keep what is done for a resumed run. A failing
            # save (disk full) must not hide the reason the run stopped.
            if path is not None and state is not saved and state.top is not None:
                with contextlib.suppress(Exception):
                    state.save(path, fields)
            raise
        if state.top is None and shard.world_size > 1:
            # This rank saw no readable image but must still take part in the merge.
            state = state.started(config, layer_shape(loaded, config.layer), device)
        result = finish(state, config, dataset.names, layer)
        result.resumed_from = resumed_from
        return result


def _mine_batch(
    loaded: LoadedModel,
    acts: Any,
    config: MineConfig,
    batch: Batch,
    state: MineState,
    device: torch.device,
) -> MineState:
    """The state after `batch` (a new object; `state` is left as it was)."""
    errors = [
        (int(index), error)
        for index, error in zip(batch.indices.tolist(), batch.errors, strict=True)
        if error
    ]
    after = replace(
        state,
        position=state.position + len(batch.errors),
        skipped=[*state.skipped, *errors] if errors else state.skipped,
    )
    valid = torch.tensor([not error for error in batch.errors], dtype=torch.bool)
    if not bool(valid.any()):
        return after
    images = batch.images.to(device, non_blocking=True)
    acts.run(loaded.normalize(images))
    return update_state(after, acts[config.layer], config, batch, valid, device)


def update_state(
    after: MineState,
    output: torch.Tensor,
    config: MineConfig,
    batch: Batch,
    valid: torch.Tensor,
    device: torch.device,
) -> MineState:
    """`after` (the batch already counted in its position) with the layer `output` of `batch`
    merged into its top-k: a new state. `mine_layers` calls it once per layer per batch."""
    if not after.channels:
        after = after.started(config, tuple(output.shape[1:]), device)
    assert after.top is not None
    output = selected(output, after.channels)
    flat = output.flatten(2)  # (B, C', H*W)
    peak, where = flat.max(dim=2)
    values = flat.float().mean(dim=2) if config.rank == "mean" else peak
    top = replace(after.top)  # update() rebinds its tensors, never writes into them
    top.update(
        values.float(),
        where,
        batch.indices.to(device),
        batch.hashes.to(device),
        valid.to(device),
    )
    return replace(after, top=top, images_seen=after.images_seen + int(valid.sum()))


def selected(output: torch.Tensor, channels: tuple[int, ...]) -> torch.Tensor:
    """`output`'s `channels` (dim 1), without a copy when they are all of them in order."""
    if channels == tuple(range(output.shape[1])):
        return output
    return output.index_select(1, torch.tensor(channels, device=output.device))


def finish(state: MineState, config: MineConfig, names: Sequence[str], layer: str) -> TopK:
    images_seen, skipped = state.images_seen, list(state.skipped)
    if current_shard().world_size > 1:
        gathered = all_gather_objects((images_seen, skipped))
        images_seen = sum(seen for seen, _ in gathered)
        skipped = sorted(item for _, part in gathered for item in part)
    if images_seen == 0 or state.top is None:
        reason = skipped[0][1] if skipped else "no images"
        raise VizError(
            f"no readable image among {len(names)} ({len(skipped)} skipped; first: {reason})"
        )
    top = state.top
    if current_shard().world_size > 1:
        gathered_keys, gathered_positions, gathered_hashes = (
            all_gather(t) for t in (top.keys, top.positions, top.hashes)
        )
        parts = [
            RunningTopK(k, p, h)
            for k, p, h in zip(gathered_keys, gathered_positions, gathered_hashes, strict=True)
        ]
        top = parts[0].merge(parts[1:])
    values, ids = decode(top.keys.cpu())
    flat = top.positions.cpu()
    width = state.shape[2]
    positions = torch.stack([flat // width, flat % width], dim=-1).masked_fill(
        (ids < 0)[..., None], -1
    )
    return TopK(
        layer=layer,
        channels=state.channels,
        rank=config.rank,
        values=values,
        image_ids=ids,
        positions=positions,
        layer_shape=state.shape,
        images_seen=images_seen,
        skipped=[(names[index], reason) for index, reason in skipped],
    )


def config_dict(config: MineConfig) -> dict[str, Any]:
    """The config as plain JSON-able values (for manifests)."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in asdict(config).items()
    }
