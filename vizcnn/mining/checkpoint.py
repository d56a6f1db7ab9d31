"""Mining checkpoints: where they live, the settings a run was made with, the state file.

A mine folder keeps its streaming state in `FOLDER/checkpoint/rank{r}-of-{w}.pt`, one file per
torchrun process (`checkpoint_path`). The settings are stored field by field (not as one hash),
so a refused resume names every option that differs (`streaming.run_fields` makes them). The
file is a `torch.save` of plain containers and tensors, written atomically and read back with
`weights_only=True`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from vizcnn.core.distributed import Shard
from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write

CHECKPOINT_DIR = "checkpoint"  # a mine folder's streaming state, one file per process
VERSION = 2  # 2: settings stored field by field

# What a checkpoint must match to be resumed, and how to name each setting to a script's
# author (the CLI names its flags: `cli.flags.FIELD_FLAGS`).
RESUME_FIELDS = {
    "model": "the model (LoadedModel.name)",
    "weights": "the model's weights (their digest)",
    "layer": "the layer (MineConfig.layer)",
    "channels": "the channels (MineConfig.channels)",
    "k": "MineConfig.k",
    "rank": "MineConfig.rank",
    "data": "the list of images (data, limit, crops, the samples' seed, input size)",
    "data_content": "the images' contents (files changed since the checkpoint)",
    "process": "the process (rank and number of ranks)",
}
_SHOWN = ("model", "layer", "channels", "k", "rank", "process")  # short enough to print


def checkpoint_path(folder: str | Path, shard: Shard) -> Path:
    """The checkpoint file of process `shard` in a mine folder: `checkpoint/rank0-of-1.pt`."""
    return Path(folder) / CHECKPOINT_DIR / f"rank{shard.rank}-of-{shard.world_size}.pt"


def other_layouts(folder: str | Path, shard: Shard) -> list[str]:
    """Names of the checkpoints in `folder` that another number of processes wrote."""
    found = (Path(folder) / CHECKPOINT_DIR).glob("rank*-of-*.pt")
    return sorted(p.name for p in found if not p.name.endswith(f"-of-{shard.world_size}.pt"))


def stored_fields(path: Path) -> dict[str, Any] | None:
    """The settings a checkpoint file was made with (None if it cannot be read)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a foreign or damaged file: `load_checkpoint` says why
        return None
    fields = payload.get("fields") if isinstance(payload, dict) else None
    return fields if isinstance(fields, dict) else None


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
            "start over with overwrite=True instead of resume=True"
        )
    differ = differences(payload.get("fields") or {}, fields)
    if differ:
        raise VizError(
            f"cannot resume from {str(path)!r}, it was made with other settings: "
            f"{'; '.join(differ)}. Use the same settings, or start over with overwrite=True "
            "instead of resume=True"
        )
    return payload
