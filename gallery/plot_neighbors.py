"""
A CNN as a feature extractor: nearest neighbours
================================================

Embed 64 crops of the bundled photos at the input of efficientnet_lite0's classifier (1280
numbers each), then show three queries next to their 5 nearest crops by L2 distance. The
embeddings are cached in ``OUT/.vizcnn_cache``: a second run skips the forward passes over the data.

Run: ``python gallery/plot_neighbors.py [OUT_DIR]`` (default ``gallery/out/``; a minute).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import vizcnn
from vizcnn.data.datasets import open_dataset, preprocess
from vizcnn.data.samples import sample_image
from vizcnn.features import embed, embed_dataset, nearest
from vizcnn.features.figures import neighbors_figure
from vizcnn.io.imaging import save_png

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
loaded = vizcnn.load_model("efficientnet_lite0")
data = open_dataset("samples", 3, loaded.input_size, crops_per_image=1 if QUICK else 4, seed=1)
embeddings = embed_dataset(loaded, data, cache_dir=out / ".vizcnn_cache")

# %%
# Queries: a crop of the cat, the astronaut's face region, and a whole photo that is in the data.
cat = sample_image("chelsea")[:, 50:250, 100:300]
astronaut = sample_image("astronaut")[:, 0:260, 120:380]
queries = [preprocess(img, loaded.input_size) for img in (cat, astronaut, sample_image("rocket"))]
names = ["chelsea (crop)", "astronaut (crop)", "rocket"]
dist, index = nearest(
    embed(loaded, torch.stack(queries)), embeddings.vectors, k=5, valid=embeddings.valid
)
figure = neighbors_figure(
    queries,
    names,
    [[data.image(int(i)) for i in row] for row in index],
    [[embeddings.names[int(i)] for i in row] for row in index],
    dist,
)
save_png(figure, out / "neighbors.png")
print(f"wrote {out}/neighbors.png ({len(data)} data images, cached: {embeddings.cached})")
