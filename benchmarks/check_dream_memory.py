"""How close `dream_memory`'s estimate is to a dream's real peak (CPU resident memory).

Usage: OMP_NUM_THREADS=2 .venv/bin/python benchmarks/check_dream_memory.py SIZE TILE
One octave, one step of the default model's default layers on a SIZE x SIZE random image.
"""

import resource
import sys

import torch

from vizcnn.deepdream.dreaming import DreamConfig, dream, dream_memory
from vizcnn.models.loading import load_model

size, tile = int(sys.argv[1]), int(sys.argv[2])
m = load_model("efficientnet_lite0", device="cpu")
cfg = DreamConfig(tile=tile, octaves=1, steps=1)
est = dream_memory(m, (size, size), cfg)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
img = torch.rand(3, size, size)
dream(m, img, cfg)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(
    f"size {size} tile {tile}: estimate {est.total / 2**30:.2f} GiB, peak RSS growth {after - before:.2f} GiB (RSS before {before:.2f}), ratio {est.total / 2**30 / (after - before):.2f}"
)
