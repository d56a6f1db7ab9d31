"""
Top-9 dataset patches: from edges to parts
==========================================

Mine three layers of the default model (efficientnet_lite0) on random crops of the photos that
ship with scikit-image and scikit-learn, Zeiler & Fergus style: for each channel, the nine
images whose strongest unit responds most, each shown as the input patch that unit sees.
Early layers see an 11-pixel window and pick colours and edges; the middle layer's 67-pixel
window finds textures and small motifs; the deeper layer's 115-pixel window finds parts of
objects (eyes, lettering, rims). Writes one sheet per layer and `mine_growth.png`, which puts the
first channels of the three layers one above the other.

Run: ``python gallery/plot_mine.py [OUT_DIR]`` (about two minutes on two CPU cores).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import vizcnn
from vizcnn.core.run_options import RunOptions
from vizcnn.io.imaging import labeled_sheet
from vizcnn.mining.patches import channel_grid, layer_sheet

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

LAYERS = ["_blocks.1", "_blocks.4", "_blocks.6"]  # receptive fields 11, 67 and 115 pixels
CHANNELS = tuple(range(8))
SHOWN = 4  # channels per layer in the combined picture


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    loaded = vizcnn.load_model("efficientnet_lite0")
    # 16 photos x 10 seeded crops each; the same crops for every layer.
    data = vizcnn.open_dataset(
        "samples", loaded.channels, loaded.input_size, crops_per_image=1 if QUICK else 10
    )
    grids, labels = [], []
    for layer in LAYERS:
        started = time.perf_counter()
        config = vizcnn.MineConfig(layer=layer, channels=CHANNELS, k=9)
        top = vizcnn.mine_topk(loaded, data, config, run=RunOptions(batch=32))
        mined = vizcnn.mine_patches(loaded, data, top, thumbnail_size=56)
        layer_sheet(mined).save(out / f"mine_{layer.replace('.', '_')}.png")
        size = mined.field.size[0]
        for channel in CHANNELS[:SHOWN]:
            grids.append(channel_grid(mined.hits[channel]))
            labels.append(f"{layer} c{channel} (field {size}px)")
        seconds = time.perf_counter() - started
        print(f"{layer}: field {size}px, {top.images_seen} images, {seconds:.0f} s")
    labeled_sheet(grids, labels, columns=SHOWN).save(out / "mine_growth.png")
    print(f"wrote {out / 'mine_growth.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("gallery/out"))
