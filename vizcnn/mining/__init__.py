"""Top-9 dataset patches: streaming top-k over a data set, then patches and projections."""

from vizcnn.mining.histogram import RunningHistogram
from vizcnn.mining.layers import LayerMined, mine_layers
from vizcnn.mining.patches import MinedPatches, mine_patches
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.mining.topk import TopK

__all__ = [
    "LayerMined",
    "MineConfig",
    "MinedPatches",
    "RunningHistogram",
    "TopK",
    "mine_layers",
    "mine_patches",
    "mine_topk",
]
