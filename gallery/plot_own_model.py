"""
Your own model, end to end: a small CNN trained on digits
=========================================================

The path a researcher with their own network takes. `own_cnn.py` (next to this script) defines
a small CNN, three conv-BatchNorm-ReLU-pool blocks, global pooling and a 10-class head, with a
factory `build()` that takes no arguments. This script trains it for a few epochs on
scikit-learn's digits (1 channel, upscaled to 32 px; the fixed split of `lenet5_digits`), saves
the state dict `own_cnn.pt`, and then runs vizcnn on it from Python, each step one library call:
`describe` (mean, std, input size, class names), `layer_table`, `render_folder` (channels of
`block2`), `mine_folder` (the test digits, written as PNGs into `digits/`), `attribute_folder`
(saliency and Grad-CAM at `block3`, each digit explained for its true class) and `report_folder`
(a small HTML report). It ends by printing the same steps as `vizcnn` commands on
`-m own_cnn:build --weights own_cnn.pt --mean ... --std ... --input-size 32 --labels labels.txt`,
to be typed in the folder that holds `own_cnn.py`, and one on `-m own_cnn:described`, a factory
that returns `vizcnn.describe(build(), ...)` and so needs none of those four flags.
Writes, under OUT: `own_cnn.pt`, `labels.txt`, `digits/`, `layers.txt`, `render/`, `mine/`,
`attribute/`, `report/index.html`, `commands.txt` and `own_model.png` (renders of four `block2`
channels above the digits that excite each most).

Run: ``python gallery/plot_own_model.py [OUT_DIR] [EPOCHS]`` (default ``gallery/out/own_model``
and 5 epochs; about a minute on two CPU cores).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from own_cnn import LABELS, build  # own_cnn.py, next to this script
from torch import nn

import vizcnn
from vizcnn.io.imaging import labeled_sheet, load_image, save_png
from vizcnn.mining.patches import channel_grid
from vizcnn.models.lenet import digits_tensors
from vizcnn.models.random_init import seeded_init
from vizcnn.receptive.table import layer_table
from vizcnn.runs.render import channel_units

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)
QUICK_SETTINGS = {
    "digits": 90,
    "channels": 2,
    "render_steps": 4,
    "explained": 2,
    "report_steps": 2,
    "units_per_layer": 1,
    "dream_steps": 1,
}

# the folder of own_cnn.py: where the CLI runs (sphinx-gallery defines no __file__, sets argv[0])
GALLERY = Path(globals().get("__file__") or sys.argv[0]).resolve().parent
RENDER_LAYER = "block2"  # the middle block: 8x8 maps, a 10-pixel receptive field
CAM_LAYER = "block3"  # the last spatial block's output (after BatchNorm, ReLU and pooling)


@dataclass
class OwnModelRun:
    """What `main` made: the trained file, its test accuracy and the equivalent CLI commands."""

    weights: Path  # the state dict
    accuracy: float  # on the 450 test digits
    mean: float  # the training digits' statistics the network normalizes with
    std: float
    digits: list[Path]  # the test digits as PNG files
    commands: dict[str, list[str]]  # step -> `vizcnn` arguments, run in GALLERY


def train(
    epochs: int, *, seed: int = 0, batch: int = 32, lr: float = 3e-3
) -> tuple[nn.Module, float, float, float]:
    """Train `build()` on the training digits; the net (eval mode), its test accuracy, mean, std.

    A plain PyTorch loop, as yours would be: Adam, cross-entropy, shifts of up to 2 pixels.
    """
    train_x, train_y, test_x, test_y = digits_tensors()  # (N, 1, 32, 32) in [0, 1]
    mean, std = round(float(train_x.mean()), 3), round(float(train_x.std()), 3)
    with seeded_init(seed):  # the initial weights from the seed, global RNG untouched
        net = build()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            images = torch.roll(train_x[chosen], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(net((images - mean) / std), train_y[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net((test_x - mean) / std).argmax(1) == test_y).float().mean())
    return net, accuracy, mean, std


def write_digits(folder: Path, count: int) -> tuple[list[Path], list[int]]:
    """The first `count` test digits as 32 px grey PNGs `NNN_label.png`, and their labels."""
    folder.mkdir(parents=True, exist_ok=True)
    _, _, test_x, test_y = digits_tensors()
    paths = []
    for index in range(min(count, len(test_y))):
        path = folder / f"{index:03d}_{int(test_y[index])}.png"
        save_png(test_x[index], path)
        paths.append(path)
    return paths, [int(label) for label in test_y[: len(paths)]]


def shortest(path: Path, start: Path) -> str:
    """`path` relative to `start` where it lies inside it, else absolute."""
    path = path.resolve()
    return (
        str(path.relative_to(start.resolve()))
        if path.is_relative_to(start.resolve())
        else str(path)
    )


def cli_commands(
    out: Path, mean: float, std: float, explained: Sequence[Path], render_steps: int
) -> dict[str, list[str]]:
    """The Python steps as `vizcnn` arguments, to run in GALLERY: paths relative to it where
    `out` is inside it, else absolute."""

    def rel(path: Path) -> str:
        return shortest(path, GALLERY)

    weights = ["--weights", rel(out / "own_cnn.pt")]
    model = ["-m", "own_cnn:build", *weights]
    model += ["--mean", f"{mean:g}", "--std", f"{std:g}", "--input-size", "32"]
    model += ["--labels", rel(out / "labels.txt")]
    cli = out / "cli"
    return {
        "layers": ["layers", *model],
        "render": ["render", *model, "-l", f"{RENDER_LAYER}:0-3", "--steps", str(render_steps)]
        + ["-o", rel(cli / "render")],
        "mine": ["mine", rel(out / "digits"), *model, "-l", f"{RENDER_LAYER}:0-3"]
        + ["-o", rel(cli / "mine")],
        "attribute": ["attribute", *map(rel, explained), *model, "--method", "saliency"]
        + ["--method", "gradcam", "--layer", CAM_LAYER, "-o", rel(cli / "attribute")],
        "report": ["report", *model, "--layers", "block1,block2,block3", "--units-per-layer", "4"]
        + ["--steps", str(render_steps), "--data", rel(out / "digits"), "--projections", "none"]
        + [arg for path in explained for arg in ("--images", rel(path))]
        + ["--methods", "saliency,gradcam", "-o", rel(cli / "report")],
        # the factory that returns `describe(net, ...)`: no preprocessing flags to repeat
        "described": ["attribute", *map(rel, explained), "-m", "own_cnn:described", *weights]
        + ["--method", "saliency", "--method", "gradcam", "--layer", CAM_LAYER]
        + ["-o", rel(cli / "attribute_described")],
    }


def main(
    out: Path,
    epochs: int = 5,
    *,
    seed: int = 0,
    digits: int = 450,
    channels: int = 4,
    render_steps: int = 128,
    explained: int = 4,
    report_steps: int = 64,
    units_per_layer: int = 4,
    dream_steps: int = 5,
) -> OwnModelRun:
    """Train, save, and run every step on the trained network; knobs shrink it for tests."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    net, accuracy, mean, std = train(epochs, seed=seed)
    weights = out / "own_cnn.pt"
    torch.save(net.state_dict(), weights)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    print(
        f"trained {epochs} epochs: {accuracy:.1%} of the test digits right, mean {mean} std {std}"
    )

    # %%
    # Describe the module for vizcnn: what `--mean/--std/--input-size/--labels` say on the CLI.
    loaded = vizcnn.describe(
        net, mean=[mean], std=[std], input_size=32, labels=LABELS, name="own_cnn"
    )
    table = layer_table(loaded, (loaded.channels, *loaded.input_size))
    (out / "layers.txt").write_text(table.format() + "\n")
    print(table.format())

    # %%
    # Renders of the first channels of the middle block, at the model's 32 px.
    units = channel_units(loaded, RENDER_LAYER, range(channels))
    rendered = vizcnn.render_folder(
        loaded, units, out / "render", vizcnn.RenderConfig(steps=render_steps), seed=seed
    )

    # %%
    # The test digits as files (what a user's data folder is), then each channel's top 9.
    paths, labels = write_digits(out / "digits", digits)
    mined = vizcnn.mine_folder(
        loaded,
        out / "digits",
        out / "mine",
        vizcnn.MineConfig(layer=RENDER_LAYER, channels=tuple(range(channels)), k=9),
        projections="none",
        seed=seed,
    )

    # %%
    # Saliency and Grad-CAM, each digit explained for its own (true) class.
    shown = paths[:explained]
    attributed = vizcnn.attribute_folder(
        loaded,
        shown,
        out / "attribute",
        ["saliency", vizcnn.GradCAM(loaded, CAM_LAYER)],
        targets=labels[: len(shown)],
    )

    # %%
    # A small report: every block, a few units each, mined on the digit files.
    report = vizcnn.report_folder(
        loaded,
        out / "report",
        vizcnn.ReportConfig(
            layers=("block1", "block2", "block3"),
            units_per_layer=units_per_layer,
            render=vizcnn.RenderConfig(steps=report_steps, param="fft"),
            data=str(out / "digits"),
            images=tuple(str(p) for p in shown),
            methods=("saliency", "gradcam"),
            dream=vizcnn.DreamConfig(octaves=2, steps=dream_steps),
            projections="none",
        ),
        seed=seed,
        allow_nonempty=True,
    )

    # %%
    # The picture: each rendered channel above the digits that excite it most.
    assert mined.patches is not None
    tiles, captions = [], []
    for unit, name in zip(rendered.units, rendered.files, strict=True):
        picture = load_image(out / "render" / name, channels=1)[None]
        side = channel_grid(mined.patches.hits[0]).shape[-1]  # as wide as a top-9 grid
        tiles.append(F.interpolate(picture, size=(side, side), mode="nearest")[0])
        captions.append(f"{unit.label} render")
    for channel in range(channels):
        tiles.append(channel_grid(mined.patches.hits[channel]))
        captions.append(f"{RENDER_LAYER}:{channel} top 9")
    labeled_sheet(tiles, captions, columns=channels).save(out / "own_model.png")

    commands = cli_commands(out, mean, std, shown, render_steps)
    lines = [f"cd {shortest(GALLERY, Path.cwd())}"] + [
        shlex.join(["vizcnn", *args]) for args in commands.values()
    ]
    (out / "commands.txt").write_text("\n".join(lines) + "\n")
    print(f"rendered {len(rendered.files)}, mined {mined.images} digits, "
          f"attributed {len(attributed.names)}, report {report.folder / 'index.html'}")  # fmt: skip
    print("the same from the command line:\n  " + "\n  ".join(lines))
    print(f"{time.perf_counter() - started:.0f} s; wrote {out / 'own_model.png'}")
    return OwnModelRun(weights, accuracy, mean, std, paths, commands)


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path("gallery/out/own_model"),
        int(sys.argv[2]) if len(sys.argv) > 2 else (1 if QUICK else 5),
        **(QUICK_SETTINGS if QUICK else {}),
    )
