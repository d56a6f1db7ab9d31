"""What a run wrote, in a form two runs can be compared by: the CLI's folder against the library
call's, byte for byte except when each was made."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vizcnn.io.imaging import read_png_metadata

# fields of a provenance block that say when and how long, not what was made
TIMESTAMPS = frozenset({"created", "seconds"})


def without_timestamps(value: Any, timestamps: Collection[str] = TIMESTAMPS) -> Any:
    """`value` (JSON data) with every key in `timestamps` dropped, at any depth."""
    if isinstance(value, dict):
        return {
            k: without_timestamps(v, timestamps) for k, v in value.items() if k not in timestamps
        }
    if isinstance(value, list):
        return [without_timestamps(v, timestamps) for v in value]
    return value


def _tensors(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), str(value.dtype), value.tolist())
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tensors(v) for v in value]
    return value


def folder_contents(
    folder: Path,
    *,
    timestamps: Collection[str] = TIMESTAMPS,
    page: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Every file under `folder` (hidden ones skipped): JSON data, image frames' pixels with a
    PNG's text chunks, `.pt` tensors by value, pages through `page`, other files as bytes;
    timestamps dropped everywhere."""
    found: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in Path(name).parts):
            continue
        if path.suffix == ".json":
            found[name] = without_timestamps(json.loads(path.read_text()), timestamps)
        elif path.suffix == ".pt":
            found[name] = _tensors(torch.load(path, weights_only=True))
        elif path.suffix == ".html" and page is not None:
            found[name] = page(path.read_text(encoding="utf-8"))
        elif path.suffix in {".png", ".gif", ".jpg"}:
            with Image.open(path) as image:
                frames = []
                for index in range(getattr(image, "n_frames", 1)):
                    image.seek(index)
                    frames.append(image.tobytes())
            chunks = {}
            if path.suffix == ".png":
                chunks = {
                    k: without_timestamps(json.loads(v), timestamps) if v.startswith("{") else v
                    for k, v in read_png_metadata(path).items()
                }
            found[name] = (frames, chunks)
        else:
            found[name] = path.read_bytes()
    assert found, f"nothing written in {folder}"
    return found
