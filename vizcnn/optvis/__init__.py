"""Activation maximization: objectives, image parameterizations, transforms, the render loop;
feature accentuation (the same, started from a photograph and held close to it)."""

from vizcnn.optvis.accentuation import AccentuationResult, accentuate
from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.objectives import Objective
from vizcnn.optvis.rendering import RenderResult, render, render_iter

__all__ = [
    "AccentuationResult",
    "Objective",
    "RenderConfig",
    "RenderResult",
    "accentuate",
    "render",
    "render_iter",
]
