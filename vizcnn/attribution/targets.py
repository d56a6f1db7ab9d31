"""Targets that are not one class per image: a score function on the model's outputs, and the
segmentation target (a category's logits summed over a pixel set).

A score target `(outputs) -> (B,)` replaces "the logit of class t": every method explains the
score it returns, for multi-label heads (a sum of logits), regression outputs or segmentation
models returning `(B, K, H, W)`. Methods see it through `ScoreNet`, a network whose one output
is that score, so each method needs nothing else (its target is output 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from vizcnn.attribution.classifier import Classifier
from vizcnn.core.errors import VizError

# the score each image contributes: model outputs (B, ...) -> (B,)
ScoreTarget = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class SegmentationTarget:
    """The sum of `category`'s logits over the pixels of `mask` (pytorch-grad-cam's
    `SemanticSegmentationTarget`), for models returning `(B, K, H, W)`.

    Example:
        >>> mask = (seg_model(x).argmax(1) == 12)  # (B, H, W): the pixels called class 12
        >>> cam = GradCAM(loaded, "backbone.layer4")(x, SegmentationTarget(12, mask))
    """

    category: int  # the output channel whose logits are summed
    mask: torch.Tensor  # (H, W) for every image or (B, H, W); 0/1 or weights

    def __post_init__(self) -> None:
        if self.category < 0:
            raise VizError(f"SegmentationTarget category = {self.category} must be >= 0")
        if self.mask.dim() not in (2, 3):
            raise VizError(
                f"SegmentationTarget mask has shape {tuple(self.mask.shape)}; give (H, W) or "
                "(B, H, W)"
            )

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 4:
            raise VizError(
                f"SegmentationTarget needs (B, K, H, W) outputs; the model returns shape "
                f"{tuple(outputs.shape)}"
            )
        if self.category >= outputs.shape[1]:
            raise VizError(
                f"SegmentationTarget category {self.category} out of range; the model has "
                f"categories 0..{outputs.shape[1] - 1}"
            )
        if self.mask.shape[-2:] != outputs.shape[-2:]:
            raise VizError(
                f"SegmentationTarget mask is {tuple(self.mask.shape[-2:])} pixels; the model's "
                f"output is {tuple(outputs.shape[-2:])}"
            )
        mask = self.mask.to(device=outputs.device, dtype=outputs.dtype)
        return (outputs[:, self.category] * mask).sum(dim=(-2, -1))


def is_score_target(targets: object) -> bool:
    """Whether `targets` is a score function (anything callable that is not a tensor)."""
    return callable(targets) and not isinstance(targets, torch.Tensor)


class ScoreNet(nn.Module):
    """A `Classifier` whose output is `(B, 1)`: the score `target` gives each image."""

    def __init__(self, net: Classifier, target: ScoreTarget) -> None:
        super().__init__()
        self.classifier = net  # registered: captum's hooks and layer lookups reach the model
        self.target = target

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.classifier(images)
        score = self.target(outputs)
        if not isinstance(score, torch.Tensor) or score.shape != (outputs.shape[0],):
            shape = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
            raise VizError(
                f"a score target must return one score per image, shape ({outputs.shape[0]},); "
                f"got {shape}"
            )
        return score[:, None]
