"""Random weights from a seed, without touching torch's global random state.

`--weights none` builds a network with its own initialization (torchvision's, the efficientnet
package's, nn.Module defaults). Those draw from torch's global CPU generator; running the
construction inside `seeded_init(seed)` makes the draws a function of the seed alone and puts
the global generator back afterwards, so the caller's own random stream is unaffected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


@contextmanager
def seeded_init(seed: int | None) -> Iterator[None]:
    """Run the body with torch's CPU generator seeded by `seed`, restored on exit.

    `seed=None` leaves the global generator alone (draws then differ run to run). Only the CPU
    generator is forked: models are built on the CPU and moved afterwards, and seeding CUDA or
    MPS here would change state the caller may rely on.

    Example:
        >>> with seeded_init(0):
        ...     net = torchvision.models.resnet18(weights=None)
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        # default_generator only: torch.manual_seed would also (lazily) reseed CUDA and MPS
        torch.random.default_generator.manual_seed(int(seed))
        yield


def build_random(build: Callable[[], M], seed: int | None) -> M:
    """`build()` with its random initialization drawn from `seed` (see `seeded_init`).

    Example:
        >>> net = build_random(lambda: torchvision.models.resnet18(weights=None), seed=3)
    """
    with seeded_init(seed):
        return build()


def describe_random(seed: int | None) -> str:
    """The `LoadedModel.weights` text of a randomly initialized network."""
    return (
        "random init (weights=none, unseeded)"
        if seed is None
        else f"random init (weights=none, seed {seed})"
    )
