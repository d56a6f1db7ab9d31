"""Device and random-generator selection; nothing here is global state."""

from __future__ import annotations

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
            raise VizError(f"device {spec!r} asked for but CUDA is not available; use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise VizError(f"device {spec!r} does not exist; valid: cuda:0..cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise VizError(f"device {spec!r} asked for but MPS is not available; use --device cpu")
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
