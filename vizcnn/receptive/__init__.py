"""Receptive fields (traced graph, measured fallback) and the layer table."""

from vizcnn.receptive.graph import Field, graph_fields, measure_field, receptive_fields

__all__ = ["Field", "graph_fields", "measure_field", "receptive_fields"]
