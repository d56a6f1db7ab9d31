"""Attribution maps (saliency, IG, SmoothGrad, guided backprop, deconvnet, Grad-CAM, occlusion)
through captum and LRP through zennit, one callable per method, with deletion/insertion curves and the
model-randomization sanity check.

Example:
    >>> cam = GradCAM(model, "_blocks.15")(images, targets)  # (B, 1, H, W)
    >>> result = attribute(model, images, ["saliency", IntegratedGradients(model, steps=64)])
"""

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

__all__ = [
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
