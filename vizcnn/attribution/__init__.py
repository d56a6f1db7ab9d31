"""Attribution maps (saliency, IG, SmoothGrad, guided backprop, deconvnet, Grad-CAM, occlusion)
through captum, with deletion/insertion curves and the model-randomization sanity check."""

from vizcnn.attribution.checks import MapWarning
from vizcnn.attribution.methods import METHODS, AttributionConfig, Attributions, attribute

__all__ = ["METHODS", "AttributionConfig", "Attributions", "MapWarning", "attribute"]
