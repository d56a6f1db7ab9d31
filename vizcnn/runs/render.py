"""`render_folder`: a render run written to a folder, resumable, as `vizcnn render` writes it.

The folder holds one PNG per unit (`{layer}_c0003.png`, provenance in its text chunks),
`sheet.png` (every unit labelled with its final value) and `manifest.json`. A unit whose PNG is
already there with the same settings is skipped (`vizcnn.runs.store`), so a run that was
stopped goes on where it stopped, with the pictures an uninterrupted run makes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vizcnn.core.devices import Seed, seed_record
from vizcnn.core.errors import VizError
from vizcnn.core.precision import choose_precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.core.units import parse_unit
from vizcnn.io.imaging import labeled_sheet, load_image, read_png_metadata, save_json, save_png
from vizcnn.io.paths import ensure_writable, safe_stem
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.optvis.config import DEFAULT_BATCH, RenderConfig
from vizcnn.optvis.objectives import Objective, channel, class_logit, layer_l2, neuron
from vizcnn.optvis.rendering import layer_channels, render_iter
from vizcnn.optvis.transforms import standard_transforms
from vizcnn.runs.lock import folder_lock
from vizcnn.runs.store import model_block, plan_results

__all__ = [
    "RenderRun",
    "RenderUnit",
    "channel_units",
    "class_units",
    "layer_unit",
    "render_folder",
    "render_units",
]


@dataclass(frozen=True)
class RenderUnit:
    """One thing to render and the files it goes to."""

    objective: Objective  # what the image maximizes
    stem: str  # file name without `.png` (a diversity copy adds `_k`)
    label: str  # caption on the sheet and `unit` in the manifest
    kind: str = "objective"  # channel | neuron | class | layer | objective
    layer: str | None = None  # the unit's layer (None for classes and composed objectives)


@dataclass
class RenderRun:
    """What `render_folder` did: files, final values, and how many units were (re)made."""

    folder: Path
    units: list[RenderUnit]
    files: list[str]  # every unit's PNG names in order (diversity copies `_0`, `_1`, ...)
    values: list[float | None]  # final objective value per file
    rendered: int  # units rendered by this call
    skipped: int  # units already in the folder with these settings
    replaced: int  # units re-rendered because they were made with other settings
    seconds: float
    precision_note: str = ""  # why the network ran in another precision than asked, if it did
    config: RenderConfig = field(default_factory=RenderConfig)  # as it ran (`auto` resolved)


def channel_units(
    model: ModelLike,
    layer: str,
    channels: Sequence[int] | None = None,
    *,
    neuron_at: tuple[int | None, int | None] | None = None,
    weight: float = 1.0,
) -> list[RenderUnit]:
    """One unit per channel of `layer` (its mean), or per neuron with `neuron_at=(y, x)`.

    Args:
        layer: a layer in the unit grammar, `name[#k]` (see `vizcnn layers`).
        channels: channel indices, each once in the given order (None: every channel).
        neuron_at: render one position of each channel's map instead; `(None, None)` is the
            centre.
        weight: scales each objective (recorded in the label, so a resume with another weight
            is noticed).

    Example:
        >>> units = channel_units(loaded, "_blocks.9", [3, 17])
    """
    count = layer_channels(model, layer)
    indices = tuple(range(count)) if channels is None else tuple(int(c) for c in channels)
    for index in indices:
        if not 0 <= index < count:
            raise VizError(
                f"channel {index} out of range for layer {layer!r}; valid: 0..{count - 1}"
            )
    units = []
    for index in dict.fromkeys(indices):
        objective: Objective
        if neuron_at is not None:
            y, x = neuron_at
            objective = neuron(layer, index, y, x)
            where = "" if y is None else f"_y{y}_x{x}"
            stem, kind = f"{safe_stem(layer, 'unit')}_n{index:04d}{where}", "neuron"
        else:
            objective = channel(layer, index)
            stem, kind = f"{safe_stem(layer, 'unit')}_c{index:04d}", "channel"
        label = f"{layer}:{index}"
        if weight != 1.0:
            objective = weight * objective
            label += f"@{weight:g}"
        units.append(RenderUnit(objective, stem, label, kind, layer))
    return units


def class_units(model: ModelLike, classes: Sequence[str | int]) -> list[RenderUnit]:
    """One unit per class logit, by name or index; a class named twice is one unit.

    Example:
        >>> units = class_units(loaded, ["espresso", 1])
    """
    loaded = as_loaded(model)
    units = []
    for index in dict.fromkeys(loaded.class_index(label) for label in classes):
        name = loaded.labels[index] if loaded.labels else str(index)
        stem = f"class_{index:04d}_{safe_stem(name, 'unit')}"
        units.append(RenderUnit(class_logit(index), stem, f"{index} {name}", "class"))
    return units


def layer_unit(layer: str) -> RenderUnit:
    """The whole layer's L2 norm (what DeepDream maximizes) as one unit."""
    return RenderUnit(
        layer_l2(layer), f"{safe_stem(layer, 'unit')}_l2", f"{layer} L2", "layer", layer
    )


