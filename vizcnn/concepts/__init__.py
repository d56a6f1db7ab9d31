"""Concept discovery (CRAFT): NMF of a layer's activations into k concept directions, and views
of each concept (renders, top patches, heatmaps, removal importance)."""

from vizcnn.concepts.config import ConceptConfig, default_concept_layer
from vizcnn.concepts.discovery import (
    Concepts,
    concepts_from_sample,
    find_concepts,
    nonnegative_layers,
)
from vizcnn.concepts.nmf import nmf, nnls
from vizcnn.concepts.views import (
    concept_coefficients,
    concept_heatmaps,
    concept_importance,
    concept_patches,
    concept_renders,
    logits_without_concepts,
    sampled_concept_patches,
)

__all__ = [
    "ConceptConfig",
    "default_concept_layer",
    "Concepts",
    "concept_coefficients",
    "concept_heatmaps",
    "concept_importance",
    "concept_patches",
    "concept_renders",
    "concepts_from_sample",
    "find_concepts",
    "logits_without_concepts",
    "nmf",
    "nnls",
    "nonnegative_layers",
    "sampled_concept_patches",
]
