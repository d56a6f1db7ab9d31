"""`concepts_folder`: what `vizcnn concepts` writes, byte for byte but for timestamps.

The folder holds, per concept i, `concept_II_render.png` (activation maximization of its
direction), `concept_II_patches.png` (its top patches) and `concept_II_heatmaps.png` (its
coefficients over a few images of the data), then `concepts.png` (the contact sheet: one row per
concept with its render, patches, heatmaps, importance and share) and `concepts.json`
(provenance, directions, importances, reconstruction error, the images used, the sampling cap),
written atomically, the JSON last, under the folder's lock. Every input is checked before the
pass over the data; nothing is written until every picture is made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vizcnn.concepts.config import ConceptConfig, default_concept_layer
from vizcnn.concepts.discovery import (
    DEFAULT_BATCH,
    Concepts,
    check_concept_layer,
    class_of,
    find_concepts,
)
from vizcnn.concepts.sources import ConceptData, open_concept_data
from vizcnn.concepts.views import (
    ConceptPatches,
    concept_heatmaps,
    concept_importance,
    concept_patches,
    concept_renders,
)
from vizcnn.core.devices import Seed, draw_seed, seed_record
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.io.imaging import labeled_sheet, make_grid, resize, save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.receptive.measured import receptive_fields
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.store import model_block

__all__ = ["ConceptsRun", "concepts_folder", "spotlight"]

SHEET_TILE = 96  # pixels per picture on the contact sheet


@dataclass
class ConceptsRun:
    """What `concepts_folder` wrote."""

    folder: Path
    concepts: Concepts
    files: tuple[str, ...]
    seconds: float


def spotlight(images: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """Images `(B, C, H, W)` lit where `heat` `(B, H, W)` in [0, 1] is high, dimmed elsewhere."""
    return images * (0.2 + 0.8 * heat.clamp(0, 1)[:, None])


def concepts_folder(
    model: ModelLike,
    data: ConceptData,
    folder: str | Path,
    config: ConceptConfig | None = None,
    *,
    seed: Seed = 0,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> ConceptsRun:
    """Find concepts (`find_concepts`) and write their renders, patches, heatmaps, the contact
    sheet and `concepts.json`.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        data: images `(N, C, H, W)`, an `ImageSource`, a folder, a `.txt` list or `samples`.
        folder: output folder (created if missing).
        config: layer, k, class, sampling cap, views (`ConceptConfig`).
        seed: the sample of positions, the `samples` crops and the renders.
        progress: called with (done, total, message) through the passes and renders.
        run: how it runs (`RunOptions`: `batch`, `workers`; renders also `amp`).

    Example:
        >>> run = concepts_folder(load_model("efficientnet_lite0"), "samples", "concepts/",
        ...                       ConceptConfig(k=6, limit=128))
        >>> run.concepts.reconstruction_error
    """
    config = config or ConceptConfig()
    run = as_run_options(run)
    target = ensure_writable(folder, "folder", flag="folder")
    loaded = as_loaded(model)
    # every check before the pass over the data
    layer = config.layer if config.layer is not None else default_concept_layer(loaded)
    spec, _channels = check_concept_layer(loaded, layer, config.k)
    if config.target_class is not None:
        class_of(loaded, config.target_class)
    input_shape = (loaded.channels, *loaded.input_size)
    if receptive_fields(loaded.module, input_shape, [spec])[spec] is None:
        raise VizError(f"no receptive field for layer {spec!r}; its units do not see the input")
    key_seed = draw_seed(seed)
    recorded_seed = seed_record(seed)
    render_config = config.render.resolved()
    source, data_name = open_concept_data(
        loaded, data, limit=config.limit, crops=config.crops, seed=key_seed
    )

    start = time.perf_counter()
    concepts = find_concepts(
        loaded,
        source,
        spec,
        config.k,
        target_class=config.target_class,
        max_positions=config.max_positions,
        seed=key_seed,
        run=run,
        progress=progress,
        importance_images=config.importance_images,
        max_iter=config.max_iter,
    )
    concepts.data = data_name
    if concepts.importances is None:  # no class: importance for each image's own top-1 class
        chosen = concepts.image_ids[: config.importance_images]
        images = torch.stack([source.image(i) for i in chosen])
        concepts.importances = concept_importance(loaded, concepts, images, None, run=run)
        concepts.importance_target = "each image's top-1 class"
    found = concept_patches(
        loaded,
        concepts,
        source,
        config.patches,
        thumbnail_size=config.thumbnail,
        run=run,
        progress=progress,
    )
    shown_ids = concepts.image_ids[: config.heatmap_images]
    shown = torch.stack([source.image(i) for i in shown_ids])
    heat = concept_heatmaps(loaded, concepts, shown, run=run).cpu()
    scale = concepts.coefficients.max(0).values.clamp_min(1e-12).cpu()  # per concept
    renders = concept_renders(
        loaded, concepts, render_config, seed=key_seed, run=run, progress=progress
    )
    seconds = time.perf_counter() - start

    options: dict[str, Any] = {
        "layer": spec,
        "k": config.k,
        "class": config.target_class,
        "max_positions": config.max_positions,
        "patches": config.patches,
        "thumbnail": config.thumbnail,
        "heatmap_images": config.heatmap_images,
        "importance_images": config.importance_images,
        "steps": render_config.steps,
        "image_size": list(render_config.image_size(loaded)),
        "param": render_config.param,
        "limit": config.limit,
        "crops": config.crops,
        "max_iter": config.max_iter,
        "batch": run.batch_or(DEFAULT_BATCH),
    }
    block = model_block(
        "concepts", loaded, options, data=data_name, seed=recorded_seed, seconds=seconds
    )
    pictures: dict[str, torch.Tensor] = {}
    rows = []
    labels = []
    importances = concepts.importances
    share = concepts.share()
    for i in range(concepts.k):
        render_image = renders.images[i]
        patch_grid = make_grid([hit.patch for hit in found.patches.get(i, [])], columns=3)
        lit = spotlight(shown, heat[:, i] / scale[i])
        heat_strip = make_grid(list(lit), columns=len(lit))
        pictures[f"concept_{i:02d}_render.png"] = render_image
        pictures[f"concept_{i:02d}_patches.png"] = patch_grid
        pictures[f"concept_{i:02d}_heatmaps.png"] = heat_strip
        rows.append(_sheet_row(render_image, patch_grid, lit))
        labels.append(
            f"concept {i}: importance {float(importances[i]):+.3f}, share {float(share[i]):.0%}"
        )
    what = (
        f"class {concepts.class_name or concepts.target_class}"
        if concepts.target_class is not None
        else data_name
    )
    sheet = labeled_sheet(rows, labels, columns=1)
    sheet = _titled(sheet, f"{loaded.name} {spec}: {concepts.k} concepts of {what}")
    files = [*pictures, "concepts.png", "concepts.json"]
    with folder_lock(target):
        for name, picture in pictures.items():
            concept = int(name.split("_")[1])
            save_png(picture, target / name, {"provenance": block, "concept": str(concept)})
        save_png(sheet, target / "concepts.png", {"provenance": block})
        save_json(
            {
                "provenance": block,
                "concepts": concepts.to_dict(),
                "patches": _patch_records(found),
                "heatmap_images": [source.names[i] for i in shown_ids],
                "files": files,
            },
            target / "concepts.json",
        )
    return ConceptsRun(target, concepts, tuple(files), seconds)


def _fit(image: torch.Tensor, side: int) -> torch.Tensor:
    """`(C, H, W)` scaled so its height is `side` pixels."""
    height, width = image.shape[-2:]
    size = (side, max(1, round(width * side / height)))
    return resize(image[None].float(), size)[0].clamp(0, 1)


def _sheet_row(
    render_image: torch.Tensor, patches: torch.Tensor, lit: torch.Tensor
) -> torch.Tensor:
    """One concept's row: render | patches grid | heatmaps, each `SHEET_TILE` high."""
    parts = [_fit(render_image, SHEET_TILE), _fit(patches, SHEET_TILE)]
    parts += [_fit(image, SHEET_TILE) for image in lit]
    return make_grid(parts, columns=len(parts), padding=4)


def _titled(sheet: Image.Image, title: str) -> Image.Image:
    from PIL import ImageDraw

    canvas = Image.new("RGB", (sheet.width, sheet.height + 16), "white")
    canvas.paste(sheet, (0, 16))
    ImageDraw.Draw(canvas).text((4, 2), title[: max(20, sheet.width // 6)], fill="black")
    return canvas


def _patch_records(found: ConceptPatches) -> dict[str, list[dict[str, Any]]]:
    return {
        str(concept): [
            {
                "rank": hit.rank,
                "value": hit.value,
                "image": hit.image,
                "image_id": hit.image_id,
                "position": list(hit.position),
                "box": list(hit.box),
            }
            for hit in hits
        ]
        for concept, hits in found.patches.items()
    }
