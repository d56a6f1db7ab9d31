"""`vizcnn filters` and `vizcnn featuremaps`: look at weights and activations."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.data.samples import sample_names
from vizcnn.features.featuremaps import FeatureMapConfig
from vizcnn.features.filters import FilterConfig
from vizcnn.io.paths import ensure_writable
from vizcnn.runs.features import featuremaps_folder, filters_file, png_target

from .common import device_from, friendly_errors, run_options
from .model_options import model_options, note_default_layer, open_model
from .progress import progress_bar

SAMPLES_EPILOG = "Bundled images (IMAGE = sample:NAME): " + ", ".join(sample_names()) + "."


@click.command("filters")
@model_options
@click.option("-l", "--layer", default=None, help="Conv2d layer (default: the first convolution).")
@click.option(
    "--normalize",
    type=click.Choice(["global", "per-filter"]),
    default=FilterConfig.normalize,
    show_default=True,
    help="Min-max over all filters (colours comparable) or over each filter (shapes visible).",
)
@click.option(
    "--sort",
    type=click.Choice(["norm", "none"]),
    default=FilterConfig.sort,
    show_default=True,
    help="Order: largest L2 norm first, or the layer's own order.",
)
@click.option(
    "--inputs",
    type=click.Choice(["auto", "rgb", "split", "mean"]),
    default=FilterConfig.inputs,
    show_default=True,
    help="auto: RGB tiles for 3 input channels, one grey tile for 1, else a grey tile per input channel (split); mean: one grey tile per filter, the mean over its inputs.",
)
@click.option(
    "--scale", default=FilterConfig.scale, show_default=True, help="Pixels per weight in the grid."
)
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
    png_target(output)
    loaded = open_model(options, device_from(options))
    run = filters_file(loaded, output, config, seed=options["seed"])
    out_ch, in_ch, kh, kw = run.grid.weight_shape
    click.echo(
        f"wrote {run.path} ({loaded.name} {run.grid.layer}: {out_ch} filters {kh}x{kw}x{in_ch}, "
        f"{run.grid.mode}, {normalize}) and {run.path.with_suffix('.json').name}"
    )


@click.command("featuremaps", epilog=SAMPLES_EPILOG)
@click.argument("image")
@model_options
@click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    help="Layer to show, repeatable (names: `vizcnn layers`; default: the model's report "
    "layers, stages at three depths).",
)
@click.option(
    "--top",
    default=FeatureMapConfig.top,
    show_default=True,
    help="Channels per layer, by mean activation.",
)
@click.option("--overlay", is_flag=True, help="Draw each map over the input image.")
@click.option(
    "--cmap", default=FeatureMapConfig.cmap, show_default=True, help="Matplotlib colour map."
)
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
    config = FeatureMapConfig(layers=tuple(layers), top=top, overlay=overlay, cmap=cmap)
    ensure_writable(output, "folder")
    loaded = open_model(options, device_from(options))
    if not layers:
        note_default_layer(loaded, "report", options)
    with progress_bar(not options["quiet"], unit="layer") as progress:
        run = featuremaps_folder(
            loaded, image, output, config, seed=options["seed"], progress=progress
        )
    click.echo(
        f"wrote {len(run.files)} figures to {run.folder}/ ({loaded.name}, "
        f"{run.name}, top {top} channels) and {run.manifest}"
    )
