"""Features: first-layer filter grids, feature maps, classic kernels, translation equivariance and
feature-space nearest neighbours, linear probes per layer."""

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
from vizcnn.features.probes import LayerProbe, ProbeConfig, ProbeResult, probe_layers

__all__ = [
    "EquivarianceConfig",
    "EquivarianceResult",
    "Embeddings",
    "LayerProbe",
    "ProbeConfig",
    "ProbeResult",
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
    "probe_layers",
    "prepare_images",
]
