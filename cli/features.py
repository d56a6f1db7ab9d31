"""`vizcnn filters`, `vizcnn featuremaps` and `vizcnn kernels`: look at weights and activations."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from vizcnn.data.samples import resolve_image_argument, sample_names
from vizcnn.features.featuremaps import FeatureMapConfig, check_layers, feature_maps
from vizcnn.features.figures import featuremaps_figure, filters_figure, kernels_figure
from vizcnn.features.filters import FilterConfig, filter_grid
from vizcnn.features.kernels import apply_kernels, classic_kernels, pick_kernels
from vizcnn.io.imaging import resize, save_json, save_png
from vizcnn.io.paths import ensure_writable

from .common import (
    device_from,
    friendly_errors,
    model_options,
    open_model,
    progress_enabled,
    run_options,
)
from .outputs import check_writable_file, model_provenance
from .progress import progress_bar

SAMPLES_EPILOG = "Bundled images (IMAGE = sample:NAME): " + ", ".join(sample_names()) + "."


@click.command("filters")
@model_options
@click.option("-l", "--layer", default=None, help="Conv2d layer (default: the first convolution).")
@click.option(
    "--normalize",
    type=click.Choice(["global", "per-filter"]),
    default="global",
    show_default=True,
    help="Min-max over all filters (colours comparable) or over each filter (shapes visible).",
)
@click.option(
    "--sort",
    type=click.Choice(["norm", "none"]),
    default="none",
    show_default=True,
    help="Order: largest L2 norm first, or the layer's own order.",
)
@click.option(
    "--inputs",
    type=click.Choice(["auto", "rgb", "split", "mean"]),
    default="auto",
    show_default=True,
    help="auto: RGB tiles for 3 input channels, one grey tile for 1, else a grey tile per input channel (split); mean: one grey tile per filter, the mean over its inputs.",
)
@click.option("--scale", default=8, show_default=True, help="Pixels per weight in the grid.")
@click.option(
    "-o", "--output", default="filters.png", show_default=True, help="PNG (a .json beside it)."
)
@run_options
@friendly_errors
def filters_command(
    layer: str | None,
    normalize: str,
    sort: str,
    inputs: str,
    scale: int,
    output: str,
    **options: Any,
) -> None:
    """A convolution's weights as a labelled grid of tiles (Krizhevsky's AlexNet figure).

    \b
    Examples:
      vizcnn filters -o filters.png                        lite0's 32 stem filters (3x3x3)
      vizcnn filters -m alexnet --sort norm -o alex.png    64 filters of 11x11x3
      vizcnn filters -l _blocks.1._project_conv --inputs mean -o proj.png
    """
    config = FilterConfig(layer, normalize, sort, inputs, scale)  # type: ignore[arg-type]
    target = check_writable_file(output)
    device = device_from(options)
    start = time.perf_counter()
    loaded = open_model(options, device)
    grid = filter_grid(loaded, config)
    picture = filters_figure(grid)
    block = model_provenance(
        "filters",
        loaded,
        {
            "layer": grid.layer,
            "normalize": normalize,
            "sort": sort,
            "inputs": inputs,
            "scale": scale,
        },
        device=device,
        seconds=time.perf_counter() - start,
    )
    save_png(picture, target, {"provenance": block})
    save_json({"provenance": block, "result": grid.to_dict()}, target.with_suffix(".json"))
    out_ch, in_ch, kh, kw = grid.weight_shape
    click.echo(
        f"wrote {target} ({loaded.name} {grid.layer}: {out_ch} filters {kh}x{kw}x{in_ch}, "
        f"{grid.mode}, {normalize}) and {target.with_suffix('.json').name}"
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.#-]+", "_", name)


@click.command("featuremaps", epilog=SAMPLES_EPILOG)
@click.argument("image")
@model_options
@click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    required=True,
    help="Layer to show, repeatable (names: `vizcnn layers`).",
)
@click.option(
    "--top", default=16, show_default=True, help="Channels per layer, by mean activation."
)
@click.option("--overlay", is_flag=True, help="Draw each map over the input image.")
@click.option("--cmap", default="viridis", show_default=True, help="Matplotlib colour map.")
@click.option("-o", "--output", required=True, help="Output folder: one PNG per layer + JSON.")
@run_options
@friendly_errors
def featuremaps_command(
    image: str,
    layers: tuple[str, ...],
    top: int,
    overlay: bool,
    cmap: str,
    output: str,
    **options: Any,
) -> None:
    """The activation maps IMAGE (a path or sample:NAME) produces at each layer.

    The strongest channels by mean activation, colour-mapped, one figure per layer.

    \b
    Examples:
      vizcnn featuremaps sample:coffee -l _blocks.2 -l _blocks.9 -o maps/
      vizcnn featuremaps photo.jpg -m resnet18 -l layer2 --top 8 --overlay -o maps/
    """
    import matplotlib

    config = FeatureMapConfig(layers=tuple(layers), top=top)
    if cmap not in matplotlib.colormaps:
        raise click.BadParameter(f"unknown colour map {cmap!r}", param_hint="--cmap")
    folder = ensure_writable(output, "folder")
    device = device_from(options)
    loaded = open_model(options, device)
    check_layers(loaded.module, config.layers)
    picture, name = resolve_image_argument(image, loaded.channels)
    start = time.perf_counter()
    with progress_bar(progress_enabled(options), unit="layer") as progress:
        shown, results = feature_maps(loaded, picture, config, progress=progress)
    block = model_provenance(
        "featuremaps",
        loaded,
        {"layers": list(layers), "top": top, "overlay": overlay, "cmap": cmap},
        data=image,
        device=device,
        seconds=time.perf_counter() - start,
    )
    files = []
    for index, maps in enumerate(results):
        figure = featuremaps_figure(shown, maps, overlay=overlay, cmap=cmap)
        files.append(f"{index:02d}_{_safe(maps.layer)}.png")
        save_png(figure, folder / files[-1], {"provenance": block, "layer": maps.layer})
    save_json(
        {
            "provenance": block,
            "result": [dict(m.to_dict(), file=f) for m, f in zip(results, files, strict=True)],
        },
        folder / "featuremaps.json",
    )
    click.echo(
        f"wrote {len(files)} figures to {folder}/ ({loaded.name}, {name}, top {top} channels) "
        "and featuremaps.json"
    )


@click.command("kernels", epilog=SAMPLES_EPILOG)
@click.argument("image")
@click.option(
    "-k",
    "--kernel",
    "kernels",
    multiple=True,
    help="Only these kernels (repeatable): identity, 'edge (diagonal)', 'edge (4-neighbour)', 'edge (8-neighbour)', sharpen, 'box blur', 'gaussian blur'.",
)
@click.option(
    "--padding",
    type=click.Choice(["replicate", "zeros", "valid"]),
    default="replicate",
    show_default=True,
    help="How conv2d treats the border.",
)
@click.option(
    "--size",
    default=256,
    show_default=True,
    help="Resize so the shorter side has this many pixels (0 = as is).",
)
@click.option("--gray", is_flag=True, help="Convert the image to grayscale first.")
@click.option(
    "-o", "--output", default="kernels.png", show_default=True, help="PNG (a .json beside it)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N, mps.")
@friendly_errors
def kernels_command(
    image: str,
    kernels: tuple[str, ...],
    padding: str,
    size: int,
    gray: bool,
    output: str,
    device: str,
) -> None:
    """Classic hand-made kernels applied to IMAGE with conv2d, each beside its matrix.

    Identity, three edge detectors, sharpen, box blur and Gaussian blur: what one
    convolution does, before a network learns its own kernels.

    \b
    Examples:
      vizcnn kernels sample:coffee -o kernels.png
      vizcnn kernels photo.jpg -k sharpen -k 'edge (8-neighbour)' --gray -o k.png
    """
    from vizcnn.core.devices import resolve_device

    names = pick_kernels(list(kernels))
    if size < 0:
        raise click.BadParameter(f"size must be >= 0, got {size}", param_hint="--size")
    target = check_writable_file(output)
    where = resolve_device(device)
    start = time.perf_counter()
    picture, _ = resolve_image_argument(image, 1 if gray else 3)
    if size:
        height, width = picture.shape[-2:]
        scale = size / min(height, width)
        new = (max(1, round(height * scale)), max(1, round(width * scale)))
        picture = resize(picture.unsqueeze(0), new)[0].clamp(0, 1)
    picture = picture.to(where)
    every = classic_kernels(picture.dtype, where)
    chosen = {name: every[name] for name in names}  # in the order asked for
    outputs = apply_kernels(picture, chosen, padding)  # type: ignore[arg-type]
    figure = kernels_figure(
        picture.cpu(),
        {n: k.cpu() for n, k in chosen.items()},
        {n: o.cpu() for n, o in outputs.items()},
    )
    block = model_provenance(
        "kernels",
        None,
        {"kernels": names, "padding": padding, "size": size, "gray": gray},
        data=image,
        device=where,
        seconds=time.perf_counter() - start,
    )
    save_png(figure, target, {"provenance": block})
    result = {
        name: {
            "kernel": chosen[name].cpu().tolist(),
            "output_range": [float(outputs[name].min()), float(outputs[name].max())],
        }
        for name in names
    }
    save_json({"provenance": block, "result": result}, target.with_suffix(".json"))
    click.echo(f"wrote {target} ({len(names)} kernels on {image}, {padding} padding)")
