"""`probe_folder`: what `vizcnn probe` writes, byte for byte but for timestamps.

The folder holds `probes.png` (held-out accuracy against depth, with the model's accuracy and
chance), `probes.md` (the table) and `probes.json` (provenance and every number), written
atomically, the JSON last, under the folder's lock. A probe run is one pass over the data plus
one regression per layer: a re-run makes it again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vizcnn.core.devices import Seed, seed_record
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.labelled import LabelledImages
from vizcnn.features.probes import (
    DEFAULT_BATCH,
    ProbeConfig,
    ProbeResult,
    probe_layers,
)
from vizcnn.hooks import find_module, layer_names, parse_layer
from vizcnn.io.imaging import atomic_write, save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.store import model_block

__all__ = ["PROBE_FILES", "ProbeRun", "probe_folder"]

PROBE_FILES = ("probes.json", "probes.md", "probes.png")


@dataclass
class ProbeRun:
    """What `probe_folder` wrote."""

    folder: Path
    result: ProbeResult
    files: tuple[str, ...]
    seconds: float


def probe_folder(
    model: ModelLike,
    data: str | Path | LabelledImages | tuple[torch.Tensor, torch.Tensor],
    folder: str | Path,
    config: ProbeConfig | None = None,
    *,
    seed: Seed = 0,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> ProbeRun:
    """Linear probes per layer (`probe_layers`); write the curve, the table and the JSON.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        data: `digits`, `sample-crops`, an ImageFolder, a `LabelledImages` or (images, labels).
        folder: output folder (created if missing).
        config: layers, held-out fraction, C, max_iter, ... (`ProbeConfig`).
        seed: the split and the crops of `sample-crops`.
        progress: called after each batch, then after each probe.
        run: how it runs (`RunOptions`: `batch`, `workers`).

    Example:
        >>> run = probe_folder(load_model("lenet5_digits"), "digits", "probe/")
        >>> run.result.best.layer
    """
    from vizcnn.features.figures import probes_figure  # matplotlib: only when drawing

    config = config or ProbeConfig()
    run = as_run_options(run)
    target = ensure_writable(folder, "folder", flag="folder")
    loaded = as_loaded(model)
    for spec in layer_names(loaded.module, config.layers):
        find_module(loaded.module, parse_layer(spec).name)
    recorded_seed = seed_record(seed)
    start = time.perf_counter()
    result = probe_layers(loaded, data, config, run=run, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    options = {
        "layers": [probe.layer for probe in result.layers],
        "test_fraction": config.test_fraction,
        "C": config.C,
        "max_iter": config.max_iter,
        "standardize": config.standardize,
        "crops": config.crops,
        "model_classes": config.model_classes,
        "batch": run.batch_or(DEFAULT_BATCH),
    }
    block = model_block(
        "probe", loaded, options, data=result.data, seed=recorded_seed, seconds=seconds
    )
    table = f"# Linear probes of {loaded.name} on {result.data}\n\n" + result.markdown()
    figure = probes_figure(result)
    with folder_lock(target):
        save_png(figure, target / "probes.png", {"provenance": block})
        atomic_write(target / "probes.md", lambda file: file.write(table.encode("utf-8")))
        save_json({"provenance": block, "result": result.to_dict()}, target / "probes.json")
    return ProbeRun(target, result, PROBE_FILES, seconds)