def render_units(
    model: ModelLike, units: Sequence[RenderUnit | Objective | str] | RenderUnit | Objective | str
) -> list[RenderUnit]:
    """Render units from what a user writes: `RenderUnit`s as they are; a unit string
    (`"_blocks.9:0-7"`, `"_blocks.9"` for the first 16 channels, `"_blocks.9:3@2"`) one unit
    per channel; any other `Objective` one unit named after it."""
    items = [units] if isinstance(units, (RenderUnit, Objective, str)) else list(units)
    loaded = as_loaded(model)
    result: list[RenderUnit] = []
    for item in items:
        if isinstance(item, RenderUnit):
            result.append(item)
        elif isinstance(item, str):
            spec = parse_unit(item)
            layer = spec.layer_spec
            chosen = spec.channels(layer_channels(loaded, layer)) or ()
            result += channel_units(loaded, layer, chosen, weight=spec.weight)
        else:
            result.append(RenderUnit(item, safe_stem(item.name, "unit"), item.name))
    if not result:
        raise VizError("no units to render; give a unit such as '_blocks.9:0-7'")
    stems = [unit.stem for unit in result]
    if len(set(stems)) != len(stems):
        twice = sorted({stem for stem in stems if stems.count(stem) > 1})
        raise VizError(f"two units would write the same file {twice[0]}.png; give each once")
    return result


def _files(unit: RenderUnit, copies: int) -> list[str]:
    if copies == 1:
        return [f"{unit.stem}.png"]
    return [f"{unit.stem}_{k}.png" for k in range(copies)]


def _options(config: RenderConfig, run: RunOptions, loaded: LoadedModel) -> dict[str, Any]:
    """Every setting that shapes the pictures, for the provenance block (the recipe, the batch
    that fixes the chunk seeds, and the run options recorded as before `RunOptions` existed,
    so folders made then still resume)."""
    options = asdict(config)
    options["batch"] = run.batch_or(DEFAULT_BATCH)
    options["channels_last"] = run.channels_last
    options["check_every"] = run.check_every
    options["deterministic"] = run.deterministic
    chain = config.transform_chain()
    options["transforms"] = (
        "lucid (pad 12, jitter 8, scale 0.9-1.1, rotate 10, jitter 4)"
        if chain == standard_transforms()
        else ", ".join(map(repr, chain))
    )
    options["size"] = list(config.image_size(loaded))
    options["input_size"] = list(config.input_size or loaded.input_size)
    # the precision the network actually ran in, not the request: an `auto` run that used bf16
    # resumes an `amp=True` run's folder, and a float32 run does not mix into a bf16 one
    options["precision"] = choose_precision(loaded.device, run.amp).name
    return options


def _unit_block(block: dict[str, Any], unit: RenderUnit, position: int) -> dict[str, Any]:
    """A unit's provenance: the run's plus which unit, at which position (it fixes the seed)."""
    extra = {"objective": unit.kind, "layer": unit.layer, "unit": unit.label, "position": position}
    return {**block, "options": {**block["options"], **extra}}


