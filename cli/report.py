"""`vizcnn report`: the whole model in one browsable static site (Microscope for your own model)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from vizcnn.core.progress import ProgressCallback
from vizcnn.data.samples import sample_names
from vizcnn.microscope import ArtifactStore, ReportConfig, build_report, plan_report
from vizcnn.microscope.config import DEFAULT_IMAGES, DEFAULT_METHODS, PROJECTIONS

from .common import (
    device_from,
    echo_warnings,
    friendly_errors,
    model_options,
    open_model,
    progress_enabled,
    reuse_freed_memory,
    run_options,
)
from .progress import progress_bar

STAGE_NAMES = {
    "plan": "checking inputs",
    "model": "model card",
    "render": "renders",
    "mine": "top patches",
    "stats": "mean activations",
    "dream": "dreams",
    "attribute": "attribution maps",
    "ablation": "ablation",
}


def _layers(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


@click.command("report")
@model_options
@click.option(
    "--data",
    default="samples",
    show_default=True,
    help="Data mined for top patches and mean activations: a folder of images, a .txt list of "
    "paths, or samples (crops of the bundled photos).",
)
@click.option(
    "--layers",
    default=None,
    metavar="L1,L2,...",
    help="Layers with a page (default: the model's report layers; lite0: _blocks.2,_blocks.6,"
    "_blocks.9; see `vizcnn layers`).",
)
@click.option(
    "--units-per-layer",
    type=int,
    default=ReportConfig.units_per_layer,
    show_default=True,
    help="Channels 0..N-1 of each layer get a render, patches and a mean.",
)
@click.option(
    "--steps",
    type=int,
    default=ReportConfig.steps,
    show_default=True,
    help="Activation-maximization steps per unit (vizcnn render uses 512).",
)
@click.option(
    "--image-size",
    type=int,
    default=ReportConfig.image_size,
    show_default=True,
    help="Rendered picture side in pixels; the network sees it at this size (clipped to the "
    "model's input size).",
)
@click.option("--limit", type=int, default=None, help="Use only the first N images of --data.")
@click.option(
    "--crops",
    type=int,
    default=ReportConfig.crops,
    show_default=True,
    help="samples: crops per bundled photo (16 photos).",
)
@click.option(
    "-k", "k", type=int, default=ReportConfig.k, show_default=True, help="Top patches per unit."
)
@click.option(
    "--projections",
    type=click.Choice(PROJECTIONS),
    default=ReportConfig.projections,
    show_default=True,
    help="Show each patch next to its deconvnet or guided-backprop projection.",
)
@click.option(
    "--images",
    multiple=True,
    metavar="IMG",
    help="Image to dream and attribute (file or sample:NAME); repeat for more "
    f"(default: {' '.join(DEFAULT_IMAGES)}). Samples: {', '.join(sample_names())}.",
)
@click.option("--no-images", is_flag=True, help="No dreams and attribution maps.")
@click.option(
    "--methods",
    default=",".join(DEFAULT_METHODS),
    show_default=True,
    help="Attribution methods, comma-separated (see `vizcnn attribute --help`).",
)
@click.option(
    "--dream-octaves",
    type=int,
    default=ReportConfig.dream_octaves,
    show_default=True,
    help="DeepDream octaves.",
)
@click.option(
    "--dream-steps",
    type=int,
    default=ReportConfig.dream_steps,
    show_default=True,
    help="DeepDream steps per octave.",
)
@click.option(
    "--ablation",
    default=None,
    metavar="OUT/results.json",
    help="Show the table and chart of a `vizcnn ablate` run.",
)
@click.option(
    "--batch",
    type=int,
    default=ReportConfig.batch,
    show_default=True,
    help="Images per forward pass (mining).",
)
@click.option(
    "--self-contained",
    is_flag=True,
    help="Write one index.html with every picture inlined (data: URIs), to mail or archive.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty folder that no report made (its other files are kept).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Site folder; a re-run reuses every finished picture and recomputes only what changed.",
)
@run_options
@friendly_errors
def report_command(
    output: str,
    layers: str | None,
    images: tuple[str, ...],
    no_images: bool,
    methods: str,
    ablation: str | None,
    self_contained: bool,
    force: bool,
    **options: Any,
) -> None:
    """Build a static HTML report of a model: model card, a page per layer, dreams, attributions.

    \b
    Examples (offline, default model efficientnet_lite0 on the bundled samples):
      vizcnn report -o site/                 then open site/index.html
      vizcnn report --layers _blocks.4,_blocks.9 --units-per-layer 8 -o site/
      vizcnn report --images sample:astronaut --images my.jpg -o site/
      vizcnn report --ablation ablation/results.json -o site/
      vizcnn report -m resnet18 --weights none --steps 64 -o random_resnet/

    The index shows the model card (layer table with output shapes, parameters and receptive
    fields; first-layer filters), a strip of units per layer and links to every page. Each layer
    page shows per unit its activation-maximization image, its top-k dataset patches and its
    mean activation on --data. Every picture's provenance is on its page. Each artifact is cached
    under OUT/artifacts/ keyed by its parameters: an interrupted run resumes, and changing one
    option recomputes only what depends on it.
    """
    reuse_freed_memory()  # its renders page-fault their activations back in otherwise
    started = time.perf_counter()
    if images and no_images:
        raise click.UsageError("give --images or --no-images, not both")
    config = ReportConfig(
        layers=_layers(layers),
        units_per_layer=options["units_per_layer"],
        steps=options["steps"],
        image_size=options["image_size"],
        data=options["data"],
        limit=options["limit"],
        crops=options["crops"],
        k=options["k"],
        projections=options["projections"],
        images=() if no_images else (tuple(images) or DEFAULT_IMAGES),
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        dream_octaves=options["dream_octaves"],
        dream_steps=options["dream_steps"],
        ablation=ablation,
        batch=options["batch"],
        seed=options["seed"],
        self_contained=self_contained,
    )
    store = ArtifactStore(output, force=force)  # checks the folder before the model loads
    device = device_from(options)
    loaded = open_model(options, device)
    show = progress_enabled(options)

    @contextmanager
    def stage(name: str, unit: str) -> Iterator[ProgressCallback]:
        title = STAGE_NAMES.get(name, name)
        with progress_bar(show, unit=unit) as bar:

            def report(done: int, total: int, message: str) -> None:
                bar(done, total, f"{title}: {message}")

            yield report

    with stage("plan", "step") as progress:
        plan = plan_report(loaded, config, progress=progress)
    with echo_warnings():  # e.g. a dream on a small image uses fewer octaves: one line each
        result = build_report(loaded, plan, store, stage=stage)
    seconds = time.perf_counter() - started
    timings = ", ".join(f"{name} {value:.0f}s" for name, value in result.seconds.items())
    reused = f", {len(result.reused)} reused" if result.reused else ""
    click.echo(
        f"report of {loaded.name}: {len(result.pages)} page(s), {result.pictures} pictures, "
        f"{len(result.computed)} artifact(s) computed{reused} in {seconds:.0f}s ({timings}); "
        f"open {Path(output) / 'index.html'}"
    )
