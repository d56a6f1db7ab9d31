"""`DreamConfig`: every parameter of a dream, checked once when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.deepdream.targets import LayerTarget, resolve_target
from vizcnn.models.loading import LoadedModel


@dataclass(frozen=True)
class DreamConfig:
    """What a dream computes; the CLI options map one to one onto these fields.

    How it runs (precision, deterministic kernels) is `RunOptions`, given as `dream(..., run=)`.
    """

    # LAYER[#k][:CHANNELS][@WEIGHT], LayerTarget, or a submodule (the whole layer); () = defaults
    layers: tuple[str | LayerTarget | nn.Module, ...] = ()
    octaves: int = 4  # pyramid levels (fewer, with a warning, if the image is too small)
    octave_scale: float = 1.4  # size ratio between consecutive octaves
    steps: int = 10  # gradient steps per octave
    step_size: float = 1.5  # step length in 0..255 pixel units, after gradient normalization
    jitter: int = 32  # random roll of up to +-jitter pixels on both axes, undone each step
    tile: int = 512  # largest tile side for the gradient (memory bound); 0 = never tile
    grad_norm: Literal["mean", "std"] = "mean"  # divide the gradient by mean |g| or by its std

    def __post_init__(self) -> None:
        for name in ("octave_scale", "step_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise VizError(f"{name.replace('_', ' ')} must be a finite number, got {value}")
        checks = [
            (self.octaves >= 1, f"octaves must be >= 1, got {self.octaves}"),
            (self.octave_scale > 1.0, f"octave scale must be > 1, got {self.octave_scale}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.step_size > 0, f"step size must be > 0, got {self.step_size}"),
            (self.jitter >= 0, f"jitter must be >= 0 pixels, got {self.jitter}"),
            (self.tile >= 0, f"tile must be >= 0 pixels (0 = no tiling), got {self.tile}"),
            (
                self.grad_norm in ("mean", "std"),
                f"unknown gradient normalization {self.grad_norm!r}; use mean or std",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise VizError(message)

    def targets(self, loaded: LoadedModel) -> list[LayerTarget]:
        """The parsed layer targets, or the model's default dream layers."""
        specs = self.layers or tuple(loaded.layers_for("dream"))
        return [resolve_target(spec, loaded) for spec in specs]
