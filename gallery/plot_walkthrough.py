"""
Walk-through: a torchvision CNN of your own, in a notebook
==========================================================

The steps a user takes with a network vizcnn has never seen, one cell each, as in a Jupyter
notebook (download this page as ``.ipynb`` below): build a torchvision ResNet-18, ``describe``
it (mean, std, input size), read its layer table, render channels, mine the dataset patches
that excite them, explain two photos with saliency and Grad-CAM, and write the HTML report.
Every result shows itself in a notebook (its ``_repr_png_``); ``vizcnn.show`` gives the same
picture as a PIL image, saved here for this page.

The network here has random weights (no download: put your own ``load_state_dict`` in the
first cell), so its renders are textures and its maps follow edges rather than objects; the
same cells on a trained network show what it learned (:doc:`plot_own_model` trains one first).

Run: ``python gallery/plot_walkthrough.py [OUT_DIR]`` (seconds with ``VIZCNN_GALLERY_QUICK=1``,
a few minutes without, on 2 CPU cores).
"""

# %%
# Your model: any ``nn.Module``. Load your weights here (``net.load_state_dict(...)``).
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torchvision

import vizcnn
from vizcnn.data.samples import sample_image
from vizcnn.io.imaging import resize
from vizcnn.receptive.table import layer_table

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings for CI
out = Path(sys.argv[1] if len(sys.argv) > 1 else "gallery/out/walkthrough")
out.mkdir(parents=True, exist_ok=True)

torch.manual_seed(0)  # torchvision draws its initial weights from the global generator
net = torchvision.models.resnet18(weights=None)

# %%
# ``describe`` attaches what vizcnn cannot guess: the normalization your training used, the
# input size, class names (here ImageNet's statistics and 128 px, no names: classes by index).
loaded = vizcnn.describe(net, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), input_size=128)
table = layer_table(loaded, (loaded.channels, *loaded.input_size))
print("\n".join(table.format().splitlines()[:14]))

# %%
# Activation maximization: images that excite four channels of ``layer2``. Layers are named by
# their ``named_modules()`` path, or given as the module itself.
render_steps = 8 if QUICK else 128
rendered = vizcnn.render(loaded, "layer2:0-3", vizcnn.RenderConfig(steps=render_steps), seed=0)
sheet = vizcnn.show(rendered)
sheet.save(out / "walkthrough_render.png")
rendered  # noqa: B018 (in a notebook, this line draws the contact sheet)

# %%
# The dataset patches that excite the same channels most, from crops of the bundled photos.
data = vizcnn.open_dataset("samples", 3, loaded.input_size, limit=16 if QUICK else 64)
top = vizcnn.mine_topk(loaded, data, vizcnn.MineConfig(layer=net.layer2, channels=(0, 1, 2, 3)))
mined = vizcnn.mine_patches(loaded, data, top)
vizcnn.show(mined).save(out / "walkthrough_mine.png")
mined  # noqa: B018

# %%
# Which pixels made the prediction: saliency and Grad-CAM at ``layer4`` on two photos.
photos = torch.cat(
    [resize(sample_image(n)[None], loaded.input_size) for n in ("coffee", "chelsea")]
)
maps = vizcnn.attribute(loaded, photos, ["saliency", vizcnn.GradCAM(loaded, layer=net.layer4)])
vizcnn.show(maps).save(out / "walkthrough_attribute.png")
maps  # noqa: B018

# %%
# All of it in one offline HTML report (open ``report/index.html``), with small settings.
report = vizcnn.report_folder(
    loaded,
    out / "report",
    vizcnn.ReportConfig(
        layers=("layer2",),
        units_per_layer=2 if QUICK else 8,
        render=vizcnn.RenderConfig(steps=render_steps),
        limit=16 if QUICK else 64,
        images=("sample:coffee",),
        methods=("saliency", "gradcam"),
        dream=vizcnn.DreamConfig(octaves=1 if QUICK else 2, steps=2 if QUICK else 10),
    ),
    seed=0,
    allow_nonempty=True,
)
print(f"report: {len(report.pages)} pages, {report.pictures} pictures in {report.seconds:.0f} s")
