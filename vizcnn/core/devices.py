"""Device and random-generator selection; nothing here is global state."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

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


# Every technique's randomness: an int (the CLI's `--seed`; the same int gives the CLI's
# pictures) or a `torch.Generator` the caller owns and that the technique advances. No
# technique reads torch's global generator.
Seed: TypeAlias = int | torch.Generator


def as_generator(seed: Seed, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator a technique draws from: `seed` itself, or a new one on `device` seeded with it.

    An int gives `make_generator(seed, device)`, so `as_generator(3)` and
    `torch.Generator().manual_seed(3)` draw the same numbers; a generator is returned as it is
    (on its own device), and drawing from it advances the caller's generator.

    Example:
        >>> as_generator(0).initial_seed()
        0
    """
    if isinstance(seed, torch.Generator):
        return seed
    return make_generator(_int_seed(seed), device)


def _int_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise VizError(f"seed must be an int or a torch.Generator, got {seed!r}")
    return seed


def seed_record(seed: Seed) -> int | str:
    """How a seed is written in a provenance block: the int, or a generator's state digest.

    A generator is recorded by a digest of its state when the run starts (`generator 1a2b...`):
    the same state gives the same pictures, so a resumed run compares it like an int seed.
    """
    if not isinstance(seed, torch.Generator):
        return _int_seed(seed)
    state = seed.get_state()
    return f"generator {hashlib.sha256(state.numpy().tobytes()).hexdigest()[:16]}"


def draw_seed(seed: Seed) -> int:
    """An int seed from `seed`: the int itself, or one draw from the generator (advancing it).

    Techniques that seed several generators of their own from one seed (`render`'s chunks) use
    it: a generator gives the pictures of the int it draws first.

    Example:
        >>> g = torch.Generator().manual_seed(5)
        >>> draw_seed(g) == draw_seed(torch.Generator().manual_seed(5))
        True
    """
    if not isinstance(seed, torch.Generator):
        return _int_seed(seed)
    return int(torch.randint(0, 2**62, (1,), generator=seed, device=seed.device).item())


@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Run the block with `torch.use_deterministic_algorithms(True, warn_only=True)`, then restore.

    On CUDA some kernels (atomic adds in backward passes) give slightly different sums from run
    to run; this picks deterministic kernels where torch has them, and torch warns about each op
    that has none. cuBLAS needs `CUBLAS_WORKSPACE_CONFIG=:4096:8` before its first call in the
    process: this sets it when unset (so a script gets what the CLI's `--deterministic` gets;
    a process that already ran a CUDA matmul keeps its workspace, and torch warns). CPU results
    are deterministic without it.

    Example:
        >>> with deterministic_algorithms():
        ...     result = render(loaded, ["_blocks.9:3"], config)
    """
    if not enabled:
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
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
