"""
Feature accentuation: what in this photo drives a unit
======================================================

Feature accentuation (Hamblin, Fel et al. 2024) starts from a real photo and pushes one unit up
while an earlier layer's activations are held near the photo's, in a Fourier-phase
parameterization seeded with the photo and with random crops each step. The change shows what
*in this photo* the unit responds to. Here channel 56 of efficientnet_lite0's ``_blocks.9`` on
the bundled coffee photo: original, accentuated, and the change. The README's accentuation
picture, as ``vizcnn accentuate sample:coffee -l _blocks.9:56 --figure -o coffee_56.png``
makes it.

Run: ``python gallery/plot_accentuate.py [OUT_DIR]`` (default ``gallery/out/``; about 20 s
on 2 CPU cores). Writes ``coffee_56.png`` and ``accentuate_coffee_figure.png``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import vizcnn

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
out.mkdir(parents=True, exist_ok=True)
loaded = vizcnn.load_model("efficientnet_lite0")

# %%
# The default recipe (100 steps, 8 crops a step of which the regularizer reads 2, held at
# ``_blocks.2`` with weight 1).
steps = {"steps": 4, "crops": 2} if QUICK else {}
run = vizcnn.accentuate_files(
    loaded, "sample:coffee", out / "coffee_56.png", "_blocks.9:56", figure=True, seed=0, **steps
)
print(f"{run.unit}: {run.start[0]:.2f} -> {run.end[0]:.2f} (held at {run.reg_layer})")
shutil.copyfile(run.figures[0], out / "accentuate_coffee_figure.png")
