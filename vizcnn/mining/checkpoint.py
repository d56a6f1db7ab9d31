"""Mining checkpoints: the settings a run was made with, and the state file that carries them.

The settings are stored field by field (not as one hash), so a refused resume names every
option that differs. The file is a `torch.save` of plain containers and tensors, written
atomically and read back with `weights_only=True`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vizcnn.core.distributed import Shard
from vizcnn.core.errors import VizError
from vizcnn.data.datasets import ImageSource
from vizcnn.io.imaging import atomic_write
from vizcnn.io.provenance import weights_digest
from vizcnn.models.loading import LoadedModel

if TYPE_CHECKING:
    from vizcnn.mining.streaming import MineConfig

VERSION = 2  # 2: settings stored field by field

# What a checkpoint must match to be resumed, and how to name each setting to a user.
RESUME_FIELDS = {
    "model": "the model (-m)",
    "weights": "the model's weights (--weights; --seed with --weights none)",
    "layer": "the layer (-l)",
    "channels": "the channels (--channels / --all)",
    "k": "-k",
    "rank": "--rank",
    "data": "the list of images (DATA, --limit, --crops, the samples' --seed, input size)",
    "data_content": "the images' contents (files changed since the checkpoint)",
    "process": "the process (rank and number of ranks)",
}
_SHOWN = ("model", "layer", "channels", "k", "rank", "process")  # short enough to print


def run_fields(
    loaded: LoadedModel, dataset: ImageSource, config: MineConfig, shard: Shard
) -> dict[str, Any]:
    """The settings a checkpoint was made with (stored, and compared one by one on resume)."""
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


def differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """One phrase per setting in which a checkpoint differs from this run."""
    found = []
    for name, label in RESUME_FIELDS.items():
        old, new = stored.get(name), wanted[name]
        if old == new:
            continue
        if name in _SHOWN and old is not None and len(f"{old}{new}") <= 60:
            found.append(f"{label}: {old} in the checkpoint, {new} now")
        else:
            found.append(label)
    return found


def save_checkpoint(path: Path, fields: dict[str, Any], state: dict[str, Any]) -> None:
    """Write `state` (plain containers and tensors) with the run's `fields`, atomically."""
    buffer = io.BytesIO()
    torch.save({"version": VERSION, "fields": fields, **state}, buffer)
    atomic_write(path, lambda file: file.write(buffer.getvalue()))


def load_checkpoint(path: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """The state saved in `path`; VizError naming each setting that differs from `fields`."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or damaged file
        raise VizError(
            f"cannot read checkpoint {str(path)!r}: {exc}; delete it to start over"
        ) from exc
    if not isinstance(payload, dict) or payload.get("version") != VERSION:
        raise VizError(
            f"checkpoint {str(path)!r} was written by another version of vizcnn; "
            "start over with --overwrite instead of --resume"
        )
    differ = differences(payload.get("fields") or {}, fields)
    if differ:
        raise VizError(
            f"cannot resume from {str(path)!r}, it was made with other settings: "
            f"{'; '.join(differ)}. Use the same options, or start over with --overwrite instead of --resume"
        )
    return payload
