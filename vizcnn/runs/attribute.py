"""`attribute_folder`: attribution maps of image files written to a folder, as `vizcnn attribute`
writes them.

The folder holds, per image, `NAME.png` (the input, its top-5 and one heat map per method) and
`NAME.pt` (the raw `(C, H, W)` maps per method), and `manifest.json` (targets, predictions,
warnings, provenance); with deletion curves `deletion.png/.json`, with the sanity check
`sanity.png/.json`. The whole folder is one result of the run store: a folder whose manifest
holds these settings is kept as it is; one made with other settings stops the call in one line
unless `overwrite`. The manifest is written last, so an interrupted run is made again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vizcnn.attribution.checks import MapWarning, join_warnings
from vizcnn.attribution.classifier import Targets, check_target, label_of
from vizcnn.attribution.maps import DEFAULT_BATCH, MethodsLike, as_methods, attribute, layer_of
from vizcnn.attribution.methods import Method
from vizcnn.attribution.metrics import DEFAULT_SHARES, metric_table
from vizcnn.attribution.sanity import SanityResult
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.datasets import preprocess
from vizcnn.data.samples import resolve_image_argument
from vizcnn.io.imaging import save_json
from vizcnn.io.paths import ensure_writable
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.runs._attribute_files import (
    gather_images,
    image_stems,
    save_maps,
    write_deletion,
    write_png,
    write_sanity,
)
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.store import model_block, plan_results

__all__ = [
    "AttributeRun",
    "DeletionConfig",
    "SanityConfig",
    "attribute_folder",
    "gather_images",
    "image_stems",
]


@dataclass(frozen=True)
class DeletionConfig:
    """Deletion and insertion curves, ROAD (Rong et al. 2022) and the average drop / increase
    in confidence (Chattopadhay et al. 2018) of every method over all the images."""

    steps: int = 16  # the curves have steps + 1 points
    baseline: float = 0.0  # flat grey level in [0, 1] that removed pixels take
    road_shares: tuple[float, ...] = DEFAULT_SHARES  # ROAD: shares of pixels removed
    road_noise: float = 0.01  # ROAD: std of the imputation's noise ([0, 1] pixel units)


@dataclass(frozen=True)
class SanityConfig:
    """The model-randomization sanity check (Adebayo et al. 2018) of every method."""

    stages: int = 6  # randomization stages, top layer first


@dataclass
class AttributeRun:
    """What `attribute_folder` wrote (or found already written with the same settings)."""

    folder: Path
    names: list[str]  # per image: NAME.png and NAME.pt
    methods: list[str]
    targets: list[int]  # class attributed per image
    warnings: list[str]  # one line per finding, images by name
    deletion: dict[str, dict[str, float]] | None  # method -> metric -> value (`deletion_table`)
    sanity: SanityResult | None
    seconds: float
    skipped: bool = False  # the folder already held this run: nothing was computed

    def deletion_table(self) -> str:
        """The faithfulness metrics, one row per method ("" without --deletion): deletion and
        insertion areas, ROAD MoRF/LeRF mean probabilities, average drop and increase in
        confidence (`vizcnn.attribution.metrics.TABLE_COLUMNS`)."""
        return metric_table(self.deletion or {})


def _per_image(loaded: LoadedModel, targets: Targets, count: int) -> bool:
    """Whether `targets` names one class per image (checked now, before any work)."""
    if isinstance(targets, torch.Tensor):
        if targets.dim() == 0:
            return False
        if targets.shape != (count,):
            raise VizError(
                f"targets has shape {tuple(targets.shape)}; give one per image ({count})"
            )
        return True
    if isinstance(targets, (list, tuple)):
        if len(targets) != count:
            raise VizError(
                f"got {len(targets)} targets for {count} images; give one per image, "
                "or one for all of them"
            )
        for target in targets:
            if isinstance(target, (str, int)):
                check_target(loaded, target)
        return True
    if isinstance(targets, (str, int)):
        check_target(loaded, targets)
    return False


def _plain(targets: Targets) -> Any:
    if isinstance(targets, torch.Tensor):
        return targets.tolist()
    return list(targets) if isinstance(targets, (list, tuple)) else targets


def _options(
    methods: Sequence[Method],
    targets: Targets,
    batch: int,
    deletion: DeletionConfig | None,
    sanity: SanityConfig | None,
) -> dict[str, Any]:
    """Every setting that shapes the folder: the methods' own options as `method.option`."""
    options: dict[str, Any] = {
        "methods": [m.name for m in methods],
        "target": _plain(targets),
        "layer": layer_of(methods) or None,
        "batch": batch,
    }
    for method in methods:
        options.update({f"{method.name}.{k}": v for k, v in method.options().items()})
    options["deletion"] = asdict(deletion) if deletion else None
    options["sanity"] = asdict(sanity) if sanity else None
    return options


