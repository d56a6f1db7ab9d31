"""`vizcnn dream`: DeepDream a photo (or make a zoom video) and record how it was made."""

from __future__ import annotations

from typing import Any

import click

from vizcnn.data.samples import sample_names
from vizcnn.deepdream.dreaming import DreamConfig
from vizcnn.deepdream.zoom import ZoomConfig
from vizcnn.runs.dream import DEFAULT_FPS, DreamRun, dream_file, dream_output

from .common import device_from, echo_warnings, friendly_errors, progress_enabled, run_options
from .model_options import model_options, note_default_layer, open_model
from .options import FINITE_FLOAT, field_options, output_options, precision_options, run_from
from .progress import progress_bar

# every command that takes an image lists the bundled ones
SAMPLES_EPILOG = "Bundled images (IMAGE or --guide as sample:NAME): " + ", ".join(sample_names())

# DreamConfig and ZoomConfig fields, one option each (--octave-scale sets `octave_scale`)
RECIPE_HELP = {
    "octaves": "Octave pyramid levels (fewer on small images).",
    "octave_scale": "Size ratio between octaves.",
    "steps": "Gradient steps per octave.",
    "step_size": "Step in 0..255 pixel units after normalizing the gradient.",
    "jitter": "Random roll of up to this many pixels per step, undone after it.",
    "tile": "Gradient tile side in pixels: memory is bounded by the tile (0 = no tiling; a run "
    "that would not fit in memory is refused before it starts).",
    "grad_norm": "Normalize the gradient by its mean |g| (original) or its std (TF tutorial).",
}
ZOOM_HELP = {
    "frames": "Zoom video: number of frames (with -o out.gif, out.mp4 or a folder).",
    "zoom": "Zoom video: zoom into the centre by this factor per frame.",
    "blend": "Zoom video: mix this share of the previous frame into each dream (0..1; 0.3 "
    "calms flicker).",
}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _summary(run: DreamRun) -> str:
    if not run.made:
        return f"kept {run.output}: it holds this dream already ({run.sidecar})"
    what = _plural(run.frames, "frame") if run.kind != "png" else f"{run.size[1]}x{run.size[0]}"
    return (
        f"wrote {run.output} ({what}, {run.model} {' '.join(run.layers)}, "
        f"{_plural(run.octaves, 'octave')} x {_plural(run.steps, 'step')}, {run.seconds:.1f} s) "
        f"and {run.sidecar}"
    )


@click.command("dream", epilog=SAMPLES_EPILOG)
@click.argument("image")
@model_options
@click.option("-l", "--layer", "layers", multiple=True, metavar="LAYER[:CHANNELS][@WEIGHT]",
              help="Layer to amplify, repeatable; e.g. _blocks.9, _blocks.9:0-15@2, "
              "inception4c:3,7. Default: the model's dream layers.")  # fmt: skip
@field_options(DreamConfig, RECIPE_HELP)
@click.option("--guide", help="Guide image (path or sample:NAME): dream towards its features.")
@field_options(ZoomConfig, ZOOM_HELP, given=True)
@click.option("--fps", type=FINITE_FLOAT, default=DEFAULT_FPS, show_default=True,
              help="Zoom video: frames per second.")  # fmt: skip
@precision_options("dream")
@output_options(
    "dream.png; out.gif / out.mp4 / a folder for a zoom video. An output already made with "
    "these settings is kept; one made with other settings stops the run unless --overwrite.",
    default="dream.png",
    overwrite="Replace an -o made with other settings (image, layers, seed, ...).",
)
@run_options
@friendly_errors
def dream_command(image: str, output: str, overwrite: bool, **options: Any) -> None:
    """DeepDream IMAGE (a path or sample:NAME) to a picture the same size, parameters embedded.

    \b
    Examples:
      vizcnn dream sample:coffee -o dream.png
      vizcnn dream photo.jpg -l _blocks.9:0-15@2 -l _blocks.11 --steps 20 -o dream.png
      vizcnn dream sample:chelsea --frames 24 --zoom 1.05 --blend 0.3 -o zoom.gif

    The same --seed gives the same dream on the same device (on CUDA with --deterministic), and
    the same file as the Python API's dream_file(...) (pixels: dream(..., seed=...)).
    """
    run = run_from(options)  # before the model loads (--deterministic's cuBLAS setting)
    config = DreamConfig(
        layers=tuple(options["layers"]), **{key: options[key] for key in RECIPE_HELP}
    )
    zoom = {key: options[key] for key in ZOOM_HELP if options[key] is not None}
    dream_output(output)  # a wrong name or an unwritable place fails before the model loads
    loaded = open_model(options, device_from(options))
    if not config.layers:
        note_default_layer(loaded, "dream", options)
    with echo_warnings(), progress_bar(progress_enabled(options), unit="step") as progress:
        made = dream_file(
            loaded,
            image,
            output,
            config,
            zoom=ZoomConfig(**zoom) if zoom else None,
            guide=options["guide"],
            fps=options["fps"],
            seed=options["seed"],
            overwrite=overwrite,
            progress=progress,
            run=run,
        )
    click.echo(_summary(made))
