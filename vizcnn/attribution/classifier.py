"""The network as attribution methods see it: [0, 1] images in, logits out; targets by name.

Attributions are taken with respect to the image the user sees (pixels in [0, 1]), not the
normalized tensor: the wrapper normalizes inside the differentiated function. It also adapts the
channel count, so a grayscale or RGBA batch gets attributions of its own shape.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import SupportsIndex, cast

import torch
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.core.outputs import require_output_tensor
from vizcnn.models.base import LoadedModel


class Classifier(nn.Module):
    """`(B, c, H, W)` images in [0, 1] (c = 1, 3, 4 or the model's channels) to `(B, K)` logits.

    A 1-channel batch is repeated to the model's channels; RGBA is composited onto white (as
    image files are); then the model's normalization is applied. All of it is differentiable, so
    gradients come back in the input's own channels.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.loaded = loaded
        self.net = loaded.module  # registered, so captum's module hooks and layer lookups reach it

    def adapt(self, images: torch.Tensor) -> torch.Tensor:
        want, have = self.loaded.channels, images.shape[1]
        if have == want:
            return images
        if have == 1:
            return images.expand(-1, want, -1, -1)
        if have == 4 and want == 3:
            rgb, alpha = images[:, :3], images[:, 3:]
            return rgb * alpha + (1 - alpha)
        if have == 3 and want == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
            return (images * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
        raise VizError(
            f"{self.loaded.name} takes {want}-channel images; got {have} channels "
            "(1, 3, 4 or the model's own count work)"
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return require_output_tensor(self.net(self.loaded.normalize(self.adapt(images))))


@dataclass(frozen=True)
class Predictions:
    """What the model says about a batch: probabilities and the top-k classes per image."""

    probabilities: torch.Tensor  # (B, K) softmax of the logits
    top_indices: torch.Tensor  # (B, k) class indices, most probable first
    top_probs: torch.Tensor  # (B, k)


def predict(net: Classifier, images: torch.Tensor, k: int = 5) -> Predictions:
    """Softmax probabilities and the top-`k` classes of `images` `(B, C, H, W)`."""
    with torch.no_grad():
        logits = net(images).float()
    if logits.dim() > 2:  # a segmentation model's (B, K, H, W): the image's mean per class
        logits = logits.flatten(2).mean(dim=2)
    probs = logits.softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    return Predictions(probs, top.indices, top.values)


def label_of(loaded: LoadedModel, index: int) -> str:
    """The class name of `index`, or `class N` when the model has no labels."""
    return loaded.labels[index] if 0 <= index < len(loaded.labels) else f"class {index}"


def check_target(loaded: LoadedModel, target: str | int) -> str | int:
    """Validate a target (`top1`, a class name or an index) before any work; VizError if bad."""
    if isinstance(target, str) and target.strip().lower() == "top1":
        return "top1"
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit() and not loaded.labels:
        raise VizError(
            f"target {target!r} is a class name but {loaded.name} has no labels; "
            "give top1 or a class index"
        )
    index = loaded.class_index(target) if loaded.labels else int(target)
    if index < 0:
        raise VizError(f"target {target!r} must be top1, a class name or an index >= 0")
    return index


def resolve_targets(
    loaded: LoadedModel, target: str | int, predictions: Predictions
) -> torch.Tensor:
    """One class index per image `(B,)`: the top-1 prediction, or the named / numbered class."""
    checked = check_target(loaded, target)
    batch = predictions.probabilities.shape[0]
    if checked == "top1":
        return predictions.top_indices[:, 0].clone()
    index = int(checked)
    if index >= predictions.probabilities.shape[1]:
        raise VizError(
            f"target {index} out of range; the model has {predictions.probabilities.shape[1]} classes"
        )
    return torch.full((batch,), index, dtype=torch.long, device=predictions.top_indices.device)


# What `attribute(..., targets=...)` accepts: a `(B,)` tensor of class indices, one class index or
# name per image (a list or tuple), or one class index or name for every image.
Targets = torch.Tensor | int | str | Sequence[int | str]


def _one_target(loaded: LoadedModel, target: object) -> str | int:
    """`top1`, a class index or a class name, checked; VizError for anything else."""
    if isinstance(target, str):
        return check_target(loaded, target)
    if isinstance(target, bool):  # an int to Python, but never meant as class 0 or 1
        raise VizError(f"target {target!r} must be a class index or a class name")
    try:
        index = operator.index(cast(SupportsIndex, target))  # int, numpy ints, 0-dim int tensors
    except TypeError:
        raise VizError(
            f"target {target!r} ({type(target).__name__}) must be a class index or a class name"
        ) from None
    return check_target(loaded, index)


def targets_of(loaded: LoadedModel, targets: Targets, predictions: Predictions) -> torch.Tensor:
    """One class index per image `(B,)`, on the predictions' device, from any form of `Targets`.

    A single index or name stands for every image; a list or tuple names one class per image
    (indices or names, case-insensitive, `top1` allowed); a tensor gives the indices directly.
    """
    batch, classes = predictions.probabilities.shape
    device = predictions.top_indices.device
    if isinstance(targets, torch.Tensor):
        if targets.dim() == 0:
            targets = targets.expand(batch)
        if targets.shape != (batch,):
            raise VizError(
                f"targets has shape {tuple(targets.shape)}; give one class per image, "
                f"shape ({batch},) for this batch of {batch}"
            )
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise VizError(f"targets has dtype {targets.dtype}; give integer class indices")
        indices = targets.to(device=device, dtype=torch.long)
        bad = indices[(indices < 0) | (indices >= classes)]
        if bad.numel():  # one host sync per call, not per image
            raise VizError(
                f"targets {sorted(set(bad.tolist()))} out of range; "
                f"the model has classes 0..{classes - 1}"
            )
        return indices
    if isinstance(targets, str) or not isinstance(targets, (list, tuple)):
        return resolve_targets(loaded, _one_target(loaded, targets), predictions)
    if len(targets) != batch:
        raise VizError(
            f"got {len(targets)} targets for a batch of {batch} images; "
            "give one per image, or a single class for all of them"
        )
    checked = [_one_target(loaded, t) for t in targets]
    wanted = [-1 if c == "top1" else int(c) for c in checked]
    over = sorted({i for i in wanted if i >= classes})
    if over:
        raise VizError(f"targets {over} out of range; the model has classes 0..{classes - 1}")
    indices = torch.tensor(wanted, dtype=torch.long, device=device)
    return torch.where(indices < 0, predictions.top_indices[:, 0], indices)


def _names_top1(targets: object) -> bool:
    if isinstance(targets, str):
        return targets.strip().lower() == "top1"
    if isinstance(targets, (list, tuple)):
        return any(_names_top1(t) for t in targets)
    return False


def shape_of_predictions(
    loaded: LoadedModel, targets: Targets, images: torch.Tensor
) -> Predictions | None:
    """A stand-in for `predict` where `targets_of` needs no prediction: the targets name no
    `top1` and the labels give the class count. It holds only shapes (no probabilities), so a
    method called with explicit classes runs no extra forward pass; None where it cannot."""
    if not loaded.labels or _names_top1(targets):
        return None
    batch, device = images.shape[0], images.device
    empty = torch.empty((batch, len(loaded.labels)), device=device)
    first = torch.zeros((batch, 1), dtype=torch.long, device=device)
    return Predictions(empty, first, empty[:, :1])
