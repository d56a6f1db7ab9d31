"""
A timm ConvNeXt, trained on digits: renders and Grad-CAM
========================================================

No pretrained weights download here, and pictures of random weights mean nothing, so this script
trains a timm ConvNeXt itself: `timm.create_model("convnext_atto", pretrained=False,
num_classes=10)` (3 input channels, the grey digit repeated, so the picture shows timm's default
stem; a checkpoint with `in_chans=1` loads by spec too) on scikit-learn's digits (the fixed split of `lenet5_digits`), each digit
scaled to 24 px and centred on a 32 px black canvas, so the 0.875 centre crop timm's preprocessing
applies to image files never cuts a stroke. It saves the state dict `convnext_atto_digits.pt`
and loads it back the way a user would, by spec:
`vizcnn.load_model("timm:convnext_atto", weights=PATH, labels=..., size=32, mean=..., std=...)`
(the 10-class head is built to fit the file). Then, one library call each: renders of a few
channels of `stages.1` (the render default at 32 px: a stage output two thirds deep, 4x4 maps)
and Grad-CAM at its structural default layer (the last stage output with a spatial map,
`stages.2` at 32 px, 2x2) on test digits, explained for the predicted class.
Writes, under OUT: `convnext_atto_digits.pt`, `labels.txt`, `digits/` (test digits as PNGs),
`render/`, `commands.txt` and `timm_convnext.png` (renders above, Grad-CAM maps below).

Run: ``python gallery/plot_timm_convnext.py [OUT_DIR] [EPOCHS]`` (default
``gallery/out/timm_convnext`` and 4 epochs: 90% of the test digits right; 14 minutes on two
busy shared CPU cores).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)
QUICK_SETTINGS = {"channels": 2, "explained": 3, "render_steps": 4, "train_size": 256, "lr": 3e-3}

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import vizcnn  # noqa: E402
from vizcnn.io.imaging import load_image, save_png  # noqa: E402
from vizcnn.models.lenet import digits_tensors  # noqa: E402
from vizcnn.models.random_init import seeded_init  # noqa: E402
from vizcnn.runs.render import channel_units  # noqa: E402

SPEC = "timm:convnext_atto"
LABELS = [str(digit) for digit in range(10)]
SIZE = 32  # the model's input side
INNER = 24  # the digit's side inside it


@dataclass
class ConvNeXtRun:
    """What `main` made: the trained file, its test accuracy, the logits of both models."""

    weights: Path  # the state dict
    accuracy: float  # on the 450 test digits
    mean: float  # the training digits' statistics the network normalizes with
    std: float
    trained_logits: torch.Tensor  # (B, 10) of the trained module on the explained digits
    loaded_logits: torch.Tensor  # the same digits through the model loaded by spec
    cam_layer: str  # Grad-CAM's default layer
    render_layer: str
    commands: dict[str, list[str]]  # step -> `vizcnn` arguments


def padded_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits split as `(N, 1, 32, 32)` in [0, 1]: each digit 24 px, centred on black."""
    margin = (SIZE - INNER) // 2
    out = []
    for images in digits_tensors():
        if images.dim() == 4:
            small = F.interpolate(images, size=(INNER, INNER), mode="bilinear", antialias=True)
            images = F.pad(small.clamp(0, 1), (margin,) * 4)
        out.append(images)
    return out[0], out[1], out[2], out[3]


def build() -> nn.Module:
    """timm's ConvNeXt-atto with a 10-class head, untrained (3 channels: timm's stem)."""
    return timm.create_model("convnext_atto", pretrained=False, num_classes=len(LABELS))


