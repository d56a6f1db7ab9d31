"""Receptive fields (traced graph, measured fallback) and the layer table."""

from vizcnn.receptive.field import Field, adaptive_bins
from vizcnn.receptive.graph import graph_fields
from vizcnn.receptive.measured import FieldProbe, measure_field, probe_fields, receptive_fields

__all__ = [
    "Field",
    "FieldProbe",
    "adaptive_bins",
    "graph_fields",
    "measure_field",
    "probe_fields",
    "receptive_fields",
]
