"""`vizcnn dream`: DeepDream a photo (or make a zoom video) and record how it was made."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import torch

from vizcnn.core.devices import make_generator
from vizcnn.core.errors import VizError
from vizcnn.core.precision import AUTO, choose_precision
from vizcnn.data.samples import resolve_image_argument, sample_names
from vizcnn.deepdream.dreaming import DreamConfig, check_memory, dream, octave_sizes
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.hooks import find_module, parse_layer
from vizcnn.io.imaging import save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.io.provenance import provenance
from vizcnn.io.video import mp4_encoder, save_gif, save_mp4

from .common import (
    device_from,
    echo_warnings,
    friendly_errors,
    model_options_with,
    open_model,
    progress_enabled,
    run_options,
)
from .options import FINITE_FLOAT
from .progress import progress_bar

# every command that takes an image lists the bundled ones
SAMPLES_EPILOG = "Bundled images (IMAGE or --guide as sample:NAME): " + ", ".join(sample_names())


@dataclass(frozen=True)
class DreamOutput:
    """Where and how the result is written (the parts of the command that are not the dream)."""

    path: Path  # .png still; .gif/.mp4 video; a folder (no suffix) for numbered PNG frames
    fps: float  # video frame rate

    @property
    def kind(self) -> str:
        suffix = self.path.suffix.lower()
        if suffix in {".png", ".gif", ".mp4"}:
            return suffix[1:]
        if suffix == "" or self.path.is_dir():
            return "frames"
        raise VizError(
            f"cannot write {self.path.name!r}; use .png for a dream, .gif or .mp4 for a video, "
            "or a folder for PNG frames"
        )

    @property
    def sidecar(self) -> Path:
        return self.path / "dream.json" if self.kind == "frames" else self.path.with_suffix(".json")


# model_options values that change the model, and their flags (for the recorded command).
_MODEL_FLAGS = {
    "weights": "--weights",
    "arch": "--arch",
    "mean": "--mean",
    "std": "--std",
    "input_size": "--input-size",
    "labels": "--labels",
}


def _command_line(
    image: str, model: str, config: DreamConfig, zoom: ZoomConfig | None, extra: dict[str, Any]
) -> list[str]:
    """The command that remakes this dream (layers resolved, so new defaults do not change it)."""
    parts = ["vizcnn", "dream", image, "-m", model, *extra["model_args"]]
    for spec in extra["layers"]:
        parts += ["-l", spec]
    parts += [
        "--octaves", str(config.octaves), "--octave-scale", f"{config.octave_scale:g}",
        "--steps", str(config.steps), "--step-size", f"{config.step_size:g}",
        "--jitter", str(config.jitter), "--tile", str(config.tile),
        "--grad-norm", config.grad_norm,
    ]  # fmt: skip
    # the precision actually used, pinned: the same command on this machine remakes this dream
    parts.append("--amp" if extra["precision"] == "bfloat16" else "--no-amp")
    if config.deterministic:
        parts.append("--deterministic")
    if extra.get("guide"):
        parts += ["--guide", str(extra["guide"])]
    if zoom is not None:
        parts += [
            "--frames",
            str(zoom.frames),
            "--zoom",
            f"{zoom.zoom:g}",
            "--blend",
            f"{zoom.blend:g}",
        ]
        parts += ["--fps", f"{extra['fps']:g}"]
    parts += [
        "--seed",
        str(extra["seed"]),
        "--device",
        str(extra["device"]),
        "-o",
        str(extra["output"]),
    ]
    return parts


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@click.command("dream", epilog=SAMPLES_EPILOG)
@click.argument("image")
@model_options_with("--input-size")
@click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    metavar="LAYER[:CHANNELS][@WEIGHT]",
    help="Layer to amplify, repeatable; e.g. _blocks.9, _blocks.9:0-15@2, inception4c:3,7. Default: the model's dream layers.",
)
@click.option(
    "--octaves", default=4, show_default=True, help="Octave pyramid levels (fewer on small images)."
)
@click.option(
    "--octave-scale",
    type=FINITE_FLOAT,
    default=1.4,
    show_default=True,
    help="Size ratio between octaves.",
)
@click.option("--steps", default=10, show_default=True, help="Gradient steps per octave.")
@click.option(
    "--step-size",
    type=FINITE_FLOAT,
    default=1.5,
    show_default=True,
    help="Step in 0..255 pixel units after normalizing the gradient.",
)
@click.option(
    "--jitter",
    default=32,
    show_default=True,
    help="Random roll of up to this many pixels per step, undone after it.",
)
@click.option(
    "--tile",
    default=512,
    show_default=True,
    help="Gradient tile side in pixels: memory is bounded by the tile (0 = no tiling; a run "
    "that would not fit in memory is refused before it starts).",
)
@click.option(
    "--grad-norm",
    type=click.Choice(["mean", "std"]),
    default="mean",
    show_default=True,
    help="Normalize the gradient by its mean |g| (original) or its std (TF tutorial).",
)
@click.option(
    "--guide", default=None, help="Guide image (path or sample:NAME): dream towards its features."
)
@click.option(
    "--frames",
    default=1,
    show_default=True,
    help="Zoom video: number of frames (with -o out.gif, out.mp4 or a folder).",
)
@click.option(
    "--zoom",
    type=FINITE_FLOAT,
    default=1.05,
    show_default=True,
    help="Zoom video: zoom into the centre by this factor per frame.",
)
@click.option(
    "--fps",
    type=FINITE_FLOAT,
    default=12.0,
    show_default=True,
    help="Zoom video: frames per second.",
)
@click.option(
    "--blend",
    type=FINITE_FLOAT,
    default=0.0,
    show_default=True,
    help="Zoom video: mix this share of the previous frame into each dream (0..1; 0.3 calms flicker).",
)
@click.option(
    "--amp/--no-amp",
    default=None,
    help="bfloat16 autocast for the network (the image and its updates stay float32). Default "
    "(neither flag): auto, on where the hardware runs bf16 natively (CPUs with AVX512-BF16 or "
    "AMX, CUDA Ampere+), float32 elsewhere. --amp forces it (a warning where it cannot run); "
    "--no-amp forces float32.",
)
@click.option(
    "--deterministic",
    is_flag=True,
    help="Deterministic kernels, so that the same seed gives the same dream on CUDA too "
    "(slower; torch warns about any op without one). CPU runs are deterministic anyway.",
)
@click.option(
    "-o",
    "--output",
    default="dream.png",
    show_default=True,
    help="dream.png; out.gif / out.mp4 / a folder with --frames.",
)
@run_options
@friendly_errors
def dream_command(
    image: str,
    layers: tuple[str, ...],
    octaves: int,
    octave_scale: float,
    steps: int,
    step_size: float,
    jitter: int,
    tile: int,
    grad_norm: str,
    guide: str | None,
    frames: int,
    zoom: float,
    fps: float,
    blend: float,
    amp: bool | None,
    deterministic: bool,
    output: str,
    **options: Any,
) -> None:
    """DeepDream IMAGE (a path or sample:NAME) to a picture the same size, parameters embedded.

    \b
    Examples:
      vizcnn dream sample:coffee -o dream.png
      vizcnn dream photo.jpg -l _blocks.9:0-15@2 -l _blocks.11 --steps 20 -o dream.png
      vizcnn dream sample:chelsea --frames 24 --zoom 1.05 --blend 0.3 -o zoom.gif

    The same --seed gives the same dream on the same device (on CUDA with --deterministic).
    """
    if deterministic:  # cuBLAS reads it when CUDA starts, before the model loads
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    config = DreamConfig(
        layers=tuple(layers),
        octaves=octaves,
        octave_scale=octave_scale,
        steps=steps,
        step_size=step_size,
        jitter=jitter,
        tile=tile,
        grad_norm="std" if grad_norm == "std" else "mean",
        amp=AUTO if amp is None else amp,
        deterministic=deterministic,
    )
    target = DreamOutput(Path(output), fps)
    if fps <= 0:
        raise VizError(f"fps must be > 0, got {fps}")
    video = target.kind != "png"
    if not video and frames != 1:
        raise VizError(
            f"--frames {frames} makes a video; write it with -o out.gif, out.mp4 or a folder"
        )
    if target.kind == "mp4" and mp4_encoder() is None:
        raise VizError(
            f"no MP4 encoder found (install ffmpeg or imageio-ffmpeg); use -o {target.path.with_suffix('.gif')} or a folder for PNG frames"
        )
    ensure_writable(target.path, "folder" if target.kind == "frames" else "file")
    zoom_config = ZoomConfig(frames=frames, zoom=zoom, blend=blend) if video else None
    device = device_from(options)
    loaded = open_model(options, device)
    picture, _ = resolve_image_argument(image, loaded.channels)
    # 8-bit in, 8-bit out: a uint8 input keeps a 4096x4096 dream 150 MB smaller.
    picture = picture.mul_(255).round_().to(torch.uint8)
    guide_image = resolve_image_argument(guide, loaded.channels)[0] if guide else None
    generator = make_generator(options["seed"], "cpu")  # CPU rolls: same seed, same rolls anywhere
    height, width = picture.shape[-2:]
    targets = config.targets(loaded)
    for layer_target in targets:  # a wrong name fails here, before any progress bar is drawn
        find_module(loaded.module, parse_layer(layer_target.name).name)
    model_args: list[str] = []
    for key, flag in _MODEL_FLAGS.items():
        if options.get(key) is not None:
            model_args += [flag, str(options[key])]
    if options.get("trust_checkpoint"):
        model_args.append("--trust-checkpoint")
    extra = {
        "model_args": model_args,
        "layers": [t.spec for t in targets],
        "guide": guide,
        "fps": fps,
        "seed": options["seed"],
        "device": str(device),
        "output": output,
        "precision": choose_precision(device, config.amp).name,
    }
    options_used: dict[str, Any] = {
        **{k: v for k, v in asdict(config).items() if k != "layers"},
        "layers": [t.spec for t in targets],
        "guide": guide,
        "image_size": f"{width}x{height}",
        "precision": extra["precision"],  # what the network ran in (amp is what was asked)
    }
    if zoom_config is not None:
        options_used.update(asdict(zoom_config), fps=fps)
    warning = check_memory(loaded, (int(height), int(width)), config)
    if warning and progress_enabled(options):
        click.echo(f"warning: {warning}", err=True)

    def block(seconds: float | None) -> dict[str, Any]:
        return provenance(
            technique="dream",
            model_name=loaded.name,
            weights=loaded.weights,
            module=loaded.module,
            normalization=loaded.normalization,
            options=options_used,
            data=image,
            seed=options["seed"],
            device=device,
            dtype=loaded.dtype,
            seconds=seconds,
            command=_command_line(image, loaded.name, config, zoom_config, extra),
        )

    start = time.perf_counter()
    results = []
    with echo_warnings(), progress_bar(progress_enabled(options), unit="step") as progress:
        sizes = octave_sizes(loaded, (height, width), config)
        options_used["octave_sizes"] = [f"{w}x{h}" for h, w in sizes]
        running = block(None)
        if zoom_config is None:
            still = dream(
                loaded, picture, config, guide=guide_image, generator=generator, progress=progress
            )
            results.append(still.cpu())
        else:
            frames_iter = dream_frames(
                loaded,
                picture,
                config,
                zoom_config,
                guide=guide_image,
                generator=generator,
                progress=progress,
            )
            for index, frame in enumerate(frames_iter):
                if target.kind == "frames":  # written as they come: an interrupted run keeps them
                    save_png(
                        frame.cpu(),
                        target.path / f"frame_{index:04d}.png",
                        {"provenance": running, "frame": index},
                    )
                else:
                    results.append(frame.cpu())
    seconds = time.perf_counter() - start
    finished = block(seconds)
    if target.kind == "png":
        save_png(results[0], target.path, {"provenance": finished})
    elif target.kind == "gif":
        save_gif(results, target.path, fps)
    elif target.kind == "mp4":
        save_mp4(results, target.path, fps)
    save_json({"provenance": finished}, target.sidecar)
    what = _plural(frames, "frame") if video else f"{width}x{height}"
    click.echo(
        f"wrote {target.path} ({what}, {loaded.name} {' '.join(options_used['layers'])}, "
        f"{_plural(len(sizes), 'octave')} x {_plural(steps, 'step')}, {seconds:.1f} s) "
        f"and {target.sidecar}"
    )
