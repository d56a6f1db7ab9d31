"""`RunOptions`: how a technique runs (precision, batch, workers, kernels, layout), apart from
what it computes.

A technique's config (`RenderConfig`, `DreamConfig`, `MineConfig`, ...) is its recipe: change
a field and the pictures or numbers change. `RunOptions` is shared by every run call
(`render(..., run=RunOptions(batch=4))`, `mine_folder(..., run=...)`) and says how the work is
done on this machine. Most of its fields never change a result; where one does (render's
`batch` decides which units share a chunk and so each chunk's seed; `amp` the precision the
network runs in), the technique records it in its provenance, and says so in its docstring.

Example:
    >>> run = RunOptions(amp=False, batch=4, deterministic=True)
    >>> result = render(loaded, "_blocks.9:0-7", RenderConfig(steps=256), run=run)
"""

from __future__ import annotations

from dataclasses import dataclass

from vizcnn.core.errors import VizError
from vizcnn.core.precision import AUTO, AmpSetting, check_amp


@dataclass(frozen=True)
class RunOptions:
    """How a run uses the machine; every technique takes it as `run=` (None: these defaults)."""

    # the network's precision: True (bfloat16 autocast), False (float32) or "auto" (bfloat16
    # where the hardware runs it natively; `core.precision.choose_precision`). Techniques that
    # rank exactly (mining, attribution, features) run float32 and ignore it.
    amp: AmpSetting = AUTO
    # images (or units) per forward pass; None: the technique's own default (`batch_or`)
    batch: int | None = None
    # DataLoader worker processes decoding images (0: in this process); data-set runs only
    workers: int = 0
    # deterministic kernels (`torch.use_deterministic_algorithms`): the same seed gives the
    # same bits on CUDA too (slower); CPU runs are deterministic anyway
    deterministic: bool = False
    # channels-last inputs for the network (CUDA; on the CPU only under bfloat16)
    channels_last: bool = True
    # optimizer steps between non-finite loss checks on CUDA (every step elsewhere): each check
    # waits for the GPU
    check_every: int = 16

    def __post_init__(self) -> None:
        check_amp(self.amp)
        if self.batch is not None and (isinstance(self.batch, bool) or self.batch < 1):
            raise VizError(f"batch must be at least 1 (or None: the default), got {self.batch}")
        if self.workers < 0:
            raise VizError(f"workers must be 0 or more, got {self.workers}")
        if self.check_every < 1:
            raise VizError(f"check_every must be at least 1, got {self.check_every}")

    def batch_or(self, default: int) -> int:
        """`batch`, or the technique's `default` where it is None."""
        return default if self.batch is None else self.batch


def as_run_options(run: RunOptions | None) -> RunOptions:
    """`run`, or the defaults for None (what every run call does with its `run=` argument)."""
    if run is None:
        return RunOptions()
    if not isinstance(run, RunOptions):
        raise VizError(f"run must be a RunOptions or None, got {type(run).__name__}")
    return run
