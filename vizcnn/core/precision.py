"""Mixed precision: where bfloat16 autocast helps, and the context that switches it on.

Only the network runs in bfloat16; parameterizations, transforms, optimizer state and objectives
stay float32 (the caller casts the network's outputs back with `.float()`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matrix work natively (AVX512-BF16 or AMX), per oneDNN."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.enabled else torch.float32


def choose_precision(device: torch.device, amp: bool) -> Precision:
    """bfloat16 autocast on CUDA, and on CPUs with native bf16; otherwise float32 with a note.

    Example:
        >>> with choose_precision(torch.device("cpu"), amp=True).autocast():
        ...     logits = model(inputs)
    """
    if not amp:
        return Precision(False, device.type)
    if device.type == "cuda":
        return Precision(True, "cuda")
    if device.type == "cpu":
        if cpu_bf16_supported():
            return Precision(True, "cpu")
        return Precision(
            False, "cpu", "--amp ignored: this CPU has no native bfloat16 (it would run slower)"
        )
    return Precision(False, device.type, f"--amp ignored on {device.type}")
