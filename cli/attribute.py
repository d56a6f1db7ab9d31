"""`vizcnn attribute`: attribution maps for images, one figure per image, tensors and a manifest."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.attribution.maps import DEFAULT_BATCH
from vizcnn.attribution.methods import (
    DEFAULT_METHODS,
    LRP,
    LRP_COMPOSITES,
    METHODS,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
    _LayerMethod,
    make_methods,
)
from vizcnn.core.errors import VizError
from vizcnn.core.precision import AUTO
from vizcnn.data.samples import sample_names
from vizcnn.io.paths import ensure_writable
from vizcnn.runs.attribute import DeletionConfig, SanityConfig, attribute_folder

from .common import device_from, friendly_errors, run_options
from .model_options import model_options, note_default_layer, open_model
from .options import FINITE_FLOAT, batch_option, output_options, run_from
from .progress import progress_bar


@click.command("attribute")
@click.argument("images", nargs=-1, required=True)
@model_options
@click.option("--method", "methods", multiple=True, type=click.Choice([*METHODS, "all"]),
              help=f"Method, repeatable; all: every one. Default: {', '.join(DEFAULT_METHODS)}.")  # fmt: skip
@click.option(
    "--all",
    "all_methods",
    is_flag=True,
    help="Every method, as --method all (occlusion, scorecam, ablationcam are the slow ones).",
)
@click.option("--target", "targets", multiple=True,
              help="Class to explain: top1 (default), a name (espresso) or an index (967). "
              "Repeatable: one for every image, or one per image in order.")  # fmt: skip
@click.option(
    "--layer",
    default=None,
    help="Grad-CAM layer (default: the model's last stage output, e.g. layer4; see `vizcnn layers --stages`).",
)
@batch_option(DEFAULT_BATCH, "Images per call of a method.")
@click.option("--baseline", type=FINITE_FLOAT, default=IntegratedGradients.baseline,
              show_default=True, help="Flat grey level in [0, 1] for IG, occlusion and deletion.")  # fmt: skip
@click.option("--ig-steps", default=IntegratedGradients.steps, show_default=True,
              help="Integrated gradients: steps.")  # fmt: skip
@click.option("--smoothgrad-samples", default=SmoothGrad.samples, show_default=True,
              help="SmoothGrad: noisy copies.")  # fmt: skip
@click.option("--smoothgrad-stdev", type=FINITE_FLOAT, default=SmoothGrad.stdev,
              show_default=True, help="SmoothGrad: noise std in [0, 1] pixel units.")  # fmt: skip
@click.option("--occlusion-window", default=Occlusion.window, show_default=True,
              help="Occlusion: square side in pixels (0: a seventh of the image).")  # fmt: skip
@click.option("--occlusion-stride", default=Occlusion.stride, show_default=True,
              help="Occlusion: stride in pixels (0: half the window).")  # fmt: skip
@click.option("--amp/--no-amp", default=None,
              help="Score-CAM's masked forward passes (all of its cost) in bfloat16 autocast. "
              "Default (neither flag): auto, on where the hardware runs bf16 natively (1.9-2.6x "
              "faster on an AVX512-BF16 CPU), float32 elsewhere; --no-amp forces float32. The "
              "other methods always run float32.")  # fmt: skip
@click.option("--lrp-composite", type=click.Choice(list(LRP_COMPOSITES)), default=LRP.composite,
              show_default=True, help="LRP: zennit's rule composite (docs/attribute.md).")  # fmt: skip
@click.option("--deletion", is_flag=True,
              help="Also the faithfulness metrics per method: deletion/insertion curves and "
              "areas, ROAD (MoRF/LeRF), average drop and increase in confidence.")  # fmt: skip
@click.option("--deletion-steps", default=DeletionConfig.steps, show_default=True,
              help="Points on the deletion/insertion curves.")  # fmt: skip
@click.option("--sanity", is_flag=True,
              help="Also the model-randomization sanity check (Adebayo et al. 2018) of the chosen "
              "methods on all images (occlusion makes it slow).")  # fmt: skip
@click.option("--sanity-stages", default=SanityConfig.stages, show_default=True,
              help="Randomization stages, top layer first.")  # fmt: skip
@output_options("Output folder.", default="attribution", type=click.Path(file_okay=False),
                overwrite="Redo a folder whose manifest was made with other settings.")  # fmt: skip
@run_options
@friendly_errors
def attribute_command(
    images: tuple[str, ...],
    methods: tuple[str, ...],
    all_methods: bool,
    targets: tuple[str, ...],
    **options: Any,
) -> None:
    """Attribution maps: which pixels made the model predict its class for each IMAGE.

    IMAGE is a file, a folder (searched recursively) or sample:NAME, one of:
    {samples}.

    \b
    Writes to OUT/: NAME.png (input, top-5, one heat map per method), NAME.pt (the raw
    (C, H, W) maps per method), manifest.json (targets, predictions, warnings, provenance);
    with --deletion deletion.png/.json, with --sanity sanity.png/.json. A folder that already
    holds this run is kept; one made with other settings needs --overwrite.

    \b
    Examples:
      vizcnn attribute sample:coffee -o attr/
      vizcnn attribute sample:coffee sample:chelsea --all --deletion -o attr/
      vizcnn attribute photos/ --method gradcam --layer _blocks.15 --target espresso -o attr/
      vizcnn attribute sample:coffee --method saliency --method guided --sanity -o attr/
      vizcnn attribute sample:coffee --method lrp --lrp-composite alpha-beta -o attr/
      vizcnn attribute sample:coffee sample:chelsea --method gradcam++ --method scorecam \\
        --target 967 --target "tabby" -o attr/
    """
    if all_methods and methods:
        raise click.UsageError("give --method or --all, not both")
    all_methods = all_methods or "all" in methods
    names = list(METHODS) if all_methods else list(dict.fromkeys(methods or DEFAULT_METHODS))
    ensure_writable(options["output"], "folder")
    loaded = open_model(options, device_from(options))
    if options["layer"] is None and any(issubclass(METHODS[n], _LayerMethod) for n in names):
        note_default_layer(loaded, "gradcam", options)
    settings = {
        "layer": options["layer"],
        "baseline": options["baseline"],
        "steps": options["ig_steps"],
        "samples": options["smoothgrad_samples"],
        "stdev": options["smoothgrad_stdev"],
        "seed": options["seed"],
        "window": options["occlusion_window"],
        "stride": options["occlusion_stride"],
        "composite": options["lrp_composite"],
        "amp": AUTO if options["amp"] is None else options["amp"],
    }
    if all_methods:  # every method that applies to this model; the others say why, one line each
        chosen = []
        for name in names:
            try:
                chosen += make_methods(loaded, [name], **settings)
            except VizError as refusal:
                click.echo(f"note: {name} skipped: {refusal}", err=True)
    else:
        chosen = make_methods(loaded, names, **settings)
    deletion = DeletionConfig(options["deletion_steps"], options["baseline"])
    with progress_bar(not options["quiet"], unit="map") as progress:
        run = attribute_folder(
            loaded,
            images,
            options["output"],
            chosen,
            targets=_targets(targets),
            deletion=deletion if options["deletion"] else None,
            sanity=SanityConfig(options["sanity_stages"]) if options["sanity"] else None,
            seed=options["seed"],
            overwrite=options["overwrite"],
            progress=progress,
            run=run_from(options),
        )
    for line in run.warnings:
        click.echo(f"warning: {line}", err=True)
    for table in (run.deletion_table(), run.sanity.table() if run.sanity else ""):
        if table:
            click.echo(table)
    kept = " (already there with these settings)" if run.skipped else ""
    click.echo(f"{len(run.names)} image(s) x {len(run.methods)} method(s) -> {run.folder}/{kept}")


def _targets(given: tuple[str, ...]) -> str | list[str]:
    """One --target for every image, or one per image (`attribute_folder` checks the count)."""
    if not given:
        return "top1"
    return given[0] if len(given) == 1 else list(given)


attribute_command.help = (attribute_command.help or "").replace(
    "{samples}", ", ".join(sample_names())
)
