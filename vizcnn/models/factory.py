"""The user's own CNN by `package.module:factory`, importable from the current folder too."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.models.base import LoadedModel
from vizcnn.models.random_init import seeded_init


@contextmanager
def current_folder_importable() -> Iterator[None]:
    """Put the current folder first on `sys.path` for the body only (as `python` does for
    scripts), so `mynet:build` finds `./mynet.py` without `PYTHONPATH=.`; restored afterwards."""
    cwd = os.getcwd()
    present = any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path)
    if not present:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module written a moment ago must be seen
    try:
        yield
    finally:
        if not present and cwd in sys.path:
            sys.path.remove(cwd)


def load_factory(spec: str, seed: int | None = 0) -> LoadedModel:
    """Call `factory` from `package.module` (or take the module it names) as the network.

    Its random initialization, if any, draws from `seed` (the caller's global RNG untouched);
    mean/std default to 0/1 (describe the model's preprocessing with `load_model`'s options).

    Example:
        >>> loaded = load_factory("mynet:build")  # ./mynet.py defines build()
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise VizError(f"model spec {spec!r}: write package.module:factory (e.g. mynet:build)")
    try:
        with current_folder_importable():
            found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise VizError(
            f"cannot import {spec!r} ({exc}); write package.module:factory, with the module in "
            "the current folder or on PYTHONPATH"
        ) from exc
    if callable(found) and not isinstance(found, nn.Module):
        with seeded_init(seed):
            found = found()
    if not isinstance(found, nn.Module):
        raise VizError(f"{spec} returned {type(found).__name__}, not a torch.nn.Module")
    first = next((m for m in found.modules() if isinstance(m, nn.Conv2d)), None)
    channels = first.in_channels if first is not None else 3
    return LoadedModel(
        name=spec,
        module=found,
        mean=(0.0,) * channels,
        std=(1.0,) * channels,
        input_size=(224, 224),
        labels=[],
        default_layers={},
        weights=f"factory {spec}" + ("" if seed is None else f" (seed {seed})"),
    )
