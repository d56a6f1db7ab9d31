"""
Feature maps
============

The activation maps that scikit-image's ``coffee`` produces in efficientnet_lite0, early
(``_blocks.2``, 56x56) and late (``_blocks.9``, 14x14): the 16 strongest channels by mean
activation, as colour maps and over the photo.

Run: ``python gallery/plot_featuremaps.py [OUT_DIR]`` (default ``gallery/out/``; seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import vizcnn
from vizcnn.data.samples import sample_image
from vizcnn.features import FeatureMapConfig, feature_maps
from vizcnn.features.figures import featuremaps_figure
from vizcnn.io.imaging import save_png

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
loaded = vizcnn.load_model("efficientnet_lite0")
config = FeatureMapConfig(layers=("_blocks.2", "_blocks.9"), top=16)
shown, maps = feature_maps(loaded, sample_image("coffee"), config)

# %%
# Colour maps, one scale per figure (viridis: dark = 0).
for layer_maps in maps:
    save_png(featuremaps_figure(shown, layer_maps), out / f"featuremaps_{layer_maps.layer}.png")

# %%
# The same maps over the photo: where each channel fires.
save_png(
    featuremaps_figure(shown, maps[1], overlay=True, cmap="inferno"),
    out / "featuremaps_overlay.png",
)
print(f"wrote feature maps to {out}/")
