"""`vizcnn dream`: DeepDream a photo (or make a zoom video) and record how it was made."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vizcnn.core.precision import AUTO
from vizcnn.data.samples import sample_names
from vizcnn.deepdream.dreaming import DreamConfig
from vizcnn.deepdream.zoom import ZoomConfig
from vizcnn.runs.dream import DEFAULT_FPS, DreamRun, dream_file, dream_output

from .common import (
    device_from,
    echo_warnings,
    friendly_errors,
    model_options_with,
    open_model,
    progress_enabled,
    run_options,
)
from .options import FINITE_FLOAT, F
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


def field_options(config: type, helps: dict[str, str], *, given: bool = False) -> Callable[[F], F]:
    """One option per config field, its default the field's (`given`: None unless given,
    for a config that is made only when one of its options is)."""

    def decorate(func: F) -> F:
        for name, text in reversed(helps.items()):
            default = getattr(config, name)
            kind: Any = FINITE_FLOAT if isinstance(default, float) else type(default)
            if name == "grad_norm":
                kind = click.Choice(["mean", "std"])
            shown = {"help": f"{text}  [default: {default:g}]", "default": None} if given else {}
            flag = "--" + name.replace("_", "-")
            options = {"default": default, "show_default": True, "help": text, **shown}
            func = click.option(flag, type=kind, **options)(func)
        return func

    return decorate


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
@model_options_with("--input-size")
@click.option("-l", "--layer", "layers", multiple=True, metavar="LAYER[:CHANNELS][@WEIGHT]",
              help="Layer to amplify, repeatable; e.g. _blocks.9, _blocks.9:0-15@2, "
              "inception4c:3,7. Default: the model's dream layers.")  # fmt: skip
@field_options(DreamConfig, RECIPE_HELP)
@click.option("--guide", help="Guide image (path or sample:NAME): dream towards its features.")
@field_options(ZoomConfig, ZOOM_HELP, given=True)
@click.option("--fps", type=FINITE_FLOAT, default=DEFAULT_FPS, show_default=True,
              help="Zoom video: frames per second.")  # fmt: skip
@click.option("--amp/--no-amp", default=None,
              help="bfloat16 autocast for the network (the image and its updates stay float32). "
              "Default (neither flag): auto, on where the hardware runs bf16 natively (CPUs with "
              "AVX512-BF16 or AMX, CUDA Ampere+), float32 elsewhere. --amp forces it (a warning "
              "where it cannot run); --no-amp forces float32.")  # fmt: skip
@click.option("--deterministic", is_flag=True,
              help="Deterministic kernels, so that the same seed gives the same dream on CUDA "
              "too (slower; torch warns about any op without one). CPU runs are deterministic "
              "anyway.")  # fmt: skip
@click.option("-o", "--output", default="dream.png", show_default=True,
              help="dream.png; out.gif / out.mp4 / a folder for a zoom video. An output already "
              "made with these settings is kept; one made with other settings stops the run "
              "unless --overwrite.")  # fmt: skip
@click.option("--overwrite", is_flag=True,
              help="Replace an -o made with other settings (image, layers, seed, ...).")  # fmt: skip
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
    config = DreamConfig(
        layers=tuple(options["layers"]),
        amp=AUTO if options["amp"] is None else options["amp"],
        deterministic=options["deterministic"],
        **{key: options[key] for key in RECIPE_HELP},
    )
    zoom = {key: options[key] for key in ZOOM_HELP if options[key] is not None}
    dream_output(output)  # a wrong name or an unwritable place fails before the model loads
    loaded = open_model(options, device_from(options))
    with echo_warnings(), progress_bar(progress_enabled(options), unit="step") as progress:
        run = dream_file(
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
        )
    click.echo(_summary(run))
