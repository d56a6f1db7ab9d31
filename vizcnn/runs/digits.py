"""`digits_weights_file`: train LeNet-5 on scikit-learn's digits and write its state dict, as
`vizcnn train-digits` does (the weights `lenet5_digits` loads with `weights=PATH`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vizcnn.core.errors import VizError
from vizcnn.io.imaging import atomic_write
from vizcnn.io.paths import ensure_writable
from vizcnn.runs.lock import file_lock

__all__ = ["DigitsRun", "digits_weights_file"]


@dataclass
class DigitsRun:
    """What `digits_weights_file` wrote."""

    path: Path  # the state dict
    accuracy: float  # top-1 on the fixed digits test split


def digits_weights_file(
    path: str | Path = "lenet5_digits.pt",
    *,
    epochs: int = 30,
    seed: int = 0,
    replace_bundled: bool = False,
) -> DigitsRun:
    """Train LeNet-5 on the digits (seconds) and write its state dict to `path` atomically.

    Args:
        path: the file to write (ignored with `replace_bundled`).
        epochs: training epochs.
        seed: initialization and batch order (the same seed gives the same weights).
        replace_bundled: write the package's own weights file (what `lenet5_digits` loads)
            instead; refused otherwise when `path` names it.

    Example:
        >>> run = digits_weights_file("mine.pt", epochs=10)
        >>> load_model("lenet5_digits", weights=str(run.path))
    """
    from vizcnn.models import lenet

    target = lenet.WEIGHTS_PATH if replace_bundled else Path(path)
    if not replace_bundled and target.resolve() == lenet.WEIGHTS_PATH.resolve():
        raise VizError(
            f"{path} is the package's bundled weights file; pass replace_bundled=True to "
            "overwrite it"
        )
    if target.is_dir():
        raise VizError(
            f"output {str(path)!r} is a folder; give a file name such as lenet5_digits.pt"
        )
    if epochs < 1:
        raise VizError(f"epochs must be at least 1, got {epochs}")
    ensure_writable(target, "file", flag="path")
    model, accuracy = lenet.train_lenet5(epochs=epochs, seed=seed)
    with file_lock(target):
        atomic_write(target, lambda file: torch.save(model.state_dict(), file))
    return DigitsRun(target, accuracy)
