"""The parts of `attribute_folder` around the maps: which image files, the stems of their
output files, and the deletion and sanity-check files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vizcnn.attribution.maps import attribute
from vizcnn.attribution.methods import Method
from vizcnn.attribution.sanity import SanityResult
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback
from vizcnn.core.run_options import RunOptions
from vizcnn.data.samples import list_image_files, sample_names
from vizcnn.io.imaging import atomic_write, save_json
from vizcnn.io.paths import unique_stems
from vizcnn.models.base import LoadedModel

if TYPE_CHECKING:
    from vizcnn.runs.attribute import DeletionConfig, SanityConfig


def gather_images(specs: str | Path | Sequence[str | Path]) -> list[str]:
    """Every image the specs name (files, folders searched recursively, `sample:NAME`)."""
    found: list[str] = []
    for spec in [specs] if isinstance(specs, (str, Path)) else specs:
        text = str(spec)
        if text.startswith("sample:"):
            name = text.split(":", 1)[1]
            if name not in sample_names():
                raise VizError(f"unknown sample {name!r}; valid: {', '.join(sample_names())}")
            found.append(text)
        elif Path(text).is_dir():
            files = list_image_files(text)
            if not files:
                raise VizError(f"folder {text!r} holds no image files")
            found += [str(f) for f in files]
        elif Path(text).is_file():
            found.append(text)
        else:
            raise VizError(f"image {text!r} not found; give a file, a folder or sample:NAME")
    if not found:
        raise VizError("no images given; give files, folders or sample:NAME")
    return found


def image_stems(images: Sequence[str]) -> list[str]:
    """Unique, file-safe names per image (coffee, photo, photo_2, ...)."""
    return unique_stems(
        [
            text.split(":", 1)[1] if text.startswith("sample:") else Path(text).stem
            for text in images
        ],
        "image",
    )


def write_png(fig: Any, path: Path) -> None:
    from vizcnn.attribution.figures import figure_png_bytes

    data = figure_png_bytes(fig)
    atomic_write(path, lambda file: file.write(data))


def save_maps(maps: dict[str, torch.Tensor], path: Path) -> None:
    atomic_write(path, lambda file: torch.save(maps, file))


def write_deletion(
    loaded: LoadedModel,
    pictures: list[torch.Tensor],
    maps: dict[str, list[torch.Tensor]],
    targets: list[torch.Tensor],
    config: DeletionConfig,
    batch: int,
    seed: int,
    folder: Path,
    progress: ProgressCallback,
) -> dict[str, dict[str, float]]:
    """Deletion/insertion curves, ROAD and the confidence metrics of every method
    (`deletion.png/.json`); the per-method table (`vizcnn.attribution.metrics.TABLE_COLUMNS`)."""
    from vizcnn.attribution.deletion import deletion_curves
    from vizcnn.attribution.figures import curves_figure
    from vizcnn.attribution.metrics import confidence, metric_rows, road

    joined = deletion_curves(
        loaded,
        torch.cat(pictures),
        {m: torch.cat(parts) for m, parts in maps.items()},
        torch.cat(targets),
        steps=config.steps,
        baseline=config.baseline,
        batch=batch * 4,
        progress=progress,
    )
    write_png(curves_figure(joined), folder / "deletion.png")
    images, all_maps, all_targets = (
        torch.cat(pictures),
        {m: torch.cat(p) for m, p in maps.items()},
        torch.cat(targets),
    )
    roads = road(
        loaded,
        images,
        all_maps,
        all_targets,
        shares=config.road_shares,
        noise=config.road_noise,
        seed=seed,
        batch=batch * 4,
    )
    scores = confidence(loaded, images, all_maps, all_targets, batch=batch * 4)
    areas = {
        m: (float(c.deletion_area.mean()), float(c.insertion_area.mean()))
        for m, c in joined.items()
    }
    table = metric_rows(areas, roads, scores)
    data = {
        "areas": table,
        "fractions": joined[next(iter(joined))].fractions.tolist(),
        "curves": {
            m: {"deletion": c.deletion.tolist(), "insertion": c.insertion.tolist()}
            for m, c in joined.items()
        },
        "road": {
            "shares": list(config.road_shares),
            "noise": config.road_noise,
            "morf": {m: r.morf.tolist() for m, r in roads.items()},
            "lerf": {m: r.lerf.tolist() for m, r in roads.items()},
        },
        "confidence": {
            m: {"drop": c.drop.tolist(), "increase": c.increase.tolist()} for m, c in scores.items()
        },
    }
    save_json(data, folder / "deletion.json")
    return table


def write_sanity(
    loaded: LoadedModel,
    pictures: list[torch.Tensor],
    targets: list[torch.Tensor],
    methods: Sequence[Method],
    config: SanityConfig,
    batch: int,
    seed: int,
    folder: Path,
    progress: ProgressCallback,
) -> SanityResult:
    from vizcnn.attribution.figures import sanity_figure
    from vizcnn.attribution.sanity import sanity_check

    def maps_of(model: LoadedModel, xs: torch.Tensor, ts: torch.Tensor) -> dict[str, torch.Tensor]:
        return attribute(model, xs, methods, targets=ts, run=RunOptions(batch=batch)).maps

    result = sanity_check(
        loaded,
        torch.cat(pictures),
        torch.cat(targets),
        maps_of,
        stages=config.stages,
        seed=seed,
        progress=progress,
    )
    write_png(sanity_figure(result), folder / "sanity.png")
    save_json(result.to_dict(), folder / "sanity.json")
    return result
