"""`mine_folder`: a mining run written to a folder, resumable, as `vizcnn mine` writes it.

The folder holds `channel_NNNN.png` (a channel's top-k patches in a grid, its projections to the
left when asked), `sheet.png` (every channel, labelled), `manifest.json` (every hit, the
receptive field, skipped images, the provenance block) and, while and after mining,
`checkpoint/rank{r}-of-{w}.pt`: the streaming state of each torchrun process
(`vizcnn.mining.checkpoint`). A stopped run (Ctrl-C, SIGTERM, a crash) leaves its checkpoint;
the same call with `resume=True` continues it to the result of an uninterrupted run.

A folder that already holds a run (a manifest, or a checkpoint) is refused in one line naming
the settings it differs in, unless `resume=True` (continue it) or `overwrite=True` (start over).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch.distributed as dist

from vizcnn.core.distributed import (
    Shard,
    all_gather_objects,
    current_shard,
    init_from_env,
    launched_by_torchrun,
    shutdown,
)
from vizcnn.core.errors import VizError
from vizcnn.core.interrupt import sigterm_as_interrupt
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import SAMPLE_CROPS, SAMPLES, ImageSource, open_dataset
from vizcnn.hooks import layer_name
from vizcnn.io.paths import ensure_writable
from vizcnn.mining.checkpoint import checkpoint_path
from vizcnn.mining.patches import (
    DEFAULT_PROJECTIONS,
    DEFAULT_THUMBNAIL,
    MinedPatches,
    check_patch_options,
    mine_patches,
)
from vizcnn.mining.streaming import MineConfig, layer_shape, mine_topk, run_fields
from vizcnn.mining.topk import TopK
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.runs._mine_files import check_folder, remove_earlier_run, write_files
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.store import model_block

__all__ = ["MineInterrupted", "MineRun", "mine_folder"]


@dataclass
class MineRun:
    """What `mine_folder` did. On torchrun ranks other than 0 only the mining fields are set
    (rank 0 cuts the patches and writes the files)."""

    folder: Path
    config: MineConfig  # as it ran: the layer by name, the channels listed
    layer: str  # the mined layer's name
    channels: tuple[int, ...]  # mined channels, in order
    top: TopK  # every channel's top k (merged over the ranks)
    patches: MinedPatches | None  # the cut patches (None on ranks other than 0)
    files: list[str]  # files written into `folder`, the manifest last (none on other ranks)
    images: int  # images in the data set
    images_seen: int  # images that went through the network (all ranks, resumed ones too)
    skipped: list[tuple[str, str]]  # (image, reason) of unreadable images
    resumed_from: int  # images of this process's share that came from the checkpoint
    images_mined: int  # images this call pushed through the network, all ranks together
    mining_seconds: float  # the streaming pass of this call
    seconds: float  # the whole call
    checkpoint: Path  # this process's checkpoint file
    notes: list[str] = field(default_factory=list)  # e.g. a resume that found no checkpoint
    is_main: bool = True  # rank 0 (or a single process)

    @property
    def rate(self) -> float:
        """Images per second of this call's streaming pass, all ranks together."""
        return self.images_mined / max(self.mining_seconds, 1e-9)


class MineInterrupted(KeyboardInterrupt):
    """A mine run stopped by Ctrl-C or SIGTERM; its state is in `checkpoint` when `saved`."""

    def __init__(self, done: int, checkpoint: Path, ranks: int, is_main: bool) -> None:
        self.done = done  # images of this process's share done when it stopped
        self.checkpoint = checkpoint
        self.saved = checkpoint.is_file()
        self.is_main = is_main
        share = "images" if ranks == 1 else "images of this process's share"
        if self.saved:
            text = (
                f"interrupted after {done} {share}; the state is saved in {checkpoint.parent}/: "
                "call mine_folder again with resume=True to continue"
            )
        else:
            text = f"interrupted after {done} {share}, before any checkpoint"
        super().__init__(text)


