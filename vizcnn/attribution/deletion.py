"""Deletion and insertion curves (Petsiuk et al. 2018, RISE): how well a map ranks the pixels.

Deletion replaces the most-attributed pixels first with a flat baseline and follows the target
class probability as it falls (lower area = better map); insertion starts from the baseline and
puts the most-attributed pixels back first (higher area = better). A pixel's importance is the
sum over channels of |attribution|, so signed and unsigned methods are ranked alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vizcnn.attribution.classifier import Classifier
from vizcnn.core.errors import VizError
from vizcnn.core.image_range import warn_if_normalized
from vizcnn.core.progress import ProgressCallback, no_progress
from vizcnn.hooks import inplace_off, model_guard
from vizcnn.models.base import ModelLike, as_loaded


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves of one method over a batch."""

    fractions: torch.Tensor  # (S + 1,) share of pixels removed / inserted, 0 .. 1
    deletion: torch.Tensor  # (B, S + 1) target probability as pixels are removed
    insertion: torch.Tensor  # (B, S + 1) target probability as pixels are put back

    @property
    def deletion_area(self) -> torch.Tensor:
        """(B,) area under the deletion curve (lower is better)."""
        return torch.trapezoid(self.deletion, self.fractions, dim=1)

    @property
    def insertion_area(self) -> torch.Tensor:
        """(B,) area under the insertion curve (higher is better)."""
        return torch.trapezoid(self.insertion, self.fractions, dim=1)


def pixel_ranks(attribution: torch.Tensor) -> torch.Tensor:
    """`(B, H, W)` rank of each pixel, 0 = most important (sum over channels of |attribution|)."""
    score = attribution.abs().sum(1).flatten(1)
    order = score.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks.view(attribution.shape[0], *attribution.shape[2:])


def target_probabilities(
    net: Classifier, images: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Softmax probability of each image's target class `(B,)`, float32 on the model's device."""
    with torch.no_grad():
        probs = net(images).float().softmax(dim=1)
    return probs.gather(1, targets.view(-1, 1)).squeeze(1)


def deletion_curves(
    model: ModelLike,
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    targets: torch.Tensor,
    *,
    steps: int = 16,
    baseline: float = 0.0,
    batch: int = 32,
    progress: ProgressCallback = no_progress,
) -> dict[str, Curves]:
    """Deletion and insertion curves of each map in `maps`, in `steps` equal shares of the pixels.

    Args:
        model: a `LoadedModel` or bare `nn.Module`; left exactly as found.
        images: `(B, C, H, W)` in [0, 1].
        maps: method name -> attribution `(B, C', H, W)` (any channel count; ranked by sum |.|).
        targets: `(B,)` class per image whose probability is followed.
        steps: the curve has `steps + 1` points; at point i, round(i * H * W / steps) pixels are
            removed (deletion) or present (insertion).
        baseline: flat grey level in [0, 1] that removed pixels take.
        batch: images per forward pass.

    Example:
        >>> curves = deletion_curves(model, images, result.maps, result.targets)
        >>> curves["gradcam"].deletion_area.mean()
    """
    if steps < 1 or batch < 1:
        raise VizError(f"steps ({steps}) and batch ({batch}) must be at least 1")
    loaded = as_loaded(model)
    warn_if_normalized(images)
    net = Classifier(loaded)
    device, dtype = loaded.device, loaded.dtype
    x = images.to(device=device, dtype=dtype)
    targets = targets.to(device)
    b, _, h, w = x.shape
    counts = [round(i * h * w / steps) for i in range(steps + 1)]
    fractions = torch.tensor([c / (h * w) for c in counts], dtype=torch.float64)
    flat = torch.full_like(x, baseline)
    curves: dict[str, Curves] = {}
    with model_guard(loaded.module), inplace_off(loaded.module):
        for done, (name, attribution) in enumerate(maps.items()):
            if attribution.shape[0] != b or attribution.shape[2:] != x.shape[2:]:
                raise VizError(
                    f"map {name!r} has shape {tuple(attribution.shape)}; expected ({b}, C, {h}, {w})"
                )
            ranks = pixel_ranks(attribution.to(device)).unsqueeze(1)  # (B, 1, H, W)
            # every (step, image) pair, deletion then insertion, evaluated `batch` at a time
            pairs = [(i, kind) for kind in (0, 1) for i in range(steps + 1)]
            probs = torch.empty(2, steps + 1, b, dtype=torch.float64)
            per_pass = max(1, batch // b)
            for start in range(0, len(pairs), per_pass):
                group = pairs[start : start + per_pass]
                stacked = []
                for i, kind in group:
                    gone = ranks < counts[i]
                    stacked.append(
                        torch.where(gone, flat, x) if kind == 0 else torch.where(gone, x, flat)
                    )
                p = target_probabilities(net, torch.cat(stacked), targets.repeat(len(group)))
                for j, (i, kind) in enumerate(group):
                    probs[kind, i] = p[j * b : (j + 1) * b].double().cpu()
            curves[name] = Curves(fractions, probs[0].T.contiguous(), probs[1].T.contiguous())
            progress(done + 1, len(maps), name)
    return curves
