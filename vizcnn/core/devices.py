"""Device and random-generator selection; nothing here is global state."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from vizcnn.core.errors import VizError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn `auto|cpu|cuda|cuda:N|mps` into a `torch.device` (auto: CUDA, then MPS, then CPU).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(spec, torch.device):
        return spec
    text = (spec or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise VizError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VizError(f"device {spec!r} asked for but CUDA is not available; use device='cpu'")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise VizError(f"device {spec!r} does not exist; valid: cuda:0..cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise VizError(f"device {spec!r} asked for but MPS is not available; use device='cpu'")
    if device.type not in {"cpu", "cuda", "mps"}:
        raise VizError(f"unsupported device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    return device


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on `device` (random when `seed` is None), never the global one."""
    generator = torch.Generator(device=torch.device(device))
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Run the block with `torch.use_deterministic_algorithms(True, warn_only=True)`, then restore.

    On CUDA some kernels (atomic adds in backward passes) give slightly different sums from run
    to run; this picks deterministic kernels where torch has them, and torch warns about each op
    that has none. For cuBLAS, set `CUBLAS_WORKSPACE_CONFIG=:4096:8` before CUDA starts (the
    CLI's `--deterministic` does). CPU results are deterministic without it.

    Example:
        >>> with deterministic_algorithms():
        ...     result = render(loaded, ["_blocks.9:3"], config)
    """
    if not enabled:
        yield
        return
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


def available_memory(device: torch.device | str) -> int | None:
    """Bytes free for tensors on `device` now (CPU: free RAM), or None where it cannot be told."""
    device = torch.device(device)
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "mps":
            return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError, RuntimeError):
        return None
