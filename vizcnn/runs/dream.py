"""`dream_file`: a dream (or a zoom video) written as `vizcnn dream` writes it.

The output is a PNG (a still), a `.gif` or `.mp4` (a zoom video) or a folder of numbered PNG
frames, with a JSON sidecar (`dream.json` beside a still, `out.json` beside a video,
`FOLDER/dream.json`) holding the provenance block; a PNG carries the block in its text chunks
too. The block records the `vizcnn dream` command that makes the same file again.

The run store decides about an output that is already there (`vizcnn.runs.store`): made with
these settings (the same image and guide, by content), it is kept and nothing is dreamed; made
with other settings, the call stops before any work in one line naming them unless
`overwrite=True`. A dream is a minute's work at most, but the file is the user's picture: a
changed setting should not silently replace it, and a zoom folder must never mix the frames of
two runs. Files are written atomically, the sidecar last; one run at a time per output
(`file_lock`, `folder_lock`).
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vizcnn.core.devices import Seed, seed_record
from vizcnn.core.errors import VizError
from vizcnn.core.precision import choose_precision
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions, as_run_options
from vizcnn.data.samples import resolve_image_argument
from vizcnn.deepdream.dreaming import DreamConfig, check_memory, dream, octave_sizes
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.hooks import find_module, parse_layer
from vizcnn.io.imaging import save_json, save_png
from vizcnn.io.paths import ensure_writable
from vizcnn.io.provenance import tensor_digest
from vizcnn.io.video import mp4_encoder, save_gif, save_mp4
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded
from vizcnn.runs.lock import file_lock, folder_lock
from vizcnn.runs.store import model_block, plan_results

__all__ = ["DreamOutput", "DreamRun", "dream_file", "dream_output"]

ImageLike = str | Path | torch.Tensor
DEFAULT_FPS = 12.0  # zoom video frame rate
_FRAME = re.compile(r"frame_(\d{4,})\.png")


@dataclass(frozen=True)
class DreamOutput:
    """Where a dream goes and in which form: `png`, `gif`, `mp4` or `frames` (a folder)."""

    path: Path
    kind: str

    @property
    def sidecar(self) -> Path:
        """The JSON file with the provenance block, written last."""
        return self.path / "dream.json" if self.kind == "frames" else self.path.with_suffix(".json")

    def frame(self, index: int) -> Path:
        return self.path / f"frame_{index:04d}.png"


def dream_output(path: str | Path) -> DreamOutput:
    """The output `path` names, checked before any work: writable, with an MP4 encoder for .mp4.

    `.png` is a still, `.gif` / `.mp4` a zoom video, a name without a suffix (or a folder) a
    folder of PNG frames.

    Example:
        >>> dream_output("zoom.gif").kind
        'gif'
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in {".png", ".gif", ".mp4"}:
        kind = suffix[1:]
    elif suffix == "" or target.is_dir():
        kind = "frames"
    else:
        raise VizError(
            f"cannot write {target.name!r}; use .png for a dream, .gif or .mp4 for a video, "
            "or a folder for PNG frames"
        )
    if kind == "mp4" and mp4_encoder() is None:
        raise VizError(
            "no MP4 encoder found (install ffmpeg or imageio-ffmpeg); write "
            f"{target.with_suffix('.gif')} or a folder of PNG frames instead"
        )
    ensure_writable(target, "folder" if kind == "frames" else "file", flag="output")
    return DreamOutput(target, kind)


@dataclass
class DreamRun:
    """What `dream_file` did."""

    output: Path  # the PNG, the video, or the frames folder
    sidecar: Path  # the JSON provenance file beside it
    kind: str  # png | gif | mp4 | frames
    model: str  # the model's name
    frames: int  # 1 for a still
    size: tuple[int, int]  # (H, W) of the picture
    layers: list[str]  # the dream layers, resolved (`_blocks.9:0,1,2@2`)
    octaves: int  # octaves actually dreamed
    steps: int  # steps per octave
    precision: str  # what the network ran in (float32 | bfloat16)
    seconds: float
    made: bool  # False: the output already held this dream, kept as it was
    replaced: bool  # an output made with other settings was replaced (overwrite=True)


# load_model arguments that change the model, and the flags that give them again
_MODEL_FLAGS = {
    "weights": "--weights",
    "arch": "--arch",
    "mean": "--mean",
    "std": "--std",
    "size": "--input-size",
    "labels": "--labels",
}


