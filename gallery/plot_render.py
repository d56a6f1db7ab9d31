"""
Activation maximization at three depths
=======================================

Render images that excite four channels each of an early, a middle and a late block of the
default model (efficientnet_lite0), and one image that the model takes for an espresso. Early
blocks respond to colours and fine textures, middle blocks to patterns and parts, late blocks to
object-like arrangements. All 13 images are optimized in one batch: one image per unit.

Run: ``python gallery/plot_render.py [OUT_DIR]`` (default ``gallery/out/``); about two to three
minutes on 2 quiet CPU cores (longer on a shared machine). Writes ``render_depths.png`` (the
README picture), ``render_espresso.png`` and one PNG per unit.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import torch

import vizcnn
from vizcnn.core.run_options import RunOptions
from vizcnn.io.imaging import labeled_sheet, resize, save_png
from vizcnn.optvis import objectives as obj

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
out.mkdir(parents=True, exist_ok=True)
loaded = vizcnn.load_model("efficientnet_lite0")

depths = {"early": "_blocks.2", "middle": "_blocks.9", "late": "_blocks.14"}
channels = [0, 1, 2, 3]
units: list[vizcnn.Objective | str] = [
    f"{layer}:{c}" for layer in depths.values() for c in channels
]
units.append(obj.class_logit("espresso"))

config = vizcnn.RenderConfig(steps=4 if QUICK else 96)
result = vizcnn.render(
    loaded,
    units,
    config,
    seed=0,
    progress=lambda done, total, message: print(f"\r{message}", end="", flush=True),
    run=RunOptions(batch=len(units)),
)
print()

for name, image in zip(result.units, result.images, strict=True):
    save_png(image, out / f"render_{re.sub(r'[^A-Za-z0-9.]+', '_', name).strip('_')}.png")

labels = [f"{depth} {layer}:{c}" for depth, layer in depths.items() for c in channels]
sheet = labeled_sheet(list(result.images[:-1]), labels, columns=len(channels))
save_png(sheet, out / "render_depths.png", {"model": loaded.name, "steps": config.steps})

with torch.no_grad():
    logits = loaded.module(loaded.normalize(resize(result.images[-1:], loaded.input_size)))
probability = float(logits.softmax(1)[0, loaded.class_index("espresso")])
espresso = labeled_sheet([result.images[-1]], [f"espresso p={probability:.3f}"])
save_png(espresso, out / "render_espresso.png", {"model": loaded.name})
print(f"wrote {out}/render_depths.png and render_espresso.png (espresso p={probability:.3f})")