def train(
    epochs: int,
    *,
    seed: int = 0,
    batch: int = 32,
    lr: float = 2e-3,
    train_size: int | None = None,
) -> tuple[nn.Module, float, float, float]:
    """Train `build()` on the training digits; the net (eval mode), its test accuracy, mean, std.

    A plain loop: AdamW with a one-cycle schedule, cross-entropy, shifts of up to 3 pixels.
    `train_size` keeps only the first training digits (tests); the mean and std stay those of
    the whole training set.
    """
    train_x, train_y, test_x, test_y = padded_digits()
    mean, std = round(float(train_x.mean()), 3), round(float(train_x.std()), 3)
    train_x, train_y = train_x[:train_size], train_y[:train_size]
    with seeded_init(seed):  # the initial weights from the seed, global RNG untouched
        net = build()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    steps = max(1, epochs * -(-len(train_y) // batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=0.2
    )
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            shift = torch.randint(-3, 4, (2,), generator=generator).tolist()
            images = torch.roll(train_x[chosen], shifts=shift, dims=(2, 3)).repeat(1, 3, 1, 1)
            loss = F.cross_entropy(net((images - mean) / std), train_y[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    net.eval()
    with torch.no_grad():
        logits = net((test_x.repeat(1, 3, 1, 1) - mean) / std)
    accuracy = float((logits.argmax(1) == test_y).float().mean())
    return net, accuracy, mean, std


def cli_commands(
    out: Path, mean: float, std: float, render_layer: str, channels: int, steps: int,
    explained: list[Path],
) -> dict[str, list[str]]:  # fmt: skip
    """The library steps as `vizcnn` arguments (paths as given under `out`)."""
    stats = [f"{mean:g}"] * 3, [f"{std:g}"] * 3
    model = ["-m", SPEC, "--weights", str(out / "convnext_atto_digits.pt")]
    model += ["--mean", ",".join(stats[0]), "--std", ",".join(stats[1])]
    model += ["--input-size", str(SIZE), "--labels", str(out / "labels.txt")]
    cli = out / "cli"
    return {
        "render": ["render", *model, "-l", f"{render_layer}:0-{channels - 1}"]
        + ["--steps", str(steps), "-o", str(cli / "render")],
        "attribute": ["attribute", *map(str, explained), *model, "--method", "gradcam"]
        + ["-o", str(cli / "attribute")],
    }


def main(
    out: Path,
    epochs: int = 4,
    *,
    seed: int = 0,
    channels: int = 5,
    explained: int = 5,
    render_steps: int = 128,
    train_size: int | None = None,
    lr: float = 2e-3,
) -> ConvNeXtRun:
    """Train, save, load by spec, render and explain; the knobs shrink it for tests."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    net, accuracy, mean, std = train(epochs, seed=seed, train_size=train_size, lr=lr)
    weights = out / "convnext_atto_digits.pt"
    torch.save(net.state_dict(), weights)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    print(f"trained {epochs} epochs: {accuracy:.1%} of the 450 test digits right, "
          f"mean {mean} std {std}")  # fmt: skip

    # %%
    # Load the file as a user would: the spec builds timm's architecture with a head that fits.
    loaded = vizcnn.load_model(
        SPEC, weights=str(weights), labels=LABELS, size=SIZE,
        mean=[mean] * 3, std=[std] * 3, device="cpu",
    )  # fmt: skip
    _, _, test_x, test_y = padded_digits()
    shown = test_x[:explained]
    with torch.no_grad():
        trained_logits = net((shown.repeat(1, 3, 1, 1) - mean) / std)
        loaded_logits = loaded.module(loaded.normalize(shown.repeat(1, 3, 1, 1)))
    digit_dir = out / "digits"
    digit_dir.mkdir(exist_ok=True)
    paths = []
    for index in range(len(shown)):
        paths.append(digit_dir / f"{index:03d}_{int(test_y[index])}.png")
        save_png(shown[index], paths[-1])

    # %%
    # Renders of the first channels of the default render layer.
    render_layer = loaded.layer_choice("render").layers[0]
    units = channel_units(loaded, render_layer, range(channels))
    rendered = vizcnn.render_folder(
        loaded, units, out / "render", vizcnn.RenderConfig(steps=render_steps),
        seed=seed, overwrite=True,
    )  # fmt: skip

    # %%
    # Grad-CAM at its structural default layer, each digit explained for its predicted class.
    cam = vizcnn.GradCAM(loaded)
    print(f"Grad-CAM layer: {cam.layer_name} ({loaded.layer_choice('gradcam').reason})")
    print(f"render layer: {render_layer} ({loaded.layer_choice('render').reason})")
    predicted = loaded_logits.argmax(1)
    maps = cam(shown, targets=predicted)

    # %%
    # The picture: renders above, Grad-CAM over the digits below.
    columns = max(channels, len(shown))
    figure, axes = plt.subplots(2, columns, figsize=(1.6 * columns, 3.7), dpi=100)
    for ax in axes.flat:
        ax.axis("off")
    for ax, unit, name in zip(
        axes[0][: len(rendered.files)], rendered.units, rendered.files, strict=True
    ):
        ax.imshow(load_image(out / "render" / name).permute(1, 2, 0).numpy())
        ax.set_title(f"{unit.label}", fontsize=9)
    for index, ax in enumerate(axes[1][: len(shown)]):
        ax.imshow(shown[index, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.imshow(maps[index, 0].numpy(), cmap="jet", alpha=0.45)
        ax.set_title(f"true {int(test_y[index])}, pred {int(predicted[index])}", fontsize=9)
    figure.suptitle(
        f"timm convnext_atto trained on digits ({accuracy:.0%} test accuracy): "
        f"renders of {render_layer} (top), Grad-CAM at {cam.layer_name} (bottom)",
        fontsize=9,
    )
    figure.tight_layout()
    picture = out / "timm_convnext.png"
    figure.savefig(picture)
    plt.close(figure)

    commands = cli_commands(out, mean, std, render_layer, channels, render_steps, paths)
    lines = [shlex.join(["vizcnn", *args]) for args in commands.values()]
    (out / "commands.txt").write_text("\n".join(lines) + "\n")
    print("the same from the command line:\n  " + "\n  ".join(lines))
    print(f"{time.perf_counter() - started:.0f} s; wrote {picture}")
    return ConvNeXtRun(
        weights, accuracy, mean, std, trained_logits, loaded_logits,
        cam.layer_name, render_layer, commands,
    )  # fmt: skip


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path("gallery/out/timm_convnext"),
        int(sys.argv[2]) if len(sys.argv) > 2 else (1 if QUICK else 4),
        **(QUICK_SETTINGS if QUICK else {}),
    )
