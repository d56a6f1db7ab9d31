"""`RenderConfig`: the recipe of an activation-maximization render, and how `auto` resolves.

How a render runs (precision, batch, determinism, channels-last) is `RunOptions`'s, not this
config's; the recipe here is what shapes the pictures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from vizcnn.core.errors import VizError
from vizcnn.hooks import Layer
from vizcnn.models.base import LoadedModel
from vizcnn.optvis.objectives import LOGITS, Objective, Unit
from vizcnn.optvis.param import PARAMS
from vizcnn.optvis.transforms import Transform, crop_transforms, standard_transforms

DEFAULT_SIZE = 128  # lucid's image size; smaller models render at their own input size
LR_SCHEDULES = ("constant", "cosine")
PARAM_CHOICES = ("auto", *PARAMS)  # what `RenderConfig.param` accepts
# each recipe's Adam learning rate and schedule, used where RenderConfig leaves them None. maco
# optimizes phases (radians): at fft's 0.05 its class renders transferred worst of the rates
# tried; 0.2 decayed along a cosine transferred best (benchmarks/RESULTS.md).
RECIPE_LR: dict[str, tuple[float, str]] = {
    "fft": (0.05, "constant"),
    "pixel": (0.05, "constant"),
    "maco": (0.2, "cosine"),
}
CHUNK_SEED_STRIDE = 1_000_003  # chunk n of a render draws from seed + n * stride
DEFAULT_BATCH = 16  # images optimized together where `RunOptions.batch` is None


@dataclass(frozen=True)
class RenderConfig:
    """What a render computes; the `vizcnn render` options map onto these fields.

    How it runs (precision, images per chunk, deterministic kernels, memory layout) is
    `RunOptions`, given to `render(..., run=...)`.
    """

    steps: int = 512  # optimizer steps per batch
    size: int | tuple[int, int] | None = (
        None  # rendered image (H, W); None: 128, or the input size if smaller
    )
    param: str = "auto"  # auto (maco for class renders, else fft), fft (lucid), maco or pixel
    decorrelate: bool = True  # build RGB images in decorrelated colour space
    lr: float | None = None  # Adam learning rate; None: the recipe's (RECIPE_LR)
    diversity: int = 1  # images per unit; above 1 they are pushed apart (Gram similarity)
    diversity_weight: float = 1e2  # weight of the diversity penalty (lucid's 1e2)
    diversity_layer: Layer | None = None  # layer (name or submodule) whose Gram matrices are
    # compared; None: the unit's. `render` records it as its dotted name.
    transforms: tuple[Transform, ...] | None = (
        None  # None: the parameterization's chain (maco: crops; fft, pixel: lucid's)
    )
    crops: int = 1  # transformed copies of each image per step; the objective is their mean
    lr_schedule: str | None = None  # constant, cosine (decays to 0); None: the recipe's
    input_size: tuple[int, int] | None = None  # what the model sees; None: its input size
    init_sd: float = 0.01  # spread of the random initial parameters

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise VizError(f"steps must be at least 1, got {self.steps}")
        if self.param not in PARAM_CHOICES:
            raise VizError(
                f"unknown parameterization {self.param!r}; valid: {', '.join(PARAM_CHOICES)}"
            )
        for name in ("lr", "diversity_weight", "init_sd"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise VizError(f"{name} must be a finite number, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise VizError(f"learning rate must be positive, got {self.lr}")
        if self.init_sd < 0:
            raise VizError(f"init_sd must be >= 0, got {self.init_sd}")
        if self.diversity < 1:
            raise VizError(f"diversity must be at least 1 image per unit, got {self.diversity}")
        if self.crops < 1:
            raise VizError(f"crops must be at least 1 per image and step, got {self.crops}")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise VizError(
                f"unknown lr schedule {self.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}"
            )
        size = self.size if not isinstance(self.size, int) else (self.size, self.size)
        if size is not None and min(size) < 8:
            raise VizError(f"image size {size} too small; use at least 8 pixels")

    def resolved(self, objectives: Sequence[Unit] = ()) -> RenderConfig:
        """This config as it will run for `objectives`: `param="auto"` resolved (`resolve_param`),
        and `lr` / `lr_schedule` left None filled in from that recipe (`RECIPE_LR`)."""
        param = resolve_param(self.param, objectives)
        lr, schedule = RECIPE_LR[param]
        return replace(
            self,
            param=param,
            lr=lr if self.lr is None else self.lr,
            lr_schedule=schedule if self.lr_schedule is None else self.lr_schedule,
        )

    def image_size(self, loaded: LoadedModel) -> tuple[int, int]:
        """The (H, W) of the rendered images for `loaded`."""
        if self.size is None:
            return (
                min(DEFAULT_SIZE, loaded.input_size[0]),
                min(DEFAULT_SIZE, loaded.input_size[1]),
            )
        if isinstance(self.size, int):
            return (self.size, self.size)
        return (int(self.size[0]), int(self.size[1]))

    def transform_chain(self, objectives: Sequence[Unit] = ()) -> tuple[Transform, ...]:
        """The transforms of each step: `transforms`, or the parameterization's own chain
        (`param="auto"` resolved for `objectives`: maco's crops for class units only, else
        lucid's chain, which is also what no objectives at all give)."""
        if self.transforms is not None:
            return self.transforms
        param = resolve_param(self.param, objectives)
        return crop_transforms() if param == "maco" else standard_transforms()

    def chunks(self, count: int, batch: int = DEFAULT_BATCH) -> list[list[int]]:
        """Unit positions of each chunk (`batch // diversity` units per chunk) for `count` units.

        `batch` is `RunOptions.batch` (images per chunk): it decides which units share a chunk,
        and so each chunk's seed, so it changes the pictures.
        """
        per_chunk = max(1, batch // self.diversity)
        return [list(range(s, min(count, s + per_chunk))) for s in range(0, count, per_chunk)]


def resolve_param(param: str, objectives: Sequence[Unit]) -> str:
    """The parameterization `param` stands for: `auto` is maco for class renders, fft otherwise.

    maco when every objective reads the model's output logits only (class logits), fft (lucid's
    recipe) as soon as one reads an inner layer. Measured in benchmarks/RESULTS.md: lite0's
    class renders made with maco are recognized by a second network (lite1) more often than fft's,
    while on channel objectives maco reaches less than half of fft's activation.
    """
    if param != "auto":
        return param
    class_only = bool(objectives) and all(
        # a unit string or (layer, channel) pair names a layer
        isinstance(o, Objective) and set(o.layers) == {LOGITS}
        for o in objectives
    )
    return "maco" if class_only else "fft"
