"""`vizcnn report`: the whole model in one browsable static site (Microscope for your own model)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from vizcnn.core.progress import ProgressCallback
from vizcnn.data.samples import sample_names
from vizcnn.report import ReportConfig, check_report_folder, report_folder
from vizcnn.report.config import PROJECTIONS, REPORT_BATCH

from .common import device_from, echo_warnings, friendly_errors, run_options
from .memory import reuse_freed_memory
from .model_options import model_options, note_default_layer, open_model
from .options import batch_option, output_options, precision_options, run_from
from .progress import progress_bar

C = ReportConfig  # every default below is the config's own, or its techniques' configs'
D = ReportConfig()
HELP = {
    "data": "Data mined for top patches and mean activations: a folder of images, a .txt list "
    "of paths, or samples (crops of the bundled photos).",
    "layers": "Layers with a page (default: the model's report layers; lite0: _blocks.2,"
    "_blocks.6,_blocks.9; see `vizcnn layers`).",
    "units_per_layer": "Channels 0..N-1 of each layer get a render, patches and a mean.",
    "steps": "Activation-maximization steps per unit (vizcnn render uses 512).",
    "image_size": "Rendered picture side in pixels; the network sees it at this size (clipped "
    "to the model's input size).",
    "diversity": "Renders per unit on its card (1: one; more: pushed apart, Gram diversity).",
    "vote_images": "First N images of --data for each unit's class votes (the classes whose "
    "logit falls most when the channel is zeroed); 0: no votes.",
    "vote_classes": "Classes shown per unit in its votes.",
    "accentuations": "Top exemplars per unit accentuated on its card (feature accentuation); "
    "0: none. Layers with no earlier stage output to hold the photograph get none.",
    "accent_steps": "Steps of each accentuation.",
    "concepts": "k NMF concepts on each layer's concepts page (of its ReLU output); 0: no "
    "concepts pages.",
    "concept_positions": "Cap of the uniform sample of activation positions factorized per "
    "concepts page.",
    "limit": "Use only the first N images of --data.",
    "crops": "samples: crops per bundled photo (16 photos).",
    "k": "Top patches per unit.",
    "projections": "Show each patch next to its deconvnet or guided-backprop projection.",
    "images": "Image to dream and attribute (file or sample:NAME); repeat for more (default: "
    f"{' '.join(C.images)}). Samples: {', '.join(sample_names())}.",
    "no_images": "No dreams and attribution maps.",
    "methods": "Attribution methods, comma-separated (see `vizcnn attribute --help`).",
    "dream_octaves": "DeepDream octaves.",
    "dream_steps": "DeepDream steps per octave.",
    "ablation": "Show the table and chart of a `vizcnn ablate` run.",
    "self_contained": "Write one index.html with every picture inlined (data: URIs), to mail "
    "or archive.",
    "force": "Write into a non-empty folder that no report made (its other files are kept).",
    "output": "Site folder; a re-run reuses every finished picture and recomputes only what "
    "changed.",
}


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


def _opt(flag: str, field: str, **kwargs: Any) -> Any:
    """An option for `field`: its help, and the config's default where the config has it."""
    if field in C.__dataclass_fields__ and not kwargs.get("multiple"):
        kwargs.setdefault("default", getattr(C, field))
    if kwargs.get("default") is not None and not kwargs.get("is_flag"):
        kwargs["show_default"] = True
    return click.option(flag, field, help=HELP[field], **kwargs)