def _offset(progress: ProgressCallback, before: int, total: int) -> ProgressCallback:
    def report(done: int, _total: int, message: str) -> None:
        progress(before + done, total, message)

    return report


def attribute_folder(
    model: ModelLike,
    images: str | Path | Sequence[str | Path],
    folder: str | Path,
    methods: MethodsLike | None = None,
    *,
    targets: Targets = "top1",
    deletion: DeletionConfig | None = None,
    sanity: SanityConfig | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> AttributeRun:
    """Attribution maps of image files into `folder`, with figures, tensors and a manifest.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        images: files, folders (searched recursively) or `sample:NAME`, read at the model's
            input size and channels.
        folder: output folder (created if missing).
        methods: names and method objects as for `attribute` (default `DEFAULT_METHODS`).
        targets: one class for every image (`top1`, a name or an index), or one per image.
        deletion: also deletion / insertion curves, ROAD and the confidence metrics of every
            method (`deletion.png/.json`; the table in the manifest and `deletion_table`).
        sanity: also the model-randomization sanity check (`sanity.png/.json`).
        seed: the sanity check's re-initialization (SmoothGrad's noise is its own `seed`).
        overwrite: redo a folder made with other settings instead of refusing.
        progress: `progress(done, total, message)`: images x methods, then the curves per
            method, then the sanity stages.
        run: how it runs (`RunOptions`): `batch` images per call of a method (None: 8), as
            for `attribute`; recorded, and it shapes SmoothGrad's maps (each call draws the
            noise for its images from the seed), not the other methods'.

    Example:
        >>> run = attribute_folder(loaded, ["sample:coffee"], "attr/",
        ...                        ["saliency", GradCAM(loaded, "_blocks.15")], deletion=DeletionConfig())
        >>> print(run.deletion_table())
    """
    loaded = as_loaded(model)
    chosen = as_methods(loaded, methods)
    batch = as_run_options(run).batch_or(DEFAULT_BATCH)
    if deletion is not None and deletion.steps < 1:
        raise VizError(f"deletion steps = {deletion.steps} must be at least 1")
    if deletion is not None and (
        not deletion.road_shares or any(not 0 < v < 1 for v in deletion.road_shares)
    ):
        raise VizError(f"ROAD shares {deletion.road_shares} must each lie in (0, 1)")
    if sanity is not None and sanity.stages < 1:
        raise VizError(f"sanity stages = {sanity.stages} must be at least 1")
    files = gather_images(images)
    per_image = _per_image(loaded, targets, len(files))
    names = image_stems(files)
    target = Path(folder)
    started = time.perf_counter()
    block = model_block(
        "attribute",
        loaded,
        _options(chosen, targets, batch, deletion, sanity),
        data=", ".join(
            str(spec) for spec in ([images] if isinstance(images, (str, Path)) else images)
        ),
        seed=seed,
    )
    outputs = [target / f"{n}.{ext}" for n in names for ext in ("png", "pt")]
    for kind, wanted in (("deletion", deletion), ("sanity", sanity)):
        outputs += [target / f"{kind}.{ext}" for ext in ("png", "json")] if wanted else []
    ensure_writable(target, "folder", flag="folder")
    with folder_lock(target):
        plan = plan_results([([target / "manifest.json"], block)], overwrite=overwrite)
        if plan.done and all(path.is_file() for path in outputs):
            return _stored(target, chosen, time.perf_counter() - started)
        # a redo must not leave the old manifest over new maps if it is interrupted
        (target / "manifest.json").unlink(missing_ok=True)
        from vizcnn.attribution.figures import attribution_figure

        entries: list[dict[str, Any]] = []
        found: list[list[MapWarning]] = []  # each batch's warnings, images numbered in it
        sizes: list[int] = []
        maps: dict[str, list[torch.Tensor]] = {m.name: [] for m in chosen}
        chosen_targets: list[torch.Tensor] = []
        pictures: list[torch.Tensor] = []
        total = len(files) * len(chosen)
        for first in range(0, len(files), batch):
            chunk = files[first : first + batch]
            pixels = torch.stack(
                [
                    preprocess(
                        resolve_image_argument(f, loaded.channels)[0],
                        loaded.input_size,
                        loaded.resize_crop,
                    )
                    for f in chunk
                ]
            )
            result = attribute(
                loaded,
                pixels,
                chosen,
                targets=_plain(targets)[first : first + batch] if per_image else targets,
                run=RunOptions(batch=batch),
                progress=_offset(progress, first * len(chosen), total),
            )
            found.append(result.warnings)
            sizes.append(len(chunk))
            for j, name in enumerate(names[first : first + len(chunk)]):
                # clones: a view would save the whole batch's storage in every file
                image_maps = {m: result.maps[m][j].cpu().clone() for m in result.maps}
                index = int(result.targets[j])
                top5 = [
                    (label_of(loaded, int(i)), float(p))
                    for i, p in zip(
                        result.predictions.top_indices[j],
                        result.predictions.top_probs[j],
                        strict=True,
                    )
                ]
                label = label_of(loaded, index)
                figure = attribution_figure(pixels[j], image_maps, top5, label, title=name)
                write_png(figure, target / f"{name}.png")
                save_maps(image_maps, target / f"{name}.pt")
                entries.append(
                    {
                        "image": chunk[j],
                        "figure": f"{name}.png",
                        "maps": f"{name}.pt",
                        "target": index,
                        "target_label": label,
                        "target_probability": float(result.predictions.probabilities[j, index]),
                        "top5": [{"label": lab, "probability": round(p, 5)} for lab, p in top5],
                    }
                )
            chosen_targets.append(result.targets.cpu())
            if deletion or sanity:
                for m in result.maps:
                    maps[m].append(result.maps[m].cpu())
                pictures.append(pixels)
        warnings = join_warnings(found, sizes)  # image numbers across all the batches
        extra: dict[str, Any] = {}
        areas = sanity_result = None
        if deletion:
            areas = write_deletion(
                loaded, pictures, maps, chosen_targets, deletion, batch, seed, target, progress
            )
            extra["deletion"] = {"file": "deletion.json", "areas": areas}
        if sanity:
            sanity_result = write_sanity(
                loaded, pictures, chosen_targets, chosen, sanity, batch, seed, target, progress
            )
            extra["sanity"] = {
                "file": "sanity.json",
                "flagged": sanity_result.flagged,
                "verdicts": sanity_result.verdicts(),
                "threshold": sanity_result.threshold,
            }
        seconds = time.perf_counter() - started
        block["seconds"] = round(seconds, 3)
        manifest = {
            "provenance": block,
            "images": entries,
            "warnings": [w.to_dict(names) for w in warnings],
            **extra,
        }
        save_json(manifest, target / "manifest.json")
    return AttributeRun(
        folder=target,
        names=names,
        methods=[m.name for m in chosen],
        targets=[e["target"] for e in entries],
        warnings=[w.message(names) for w in warnings],
        deletion=areas,
        sanity=sanity_result,
        seconds=seconds,
    )


def _in_order(
    rows: dict[str, dict[str, float]] | None, methods: Sequence[Method]
) -> dict[str, dict[str, float]] | None:
    """The stored table's rows in the methods' order (JSON keeps them sorted)."""
    if rows is None:
        return None
    return {m.name: rows[m.name] for m in methods if m.name in rows}


def _stored(folder: Path, methods: Sequence[Method], seconds: float) -> AttributeRun:
    """The run a folder already holds, read back from its manifest."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    sanity = None
    if manifest.get("sanity"):
        data = json.loads((folder / "sanity.json").read_text(encoding="utf-8"))
        sanity = SanityResult.from_dict(data)
    return AttributeRun(
        folder=folder,
        names=[Path(e["figure"]).stem for e in manifest["images"]],
        methods=[m.name for m in methods],
        targets=[int(e["target"]) for e in manifest["images"]],
        warnings=[w["message"] for w in manifest["warnings"]],
        deletion=_in_order((manifest.get("deletion") or {}).get("areas"), methods),
        sanity=sanity,
        seconds=seconds,
        skipped=True,
    )
