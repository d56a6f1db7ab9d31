"""What a mine folder holds: the check for an earlier run, and the files a run writes.

`vizcnn.runs.mine.mine_folder` is the run; this module knows the folder's layout: the grids
`channel_NNNN.png`, `sheet.png`, `manifest.json` (written last) and the streaming state in
`checkpoint/` (`vizcnn.mining.checkpoint`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vizcnn.core.distributed import Shard
from vizcnn.core.errors import VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import ImageSource
from vizcnn.io.imaging import save_json, save_png
from vizcnn.mining.checkpoint import CHECKPOINT_DIR, differences, other_layouts, stored_fields
from vizcnn.mining.patches import MinedPatches, channel_grid, layer_sheet
from vizcnn.mining.streaming import DEFAULT_BATCH, MineConfig, config_dict
from vizcnn.mining.topk import TopK
from vizcnn.runs.store import check_finished_run

MANIFEST = "manifest.json"


def check_folder(
    target: Path,
    checkpoint: Path,
    shard: Shard,
    fields: dict[str, Any],
    block: dict[str, Any],
    resume: bool,
    overwrite: bool,
) -> list[str]:
    """Refuse a folder holding another run (one line); the notes a resume gives."""
    if overwrite:
        return []
    others = other_layouts(target, shard)
    if resume:
        if checkpoint.is_file():
            return []  # `mine_topk` compares its settings, naming every difference
        if others:  # a checkpoint of another layout would be silently ignored: say so
            raise VizError(
                f"{target / CHECKPOINT_DIR}/ holds checkpoints of another number of processes "
                f"({', '.join(others)}) but none for rank {shard.rank} of {shard.world_size}; "
                "resume with the same number of processes, or start over with overwrite=True "
                "instead of resume=True"
            )
        check_finished_run(target / MANIFEST, block)  # finished, but its checkpoint is gone
        return [f"no checkpoint found in {checkpoint.parent}/; starting from the beginning"]
    check_finished_run(target / MANIFEST, block)
    if checkpoint.is_file():
        stored = stored_fields(checkpoint)
        differ = differences(stored, fields) if stored is not None else ["an unreadable file"]
        if differ:
            raise VizError(
                f"{checkpoint.parent}/ holds an interrupted run made with other settings "
                f"({'; '.join(differ)}); pass overwrite=True to start over, or write to "
                "another folder"
            )
        raise VizError(
            f"{checkpoint.parent}/ holds an interrupted run; pass resume=True to continue it, "
            "or overwrite=True to start over"
        )
    if others:
        raise VizError(
            f"{target / CHECKPOINT_DIR}/ holds an interrupted run of another number of "
            f"processes ({', '.join(others)}); pass overwrite=True to start over, or write to "
            "another folder"
        )
    return []


def remove_earlier_run(target: Path) -> None:
    """Remove the files a mine run writes, so a new run never mixes with an old one."""
    written = [target / MANIFEST, target / "sheet.png", *target.glob("channel_[0-9]*.png")]
    for path in [*written, *(target / CHECKPOINT_DIR).glob("rank*-of-*.pt")]:
        path.unlink(missing_ok=True)


def write_files(
    out: Path,
    block: dict[str, Any],
    dataset: ImageSource,
    config: MineConfig,
    top: TopK,
    mined: MinedPatches,
    run: RunOptions,
) -> list[str]:
    """Every channel's grid, the sheet, and the manifest last; the names written."""
    meta = {"provenance": block, "layer": config.layer, "k": config.k, "rank": config.rank}
    channel_rows = []
    written = []
    for channel in top.channels:
        hits = mined.hits.get(channel, [])
        tile = f"channel_{channel:04d}.png" if hits else None
        if tile is not None:
            save_png(channel_grid(hits), out / tile, {**meta, "channel": channel})
            written.append(tile)
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
        written.append("sheet.png")
    found = mined.field
    manifest = {
        "provenance": block,  # model, weights and digest, data, options, seed, device, versions
        "images": len(dataset),
        "images_seen": top.images_seen,
        "layer": config.layer,
        "layer_shape": list(top.layer_shape),
        "config": config_dict(config),
        # how it ran (`RunOptions`; neither changes the result)
        "run": {"batch": run.batch_or(DEFAULT_BATCH), "workers": run.workers},
        "field": {
            "size": list(found.size),
            "stride": list(found.stride),
            "offset": list(found.offset),
            "method": found.method,
        },
        "box_note": "(top, left, bottom, right) in the preprocessed model input, bottom/right "
        "exclusive; may extend past the image (padded)",
        "skipped": [{"image": name, "reason": reason} for name, reason in top.skipped],
        "channels": channel_rows,
    }
    save_json(manifest, out / MANIFEST)
    written.append(MANIFEST)
    return written
