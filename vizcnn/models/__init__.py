"""Models: load by spec (bundled, torchvision, checkpoints, factories), default layers per model, LeNet."""

from vizcnn.models.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    ModelLike,
    as_loaded,
    describe,
    freeze,
    imagenet_labels,
)
from vizcnn.models.loading import (
    DEFAULT_MODEL,
    available_models,
    load_model,
    torchvision_names,
    weights_file,
)
from vizcnn.models.structure import LayerChoice, Stage, stages

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LayerChoice",
    "LoadedModel",
    "ModelLike",
    "Stage",
    "as_loaded",
    "describe",
    "available_models",
    "freeze",
    "imagenet_labels",
    "load_model",
    "stages",
    "torchvision_names",
    "weights_file",
]
