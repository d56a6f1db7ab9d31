"""
Class renders that a second network recognizes: before and after
=================================================================

Render five ImageNet classes with the default model (efficientnet_lite0) twice, 256 steps each:
as `vizcnn render --class` did before issue 9 (lucid's recipe ``--param fft``, float32) and as it
does now by default (``--param auto``: maco for class renders, lr 0.2 cosine-decayed; bfloat16
where the CPU has it), then ask a second network, efficientnet_lite1 (240 px, at its own
preprocessing), what it sees.
Under each picture: lite1's top-1 label and its probability, and p of the rendered class.

Run: ``python gallery/plot_class_transfer.py [OUT_DIR]`` (default ``gallery/out/``); several
minutes on 2 CPU cores. Writes ``class_transfer_before_after.jpg`` (the README picture).
``--images BEFORE.pt AFTER.pt`` builds the sheet from renders saved by the benchmarks (the same
classes, steps and seed give the same pictures) instead of rendering again.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw

import vizcnn
from vizcnn.io.imaging import atomic_write, resize, to_pil
from vizcnn.optvis import objectives as obj

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

parser = argparse.ArgumentParser()
parser.add_argument("out", nargs="?", default="gallery/out")
parser.add_argument("--images", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
loaded = vizcnn.load_model("efficientnet_lite0")
judge = vizcnn.load_model("efficientnet_lite1")
classes = ["espresso", "goldfinch", "flamingo", "monarch", "pizza"]
targets = [loaded.class_index(name) for name in classes]
recipes = {
    "before: --param fft --no-amp (lucid's recipe, float32)": vizcnn.RenderConfig(
        steps=8 if QUICK else 256, param="fft"
    ),
    "now, the default: --param auto = maco for classes (bf16 where native)": vizcnn.RenderConfig(
        steps=8 if QUICK else 256
    ),
}

rows = []
for number, (title, config) in enumerate(recipes.items()):
    if args.images:
        images = torch.load(args.images[number])[: len(targets)]
    else:
        print(f"rendering {title} ...", flush=True)
        units = [obj.class_logit(c) for c in targets]
        images = vizcnn.render(loaded, units, config, seed=0).images
    with torch.no_grad():
        probs = judge.module(judge.normalize(resize(images, judge.input_size))).softmax(1)
    captions = []
    for i, target in enumerate(targets):
        top = int(probs[i].argmax())
        captions.append(
            (
                f"lite1: {judge.labels[top][:22]} {float(probs[i, top]):.2f}",
                f"p({classes[i]}) = {float(probs[i, target]):.2f}",
                top == target,
            )
        )
    rows.append((title, images, captions))

tile, caption, header, left = 224, 34, 22, 8
sheet = Image.new(
    "RGB", (left + len(classes) * (tile + 6), len(rows) * (header + tile + caption)), "white"
)
draw = ImageDraw.Draw(sheet)
for r, (title, images, captions) in enumerate(rows):
    top_y = r * (header + tile + caption)
    draw.text((left, top_y + 5), f"{title}  (columns: {', '.join(classes)})", fill="black")
    for c in range(len(classes)):
        x = left + c * (tile + 6)
        picture = to_pil(resize(images[c : c + 1], (tile, tile))[0]).convert("RGB")
        sheet.paste(picture, (x, top_y + header))
        line1, line2, hit = captions[c]
        colour = (0, 110, 0) if hit else (170, 0, 0)
        draw.text((x + 2, top_y + header + tile + 3), line1, fill=colour)
        draw.text((x + 2, top_y + header + tile + 17), line2, fill="black")
path = out / "class_transfer_before_after.jpg"
atomic_write(path, lambda handle: sheet.save(handle, format="JPEG", quality=90))
print(f"wrote {path}")
