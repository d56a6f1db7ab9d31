"""The features runs: `filters_file`, `featuremaps_folder` and `kernels_file` write what
`vizcnn filters`, `vizcnn featuremaps` and `vizcnn kernels` write, byte for byte but for
timestamps.

Each result is a PNG (provenance in its text chunks) and a JSON beside it or in the folder
(`{"provenance": ..., "result": ...}`), written atomically, the JSON last. They take one forward
pass or none, so a re-run simply makes them again: there is nothing worth resuming.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from vizcnn.core.devices import resolve_device
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.data.samples import resolve_image_argument
from vizcnn.features.featuremaps import FeatureMapConfig, LayerMaps, check_layers, feature_maps
from vizcnn.features.filters import FilterConfig, FilterGrid, filter_grid
from vizcnn.features.kernels import KernelConfig, apply_kernels, classic_kernels
from vizcnn.hooks import layer_names
from vizcnn.io.imaging import resize, save_json, save_png
from vizcnn.io.paths import ensure_writable, safe_stem
from vizcnn.io.provenance import tensor_digest
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.runs.lock import file_lock, folder_lock
from vizcnn.runs.store import model_block

__all__ = [
    "FeatureMapsRun",
    "FiltersRun",
    "KernelsRun",
    "featuremaps_folder",
    "filters_file",
    "kernels_file",
    "png_target",
]


def png_target(path: str | Path) -> Path:
    """`path` as a PNG that can be written: a VizError now (a wrong suffix, a folder, no
    permission) rather than after the work."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise VizError(f"cannot write {target.name!r}; use a .png file name")
    if target.is_dir():
        raise VizError(f"output {str(target)!r} is a folder; give a file name")
    return ensure_writable(target, "file", flag="path")


def image_argument(
    image: str | Path | torch.Tensor, channels: int
) -> tuple[torch.Tensor, str, str]:
    """An image `(C, H, W)` in [0, 1], how provenance names it (a path or `sample:NAME` as
    written, a tensor by its digest) and a short display name."""
    if isinstance(image, torch.Tensor):
        data = f"tensor {tensor_digest(image)}"
        return image, data, data
    picture, name = resolve_image_argument(str(image), channels)
    return picture, str(image), name


@dataclass
class FiltersRun:
    """What `filters_file` wrote."""

    path: Path  # the PNG; its JSON sidecar is `path.with_suffix(".json")`
    grid: FilterGrid
    seconds: float


def filters_file(
    model: ModelLike,
    path: str | Path,
    config: FilterConfig | None = None,
    *,
    seed: int | None = None,
) -> FiltersRun:
    """A convolution's filters as a labelled grid: `path` (PNG) and its `.json` sidecar.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        path: the PNG to write (the JSON goes beside it, same stem).
        config: which layer and how to draw it.
        seed: recorded in the provenance block (the seed a random network was drawn with);
            the grid does not depend on it.

    Example:
        >>> run = filters_file(load_model("alexnet"), "alex.png", FilterConfig(sort="norm"))
    """
    from vizcnn.features.figures import filters_figure  # matplotlib: only when drawing

    config = config or FilterConfig()
    target = png_target(path)
    loaded = as_loaded(model)
    start = time.perf_counter()
    grid = filter_grid(loaded, config)
    picture = filters_figure(grid)
    options = {
        "layer": grid.layer,
        "normalize": config.normalize,
        "sort": config.sort,
        "inputs": config.inputs,
        "scale": config.scale,
    }
    seconds = time.perf_counter() - start
    block = model_block("filters", loaded, options, seed=seed, seconds=seconds)
    # the picture and its JSON as one result: a second run on the same file waits its turn
    with file_lock(target.with_suffix(".json")):
        save_png(picture, target, {"provenance": block})
        save_json({"provenance": block, "result": grid.to_dict()}, target.with_suffix(".json"))
    return FiltersRun(target, grid, seconds)


def _remove_stale(manifest: Path, keep: list[str]) -> None:
    """Remove the figures an earlier run listed in `manifest` that this run does not write
    (other layers), so the folder never mixes two runs' figures."""
    try:
        earlier = json.loads(manifest.read_text(encoding="utf-8")).get("result", [])
    except (OSError, ValueError, AttributeError):
        return
    for entry in earlier if isinstance(earlier, list) else []:
        name = entry.get("file") if isinstance(entry, dict) else None
        if isinstance(name, str) and name not in keep and Path(name).name == name:
            (manifest.parent / name).unlink(missing_ok=True)


@dataclass
class FeatureMapsRun:
    """What `featuremaps_folder` wrote: one figure per layer and `featuremaps.json`."""

    folder: Path
    files: list[str]  # figure names, in the order of the config's layers
    maps: list[LayerMaps]
    image: torch.Tensor  # the image as fed to the model (C, H, W)
    name: str  # the image's short name (`coffee` for sample:coffee)
    seconds: float
    manifest: str = field(default="featuremaps.json")


