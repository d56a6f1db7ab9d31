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


def check_writable_file(path: str | Path, suffixes: Sequence[str] = (".png",)) -> Path:
    """A VizError now if `path` has the wrong suffix or its folder cannot be written."""
    target = Path(path)
    if target.suffix.lower() not in suffixes:
        raise VizError(f"cannot write {target.name!r}; use a {' or '.join(suffixes)} file name")
    if target.is_dir():
        raise VizError(f"output {str(target)!r} is a folder; give a file name")
    ensure_writable(target, "file")
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
        normalization=loaded.normalization if loaded is not None else None,
        options=options,
        data=data,
        seed=seed,
        device=device,
        dtype=loaded.dtype if loaded is not None else None,
        seconds=seconds,
    )
