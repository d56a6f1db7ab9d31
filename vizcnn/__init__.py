"""vizcnn: feature visualization and interpretability for convolutional networks in PyTorch."""

from vizcnn.datasets import open_dataset
from vizcnn.deepdream import DreamConfig, LayerTarget, dream
from vizcnn.devices import make_generator, resolve_device
from vizcnn.errors import VizError
from vizcnn.hooks import capture, forward_to, parse_layer
from vizcnn.imaging import load_image, make_grid, save_json, save_png
from vizcnn.mining import MineConfig, TopK, mine_topk
from vizcnn.models import DEFAULT_MODEL, LoadedModel, available_models, load_model
from vizcnn.objectives import Objective
from vizcnn.patches import MinedPatches, mine_patches
from vizcnn.rendering import RenderConfig, RenderResult, render
from vizcnn.video import ZoomConfig, dream_frames

__version__ = "0.1.0"

__all__ = [
    "DreamConfig",
    "LayerTarget",
    "ZoomConfig",
    "dream",
    "dream_frames",
    "MineConfig",
    "MinedPatches",
    "TopK",
    "mine_patches",
    "mine_topk",
    "open_dataset",
    "Objective",
    "RenderConfig",
    "RenderResult",
    "render",
    "DEFAULT_MODEL",
    "LoadedModel",
    "VizError",
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
]
