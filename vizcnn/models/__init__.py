"""Models: load by spec (bundled, torchvision, checkpoints, factories), the zoo's default layers, LeNet."""

from vizcnn.models.loading import (
    DEFAULT_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadedModel,
    available_models,
    freeze,
    imagenet_labels,
    load_model,
    torchvision_names,
    weights_file,
)

__all__ = [
    "DEFAULT_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LoadedModel",
    "available_models",
    "freeze",
    "imagenet_labels",
    "load_model",
    "torchvision_names",
    "weights_file",
]
