"""Activation maximization: objectives, image parameterizations, transforms, the render loop."""

from vizcnn.optvis.objectives import Objective
from vizcnn.optvis.rendering import RenderConfig, RenderResult, render, render_iter

__all__ = ["Objective", "RenderConfig", "RenderResult", "render", "render_iter"]
