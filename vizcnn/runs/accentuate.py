"""`accentuate_files`: feature accentuations written as `vizcnn accentuate` writes them.

One photograph and `out.png`: the accentuated picture, its provenance block (every option,
the seed, the weights digest, the photograph by content) and the unit's activation before and
after in its PNG text chunks. Several photographs and a folder: `STEM.png` per photograph and
`accentuate.json` (the provenance and each picture's numbers), written last. With `figure`,
each picture also gets `STEM_figure.png`: original | accentuated | difference (grey: no
change; the signed difference stretched so its 99th percentile of |change| is half the range).

The run store decides about outputs already there (`vizcnn.runs.store`): all made with these
settings, they are kept and nothing runs; one made with other settings stops the call before
any work in one line unless `overwrite=True`. The photographs are accentuated together (the
chunks of `run.batch` fix the seeds), so a run that is not finished is made again whole.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vizcnn.core.devices import Seed, seed_record
from vizcnn.core.errors import VizError
from vizcnn.core.precision import choose_precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.samples import resolve_image_argument
from vizcnn.hooks import Layer, layer_name
from vizcnn.io.imaging import labeled_sheet, resize, save_json, save_png
from vizcnn.io.paths import ensure_writable, unique_stems
from vizcnn.io.provenance import tensor_digest
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.models.preflight import preflight
from vizcnn.optvis.accent_regularizer import default_reg_layer
from vizcnn.optvis.accentuation import (
    DEFAULT_CROPS,
    DEFAULT_LR,
    DEFAULT_REG_WEIGHT,
    DEFAULT_STEPS,
    AccentuationResult,
    accentuate,
    regularized_crops,
)
from vizcnn.optvis.objectives import LOGITS, Unit
from vizcnn.optvis.rendering import expand_units
from vizcnn.runs.lock import file_lock, folder_lock
from vizcnn.runs.store import model_block, plan_results

__all__ = [
    "MANIFEST",
    "AccentuateRun",
    "accentuate_files",
    "accentuate_output",
    "difference_image",
]

MANIFEST = "accentuate.json"
ImageLike = str | Path | torch.Tensor


@dataclass
class AccentuateRun:
    """What `accentuate_files` did."""

    files: list[Path]  # the accentuated PNGs, one per photograph, in order
    figures: list[Path]  # the side-by-side figures (empty without `figure`)
    manifest: Path | None  # accentuate.json for a folder output, else None
    unit: str  # the unit's name
    reg_layer: str  # the regularized layer, resolved
    start: list[float]  # the unit's objective on each photograph
    end: list[float]  # ... and on each accentuated picture
    precision: str  # what the network ran in
    seconds: float
    made: bool  # False: every output already held these pictures (kept)
    result: AccentuationResult | None = None  # the library's result (None when kept)


def difference_image(original: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
    """`(C, H, W)` picture of `changed - original`: grey where nothing changed, the signed change
    stretched so that the 99th percentile of |change| reaches 0.5 from grey (then clipped)."""
    delta = changed.float() - original.float()
    spread = torch.quantile(delta.abs().flatten(), 0.99).clamp_min(1e-6)
    return (0.5 + 0.5 * delta / spread).clamp(0, 1)


def accentuate_output(output: str | Path, count: int) -> tuple[Path, bool]:
    """The output path checked before any work (and whether it is one `.png`): a `.png` for one
    image, a folder (no suffix) for any number; writable."""
    target = Path(output)
    single = target.suffix.lower() == ".png"
    if single and count > 1:
        raise VizError(
            f"{count} images need a folder as output, not {target.name!r}; "
            "give a folder name (no .png)"
        )
    if target.suffix and not single:
        raise VizError(f"cannot write {target.name!r}; use out.png for one image or a folder")
    ensure_writable(target, "file" if single else "folder", flag="output")
    return target, single


def _fit(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`(C, H, W)` scaled so it covers `size`, centre-cropped to it, float in [0, 1]."""
    picture = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    height, width = picture.shape[-2:]
    scale = max(size[0] / height, size[1] / width)
    covered = (max(size[0], round(height * scale)), max(size[1], round(width * scale)))
    picture = resize(picture[None], covered)[0]
    top, left = (covered[0] - size[0]) // 2, (covered[1] - size[1]) // 2
    return picture[:, top : top + size[0], left : left + size[1]].clamp(0, 1)


def _photographs(
    images: Sequence[ImageLike], channels: int, size: tuple[int, int]
) -> tuple[torch.Tensor, list[str], list[str]]:
    """The photographs fitted to `size` `(B, C, H, W)`, their texts and their file stems."""
    pictures, texts, names = [], [], []
    for image in images:
        if isinstance(image, torch.Tensor):
            picture = image.detach().cpu()
            if picture.dim() != 3:
                raise VizError(f"image must be (C, H, W), got shape {tuple(picture.shape)}")
            text = f"tensor {tensor_digest(picture)}"
            name = "image"
        else:
            picture, name = resolve_image_argument(str(image), channels)
            text = str(image)
        pictures.append(_fit(picture, size))
        texts.append(text)
        names.append(name)
    return torch.stack(pictures), texts, unique_stems(names, "image")