def _flag_value(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def remake_command(
    loaded: LoadedModel,
    image: str,
    output: str,
    config: DreamConfig,
    layers: list[str],
    zoom: ZoomConfig | None,
    *,
    fps: float,
    guide: str | None,
    seed: int,
    precision: str,
    deterministic: bool,
) -> list[str] | None:
    """The `vizcnn dream` command that makes this file again, layers and precision pinned (so
    new defaults do not change it); None for a model a command cannot load (a bare module)."""
    load = loaded.load_options
    if load is None:
        return None
    # one --seed draws both the random network (--weights none) and the dream; labels given as
    # a list have no file to name: such a run has no one command, and records its own argv
    random_net = str(load.get("weights") or "").lower() == "none"
    if (random_net and load.get("seed") != seed) or isinstance(load.get("labels"), (list, tuple)):
        return None
    parts = ["vizcnn", "dream", image, "-m", str(load["spec"])]
    for key, flag in _MODEL_FLAGS.items():
        if isinstance(load.get(key), (str, int, float, list, tuple)):
            parts += [flag, _flag_value(load[key])]
    if load.get("trust_checkpoint"):
        parts.append("--trust-checkpoint")
    for spec in layers:
        parts += ["-l", spec]
    parts += [
        "--octaves", str(config.octaves), "--octave-scale", f"{config.octave_scale:g}",
        "--steps", str(config.steps), "--step-size", f"{config.step_size:g}",
        "--jitter", str(config.jitter), "--tile", str(config.tile),
        "--grad-norm", config.grad_norm,
    ]  # fmt: skip
    parts.append("--amp" if precision == "bfloat16" else "--no-amp")
    if deterministic:
        parts.append("--deterministic")
    if guide is not None:
        parts += ["--guide", guide]
    if zoom is not None:
        parts += ["--frames", str(zoom.frames), "--zoom", f"{zoom.zoom:g}"]
        parts += ["--blend", f"{zoom.blend:g}", "--fps", f"{fps:g}"]
    parts += ["--seed", str(seed), "--device", str(loaded.device), "-o", output]
    return parts


def _picture(image: ImageLike, channels: int) -> tuple[torch.Tensor, str | None]:
    """An image argument as uint8 `(C, H, W)` and its text (None for a tensor).

    8-bit in, 8-bit out: the output is 8-bit anyway, and a uint8 input keeps a 4096x4096 dream
    150 MB smaller; `dream` dreams a uint8 image exactly as its float `image / 255`.
    """
    if isinstance(image, torch.Tensor):
        picture, text = image.detach().cpu(), None
    else:
        text = str(image)
        picture = resolve_image_argument(text, channels)[0]
    if picture.dtype != torch.uint8:
        picture = picture.float().clamp(0, 1).mul_(255).round_().to(torch.uint8)
    if picture.dim() != 3:
        raise VizError(f"image must be one (C, H, W) picture, got shape {tuple(picture.shape)}")
    return picture, text


def _guide(guide: ImageLike | None, channels: int) -> tuple[torch.Tensor | None, str | None]:
    if guide is None or isinstance(guide, torch.Tensor):
        return guide, None
    return resolve_image_argument(str(guide), channels)[0], str(guide)


def dream_file(
    model: ModelLike,
    image: ImageLike,
    output: str | Path,
    config: DreamConfig | None = None,
    *,
    zoom: ZoomConfig | None = None,
    guide: ImageLike | None = None,
    fps: float = DEFAULT_FPS,
    seed: Seed = 0,
    overwrite: bool = False,
    progress: ProgressCallback = no_progress,
    run: RunOptions | None = None,
) -> DreamRun:
    """DeepDream `image` into `output` as `vizcnn dream` does: the same file for the same seed.

    Args:
        model: a `LoadedModel` (its `load_model` arguments go into the recorded command) or a
            bare `nn.Module`.
        image: a path, `sample:NAME`, or a `(C, H, W)` tensor (uint8, or float in [0, 1]
            rounded to 8 bits as a file would be).
        output: `dream.png` (a still), `zoom.gif` / `zoom.mp4` (a video), or a folder (PNG
            frames, written as they are made).
        config: the dream's settings (`DreamConfig()`: the model's dream layers).
        zoom: frames, zoom and blend of a video; None: a still for `.png`, `ZoomConfig()` for a
            video output. A `.png` takes one frame only.
        guide: a guide image (path, `sample:NAME` or a tensor in [0, 1]), or None.
        fps: video frame rate.
        seed: an int (`vizcnn dream --seed`: rolls from a CPU generator, the same on every
            device) or a `torch.Generator`, as for `dream`.
        overwrite: replace an output made with other settings instead of refusing.
        progress: `progress(done, total, message)` in dream steps.
        run: how it runs (`RunOptions`), as for `dream`; the precision used is recorded.

    Returns:
        A `DreamRun`; `made` is False when `output` already held this dream (kept as it was).

    Example:
        >>> run = dream_file(loaded, "sample:coffee", "dream.png", DreamConfig(steps=20))
        >>> run.output, run.size  # (PosixPath('dream.png'), (400, 600))
        >>> dream_file(loaded, "photo.jpg", "zoom.gif", zoom=ZoomConfig(frames=24, blend=0.3))
    """
    loaded = as_loaded(model)
    config = config or DreamConfig()
    run = as_run_options(run)
    target = dream_output(output)
    if target.kind != "png" and zoom is None:
        zoom = ZoomConfig()
    if target.kind == "png" and zoom is not None and zoom.frames != 1:
        raise VizError(
            f"{zoom.frames} zoom frames make a video; write them to a .gif, .mp4 or a folder, "
            f"not {target.path.name}"
        )
    fps = float(fps)
    if fps <= 0:
        raise VizError(f"fps must be > 0, got {fps:g}")
    video = zoom if target.kind != "png" else None
    picture, image_text = _picture(image, loaded.channels)
    guide_image, guide_text = _guide(guide, loaded.channels)
    height, width = (int(v) for v in picture.shape[-2:])
    targets = config.targets(loaded)
    for layer_target in targets:  # a wrong name fails here, before any work
        find_module(loaded.module, parse_layer(layer_target.name).name)
    layers = [t.spec for t in targets]
    precision = choose_precision(loaded.device, run.amp).name
    warning = check_memory(loaded, (height, width), config)
    if warning:
        warnings.warn(warning, stacklevel=2)
    sizes = octave_sizes(loaded, (height, width), config)
    options: dict[str, Any] = {
        **{k: v for k, v in asdict(config).items() if k != "layers"},
        # recorded as before `RunOptions` existed, so folders made then still resume
        "amp": run.amp,
        "deterministic": run.deterministic,
        "layers": layers,
        "guide": guide_text,
        "image_size": f"{width}x{height}",
        "precision": precision,  # what the network ran in (amp is what was asked)
        # the inputs by content: a changed photo under the same name is another dream
        "image_digest": tensor_digest(picture),
        "guide_digest": None if guide_image is None else tensor_digest(guide_image),
    }
    if video is not None:
        options.update(asdict(video), fps=fps)
    options["octave_sizes"] = [f"{w}x{h}" for h, w in sizes]
    record = seed_record(seed)
    command = None  # (None: this process's command line) unless a command can remake it
    if isinstance(record, int) and image_text is not None and (guide is None or guide_text):
        command = remake_command(
            loaded, image_text, str(output), config, layers, video,
            fps=fps, guide=guide_text, seed=record, precision=precision,
            deterministic=run.deterministic,
        )  # fmt: skip
    data = image_text if image_text is not None else f"tensor {options['image_digest']}"

    def block(seconds: float | None) -> dict[str, Any]:
        return model_block(
            "dream", loaded, options, data=data, seed=record, seconds=seconds, command=command
        )

    frames = 1 if video is None else video.frames
    running = block(None)
    # a still and a video of one name share the sidecar (`x.json`): the sidecar names the lock
    lock = folder_lock(target.path) if target.kind == "frames" else file_lock(target.sidecar)
    with lock:
        files: list[list[Path]] = []  # the picture first: a refusal names it
        if target.kind == "png":
            files.append([target.path])
        elif target.kind == "frames":
            files += [[target.frame(i)] for i in range(frames)]
        files.append([target.sidecar])  # a video has no provenance of its own: its sidecar
        plan = plan_results([(paths, running) for paths in files], overwrite=overwrite)
        kept = len(plan.done) == len(files) and target.path.exists()
        seconds = 0.0
        if not kept:
            seconds = _make(
                loaded, picture, config, run, video, guide_image, seed, target, frames, fps,
                running, block, progress,
            )  # fmt: skip
    return DreamRun(
        output=target.path,
        sidecar=target.sidecar,
        kind=target.kind,
        model=loaded.name,
        frames=frames,
        size=(height, width),
        layers=layers,
        octaves=len(sizes),
        steps=config.steps,
        precision=precision,
        seconds=seconds,
        made=not kept,
        replaced=plan.replaced > 0,
    )


def _make(
    loaded: LoadedModel,
    picture: torch.Tensor,
    config: DreamConfig,
    run: RunOptions,
    zoom: ZoomConfig | None,
    guide: torch.Tensor | None,
    seed: Seed,
    target: DreamOutput,
    frames: int,
    fps: float,
    running: dict[str, Any],
    block: Any,
    progress: ProgressCallback,
) -> float:
    """Dream and write the files (sidecar last); the seconds it took."""
    if target.kind == "frames":
        # the folder stops claiming a finished run first; stale frames of a longer run go too
        target.sidecar.unlink(missing_ok=True)
        for path in target.path.glob("frame_*.png"):
            found = _FRAME.fullmatch(path.name)
            if found and int(found.group(1)) >= frames:
                path.unlink()
    start = time.perf_counter()
    results: list[torch.Tensor] = []
    if zoom is None:
        results.append(
            dream(loaded, picture, config, guide=guide, seed=seed, progress=progress, run=run)
        )
    else:
        made = dream_frames(
            loaded, picture, config, zoom, guide=guide, seed=seed, progress=progress, run=run
        )
        for index, frame in enumerate(made):
            if target.kind == "frames":  # written as they come: an interrupted run keeps them
                save_png(frame.cpu(), target.frame(index), {"provenance": running, "frame": index})
            else:
                results.append(frame.cpu())
    seconds = time.perf_counter() - start
    finished = block(seconds)
    if target.kind == "png":
        save_png(results[0].cpu(), target.path, {"provenance": finished})
    elif target.kind == "gif":
        save_gif(results, target.path, fps)
    elif target.kind == "mp4":
        save_mp4(results, target.path, fps)
    save_json({"provenance": finished}, target.sidecar)
    return seconds
