"""`vizcnn attribute`: attribution maps for images, one figure per image, tensors and a manifest."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click
import torch

from vizcnn.attribution.checks import MapWarning, join_warnings
from vizcnn.attribution.classifier import label_of
from vizcnn.attribution.methods import METHODS, AttributionConfig, attribute, check_config
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback
from vizcnn.data.datasets import preprocess
from vizcnn.data.samples import list_image_files, resolve_image_argument, sample_names
from vizcnn.io.imaging import atomic_write, save_json
from vizcnn.io.paths import ensure_writable
from vizcnn.io.provenance import provenance

from .common import (
    device_from,
    friendly_errors,
    model_options,
    open_model,
    progress_enabled,
    run_options,
)
from .progress import progress_bar

DEFAULT_METHODS = ("saliency", "ig", "guided", "gradcam")


def gather_images(arguments: tuple[str, ...]) -> list[str]:
    """Every image the arguments name (files, folders, sample:NAME), checked before any work."""
    found: list[str] = []
    for text in arguments:
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
    return found


def _stems(images: list[str]) -> list[str]:
    """Unique, file-safe names per image (coffee, photo, photo_2, ...)."""
    names: list[str] = []
    for text in images:
        stem = text.split(":", 1)[1] if text.startswith("sample:") else Path(text).stem
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "image"
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}_{k}", k + 1
        names.append(name)
    return names


def _write_figure(fig: Any, path: Path) -> None:
    from vizcnn.attribution.figures import figure_png_bytes

    data = figure_png_bytes(fig)
    atomic_write(path, lambda file: file.write(data))


def _save_tensors(maps: dict[str, torch.Tensor], path: Path) -> None:
    atomic_write(path, lambda file: torch.save(maps, file))


def _offset(progress: ProgressCallback, before: int, total: int) -> ProgressCallback:
    def report(done: int, _total: int, message: str) -> None:
        progress(before + done, total, message)

    return report


@click.command("attribute")
@click.argument("images", nargs=-1, required=True)
@model_options
@click.option(
    "--method",
    "methods",
    multiple=True,
    type=click.Choice(list(METHODS)),
    help=f"Method, repeatable. Default: {', '.join(DEFAULT_METHODS)}.",
)
@click.option(
    "--all", "all_methods", is_flag=True, help="Every method (occlusion is the slow one)."
)
@click.option(
    "--target",
    default="top1",
    show_default=True,
    help="Class to explain: top1, a name (espresso) or an index (967).",
)
@click.option("--layer", default=None, help="Grad-CAM layer (default: the model's last Conv2d).")
@click.option("--batch", default=8, show_default=True, help="Images per call of a method.")
@click.option(
    "--baseline",
    default=0.0,
    show_default=True,
    help="Flat grey level in [0, 1] for IG, occlusion and deletion.",
)
@click.option("--ig-steps", default=32, show_default=True, help="Integrated gradients: steps.")
@click.option(
    "--smoothgrad-samples", default=16, show_default=True, help="SmoothGrad: noisy copies."
)
@click.option(
    "--smoothgrad-stdev",
    default=0.15,
    show_default=True,
    help="SmoothGrad: noise std in [0, 1] pixel units.",
)
@click.option(
    "--occlusion-window",
    default=0,
    show_default=True,
    help="Occlusion: square side in pixels (0: a seventh of the image).",
)
@click.option(
    "--occlusion-stride",
    default=0,
    show_default=True,
    help="Occlusion: stride in pixels (0: half the window).",
)
@click.option(
    "--deletion", is_flag=True, help="Also deletion/insertion curves and their areas per method."
)
@click.option(
    "--deletion-steps",
    default=16,
    show_default=True,
    help="Points on the deletion/insertion curves.",
)
@click.option(
    "--sanity",
    is_flag=True,
    help="Also the model-randomization sanity check (Adebayo et al. 2018) of the chosen methods on all images (occlusion makes it slow).",
)
@click.option(
    "--sanity-stages", default=6, show_default=True, help="Randomization stages, top layer first."
)
@click.option(
    "-o",
    "--output",
    default="attribution",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Output folder.",
)
@run_options
@friendly_errors
def attribute_command(
    images: tuple[str, ...],
    methods: tuple[str, ...],
    all_methods: bool,
    output: str,
    deletion: bool,
    deletion_steps: int,
    sanity: bool,
    sanity_stages: int,
    **options: Any,
) -> None:
    """Attribution maps: which pixels made the model predict its class for each IMAGE.

    IMAGE is a file, a folder (searched recursively) or sample:NAME, one of:
    {samples}.

    \b
    Writes to OUT/: NAME.png (input, top-5, one heat map per method), NAME.pt (the raw
    (C, H, W) maps per method), manifest.json (targets, predictions, warnings, provenance);
    with --deletion deletion.png/.json, with --sanity sanity.png/.json.

    \b
    Examples:
      vizcnn attribute sample:coffee -o attr/
      vizcnn attribute sample:coffee sample:chelsea --all --deletion -o attr/
      vizcnn attribute photos/ --method gradcam --layer _blocks.15 --target espresso -o attr/
      vizcnn attribute sample:coffee --method saliency --method guided --sanity -o attr/
    """
    config = AttributionConfig(
        methods=tuple(METHODS) if all_methods else (tuple(methods) or DEFAULT_METHODS),
        target=options.pop("target"),
        layer=options.pop("layer"),
        baseline=options.pop("baseline"),
        ig_steps=options.pop("ig_steps"),
        smoothgrad_samples=options.pop("smoothgrad_samples"),
        smoothgrad_stdev=options.pop("smoothgrad_stdev"),
        occlusion_window=options.pop("occlusion_window"),
        occlusion_stride=options.pop("occlusion_stride"),
        batch=options.pop("batch"),
        seed=options["seed"],
    )
    if all_methods and methods:
        raise click.UsageError("give --method or --all, not both")
    if deletion_steps < 1 or sanity_stages < 1:
        raise VizError("--deletion-steps and --sanity-stages must be at least 1")
    files = gather_images(images)
    folder = Path(output)
    ensure_writable(folder, "folder")
    device = device_from(options)
    loaded = open_model(options, device)
    layer = check_config(loaded, config)
    names = _stems(files)
    start = time.perf_counter()
    manifest_images: list[dict[str, Any]] = []
    all_maps: dict[str, list[torch.Tensor]] = {m: [] for m in config.methods}
    all_targets: list[torch.Tensor] = []
    pictures: list[torch.Tensor] = []
    found: list[list[MapWarning]] = []  # each batch's warnings, images numbered in the batch
    sizes: list[int] = []
    total = len(files) * len(config.methods)
    from vizcnn.attribution.figures import attribution_figure

    with progress_bar(progress_enabled(options), unit="map") as progress:
        for first in range(0, len(files), config.batch):
            chunk = files[first : first + config.batch]
            batch = torch.stack(
                [
                    preprocess(resolve_image_argument(f, loaded.channels)[0], loaded.input_size)
                    for f in chunk
                ]
            )
            result = attribute(
                loaded,
                batch,
                config,
                progress=_offset(progress, first * len(config.methods), total),
            )
            found.append(result.warnings)
            sizes.append(len(chunk))
            for j, name in enumerate(names[first : first + len(chunk)]):
                # clones: a view would save the whole batch's storage in every file
                maps = {m: result.maps[m][j].cpu().clone() for m in config.methods}
                target = int(result.targets[j])
                top5 = [
                    (label_of(loaded, int(i)), float(p))
                    for i, p in zip(
                        result.predictions.top_indices[j],
                        result.predictions.top_probs[j],
                        strict=True,
                    )
                ]
                fig = attribution_figure(batch[j], maps, top5, label_of(loaded, target), title=name)
                _write_figure(fig, folder / f"{name}.png")
                _save_tensors(maps, folder / f"{name}.pt")
                manifest_images.append(
                    {
                        "image": chunk[j],
                        "figure": f"{name}.png",
                        "maps": f"{name}.pt",
                        "target": target,
                        "target_label": label_of(loaded, target),
                        "target_probability": float(result.predictions.probabilities[j, target]),
                        "top5": [{"label": label, "probability": round(p, 5)} for label, p in top5],
                    }
                )
            if deletion or sanity:
                for m in config.methods:
                    all_maps[m].append(result.maps[m].cpu())
                all_targets.append(result.targets.cpu())
                pictures.append(batch)
    warnings = join_warnings(found, sizes)  # image numbers across all the batches
    for warning in warnings:
        click.echo(f"warning: {warning.message(names)}", err=True)
    summary = f"{len(files)} image(s) x {len(config.methods)} method(s) -> {folder}/"
    extra: dict[str, Any] = {}
    if deletion:
        with progress_bar(progress_enabled(options), unit="method") as progress:
            extra["deletion"] = _run_deletion(
                loaded, pictures, all_maps, all_targets, config, deletion_steps, folder, progress
            )
    if sanity:
        with progress_bar(progress_enabled(options), unit="stage") as progress:
            extra["sanity"] = _run_sanity(
                loaded, pictures, all_targets, config, sanity_stages, folder, options, progress
            )
    block = provenance(
        technique="attribute",
        model_name=loaded.name,
        weights=loaded.weights,
        module=loaded.module,
        normalization=loaded.normalization,
        options={**config.__dict__, "deletion": deletion, "sanity": sanity, "layer": layer or None},
        data=", ".join(images),
        seed=options["seed"],
        device=device,
        dtype=loaded.dtype,
        seconds=time.perf_counter() - start,
    )
    manifest = {
        "provenance": block,
        "images": manifest_images,
        "warnings": [w.to_dict(names) for w in warnings],
        **extra,
    }
    save_json(manifest, folder / "manifest.json")
    click.echo(summary)


attribute_command.help = (attribute_command.help or "").replace(
    "{samples}", ", ".join(sample_names())
)


def _run_deletion(
    loaded: Any,
    pictures: list[torch.Tensor],
    maps: dict[str, list[torch.Tensor]],
    targets: list[torch.Tensor],
    config: AttributionConfig,
    steps: int,
    folder: Path,
    progress: ProgressCallback,
) -> dict[str, Any]:
    from vizcnn.attribution.deletion import deletion_curves
    from vizcnn.attribution.figures import curves_figure

    joined = deletion_curves(
        loaded,
        torch.cat(pictures),
        {m: torch.cat(parts) for m, parts in maps.items()},
        torch.cat(targets),
        steps=steps,
        baseline=config.baseline,
        batch=config.batch * 4,
        progress=progress,
    )
    _write_figure(curves_figure(joined), folder / "deletion.png")
    table = {
        m: {
            "deletion_area": float(c.deletion_area.mean()),
            "insertion_area": float(c.insertion_area.mean()),
        }
        for m, c in joined.items()
    }
    data = {
        "areas": table,
        "fractions": joined[next(iter(joined))].fractions.tolist(),
        "curves": {
            m: {"deletion": c.deletion.tolist(), "insertion": c.insertion.tolist()}
            for m, c in joined.items()
        },
    }
    save_json(data, folder / "deletion.json")
    width = max(len(m) for m in table)
    click.echo(
        f"{'method':<{width}}  deletion  insertion   (areas; deletion lower, insertion higher = better)"
    )
    for m, row in table.items():
        click.echo(f"{m:<{width}}  {row['deletion_area']:8.3f}  {row['insertion_area']:9.3f}")
    return {"file": "deletion.json", "areas": table}


def _run_sanity(
    loaded: Any,
    pictures: list[torch.Tensor],
    targets: list[torch.Tensor],
    config: AttributionConfig,
    stages: int,
    folder: Path,
    options: dict[str, Any],
    progress: ProgressCallback,
) -> dict[str, Any]:
    from vizcnn.attribution.figures import sanity_figure
    from vizcnn.attribution.sanity import sanity_check

    def maps_of(model: Any, xs: torch.Tensor, ts: torch.Tensor) -> dict[str, torch.Tensor]:
        return attribute(model, xs, config, targets=ts).maps

    result = sanity_check(
        loaded,
        torch.cat(pictures),
        torch.cat(targets),
        maps_of,
        stages=stages,
        seed=options["seed"],
        progress=progress,
    )
    _write_figure(sanity_figure(result), folder / "sanity.png")
    save_json(result.to_dict(), folder / "sanity.json")
    click.echo(result.table())
    return {"file": "sanity.json", "flagged": result.flagged}
