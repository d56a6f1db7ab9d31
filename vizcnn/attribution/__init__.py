"""Attribution maps (saliency, IG, SmoothGrad, guided backprop, deconvnet, Grad-CAM, occlusion)
through captum, the class-activation-map family (`cams`), LRP through zennit, one callable per
method, per-image and score targets, with deletion/insertion curves, ROAD and the confidence
metrics, and the model-randomization sanity check.

Example:
    >>> cam = GradCAM(model, "_blocks.15")(images, targets)  # (B, 1, H, W)
    >>> result = attribute(model, images, ["saliency", IntegratedGradients(model, steps=64)])
"""

from vizcnn.attribution.cams import (
    AblationCAM,
    EigenCAM,
    FullGrad,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from vizcnn.attribution.checks import MapWarning
from vizcnn.attribution.maps import Attributions, MethodsLike, attribute
from vizcnn.attribution.methods import (
    DEFAULT_METHODS,
    LRP,
    LRP_COMPOSITES,
    METHODS,
    Deconvolution,
    GradCAM,
    GuidedBackprop,
    GuidedGradCAM,
    IntegratedGradients,
    Method,
    Occlusion,
    Saliency,
    SmoothGrad,
    make_methods,
)
from vizcnn.attribution.targets import ScoreTarget, SegmentationTarget

__all__ = [
    "AblationCAM",
    "EigenCAM",
    "FullGrad",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "ScoreTarget",
    "SegmentationTarget",
    "XGradCAM",
    "DEFAULT_METHODS",
    "METHODS",
    "Attributions",
    "Deconvolution",
    "GradCAM",
    "GuidedBackprop",
    "GuidedGradCAM",
    "IntegratedGradients",
    "LRP",
    "LRP_COMPOSITES",
    "MapWarning",
    "Method",
    "MethodsLike",
    "Occlusion",
    "Saliency",
    "SmoothGrad",
    "attribute",
    "make_methods",
]
