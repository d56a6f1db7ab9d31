"""Zoom videos: dream, zoom into the centre, dream again.

Each frame after the first starts from the previous frame zoomed by `zoom` about the centre.
`blend` mixes that zoomed previous frame into the new dream, which damps frame-to-frame flicker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vizcnn.core.devices import Seed, as_generator
from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.core.run_options import RunOptions
from vizcnn.deepdream.dreaming import DreamConfig, dream
from vizcnn.models.base import ModelLike, as_loaded


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
    model: ModelLike,
    image: torch.Tensor,
    config: DreamConfig | None = None,
    zoom: ZoomConfig | None = None,
    *,
    guide: torch.Tensor | None = None,
    seed: Seed = 0,
    progress: ProgressCallback | None = None,
    run: RunOptions | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the frames `(C, H, W)` in [0, 1] of a zoom video, one dream per frame.

    Args:
        image: `(C, H, W)` in [0, 1], the first frame's input.
        config: dream parameters of every frame.
        zoom: frame count, zoom factor and blend.
        guide, seed: as for `dream` (an int seeds one CPU generator, as `vizcnn dream --seed`
            does); the generator runs on across frames, so each frame gets its own rolls.
        progress: `progress(done, total, message)` over frames x octaves x steps.
        run: how it runs, as for `dream`.

    Example:
        >>> frames = list(dream_frames(loaded, sample_image("coffee"), zoom=ZoomConfig(frames=8)))
    """
    loaded = as_loaded(model)
    config = config or DreamConfig()
    zoom = zoom or ZoomConfig()
    report = progress or no_progress
    # one generator runs on across frames: a fresh generator per frame would give every frame
    # the same rolls
    generator = as_generator(seed, "cpu")
    current = image
    for index in range(zoom.frames):

        def frame_progress(done: int, total: int, message: str, _index: int = index) -> None:
            report(
                _index * total + done,
                zoom.frames * total,
                f"frame {_index + 1}/{zoom.frames} {message}",
            )

        dreamed = dream(
            loaded, current, config, guide=guide, seed=generator, progress=frame_progress, run=run
        )
        if index > 0 and zoom.blend > 0:
            dreamed = torch.lerp(dreamed, current.to(dreamed.dtype), zoom.blend)
        yield dreamed
        current = zoom_center(dreamed, zoom.zoom).clamp(0, 1)
