"""vizcnn: feature visualization and interpretability for convolutional networks in PyTorch."""

import importlib
from typing import TYPE_CHECKING

from vizcnn._version import __version__ as __version__
from vizcnn.attribution import (
    LRP,
    AblationCAM,
    Attributions,
    Deconvolution,
    EigenCAM,
    FullGrad,
    GradCAM,
    GradCAMPlusPlus,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    Saliency,
    ScoreCAM,
    SegmentationTarget,
    SmoothGrad,
    XGradCAM,
    attribute,
)
from vizcnn.concepts import (
    ConceptConfig,
    Concepts,
    concept_coefficients,
    concept_heatmaps,
    concept_importance,
    concept_patches,
    concept_renders,
    concepts_from_sample,
    find_concepts,
    sampled_concept_patches,
)
from vizcnn.core.devices import Seed, as_generator, make_generator, resolve_device
from vizcnn.core.errors import InputRangeWarning, VizError
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import open_dataset
from vizcnn.deepdream.dreaming import DreamConfig, LayerTarget, dream
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames
from vizcnn.features import (
    EquivarianceConfig,
    FeatureMapConfig,
    FilterConfig,
    ProbeConfig,
    apply_kernels,
    embed_dataset,
    feature_maps,
    filter_grid,
    measure_equivariance,
    nearest,
    probe_layers,
)
from vizcnn.hooks import Layer, capture, forward_to, layer_name, parse_layer
from vizcnn.io.display import show
from vizcnn.io.imaging import load_image, make_grid, save_json, save_png
from vizcnn.mining.layers import DataPass, LayerMined, data_pass, mine_layers
from vizcnn.mining.patches import MinedPatches, mine_patches
from vizcnn.mining.reservoir import PositionSample, SampleConfig
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.mining.topk import TopK
from vizcnn.models.base import ModelLike, as_loaded, describe
from vizcnn.models.loading import DEFAULT_MODEL, LoadedModel, available_models, load_model
from vizcnn.optvis.accentuation import AccentuationResult, accentuate
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.objectives import Objective
from vizcnn.optvis.rendering import RenderResult, render
from vizcnn.runs import (
    AblationRun,
    AccentuateRun,
    AttributeRun,
    ConceptsRun,
    DigitsRun,
    DreamRun,
    EquivarianceRun,
    FeatureMapsRun,
    FiltersRun,
    KernelsRun,
    LesionRun,
    MineRun,
    NeighborsRun,
    ProbeRun,
    RenderRun,
    RenderUnit,
    ablate_folder,
    accentuate_files,
    attribute_folder,
    concepts_folder,
    digits_weights_file,
    dream_file,
    equivariance_folder,
    featuremaps_folder,
    filters_file,
    kernels_file,
    lesion_folder,
    mine_folder,
    neighbors_file,
    probe_folder,
    render_folder,
)

if TYPE_CHECKING:  # typed for checkers and editors; imported on first use below
    from vizcnn.report import ReportConfig, ReportRun, report_folder

# imported on first use: the report pulls in matplotlib and Jinja2 (about half a second), which
# a render or dream should not pay
_LAZY = {name: "vizcnn.report" for name in ("ReportConfig", "ReportRun", "report_folder")}


def __getattr__(name: str) -> object:
    """`vizcnn.report_folder`, `ReportConfig` and `ReportRun`, imported on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vizcnn' has no attribute {name!r}")


__all__ = [
    "Attributions",
    "attribute",
    "Saliency",
    "IntegratedGradients",
    "SmoothGrad",
    "GuidedBackprop",
    "Deconvolution",
    "GradCAM",
    "GuidedGradCAM",
    "Occlusion",
    "LRP",
    "GradCAMPlusPlus",
    "XGradCAM",
    "HiResCAM",
    "LayerCAM",
    "EigenCAM",
    "ScoreCAM",
    "AblationCAM",
    "FullGrad",
    "SegmentationTarget",
    "AblationRun",
    "AccentuateRun",
    "AttributeRun",
    "DigitsRun",
    "DreamRun",
    "EquivarianceRun",
    "FeatureMapsRun",
    "FiltersRun",
    "KernelsRun",
    "LesionRun",
    "MineRun",
    "NeighborsRun",
    "ProbeRun",
    "RenderRun",
    "RenderUnit",
    "ReportConfig",
    "ReportRun",
    "ablate_folder",
    "accentuate_files",
    "attribute_folder",
    "digits_weights_file",
    "dream_file",
    "equivariance_folder",
    "featuremaps_folder",
    "filters_file",
    "kernels_file",
    "lesion_folder",
    "mine_folder",
    "neighbors_file",
    "probe_folder",
    "render_folder",
    "report_folder",
    "RunOptions",
    "Seed",
    "Concepts",
    "concept_coefficients",
    "concept_heatmaps",
    "concept_importance",
    "concept_patches",
    "concept_renders",
    "find_concepts",
    "concepts_from_sample",
    "sampled_concept_patches",
    "ConceptConfig",
    "ConceptsRun",
    "concepts_folder",
    "as_generator",
    "DreamConfig",
    "LayerTarget",
    "ZoomConfig",
    "dream",
    "dream_frames",
    "EquivarianceConfig",
    "FeatureMapConfig",
    "FilterConfig",
    "apply_kernels",
    "embed_dataset",
    "feature_maps",
    "filter_grid",
    "measure_equivariance",
    "nearest",
    "ProbeConfig",
    "probe_layers",
    "MineConfig",
    "LayerMined",
    "MinedPatches",
    "TopK",
    "mine_patches",
    "mine_layers",
    "data_pass",
    "DataPass",
    "SampleConfig",
    "PositionSample",
    "mine_topk",
    "open_dataset",
    "AccentuationResult",
    "accentuate",
    "Objective",
    "RenderConfig",
    "RenderResult",
    "render",
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelLike",
    "as_loaded",
    "describe",
    "VizError",
    "InputRangeWarning",
    "Layer",
    "layer_name",
    "available_models",
    "capture",
    "forward_to",
    "load_image",
    "load_model",
    "make_generator",
    "make_grid",
    "parse_layer",
    "resolve_device",
    "save_json",
    "save_png",
    "show",
]