@click.command("report")
@model_options
@_opt("--data", "data")
@_opt("--layers", "layers", default=None, metavar="L1,L2,...")
@_opt("--units-per-layer", "units_per_layer", type=int)
@_opt("--steps", "steps", type=int, default=D.render.steps)
@_opt("--image-size", "image_size", type=int, default=D.render.size)
@_opt("--diversity", "diversity", type=int, default=D.render.diversity)
@_opt("--vote-images", "vote_images", type=int)
@_opt("--vote-classes", "vote_classes", type=int)
@_opt("--accentuations", "accentuations", type=int)
@_opt("--accent-steps", "accent_steps", type=int)
@_opt("--concepts", "concepts", type=int)
@_opt("--concept-positions", "concept_positions", type=int)
@_opt("--limit", "limit", type=int)
@_opt("--crops", "crops", type=int)
@_opt("-k", "k", type=int, default=D.mine.k)
@_opt("--projections", "projections", type=click.Choice(PROJECTIONS))
@_opt("--images", "images", multiple=True, metavar="IMG")
@_opt("--no-images", "no_images", is_flag=True)
@_opt("--methods", "methods", default=",".join(C.methods))
@_opt("--dream-octaves", "dream_octaves", type=int, default=D.dream.octaves)
@_opt("--dream-steps", "dream_steps", type=int, default=D.dream.steps)
@_opt("--ablation", "ablation", metavar="OUT/results.json")
@batch_option(REPORT_BATCH, "Images per forward pass (mining).")
@precision_options("pictures")
@_opt("--self-contained", "self_contained", is_flag=True)
@_opt("--force", "force", is_flag=True)
@output_options(HELP["output"], type=click.Path(file_okay=False))
@run_options
@friendly_errors
def report_command(
    output: str,
    layers: str | None,
    images: tuple[str, ...],
    no_images: bool,
    methods: str,
    force: bool,
    quiet: bool,
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
    page shows per unit a card: its activation-maximization image (--diversity more), its top-k
    dataset patches, the histogram of its activations on --data, the classes it votes for and
    its mean activation, accentuations of its top exemplars; every layer is mined in one pass
    over --data. Each layer also gets a concepts page (--concepts NMF concepts). Every picture's provenance is on its page. Each artifact is cached
    under OUT/artifacts/ keyed by its parameters: an interrupted run resumes, and changing one
    option recomputes only what depends on it.
    """
    reuse_freed_memory()  # its renders page-fault their activations back in otherwise
    started = time.perf_counter()
    if images and no_images:
        raise click.UsageError("give --images or --no-images, not both")
    fields = {name: options.pop(name) for name in list(options) if name in C.__dataclass_fields__}
    config = ReportConfig(
        layers=_split(layers),
        render=replace(
            D.render,
            steps=options.pop("steps"),
            size=options.pop("image_size"),
            diversity=options.pop("diversity"),
        ),
        mine=replace(D.mine, k=options.pop("k")),
        images=() if no_images else (images or C.images),
        methods=_split(methods),
        dream=replace(
            D.dream, octaves=options.pop("dream_octaves"), steps=options.pop("dream_steps")
        ),
        **fields,
    )
    how = run_from(options)
    check_report_folder(output, allow_nonempty=force)  # before the model loads
    loaded = open_model({**options, "quiet": quiet}, device_from(options))
    if not config.layers:
        note_default_layer(loaded, "report", {"quiet": quiet})

    @contextmanager
    def stage(title: str, unit: str) -> Iterator[ProgressCallback]:
        with progress_bar(not quiet, unit=unit) as bar:
            yield lambda done, total, message: bar(done, total, f"{title}: {message}")

    with echo_warnings():  # e.g. a dream on a small image uses fewer octaves: one line each
        run = report_folder(
            loaded,
            output,
            config,
            seed=options["seed"],
            allow_nonempty=force,
            stages=stage,
            run=how,
        )
    timings = ", ".join(f"{name} {value:.0f}s" for name, value in run.stage_seconds.items())
    reused = f", {len(run.reused)} reused" if run.reused else ""
    click.echo(
        f"report of {loaded.name}: {len(run.pages)} page(s), {run.pictures} pictures, "
        f"{len(run.computed)} artifact(s) computed{reused} in "
        f"{time.perf_counter() - started:.0f}s ({timings}); open {Path(output) / 'index.html'}"
    )
