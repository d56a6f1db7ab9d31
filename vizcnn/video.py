"""Zoom videos: dream, zoom into the centre, dream again; frames out as GIF (Pillow) or MP4 (ffmpeg).

Each frame after the first starts from the previous frame zoomed by `zoom` about the centre.
`blend` mixes that zoomed previous frame into the new dream, which damps frame-to-frame flicker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from vizcnn.deepdream import DreamConfig, dream
from vizcnn.errors import VizError
from vizcnn.imaging import atomic_write, default_file_mode, to_pil
from vizcnn.models import LoadedModel
from vizcnn.progress import ProgressCallback, no_progress


@dataclass(frozen=True)
class ZoomConfig:
    """How a zoom video is made from dreams; the CLI options map one to one onto these fields."""

    frames: int = 12  # number of frames, the first being a plain dream of the input
    zoom: float = 1.05  # zoom factor about the centre between consecutive frames
    blend: float = 0.0  # share of the zoomed previous frame mixed into each new dream, 0..1

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise VizError(f"frames must be >= 1, got {self.frames}")
        if not 1.0 <= self.zoom <= 4.0:
            raise VizError(f"zoom must be between 1 and 4, got {self.zoom}")
        if not 0.0 <= self.blend <= 1.0:
            raise VizError(f"blend must be between 0 and 1, got {self.blend}")


def zoom_center(image: torch.Tensor, zoom: float) -> torch.Tensor:
    """Crop the central `1/zoom` of `(C, H, W)` or `(B, C, H, W)` and resize it back (bilinear).

    Sub-pixel exact: the crop is an affine resampling, so a zoom of 1.01 on a small image still
    moves content instead of rounding to a zero-pixel crop.
    """
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    theta = torch.zeros(batch.shape[0], 2, 3, device=batch.device, dtype=batch.dtype)
    theta[:, 0, 0] = 1.0 / zoom
    theta[:, 1, 1] = 1.0 / zoom
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0] if image.dim() == 3 else out


def dream_frames(
    loaded: LoadedModel,
    image: torch.Tensor,
    config: DreamConfig | None = None,
    zoom: ZoomConfig | None = None,
    *,
    guide: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the frames `(C, H, W)` in [0, 1] of a zoom video, one dream per frame.

    Args:
        image: `(C, H, W)` in [0, 1], the first frame's input.
        config: dream parameters of every frame.
        zoom: frame count, zoom factor and blend.
        guide, generator: as for `dream`; the generator runs on across frames.
        progress: `progress(done, total, message)` over frames x octaves x steps.

    Example:
        >>> frames = list(dream_frames(loaded, sample_image("coffee"), zoom=ZoomConfig(frames=8)))
    """
    config = config or DreamConfig()
    zoom = zoom or ZoomConfig()
    report = progress or no_progress
    current = image
    for index in range(zoom.frames):

        def frame_progress(done: int, total: int, message: str, _index: int = index) -> None:
            report(
                _index * total + done,
                zoom.frames * total,
                f"frame {_index + 1}/{zoom.frames} {message}",
            )

        dreamed = dream(
            loaded, current, config, guide=guide, generator=generator, progress=frame_progress
        )
        if index > 0 and zoom.blend > 0:
            dreamed = torch.lerp(dreamed, current.to(dreamed.dtype), zoom.blend)
        yield dreamed
        current = zoom_center(dreamed, zoom.zoom).clamp(0, 1)


def mp4_encoder() -> str | None:
    """Path of an ffmpeg executable (from imageio-ffmpeg or PATH), or None if there is none."""
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found]

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


def save_gif(frames: Sequence[torch.Tensor | Image.Image], path: str | Path, fps: float) -> Path:
    """Write `(C, H, W)` frames in [0, 1] as a looping GIF (atomically)."""
    pictures = [f if isinstance(f, Image.Image) else to_pil(f) for f in frames]
    if not pictures:
        raise VizError("no frames to write")
    duration = max(20, round(1000 / fps))  # browsers treat GIF delays under 20 ms as 100 ms
    return atomic_write(
        path,
        lambda file: pictures[0].save(
            file,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=duration,
            loop=0,
        ),
    )


def save_mp4(frames: Sequence[torch.Tensor | Image.Image], path: str | Path, fps: float) -> Path:
    """Write frames as an H.264 MP4 through ffmpeg (atomically); a one-line error without it."""
    encoder = mp4_encoder()
    if encoder is None:
        raise VizError(
            f"no MP4 encoder found (install ffmpeg or imageio-ffmpeg); write {Path(path).with_suffix('.gif').name} "
            "instead, or give a folder to get PNG frames"
        )
    pictures = [(f if isinstance(f, Image.Image) else to_pil(f)).convert("RGB") for f in frames]
    if not pictures:
        raise VizError("no frames to write")
    width, height = pictures[0].size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".mp4", dir=path.parent)
    os.close(handle)
    command = [
        encoder, "-y", "-loglevel", "error",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}",
        "-i", "-",
        "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",  # yuv420p needs even sides
        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
        temp,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command,
            input=b"".join(p.tobytes() for p in pictures),
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            detail = result.stderr.decode(errors="replace").strip().splitlines()
            raise VizError(
                f"ffmpeg failed ({detail[-1] if detail else result.returncode}); write a .gif instead"
            )
        os.chmod(temp, default_file_mode())
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    return path
