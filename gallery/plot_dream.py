"""
DeepDream with the default model
================================

Dream a bundled photo with efficientnet_lite0 (offline): the README's before/after picture, the
same photo dreamed at shallower and deeper layers, a channel subset, and a guided dream.

Run: ``python gallery/plot_dream.py [OUT_DIR]`` (default ``gallery/out/``; about a minute on 2 cores).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import vizcnn
from vizcnn.data.samples import sample_image
from vizcnn.io.imaging import labeled_sheet, save_png

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
loaded = vizcnn.load_model("efficientnet_lite0")


def run(image: torch.Tensor, **options: object) -> torch.Tensor:
    if QUICK:  # two small octaves, two steps each
        options = {**options, "octaves": 2, "steps": 2, "octave_scale": 2.0}
    config = vizcnn.DreamConfig(**options)  # type: ignore[arg-type]
    return vizcnn.dream(loaded, image, config, seed=0)  # the CLI's --seed 0: its picture


# %%
# Before and after: the default dream layers (``_blocks.9`` and ``_blocks.11``), 4 octaves x 10 steps.
coffee = sample_image("coffee")
dreamed = run(coffee)
save_png(dreamed, out / "dream_coffee.png")
save_png(
    labeled_sheet([coffee, dreamed], ["coffee", "vizcnn dream sample:coffee"], columns=2),
    out / "dream_before_after.png",
)

# %%
# Depth changes what is amplified: strokes and textures early, eyes and fur deeper.
cat = sample_image("chelsea")
layers = ["_blocks.4", "_blocks.8", "_blocks.11", "_blocks.13"]
dreams = [run(cat, layers=(layer,)) for layer in layers]
save_png(labeled_sheet(dreams, layers, columns=2), out / "dream_layers.png")

# %%
# A channel subset with a weight, and a guided dream (towards the flower photo's features).
subset = run(cat, layers=("_blocks.9:0-15@2",), steps=20)
guided = vizcnn.dream(
    loaded,
    cat,
    vizcnn.DreamConfig(layers=("_blocks.9",), steps=2 if QUICK else 20, octaves=2 if QUICK else 4),
    guide=sample_image("flower"),
    seed=0,
)
save_png(
    labeled_sheet([subset, guided], ["_blocks.9:0-15@2", "guided by sample:flower"], columns=2),
    out / "dream_subset_guided.png",
)
print(f"wrote dream_*.png to {out}")
