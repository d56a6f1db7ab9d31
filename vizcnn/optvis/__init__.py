"""Activation maximization: objectives, image parameterizations, transforms, the render loop."""

from vizcnn.optvis.config import RenderConfig
from vizcnn.optvis.objectives import Objective
from vizcnn.optvis.rendering import RenderResult, render, render_iter

__all__ = ["Objective", "RenderConfig", "RenderResult", "render", "render_iter"]