def featuremaps_folder(
    model: ModelLike,
    image: str | Path | torch.Tensor,
    folder: str | Path,
    config: FeatureMapConfig,
    *,
    seed: int | None = None,
    progress: ProgressCallback = no_progress,
) -> FeatureMapsRun:
    """The strongest activation maps `image` produces at each layer: `{i:02d}_{layer}.png`
    per layer and `featuremaps.json`, in `folder` (held with `folder_lock`).

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        image: a path, `sample:NAME`, or a tensor `(C, H, W)` in [0, 1].
        folder: output folder (created if missing).
        config: layers, channels per layer and how the figures draw them.
        seed: recorded in the provenance block only (the maps do not depend on it).
        progress: called once per layer.

    Example:
        >>> run = featuremaps_folder(loaded, "sample:coffee", "maps/",
        ...                          FeatureMapConfig(layers=("_blocks.2",), top=8))
    """
    import matplotlib

    from vizcnn.features.figures import featuremaps_figure

    if config.cmap not in matplotlib.colormaps:
        raise VizError(f"unknown colour map cmap={config.cmap!r}; e.g. viridis, magma, gray")
    target = ensure_writable(folder, "folder", flag="folder")
    loaded = as_loaded(model)
    if not config.layers:  # the model's report layers: stages at three depths
        config = replace(config, layers=tuple(loaded.layers_for("report")))
    check_layers(loaded.module, config.layers)
    picture, data, name = image_argument(image, loaded.channels)
    start = time.perf_counter()
    shown, results = feature_maps(loaded, picture, config, progress=progress)
    options = {
        "layers": layer_names(loaded.module, config.layers),
        "top": config.top,
        "overlay": config.overlay,
        "cmap": config.cmap,
    }
    seconds = time.perf_counter() - start
    block = model_block("featuremaps", loaded, options, data=data, seed=seed, seconds=seconds)
    files = [
        f"{index:02d}_{safe_stem(maps.layer, 'layer')}.png" for index, maps in enumerate(results)
    ]
    with folder_lock(target):
        _remove_stale(target / "featuremaps.json", files)
        for maps, file in zip(results, files, strict=True):
            figure = featuremaps_figure(shown, maps, overlay=config.overlay, cmap=config.cmap)
            save_png(figure, target / file, {"provenance": block, "layer": maps.layer})
        result = [dict(m.to_dict(), file=f) for m, f in zip(results, files, strict=True)]
        save_json({"provenance": block, "result": result}, target / "featuremaps.json")
    return FeatureMapsRun(target, files, results, shown, name, seconds)


@dataclass
class KernelsRun:
    """What `kernels_file` wrote."""

    path: Path  # the PNG; its JSON sidecar is `path.with_suffix(".json")`
    names: list[str]  # the kernels, in the order drawn
    outputs: dict[str, torch.Tensor]  # name -> filtered image (C, H, W), unclipped
    seconds: float


def kernels_file(
    image: str | Path | torch.Tensor,
    path: str | Path,
    config: KernelConfig | None = None,
    *,
    device: torch.device | str = "auto",
) -> KernelsRun:
    """Classic kernels applied to `image` with conv2d, each beside its matrix: `path` (PNG)
    and its `.json` sidecar (each kernel and its output's range).

    Args:
        image: a path, `sample:NAME`, or a tensor `(C, H, W)` in [0, 1].
        path: the PNG to write (the JSON goes beside it, same stem).
        config: which kernels, padding, resizing, grayscale.
        device: where conv2d runs (`auto`: CUDA, then MPS, then CPU).

    Example:
        >>> run = kernels_file("sample:coffee", "k.png", KernelConfig(kernels=("sharpen",)))
    """
    from vizcnn.features.figures import kernels_figure

    config = config or KernelConfig()
    target = png_target(path)
    where = resolve_device(device)
    start = time.perf_counter()
    picture, data, _ = image_argument(image, 1 if config.gray else 3)
    if config.gray and picture.shape[0] == 3:  # a tensor in colour: luma as PIL's "L" has it
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=picture.dtype, device=picture.device)
        picture = (picture * weights.view(3, 1, 1)).sum(dim=0, keepdim=True)
    if config.size:
        height, width = picture.shape[-2:]
        scale = config.size / min(height, width)
        new = (max(1, round(height * scale)), max(1, round(width * scale)))
        picture = resize(picture.unsqueeze(0), new)[0].clamp(0, 1)
    picture = picture.to(where)
    names = config.names()
    every = classic_kernels(picture.dtype, where)
    chosen = {name: every[name] for name in names}  # in the order asked for
    outputs = apply_kernels(picture, chosen, config.padding)
    figure = kernels_figure(
        picture.cpu(),
        {n: k.cpu() for n, k in chosen.items()},
        {n: o.cpu() for n, o in outputs.items()},
    )
    options = {
        "kernels": names,
        "padding": config.padding,
        "size": config.size,
        "gray": config.gray,
    }
    seconds = time.perf_counter() - start
    block = model_block("kernels", None, options, data=data, device=where, seconds=seconds)
    # the picture and its JSON as one result: a second run on the same file waits its turn
    result = {
        name: {
            "kernel": chosen[name].cpu().tolist(),
            "output_range": [float(outputs[name].min()), float(outputs[name].max())],
        }
        for name in names
    }
    with file_lock(target.with_suffix(".json")):
        save_png(figure, target, {"provenance": block})
        save_json({"provenance": block, "result": result}, target.with_suffix(".json"))
    return KernelsRun(target, names, {n: o.cpu() for n, o in outputs.items()}, seconds)
