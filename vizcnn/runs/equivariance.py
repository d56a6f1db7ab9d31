"""`equivariance_folder`: what `vizcnn equivariance` writes, byte for byte but for timestamps.

The folder holds `equivariance.png` (error against depth), `equivariance.md` (the table) and
`equivariance.json` (provenance and every number), written atomically, the JSON last, under
the folder's lock. A measurement takes a few forward passes per shift: a re-run makes it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import open_dataset
from vizcnn.data.samples import resolve_image_argument
from vizcnn.features.equivariance import (
    DEFAULT_BATCH,
    EquivarianceConfig,
    EquivarianceResult,
    measure_equivariance,
    prepare_images,
)
from vizcnn.hooks import find_module, layer_names, parse_layer
from vizcnn.io.imaging import IMAGE_SUFFIXES, atomic_write, save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.io.provenance import tensor_digest
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.store import model_block

__all__ = ["EQUIVARIANCE_LIMIT", "EquivarianceRun", "equivariance_folder"]

EQUIVARIANCE_LIMIT = 8  # images used from a data set unless `limit` says otherwise
FILES = ("equivariance.json", "equivariance.md", "equivariance.png")


@dataclass
class EquivarianceRun:
    """What `equivariance_folder` wrote."""

    folder: Path
    result: EquivarianceResult
    files: tuple[str, ...]
    seconds: float


def _is_single_image(data: str) -> bool:
    return data.startswith("sample:") or Path(data).suffix.lower() in IMAGE_SUFFIXES


def _images(loaded: LoadedModel, data: str, config: EquivarianceConfig, limit: int) -> torch.Tensor:
    """DATA as images `config.margin` larger than the model's input size."""
    if _is_single_image(data):
        picture, _ = resolve_image_argument(data, loaded.channels)
        return prepare_images(loaded, [picture], config)
    height, width = loaded.input_size
    margin = config.margin
    dataset = open_dataset(
        data,
        loaded.channels,
        (height + margin[0], width + margin[1]),
        limit=limit,
        crops_per_image=1,
        resize_crop=loaded.resize_crop,
    )
    good = [
        item["image"] for item in (dataset[i] for i in range(len(dataset))) if not item["error"]
    ]
    if not good:
        raise VizError(f"no readable images in {data!r}")
    return torch.stack(good)


def equivariance_folder(
    model: ModelLike,
    data: str | Path | torch.Tensor,
    folder: str | Path,
    config: EquivarianceConfig | None = None,
    *,
    limit: int = EQUIVARIANCE_LIMIT,
    seed: int | None = None,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> EquivarianceRun:
    """Measure how translation-equivariant each layer is; write the table, plot and JSON.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        data: one image (path or `sample:NAME`), a folder of images, a `.txt` list of paths,
            `samples` (the bundled photos), or images `(N, C, H, W)` in [0, 1] already
            `config.margin` larger than the model's input size (`prepare_images`).
        folder: output folder (created if missing).
        config: layers, shifts, direction, mode, border.
        limit: images used from a data set.
        seed: recorded in the provenance block only (the measurement draws nothing).
        progress: called after each forward pass.
        run: how it runs (`RunOptions`: `batch`), as for `measure_equivariance`.

    Example:
        >>> run = equivariance_folder(loaded, "sample:coffee", "eq/",
        ...                           EquivarianceConfig(shifts=(1, 2, 4, 8)))
        >>> run.result.rows[-1].mean()
    """
    from vizcnn.features.figures import equivariance_figure  # matplotlib: only when drawing

    config = config or EquivarianceConfig()
    if limit < 1:
        raise VizError(f"limit must be at least 1, got {limit}")
    target = ensure_writable(folder, "folder", flag="folder")
    loaded = as_loaded(model)
    for spec in layer_names(loaded.module, config.layers):
        find_module(loaded.module, parse_layer(spec).name)
    if isinstance(data, torch.Tensor):
        images, name = data, f"tensor {tensor_digest(data)}"
    else:
        name = str(data)
        images = _images(loaded, name, config, limit)
    start = time.perf_counter()
    run = as_run_options(run)
    result = measure_equivariance(loaded, images, config, progress=progress, run=run)
    options = {
        "layers": layer_names(loaded.module, config.layers),
        "shifts": list(config.shifts),
        "direction": config.direction,
        "mode": config.mode,
        "border": config.border,
        "batch": run.batch_or(DEFAULT_BATCH),  # recorded as before `RunOptions` existed
        "limit": limit,
    }
    seconds = time.perf_counter() - start
    block = model_block("equivariance", loaded, options, data=name, seed=seed, seconds=seconds)
    table = f"# Translation equivariance of {loaded.name} ({name})\n\n" + result.markdown()
    figure = equivariance_figure({loaded.name: result}, f"{loaded.name}: equivariance by depth")
    with folder_lock(target):
        save_png(figure, target / "equivariance.png", {"provenance": block})
        atomic_write(target / "equivariance.md", lambda file: file.write(table.encode("utf-8")))
        save_json({"provenance": block, "result": result.to_dict()}, target / "equivariance.json")
    return EquivarianceRun(target, result, FILES, seconds)
