"""The user's own CNN by `package.module:factory`, importable from the current folder too."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.models.base import LoadedModel, default_normalization, input_channels
from vizcnn.models.checkpoints import load_weights_file
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


def load_factory(
    spec: str, seed: int | None = 0, weights: str | None = None, trust: bool = False
) -> LoadedModel:
    """Call `factory` from `package.module` (or take the module it names) as the network.

    Args:
        spec: `package.module:factory`; the factory must be callable without arguments.
        seed: the factory's own random initialization draws from it (the caller's global RNG
            untouched).
        weights: None, `none` or `DEFAULT`: the network as the factory returns it; a path: a
            state dict (or a training checkpoint holding one) loaded strictly over it.
        trust: allow a checkpoint that pickles objects (it can run code).

    The factory returns the network, or the network described: `vizcnn.describe(net, mean=...,
    std=..., input_size=..., labels=...)`, whose preprocessing, input size and class names then
    come with it (what `load_model`'s own arguments still override). For a bare network, mean
    and std are `default_normalization`'s (ImageNet's for 3 channels), the input size 224 and
    the classes unnamed until given to `load_model`.

    Example:
        >>> loaded = load_factory("mynet:build", weights="mynet.pt")  # ./mynet.py defines build()
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
    if callable(found) and not isinstance(found, (nn.Module, LoadedModel)):
        _check_no_arguments(spec, found)
        with seeded_init(seed):
            try:
                found = found()
            except Exception as exc:  # the user's code: any exception can come out
                first = (str(exc).strip().splitlines() or [""])[0]
                raise VizError(f"calling {spec}() raised {type(exc).__name__}: {first}") from exc
    if isinstance(found, LoadedModel):  # `describe(net, ...)`: the description comes along
        described: LoadedModel | None = found
        found = found.module
    else:
        described = None
    if not isinstance(found, nn.Module):
        raise VizError(
            f"{spec} returned {type(found).__name__}; return a torch.nn.Module or "
            "vizcnn.describe(module, ...)"
        )
    source = f"factory {spec}" + ("" if seed is None else f" (seed {seed})")
    choice = (weights or "none").strip()
    if choice.lower() not in {"none", "default"}:
        hint = f"give a state dict saved from the network {spec}() builds"
        source = load_weights_file(found, choice, spec, trust, hint)
    if described is not None:
        return replace(described, name=spec, module=found, weights=source, load_options=None)
    mean, std = default_normalization(input_channels(found))
    return LoadedModel(
        name=spec,
        module=found,
        mean=mean,
        std=std,
        input_size=(224, 224),
        labels=[],
        default_layers={},
        weights=source,
        stats_given=False,
    )


def _check_no_arguments(spec: str, factory: Any) -> None:
    """A one-line error now for a factory that needs arguments (`timm:create_model`, say)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: calling it will tell
        return
    try:
        signature.bind()
    except TypeError as exc:
        raise VizError(
            f"{spec} cannot be called without arguments ({exc}); the factory must build the "
            f"network from nothing: write a function such as `def build(): return "
            f"{getattr(factory, '__name__', 'factory')}(...)` in a module of yours and "
            "give that as package.module:build"
        ) from exc
