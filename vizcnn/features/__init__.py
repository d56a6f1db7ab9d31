"""Features: first-layer filter grids, feature maps, classic kernels, translation equivariance and
feature-space nearest neighbours."""

from vizcnn.features.equivariance import (
    EquivarianceConfig,
    EquivarianceResult,
    measure_equivariance,
    parse_shifts,
    prepare_images,
)
from vizcnn.features.featuremaps import FeatureMapConfig, LayerMaps, feature_maps
from vizcnn.features.filters import FilterConfig, FilterGrid, filter_grid
from vizcnn.features.kernels import apply_kernel, apply_kernels, classic_kernels
from vizcnn.features.neighbors import Embeddings, distances, embed, embed_dataset, nearest

__all__ = [
    "EquivarianceConfig",
    "EquivarianceResult",
    "Embeddings",
    "FeatureMapConfig",
    "FilterConfig",
    "FilterGrid",
    "LayerMaps",
    "apply_kernel",
    "apply_kernels",
    "classic_kernels",
    "distances",
    "embed",
    "embed_dataset",
    "feature_maps",
    "filter_grid",
    "measure_equivariance",
    "nearest",
    "parse_shifts",
    "prepare_images",
]
