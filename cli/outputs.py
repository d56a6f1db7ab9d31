"""Checks on output paths before work starts, and the provenance block of a loaded model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vizcnn.core.errors import VizError
from vizcnn.io.paths import ensure_writable
from vizcnn.io.provenance import provenance
from vizcnn.models.loading import LoadedModel


def check_writable_dir(path: str | Path) -> Path:
    """A VizError now (before long work) if files cannot be written in folder `path`.

    The same check as every command's (`ensure_writable`: a test write, nothing left behind).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise VizError(f"output {str(folder)!r} is a file; give a folder")
    return ensure_writable(folder, "folder")


def check_writable_file(path: str | Path, suffixes: Sequence[str] = (".png",)) -> Path:
    """A VizError now if `path` has the wrong suffix or its folder cannot be written."""
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        raise VizError(f"cannot write {target.name!r}; use a {' or '.join(suffixes)} file name")
    if target.is_dir():
        raise VizError(f"output {str(target)!r} is a folder; give a file name")
    check_writable_dir(target.parent if str(target.parent) else Path("."))
    return target


def model_provenance(
    technique: str,
    loaded: LoadedModel | None,
    options: Mapping[str, Any],
    *,
    data: str | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """The provenance block for a result made with `loaded` (None: no model involved)."""
    return provenance(
        technique=technique,
        model_name=loaded.name if loaded is not None else "",
        weights=loaded.weights if loaded is not None else "",
        module=loaded.module if loaded is not None else None,
        options=options,
        data=data,
        seed=seed,
        device=device,
        dtype=loaded.dtype if loaded is not None else None,
        seconds=seconds,
    )
