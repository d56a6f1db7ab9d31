"""Video encoding: frames out as GIF (Pillow) or MP4 (ffmpeg), written atomically."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write, default_file_mode, to_pil


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
