"""
Attribution methods compared, with numbers beside the pictures
==============================================================

Every attribution method on two bundled photos (coffee, chelsea) with efficientnet_lite0
(offline); the deletion/insertion areas per method; and the model-randomization sanity check
(Adebayo et al. 2018) on the same photos.

Run: ``python gallery/plot_attribution.py [OUT_DIR]`` (default ``gallery/out/``; several minutes on
2 CPU cores, most of it in occlusion and the sanity check).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import torch
from PIL import Image

import vizcnn
from vizcnn.attribution import (
    METHODS,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
    attribute,
)
from vizcnn.attribution.classifier import label_of
from vizcnn.attribution.deletion import deletion_curves
from vizcnn.attribution.figures import (
    attribution_figure,
    curves_figure,
    figure_png_bytes,
    sanity_figure,
)
from vizcnn.attribution.sanity import sanity_check
from vizcnn.core.run_options import RunOptions
from vizcnn.data.datasets import preprocess
from vizcnn.data.samples import sample_image

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
out.mkdir(parents=True, exist_ok=True)
loaded = vizcnn.load_model("efficientnet_lite0")
names = ["coffee", "chelsea"]
images = torch.stack([preprocess(sample_image(n), loaded.input_size) for n in names])

# %%
# All eight methods, one row per photo, each map scaled by its own 99th percentile.
quick_methods = {  # fewer steps, samples and occlusion windows: rough maps, in seconds
    "ig": IntegratedGradients(loaded, steps=4),
    "smoothgrad": SmoothGrad(loaded, samples=2),
    "occlusion": Occlusion(loaded, window=56, stride=56),
}
methods = [quick_methods.get(m, m) if QUICK else m for m in METHODS]
result = attribute(loaded, images, methods, run=RunOptions(batch=2))
rows = []
for i, name in enumerate(names):
    top5 = [
        (label_of(loaded, int(k)), float(p))
        for k, p in zip(
            result.predictions.top_indices[i], result.predictions.top_probs[i], strict=True
        )
    ]
    maps = {m: result.maps[m][i] for m in METHODS}
    target = label_of(loaded, int(result.targets[i]))
    png = figure_png_bytes(attribution_figure(images[i], maps, top5, target, title=name), dpi=80)
    rows.append(Image.open(io.BytesIO(png)).convert("RGB"))
sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
for k, row in enumerate(rows):
    sheet.paste(row, (0, sum(r.height for r in rows[:k])))
sheet.save(out / "attribution_methods.png")
sheet.save(out / "attribution_methods.jpg", quality=85, optimize=True)  # docs/images/ copy

# %%
# Deletion / insertion: remove (or insert) the most-attributed pixels first.
curved = ("saliency", "gradcam") if QUICK else METHODS
curves = deletion_curves(
    loaded, images, {m: result.maps[m] for m in curved}, result.targets, steps=4 if QUICK else 16
)
(out / "attribution_deletion.png").write_bytes(figure_png_bytes(curves_figure(curves)))
lines = ["| method | deletion area (lower = better) | insertion area (higher = better) |"]
lines.append("|---|---|---|")
for m, c in curves.items():
    lines.append(f"| {m} | {c.deletion_area.mean():.3f} | {c.insertion_area.mean():.3f} |")

# %%
# The sanity check: re-initialize lite0 from the classifier down, in 6 stages.
checked = ("saliency", "ig", "smoothgrad", "guided", "deconv", "gradcam", "guided-gradcam")
checked = ("saliency", "gradcam") if QUICK else checked
sanity_methods = [SmoothGrad(loaded, samples=8) if m == "smoothgrad" else m for m in checked]


def maps_of(
    model: vizcnn.LoadedModel, xs: torch.Tensor, ts: torch.Tensor
) -> dict[str, torch.Tensor]:
    return attribute(model, xs, sanity_methods, targets=ts, run=RunOptions(batch=2)).maps


sanity = sanity_check(loaded, images, result.targets, maps_of, stages=2 if QUICK else 6, seed=0)
(out / "attribution_sanity.png").write_bytes(figure_png_bytes(sanity_figure(sanity)))
lines += ["", "Spearman rank correlation of |attribution| with the trained model's maps:", "```"]
lines += [sanity.table(), "```", "", "SSIM / HOG after the last stage:"]
for m in checked:
    lines.append(f"- {m}: SSIM {sanity.ssim[m][-1]:.3f}, HOG {sanity.hog[m][-1]:.3f}")
lines.append(
    f"\nseconds per method (2 images): { {k: round(v, 2) for k, v in result.seconds.items()} }"
)
(out / "attribution_tables.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
