"""DeepDream: the dream loop with octaves and tiling, and zoom videos."""

from vizcnn.deepdream.dreaming import DreamConfig, LayerTarget, dream
from vizcnn.deepdream.zoom import ZoomConfig, dream_frames

__all__ = ["DreamConfig", "LayerTarget", "ZoomConfig", "dream", "dream_frames"]
