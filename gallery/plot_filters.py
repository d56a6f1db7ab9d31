"""
First-layer filters
===================

The AlexNet figure of Krizhevsky et al. for the default model: efficientnet_lite0's 32 stem filters
(3x3x3) as RGB tiles, globally and per-filter normalized; LeNet-5's 1-channel filters as grey
tiles; and a torchvision model's first layer (AlexNet's 64 filters of 11x11x3) when its weights
are on disk.

Run: ``python gallery/plot_filters.py [OUT_DIR]`` (default ``gallery/out/``; seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import vizcnn
from vizcnn.features import FilterConfig, filter_grid
from vizcnn.features.figures import filters_figure
from vizcnn.io.imaging import save_png

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
lite0 = vizcnn.load_model("efficientnet_lite0")

# %%
# Global normalization: one colour scale for all 32 filters (which filters are strong).
grid = filter_grid(lite0, FilterConfig(scale=16))
save_png(filters_figure(grid, "efficientnet_lite0 _conv_stem, global"), out / "filters_lite0.png")

# %%
# Per-filter normalization, strongest filter first: each filter's own pattern.
grid = filter_grid(lite0, FilterConfig(normalize="per-filter", sort="norm", scale=16))
save_png(
    filters_figure(grid, "efficientnet_lite0 _conv_stem, per filter, by norm"),
    out / "filters_lite0_per_filter.png",
)

# %%
# A 1-channel network: one grey tile per filter (LeNet-5 trained on digits, 6 filters 5x5).
lenet = vizcnn.load_model("lenet5_digits")
save_png(filters_figure(filter_grid(lenet, FilterConfig(scale=12))), out / "filters_lenet5.png")

# %%
# A torchvision model, when its ImageNet weights are on disk (offline: skipped otherwise).
present = {row["name"] for row in vizcnn.available_models() if row["weights_present"]}
for name in ("alexnet", "resnet18", "vgg16"):
    if name in present:
        model = vizcnn.load_model(name)
        grid = filter_grid(model, FilterConfig(sort="norm", scale=4))
        save_png(filters_figure(grid, f"{name}, sorted by norm"), out / f"filters_{name}.png")
        break
else:
    print("no torchvision weights on disk: skipped the AlexNet-style figure")
print(f"wrote filter grids to {out}/")