def render_folder(
    model: ModelLike,
    units: Sequence[RenderUnit | Objective | str] | RenderUnit | Objective | str,
    folder: str | Path,
    config: RenderConfig | None = None,
    *,
    seed: Seed = 0,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> RenderRun:
    """Render `units` into `folder`: one PNG per unit, `sheet.png`, `manifest.json`.

    Units already in the folder with these settings are kept (resume); one made with other
    settings stops the call before any work (one-line VizError naming the settings) unless
    `overwrite`. PNGs are written atomically as their batch finishes, the sheet and manifest
    last; a second run on the same folder at the same time is refused (`folder_lock`).

    Args:
        model: a `LoadedModel` or a bare `nn.Module`.
        units: unit strings (`"_blocks.9:0-7"`), objectives, or `RenderUnit`s
            (`channel_units`, `class_units`, `layer_unit`).
        folder: output folder (created if missing).
        config: the render's settings (`auto` parameterization resolved for the units).
        seed: initial images and transforms; the same seed gives the same pictures as
            `render(..., seed=seed)` and as an uninterrupted run. A `torch.Generator` is
            recorded by its state (`seed_record`) and drawn from once, as by `render`.
        overwrite: re-render units made with other settings instead of refusing.
        progress: `progress(done, total, message)` in optimizer steps.
        run: how it runs (`RunOptions`), as for `render`; its `batch` (which fixes the chunk
            seeds) and the precision used are recorded, so a resume keeps them.

    Example:
        >>> run = render_folder(loaded, "_blocks.9:0-7", "render/", RenderConfig(steps=256))
        >>> run.files[0], run.values[0]  # ('_blocks.9_c0000.png', 41.3)
    """
    loaded = as_loaded(model)
    options = as_run_options(run)
    planned = render_units(loaded, units)
    config = (config or RenderConfig()).resolved([unit.objective for unit in planned])
    target = Path(folder)
    copies = config.diversity
    block = model_block("render", loaded, _options(config, options, loaded), seed=seed_record(seed))
    ensure_writable(target, "folder", flag="folder")
    with folder_lock(target):
        plan = plan_results(
            [
                ([target / name for name in _files(unit, copies)], _unit_block(block, unit, i))
                for i, unit in enumerate(planned)
            ],
            overwrite=overwrite,
        )
        started = time.perf_counter()
        results = render_iter(
            loaded,
            [unit.objective for unit in planned],
            config,
            seed=seed,
            skip=plan.done,
            progress=progress,
            run=options,
        )
        for result in results:
            for row, position in enumerate(result.unit_index):
                unit = planned[position]
                name = _files(unit, copies)[result.copy[row]]
                metadata = {
                    "provenance": _unit_block(block, unit, position),
                    "unit": unit.label,
                    "value": float(result.values[row]),
                }
                save_png(result.images[row], target / name, metadata)
        files, values, entries = [], [], []
        images: list[torch.Tensor] = []
        labels: list[str] = []
        for unit in planned:
            for name in _files(unit, copies):
                meta = read_png_metadata(target / name)
                final = float(meta["value"]) if "value" in meta else None
                files.append(name)
                values.append(final)
                entries.append({"unit": unit.label, "file": name, "value": final})
                # the PNG holds what `save_png` shows: grey for 1-2 channels, else RGB
                images.append(load_image(target / name, 1 if loaded.channels < 3 else 3))
                labels.append(unit.label if final is None else f"{unit.label} {final:.3g}")
        seconds = time.perf_counter() - started
        block["seconds"] = round(seconds, 3)
        save_png(labeled_sheet(images, labels), target / "sheet.png", {"provenance": block})
        save_json({"provenance": block, "units": entries}, target / "manifest.json")
    return RenderRun(
        folder=target,
        units=planned,
        files=files,
        values=values,
        rendered=len(planned) - len(plan.done),
        skipped=len(plan.done),
        replaced=plan.replaced,
        seconds=seconds,
        precision_note=choose_precision(loaded.device, options.amp).note or "",
        config=config,
    )