def mine_folder(
    model: ModelLike,
    data: str | Path | ImageSource,
    folder: str | Path,
    config: MineConfig,
    *,
    projections: str = DEFAULT_PROJECTIONS,
    thumbnail: int = DEFAULT_THUMBNAIL,
    limit: int | None = None,
    crops: int = SAMPLE_CROPS,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> MineRun:
    """Mine each channel's top-k images over `data` into `folder`, as `vizcnn mine` does.

    Writes `channel_NNNN.png`, `sheet.png` and `manifest.json` (atomically, the manifest last,
    each with the provenance block), and keeps the streaming state in
    `folder/checkpoint/rank{r}-of-{w}.pt` every `config.checkpoint_every` batches or
    `config.checkpoint_seconds` seconds, at the end, and when the run stops: Ctrl-C, SIGTERM
    (what torchrun, schedulers and `kill` send; handled like Ctrl-C while mining, from the main
    thread) or an error. A stopped run raises `MineInterrupted` (a KeyboardInterrupt) saying
    where its state is. Under torchrun (`torchrun --nproc-per-node N script.py`) each process
    mines every N-th image and the shards merge exactly; the call joins the process group if
    the script has not (`vizcnn.core.distributed.init_from_env`), and rank 0 writes the files.
    One run at a time per folder (`folder_lock`).

    Args:
        model: a `LoadedModel` or a bare `nn.Module`; under torchrun on CUDA, on this
            process's GPU (`init_from_env(device)` gives it).
        data: a folder of images (any tree), a `.txt` list of paths, `"samples"` (seeded crops
            of the bundled photos), or an `ImageSource` (e.g. `TensorImages`).
        folder: output folder (created if missing).
        config: layer, channels (None: every channel), k, rank, checkpoint interval.
        projections: "none", or "deconv" / "guided" to show each patch's projection.
        thumbnail: pixels on a tile's longest side.
        limit: use only the first `limit` images of a data spec.
        crops: crops per bundled photo for `"samples"`.
        seed: the crops of `"samples"` (recorded in the provenance).
        resume: continue the run whose checkpoint is in `folder` (refused, naming every
            setting that differs, if it was made otherwise; starts from the beginning, with a
            note, if there is none).
        overwrite: start over in a folder that holds an earlier run (its files are removed).
        progress: `progress(done, total, message)` on rank 0: images of its share while
            mining, then patches (`message == "cutting patches"`).
        run: how it runs (`RunOptions`: `batch` images per forward pass, `workers` DataLoader
            processes), as for `mine_topk`; neither changes the result.

    Example:
        >>> run = mine_folder(loaded, "samples", "mined/", MineConfig("_blocks.4", (0, 1, 2)))
        >>> run.files[-1], run.top.hits(0)[0]  # ('manifest.json', (value, image id, y, x))
    """
    if resume and overwrite:
        raise VizError("pass resume=True (continue) or overwrite=True (start over), not both")
    started = time.perf_counter()
    loaded = as_loaded(model)
    joined = _join_process_group(loaded)
    try:
        return _mine_folder(
            loaded, data, Path(folder), config, projections, thumbnail, limit, crops, seed,
            resume, overwrite, progress, started, as_run_options(run),
        )  # fmt: skip
    finally:
        if joined:
            shutdown()


def _mine_folder(
    loaded: LoadedModel,
    data: str | Path | ImageSource,
    target: Path,
    config: MineConfig,
    projections: str,
    thumbnail: int,
    limit: int | None,
    crops: int,
    seed: int,
    resume: bool,
    overwrite: bool,
    progress: ProgressCallback,
    started: float,
    options: RunOptions,
) -> MineRun:
    layer = layer_name(loaded.module, config.layer)
    config = replace(config, layer=layer, channels=_channels(loaded, layer, config.channels))
    # Everything that could fail after the mining pass is checked before it.
    check_patch_options(loaded, layer, projections, thumbnail)
    dataset, name = _dataset(loaded, data, limit, crops, seed)
    shard = current_shard()
    checkpoint = checkpoint_path(target, shard)
    block = model_block(
        "mine",
        loaded,
        {
            "layer": layer,
            "channels": list(config.channels or ()),
            "k": config.k,
            "rank": config.rank,
            "limit": limit,
            "crops": crops if name == SAMPLES else None,
            "projections": projections,
            "thumbnail": thumbnail,
            "input_size": list(loaded.input_size),
        },
        data=name,
        seed=seed,
    )
    created = not target.exists()
    notes: list[str] = []
    try:
        with contextlib.ExitStack() as stack:
            problem = None
            try:
                if shard.is_main:  # one lock per folder: the other ranks run under rank 0's
                    ensure_writable(target, "folder", flag="folder")
                    stack.enter_context(folder_lock(target))
                fields = run_fields(loaded, dataset, config, shard)
                notes = check_folder(target, checkpoint, shard, fields, block, resume, overwrite)
            except VizError as exc:
                problem = str(exc)
            # every rank has checked before any writes: all go on, or all stop with one reason
            refusals = [p for p in all_gather_objects(problem) if p is not None]
            if refusals:
                raise VizError(refusals[0])
            if overwrite:  # only once every rank agreed to go on, and before any rank saves
                if shard.is_main:
                    remove_earlier_run(target)
                all_gather_objects(None)  # a barrier: no rank streams before the folder is clear
            mining_started = time.perf_counter()
            top = _stream(loaded, dataset, config, checkpoint, resume, progress, shard, options)
            mining_seconds = time.perf_counter() - mining_started
            run = MineRun(
                folder=target,
                config=config,
                layer=layer,
                channels=top.channels,
                top=top,
                patches=None,
                files=[],
                images=len(dataset),
                images_seen=top.images_seen,
                skipped=list(top.skipped),
                resumed_from=top.resumed_from,
                images_mined=(len(shard.indices(len(dataset))) - top.resumed_from)
                * shard.world_size,
                mining_seconds=mining_seconds,
                seconds=0.0,
                checkpoint=checkpoint,
                notes=notes if shard.is_main else [],
                is_main=shard.is_main,
            )
            if shard.is_main:
                run.patches = mine_patches(
                    loaded,
                    dataset,
                    top,
                    projections=projections,
                    thumbnail_size=thumbnail,
                    progress=progress,
                )
                block["seconds"] = round(time.perf_counter() - started, 3)
                run.files = write_files(target, block, dataset, config, top, run.patches, options)
    except BaseException:
        if created and shard.is_main:  # a run that stopped before writing leaves no folder
            with contextlib.suppress(OSError):
                target.rmdir()
        raise
    run.seconds = time.perf_counter() - started
    return run


def _join_process_group(loaded: LoadedModel) -> bool:
    """Join the process group torchrun describes, unless joined already; whether this did."""
    if not launched_by_torchrun() or not dist.is_available() or dist.is_initialized():
        return False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if loaded.device.type == "cuda" and (loaded.device.index or 0) != local:
        raise VizError(
            f"under torchrun each process mines on its own GPU: load the model of local rank "
            f"{local} on cuda:{local} (vizcnn.core.distributed.init_from_env(device) gives it)"
        )
    init_from_env(loaded.device)
    return True


def _channels(loaded: LoadedModel, layer: str, channels: Sequence[int] | None) -> tuple[int, ...]:
    """The channels to mine, checked against the layer (None: every channel)."""
    count = layer_shape(loaded, layer)[0]
    if channels is None:
        return tuple(range(count))
    for channel in channels:
        if not 0 <= int(channel) < count:
            raise VizError(
                f"channel {channel} out of range for layer {layer!r}; valid: 0..{count - 1}"
            )
    return tuple(int(c) for c in channels)


def _dataset(
    loaded: LoadedModel, data: str | Path | ImageSource, limit: int | None, crops: int, seed: int
) -> tuple[ImageSource, str]:
    """The data set and the name the provenance records for it."""
    if isinstance(data, ImageSource):
        if limit is not None:
            raise VizError("limit applies to a folder, a .txt list or 'samples'; pass fewer images")
        return data, f"{type(data).__name__}:{data.fingerprint()}"
    dataset = open_dataset(
        data,
        loaded.channels,
        loaded.input_size,
        limit=limit,
        crops_per_image=crops,
        seed=seed,
        resize_crop=loaded.resize_crop,
    )
    return dataset, str(data)


def _stream(
    loaded: LoadedModel,
    dataset: ImageSource,
    config: MineConfig,
    checkpoint: Path,
    resume: bool,
    progress: ProgressCallback,
    shard: Shard,
    run: RunOptions,
) -> TopK:
    """`mine_topk` with the folder's checkpoint; a stop becomes `MineInterrupted`."""
    done = [0]  # images of this process's share done at the latest report

    def report(count: int, total: int, message: str) -> None:
        done[0] = count
        if shard.is_main:
            progress(count, total, message)

    try:
        with sigterm_as_interrupt():
            return mine_topk(
                loaded,
                dataset,
                config,
                progress=report,
                checkpoint=checkpoint,
                resume=resume,
                run=run,
            )
    except MineInterrupted:
        raise
    except KeyboardInterrupt:
        raise MineInterrupted(done[0], checkpoint, shard.world_size, shard.is_main) from None
