"""
Concepts: a layer factorized into parts a person can name
=========================================================

The activations of efficientnet_lite0's ``_blocks.6._swish#1`` (a non-negative layer: the
ReLU6, named ``_swish`` in lite0, after block 6's depthwise convolution) over 256 crops of the bundled photos, factorized
by NMF into six concept directions (CRAFT's recipe, Fel et al. 2023). Each row of the contact
sheet is one concept: the render of its direction, its top-9 patches, its heatmaps on four of
the images, and its removal importance (how much each image's top-1 logit falls when the concept
is taken out of the layer). The README's concept sheet, as
``vizcnn concepts samples -k 6 --limit 256 --crops 16 --importance-images 16 -o concepts/``
makes it.

Run: ``python gallery/plot_concepts.py [OUT_DIR]`` (default ``gallery/out/``; about a minute on
2 quiet CPU cores). Writes ``concepts/`` (every picture, ``concepts.json``) and
``concepts_lite0.jpg``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PIL import Image

import vizcnn

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
out.mkdir(parents=True, exist_ok=True)
loaded = vizcnn.load_model("efficientnet_lite0")

# %%
# Six concepts over 256 crops (16 of each of the 16 bundled photos); the default layer of
# lite0 is ``_blocks.6._swish#1``, and every concept's render uses the render defaults.
config = vizcnn.ConceptConfig(
    k=3 if QUICK else 6,
    limit=32 if QUICK else 256,
    crops=2 if QUICK else 16,
    importance_images=4 if QUICK else 16,
    render=vizcnn.RenderConfig(steps=4) if QUICK else vizcnn.ConceptConfig().render,
)
run = vizcnn.concepts_folder(loaded, "samples", out / "concepts", config, seed=0)
print(f"{run.concepts.k} concepts of {run.concepts.layer}, "
      f"reconstruction error {run.concepts.reconstruction_error:.3f}")  # fmt: skip

# %%
# The contact sheet, saved as a JPEG for the README.
sheet = Image.open(out / "concepts" / "concepts.png").convert("RGB")
sheet.save(out / "concepts_lite0.jpg", quality=88)