def accentuate_files(
    model: ModelLike,
    images: Sequence[ImageLike] | ImageLike,
    output: str | Path,
    unit: Unit,
    *,
    reg_layer: Layer | None = None,
    reg_weight: float = DEFAULT_REG_WEIGHT,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    crops: int = DEFAULT_CROPS,
    reg_crops: int | None = None,
    distance: str = "l2",
    size: int | tuple[int, int] | None = None,
    figure: bool = False,
    seed: Seed = 0,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> AccentuateRun:
    """Accentuate `unit` in each photograph and write the pictures as `vizcnn accentuate` does.

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        images: paths, `sample:NAME` (bundled photos) or `(C, H, W)` tensors in [0, 1] (uint8
            taken as /255); each is scaled to cover `size` and centre-cropped.
        output: `out.png` for one photograph, a folder for several (or one).
        unit: one unit for every photograph (`"_blocks.9:3"`, an objective; see `accentuate`).
        reg_layer, reg_weight, steps, lr, crops, reg_crops, distance: as for `accentuate`.
        size: the pictures' side or (H, W); None: the model's input size.
        figure: also write `STEM_figure.png` (original | accentuated | difference).
        seed: as for `accentuate`.
        overwrite: redo outputs made with other settings instead of refusing.
        progress: `progress(done, total, message)` over photographs x steps.
        run: how it runs (`RunOptions`: `batch`, `amp`, `deterministic`).

    Example:
        >>> accentuate_files(loaded, ["sample:coffee"], "coffee_b9.png", "_blocks.9:56")
    """
    loaded = as_loaded(model)
    run = as_run_options(run)
    listed = [images] if isinstance(images, (str, Path, torch.Tensor)) else list(images)
    if not listed:
        raise VizError("no images given; name at least one image file or sample:NAME")
    target, single = accentuate_output(output, len(listed))
    side = size if size is not None else loaded.input_size
    shape = (side, side) if isinstance(side, int) else (int(side[0]), int(side[1]))
    if min(shape) < 8:
        raise VizError(f"size {shape} too small; use at least 8 pixels")
    photos, texts, stems = _photographs(listed, loaded.channels, shape)
    objectives = expand_units(loaded, unit)
    if len(objectives) != 1:
        raise VizError(f"{unit!r} selects {len(objectives)} units; accentuate one (LAYER:CHANNEL)")
    unit_layers = list(objectives[0].layers)
    preflight(
        loaded,
        [layer for layer in unit_layers if layer != LOGITS],
        output=LOGITS in unit_layers,
        size=loaded.input_size,
    )
    reg = (
        default_reg_layer(loaded, unit_layers)
        if reg_layer is None or reg_layer == ""
        else layer_name(loaded.module, reg_layer)
    )
    precision = choose_precision(loaded.device, run.amp).name
    options: dict[str, Any] = {
        "unit": objectives[0].name,
        "reg_layer": reg,
        "reg_weight": float(reg_weight),
        "steps": steps,
        "lr": float(lr),
        "crops": crops,
        "reg_crops": regularized_crops(reg_crops, crops),
        "distance": distance,
        "size": f"{shape[1]}x{shape[0]}",
        "batch": run.batch,
        "amp": run.amp,
        "deterministic": run.deterministic,
        "precision": precision,
        "images": texts,
        "image_digests": [tensor_digest(photo) for photo in photos],
    }
    record = seed_record(seed)
    files = [target] if single else [target / f"{stem}.png" for stem in stems]
    figures = [path.with_name(f"{path.stem}_figure.png") for path in files] if figure else []
    manifest = None if single else target / MANIFEST

    def block(seconds: float | None) -> dict[str, Any]:
        data = texts[0] if single else ", ".join(texts)
        return model_block("accentuate", loaded, options, data=data, seed=record, seconds=seconds)

    running = block(None)
    lock = file_lock(target) if single else folder_lock(target)
    with lock:
        outputs = [[path] for path in files + figures] + ([[manifest]] if manifest else [])
        plan = plan_results([(paths, running) for paths in outputs], overwrite=overwrite)
        if len(plan.done) == len(outputs):
            return AccentuateRun(
                files=files, figures=figures, manifest=manifest, unit=options["unit"],
                reg_layer=reg, start=[], end=[], precision=precision, seconds=0.0, made=False,
            )  # fmt: skip
        start = time.perf_counter()
        result = accentuate(
            loaded, photos, objectives[0], reg_layer=reg, reg_weight=reg_weight, steps=steps,
            lr=lr, crops=crops, reg_crops=reg_crops, distance=distance, seed=seed, run=run,
            progress=progress,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        finished = block(seconds)
        for index, path in enumerate(files):
            numbers = {
                "activation_start": float(result.start_values[index]),
                "activation_end": float(result.values[index]),
                "regularizer_end": float(result.regularizer[-1, index]),
            }
            save_png(result.images[index], path, {"provenance": finished, **numbers})
        for index, path in enumerate(figures):
            original, changed = photos[index], result.images[index]
            sheet = labeled_sheet(
                [original, changed, difference_image(original, changed)],
                ["original", "accentuated", "difference"],
                columns=3,
            )
            save_png(sheet, path, {"provenance": finished})
        if manifest is not None:
            save_json(
                {
                    "provenance": finished,
                    "images": [
                        {
                            "image": texts[i],
                            "file": files[i].name,
                            "figure": figures[i].name if figures else None,
                            "activation_start": float(result.start_values[i]),
                            "activation_end": float(result.values[i]),
                            "regularizer_end": float(result.regularizer[-1, i]),
                            "balance": float(result.balance[i]),
                        }
                        for i in range(len(files))
                    ],
                },
                manifest,
            )
    return AccentuateRun(
        files=files,
        figures=figures,
        manifest=manifest,
        unit=options["unit"],
        reg_layer=reg,
        start=result.start_values.tolist(),
        end=result.values.tolist(),
        precision=precision,
        seconds=seconds,
        made=True,
        result=result,
    )
