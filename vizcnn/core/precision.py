"""Mixed precision: where bfloat16 autocast helps, and the context that switches it on.

Only the network runs in bfloat16; parameterizations, transforms, optimizer state and objectives
stay float32 (the caller casts the network's outputs back with `.float()`).

`amp` is three-valued everywhere (the `--amp/--no-amp` flag, `RenderConfig.amp`, `DreamConfig.amp`):
True asks for bfloat16, False for float32, and "auto" (the default) lets `choose_precision` decide:
bfloat16 where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16 or AMX),
float32 elsewhere. Render and dream use "auto"; mining has no amp at all (exact float32 ranking).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

from vizcnn.core.bf16_conv import strided_depthwise_fp32_backward
from vizcnn.core.errors import VizError

AUTO: Literal["auto"] = "auto"
AmpSetting = bool | Literal["auto"]  # True: bf16 asked for; False: float32; "auto": decide here


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matrix work natively (AVX512-BF16 or AMX), per oneDNN."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cuda_bf16_supported() -> bool:
    """Whether the current CUDA device computes in bfloat16 natively (Ampere and newer)."""
    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except (AttributeError, RuntimeError, AssertionError):
        return False


def check_amp(value: object) -> AmpSetting:
    """`value` if it is a valid amp setting (True, False or "auto"), else a VizError."""
    if isinstance(value, bool) or value == AUTO:
        return value  # type: ignore[return-value]
    raise VizError(f"amp must be True, False or 'auto', got {value!r}")


@dataclass(frozen=True)
class Precision:
    """What autocast a run uses on its device, and why."""

    enabled: bool  # the network runs under bfloat16 autocast
    device_type: str  # cpu | cuda | mps
    note: str = ""  # one line for the user when asked-for amp is not used

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """The context to run the network in (a no-op when disabled)."""
        if not self.enabled:
            return contextlib.nullcontext()
        if self.device_type != "cpu":
            return torch.autocast(self.device_type, dtype=torch.bfloat16)
        return _CpuBf16()

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.enabled else torch.float32

    @property
    def name(self) -> str:
        """What provenance records: the precision the network actually ran in."""
        return "bfloat16" if self.enabled else "float32"

    @property
    def channels_last(self) -> bool:
        """Whether to feed the network channels-last inputs on this device.

        oneDNN's bfloat16 convolutions run 1.2-1.4x faster on channels-last tensors (no layout
        reorders around each convolution); in float32 on the CPU channels-last is slower, so only
        the bf16 CPU path uses it (CUDA callers have their own switch).
        """
        return self.enabled and self.device_type == "cpu"


class _CpuBf16:
    """bfloat16 autocast on the CPU plus float32 gradients for strided depthwise convolutions
    (oneDNN has no fast bf16 kernel for those); reusable, like `torch.autocast` itself."""

    def __init__(self) -> None:
        self._stack: list[contextlib.ExitStack] = []

    def __enter__(self) -> None:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        stack.enter_context(strided_depthwise_fp32_backward())
        self._stack.append(stack)

    def __exit__(self, *exc: object) -> None:
        self._stack.pop().close()


def choose_precision(device: torch.device, amp: AmpSetting) -> Precision:
    """bfloat16 autocast on CUDA and CPUs with native bf16; otherwise float32 (with a note if asked).

    Args:
        device: where the network runs.
        amp: True (bf16 asked for: a note where it cannot be used), False (float32), or "auto"
            (bf16 where native, float32 silently elsewhere).

    Example:
        >>> with choose_precision(torch.device("cpu"), amp="auto").autocast():
        ...     logits = model(inputs)
    """
    amp = check_amp(amp)
    if amp is False:
        return Precision(False, device.type)
    if device.type == "cuda":
        # an explicit --amp keeps its old meaning on CUDA (autocast, even on pre-Ampere cards,
        # which emulate bf16); auto only where it is native
        return Precision(amp is True or cuda_bf16_supported(), "cuda")
    if device.type == "cpu":
        if cpu_bf16_supported():
            return Precision(True, "cpu")
        if amp is True:
            return Precision(
                False,
                "cpu",
                "amp=True ignored: this CPU has no native bfloat16 (it would run slower)",
            )
        return Precision(False, "cpu")
    if amp is True:
        return Precision(False, device.type, f"amp=True ignored on {device.type}")
    return Precision(False, device.type)
