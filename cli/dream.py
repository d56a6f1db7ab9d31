"""`vizcnn dream`: DeepDream a photo (or make a zoom video) and record how it was made."""

from __future__ import annotations

import shlex
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import torch

import vizcnn
from vizcnn.core.devices import make_generator
from vizcnn.core.errors import VizError
from vizcnn.data.samples import resolve_image_argument
from vizcnn.deepdream.dreaming import DreamConfig, dream, octave_sizes
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.hooks import find_module, parse_layer
from vizcnn.io.imaging import save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.io.video import mp4_encoder, save_gif, save_mp4

from .common import (
    device_from,
    friendly_errors,
    model_options,
    open_model,
    progress_enabled,
    run_options,
)
from .progress import progress_bar


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
    "input_size": "--size",
    "labels": "--labels",
}


@contextmanager
def _echo_warnings() -> Iterator[list[str]]:
    """Show the library's warnings (e.g. fewer octaves) as plain `warning:` lines, once each."""
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield seen
    for item in caught:
        message = str(item.message)
        if message not in seen:
            seen.append(message)
            click.echo(f"warning: {message}", err=True)


def _command_line(
    image: str, model: str, config: DreamConfig, zoom: ZoomConfig | None, extra: dict[str, Any]
) -> str:
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
    if config.amp:
        parts.append("--amp")
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
    return shlex.join(parts)


@click.command("dream")
@click.argument("image")
@model_options
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
@click.option("--octave-scale", default=1.4, show_default=True, help="Size ratio between octaves.")
@click.option("--steps", default=10, show_default=True, help="Gradient steps per octave.")
@click.option(
    "--step-size",
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
    help="Gradient tile side in pixels: memory is bounded by the tile (0 = no tiling).",
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
    default=1.05,
    show_default=True,
    help="Zoom video: zoom into the centre by this factor per frame.",
)
@click.option("--fps", default=12.0, show_default=True, help="Zoom video: frames per second.")
@click.option(
    "--blend",
    default=0.0,
    show_default=True,
    help="Zoom video: mix this share of the previous frame into each dream (0..1; 0.3 calms flicker).",
)
@click.option(
    "--amp", is_flag=True, help="bfloat16 autocast on CUDA (ignored, with a warning, elsewhere)."
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
    amp: bool,
    output: str,
    **options: Any,
) -> None:
    """DeepDream IMAGE (a path or sample:NAME) to a picture the same size, parameters embedded.

    \b
    Examples:
      vizcnn dream sample:coffee -o dream.png
      vizcnn dream photo.jpg -l _blocks.9:0-15@2 -l _blocks.11 --steps 20 -o dream.png
      vizcnn dream sample:chelsea --frames 24 --zoom 1.05 --blend 0.3 -o zoom.gif
    """
    config = DreamConfig(
        layers=tuple(layers),
        octaves=octaves,
        octave_scale=octave_scale,
        steps=steps,
        step_size=step_size,
        jitter=jitter,
        tile=tile,
        grad_norm="std" if grad_norm == "std" else "mean",
        amp=amp,
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
        find_module(loaded.module, parse_layer(layer_target.layer).name)
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
    }
    metadata: dict[str, Any] = {
        "software": f"vizcnn {vizcnn.__version__}",
        "technique": "dream",
        "command": _command_line(image, loaded.name, config, zoom_config, extra),
        "model": loaded.name,
        "weights": loaded.weights,
        "image": image,
        "image_size": [int(height), int(width)],
        **{k: v for k, v in asdict(config).items() if k != "layers"},
        "layers": [t.spec for t in targets],
        "guide": guide,
        "seed": options["seed"],
        "device": str(device),
    }
    if zoom_config is not None:
        metadata.update(asdict(zoom_config), fps=fps)
    start = time.perf_counter()
    results = []
    with _echo_warnings(), progress_bar(progress_enabled(options), unit="step") as progress:
        sizes = octave_sizes(loaded, (height, width), config)
        metadata["octave_sizes"] = [list(s) for s in sizes]
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
                        {**metadata, "frame": index},
                    )
                else:
                    results.append(frame.cpu())
    metadata["seconds"] = round(time.perf_counter() - start, 2)
    if target.kind == "png":
        save_png(results[0], target.path, metadata)
    elif target.kind == "gif":
        save_gif(results, target.path, fps)
    elif target.kind == "mp4":
        save_mp4(results, target.path, fps)
    save_json(metadata, target.sidecar)
    what = f"{frames} frames" if video else f"{width}x{height}"
    click.echo(
        f"wrote {target.path} ({what}, {loaded.name} {' '.join(metadata['layers'])}, "
        f"{len(sizes)} octaves x {steps} steps, {metadata['seconds']:.1f} s) and {target.sidecar.name}"
    )
