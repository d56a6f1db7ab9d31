"""Top-9 dataset patches: streaming top-k over a data set, then patches and projections."""

from vizcnn.mining.histogram import RunningHistogram
from vizcnn.mining.layers import DataPass, LayerMined, data_pass, mine_layers
from vizcnn.mining.patches import MinedPatches, mine_patches
from vizcnn.mining.reservoir import PositionReservoir, PositionSample, SampleConfig
from vizcnn.mining.streaming import MineConfig, mine_topk
from vizcnn.mining.topk import TopK

__all__ = [
    "DataPass",
    "PositionReservoir",
    "PositionSample",
    "SampleConfig",
    "data_pass",
    "LayerMined",
    "MineConfig",
    "MinedPatches",
    "RunningHistogram",
    "TopK",
    "mine_layers",
    "mine_patches",
    "mine_topk",
]
