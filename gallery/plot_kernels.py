"""
Classic kernels
===============

What one convolution does, before a network learns its own kernels: identity, three edge
detectors, sharpen, box blur and Gaussian blur applied to ``coffee`` with ``conv2d``, each output
beside its kernel matrix.

Run: ``python gallery/plot_kernels.py [OUT_DIR]`` (default ``gallery/out/``; seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

from vizcnn.data.samples import sample_image
from vizcnn.features import apply_kernels, classic_kernels
from vizcnn.features.figures import kernels_figure
from vizcnn.io.imaging import resize, save_png

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
image = resize(sample_image("coffee").unsqueeze(0), (200, 267))[0].clamp(0, 1)

# %%
# Every kernel, edge pixels repeated at the border (no dark frame).
kernels = classic_kernels()
save_png(kernels_figure(image, kernels, apply_kernels(image, kernels)), out / "kernels.png")
print(f"wrote {out}/kernels.png")
