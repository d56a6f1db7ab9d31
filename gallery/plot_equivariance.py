"""
Translation equivariance by depth
=================================

Shift the input by 1..8 pixels and compare each layer's map with its own map shifted by
shift / stride: the relative error against depth, for efficientnet_lite0 and ResNet-18 (ImageNet
weights when on disk, else randomly initialized: equivariance is a property of the architecture),
on 8 bundled photos. Even shifts stay exact through the first stride-2 layers; odd shifts break
at the first stride; the pooled vector and the logits are compared unshifted (invariance).

Run: ``python gallery/plot_equivariance.py [OUT_DIR]`` (default ``gallery/out/``; a minute).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torchvision

import vizcnn
from vizcnn.data.datasets import open_dataset
from vizcnn.features import EquivarianceConfig, measure_equivariance
from vizcnn.features.figures import equivariance_figure
from vizcnn.io.imaging import save_png
from vizcnn.models.base import describe

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out")
config = EquivarianceConfig(shifts=(1, 2) if QUICK else tuple(range(1, 9)))
lite0 = vizcnn.load_model("efficientnet_lite0")
present = {row["name"] for row in vizcnn.available_models() if row["weights_present"]}
if "resnet18" in present:
    resnet, resnet_name = vizcnn.load_model("resnet18"), "resnet18"
else:
    torch.manual_seed(0)
    resnet = describe(torchvision.models.resnet18(weights=None).eval(), name="resnet18")
    resnet_name = "resnet18 (random init)"


def photos(size: tuple[int, int]) -> torch.Tensor:
    """8 bundled photos, `config.margin` wider than `size` so that every shift is a crop."""
    margin = config.margin
    data = open_dataset(
        "samples",
        3,
        (size[0] + margin[0], size[1] + margin[1]),
        crops_per_image=1,
        limit=2 if QUICK else 8,
    )
    return torch.stack([data[i]["image"] for i in range(len(data))])


results = {
    "efficientnet_lite0": measure_equivariance(lite0, photos(lite0.input_size), config),
    resnet_name: measure_equivariance(resnet, photos((224, 224)), config),
}
try:  # a second ImageNet network, where the efficientnet_lite1 weights package is installed
    lite1 = vizcnn.load_model("efficientnet_lite1")
    results["efficientnet_lite1"] = measure_equivariance(lite1, photos(lite1.input_size), config)
except vizcnn.VizError:
    pass
save_png(
    equivariance_figure(results, "translation equivariance by depth (8 photos, shifts 1..8)"),
    out / "equivariance.png",
)
for name, result in results.items():
    (out / f"equivariance_{name.split()[0]}.md").write_text(result.markdown())
print(f"wrote {out}/equivariance.png and the tables")
