"""The model-randomization sanity check (Adebayo et al. 2018, "Sanity checks for saliency maps").

The parameters of a COPY of the model are re-initialized cascading from the top (the classifier)
down, and after each stage every method's maps are compared with those of the trained model:
Spearman rank correlation of |attribution|, SSIM of the min-max scaled maps, and the Pearson
correlation of their HOG descriptors (scikit-image). A method whose maps stay similar when the
weights they are meant to explain are gone explains the image, not the model: it is flagged.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.models.base import LoadedModel, ModelLike, as_loaded

# (model, images (B, C, H, W), targets (B,)) -> method name -> maps (B, C, H, W)
MapsFunction = Callable[[LoadedModel, torch.Tensor, torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class SanityResult:
    """Similarity to the trained model's maps, per method and per randomization stage."""

    stages: list[str]  # deepest module re-initialized at each stage (top of the net first)
    spearman: dict[str, list[float]]  # method -> per stage, mean over images
    ssim: dict[str, list[float]]
    hog: dict[str, list[float]]
    flagged: list[str]  # methods that failed: Spearman, averaged over the stages, >= threshold
    threshold: float  # see `sanity_check`

    def verdicts(self) -> dict[str, str]:
        """Per method, the randomization test's verdict (Adebayo et al. 2018): `passed` (its
        maps change when the weights are randomized: mean Spearman below `threshold`),
        `failed` (they stay similar: the map explains the image, not the model), or
        `undecided` (every map blank, no correlation to measure)."""
        found = {}
        for method, values in self.spearman.items():
            if all(math.isnan(v) for v in values):
                found[method] = "undecided"
            else:
                found[method] = "failed" if method in self.flagged else "passed"
        return found

    def table(self) -> str:
        """A plain-text table: one row per method, Spearman per stage, the mean, the verdict."""
        width = max(len(m) for m in self.spearman)
        cell = max(8, *(len(s) for s in self.stages))
        head = f"{'method':<{width}}  " + "  ".join(f"{s:>{cell}}" for s in self.stages)
        rows = [head + "      mean  verdict"]
        verdicts = self.verdicts()
        notes = {
            "passed": "passed",
            "failed": "FAILED: insensitive to the weights",
            "undecided": "undecided: blank maps",
        }
        for method, values in self.spearman.items():
            cells = "  ".join(f"{v:>{cell}.3f}" for v in values)
            mean = float(np.nanmean(values)) if verdicts[method] != "undecided" else math.nan
            rows.append(f"{method:<{width}}  {cells}  {mean:8.3f}  {notes[verdicts[method]]}")
        rows.append(
            f"(randomization test: a method passes when the mean Spearman correlation of its "
            f"|maps| with the trained model's, over the stages, is below {self.threshold:g})"
        )
        return "\n".join(rows)

    def to_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "verdicts": self.verdicts()}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SanityResult:
        """The result `to_dict` wrote (its derived `verdicts` recomputed)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]


def cascade_units(module: nn.Module) -> list[str]:
    """Modules that own parameters, from the output end down (reverse registration order)."""
    return [
        name
        for name, m in reversed(list(module.named_modules()))
        if name and any(True for _ in m.parameters(recurse=False))
    ]


def _reinitialize(module: nn.Module, generator: torch.Generator) -> None:
    """Fresh parameters for one module: He-normal weights, zero biases, unit norm scales."""
    with torch.no_grad():
        for name, p in module.named_parameters(recurse=False):
            if p.dim() > 1:
                std = math.sqrt(2.0 / max(1, p[0].numel()))
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.copy_(noise.to(device=p.device, dtype=p.dtype) * std)
            elif name == "bias":
                p.zero_()
            else:
                p.fill_(1.0)
        for name, buf in module.named_buffers(recurse=False):
            if name == "running_mean":
                buf.zero_()
            elif name == "running_var":
                buf.fill_(1.0)


def _scaled(a: np.ndarray) -> np.ndarray:
    low, high = float(a.min()), float(a.max())
    return (a - low) / (high - low) if high > low else np.zeros_like(a)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def similarities(original: torch.Tensor, other: torch.Tensor) -> tuple[float, float, float]:
    """Mean over the batch of (Spearman of |.|, SSIM, HOG Pearson) between two map batches."""
    from scipy.stats import spearmanr
    from skimage.feature import hog
    from skimage.metrics import structural_similarity

    first = original.detach().abs().sum(1).double().cpu().numpy()
    second = other.detach().abs().sum(1).double().cpu().numpy()
    rank, ssim, hogs = [], [], []
    for a, b in zip(first, second, strict=True):
        if a.std() == 0 or b.std() == 0:
            rank.append(float("nan"))
        else:
            rank.append(float(spearmanr(a.ravel(), b.ravel()).statistic))
        sa, sb = _scaled(a), _scaled(b)
        side = min(a.shape)
        window = min(7, side if side % 2 else side - 1)
        ssim.append(float(structural_similarity(sa, sb, data_range=1.0, win_size=window)))
        cell = max(2, side // 8)
        options = {"pixels_per_cell": (cell, cell), "cells_per_block": (2, 2)}
        hogs.append(_pearson(hog(sa, **options), hog(sb, **options)))
    return tuple(
        float(np.nanmean(v)) if not np.all(np.isnan(v)) else float("nan")
        for v in (rank, ssim, hogs)
    )  # type: ignore[return-value]


def sanity_check(
    model: ModelLike,
    images: torch.Tensor,
    targets: torch.Tensor,
    maps_of: MapsFunction,
    *,
    stages: int = 6,
    threshold: float = 0.5,
    seed: int = 0,
    progress: ProgressCallback = no_progress,
) -> SanityResult:
    """Cascading randomization: how similar each method's maps stay as layers are re-initialized.

    The user's model is never modified: a deep copy is randomized. Stage k re-initializes the top
    `n_k` parameterized modules (n_k spread evenly up to all of them); targets stay fixed.

    Args:
        model: a `LoadedModel` or bare `nn.Module`.
        images: `(B, C, H, W)` in [0, 1].
        targets: `(B,)` classes to attribute (those of the trained model).
        maps_of: computes `{method: (B, C, H, W)}` for a model, e.g. a wrapper of `attribute`.
        stages: randomization stages reported (at most the number of parameterized modules).
        threshold: a method whose Spearman correlation, averaged over the stages, is at least
            this fails the test: it is flagged as insensitive to the weights. Averaged, because
            randomizing the stem at the end decorrelates nearly everything, so the last stage
            alone would flag nothing; 0.5, because Adebayo et al. report rank correlations that
            stay near 0.8-1 for the methods that fail (guided backprop, guided Grad-CAM) and
            fall to about 0.2 or below for those that pass (gradient, Grad-CAM), so a mean of
            one half is "still more alike than not" with room on both sides.
        seed: seed of the re-initialization.

    Example:
        >>> fn = lambda m, x, t: attribute(m, x, ["saliency"], targets=t).maps
        >>> result = sanity_check(model, images, targets, fn)
        >>> print(result.table())
    """
    loaded = as_loaded(model)
    units = cascade_units(loaded.module)
    if not units:
        raise VizError(f"{loaded.name} has no parameters to randomize")
    if stages < 1:
        raise VizError(f"stages = {stages} must be at least 1")
    cuts = sorted({max(1, round(len(units) * (k + 1) / stages)) for k in range(stages)})
    reference = {k: v.detach() for k, v in maps_of(loaded, images, targets).items()}
    copy_module = copy.deepcopy(loaded.module)
    randomized = dataclasses.replace(loaded, module=copy_module)
    modules = dict(copy_module.named_modules())
    generator = torch.Generator().manual_seed(seed)
    spearman: dict[str, list[float]] = {m: [] for m in reference}
    ssim: dict[str, list[float]] = {m: [] for m in reference}
    hogs: dict[str, list[float]] = {m: [] for m in reference}
    done = 0
    for step, cut in enumerate(cuts):
        for name in units[done:cut]:
            _reinitialize(modules[name], generator)
        done = cut
        maps = maps_of(randomized, images, targets)
        for method, original in reference.items():
            rank, structure, gradients = similarities(original, maps[method])
            spearman[method].append(rank)
            ssim[method].append(structure)
            hogs[method].append(gradients)
        progress(step + 1, len(cuts), units[cut - 1])
    flagged = [
        m
        for m, v in spearman.items()
        if not all(math.isnan(x) for x in v) and float(np.nanmean(v)) >= threshold
    ]
    return SanityResult(
        stages=[units[c - 1] for c in cuts],
        spearman=spearman,
        ssim=ssim,
        hog=hogs,
        flagged=flagged,
        threshold=threshold,
    )
