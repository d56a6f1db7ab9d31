"""Do class renders transfer? Render ImageNet classes with efficientnet_lite0 and ask a second
network, efficientnet_lite1 (240 px, offline, at its own preprocessing), what it sees.

For each recipe: the top-1 rate (lite1's top class is the rendered class) and the mean
p(target) (lite1's softmax probability of the rendered class), on 20 fixed classes and on the
first 5 of them (the before/after sheet's), and the wall time of the renders. The classes run in
chunks of 5 (one render call each, the 5 classes as one batch) and the recipes alternate chunk by
chunk, so that the machine's load falls on all of them alike.

Recipes: `NAME[:FIELD=VALUE,...]`, NAME one of
    fft, maco, pixel   vizcnn.render with RenderConfig(param=NAME, FIELD=VALUE, ...)
    lucent             the real torch-lucent 0.1.8 `render_vis`, as its users run it (see
                       _lucent_classes.py), in a subprocess of the lucent venv; `steps=N` only
Every recipe gets `steps` from --steps unless it names its own.

`--channels` instead renders 8 channels of `_blocks.6` per recipe and reports the channel
objective (float32, on the final untransformed image: `RenderResult.values`), the check that a
new recipe does not lose on channels.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_transfer.py --steps 256 \
        --recipe fft --recipe maco --recipe lucent [--classes 20] [--out transfer/]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_transfer.py --channels --steps 256 \
        --recipe fft --recipe maco
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vizcnn import load_model
from vizcnn.core.run_options import RunOptions
from vizcnn.io.imaging import resize
from vizcnn.models.loading import LoadedModel
from vizcnn.optvis.config import DEFAULT_BATCH, RenderConfig
from vizcnn.optvis.objectives import class_logit
from vizcnn.optvis.rendering import render

# 20 ImageNet classes: objects, animals, food, scenes; the first 5 make the before/after sheet.
CLASSES = (
    "espresso",
    "goldfinch",
    "flamingo",
    "monarch",
    "pizza",
    "zebra",
    "daisy",
    "strawberry",
    "lemon",
    "school bus",
    "volcano",
    "jellyfish",
    "peacock",
    "broccoli",
    "ladybug",
    "pineapple",
    "golden retriever",
    "teapot",
    "banana",
    "tarantula",
)
CHUNK = 5
LUCENT_PYTHON = Path(os.environ.get("LUCENT_PYTHON", "/work/lucentvenv/bin/python"))
CHANNEL_UNITS = "_blocks.6:0:64:8"  # 8 channels of _blocks.6


def parse_recipe(text: str, steps: int) -> tuple[str, dict[str, object]]:
    """`maco:steps=128,lr=0.1` -> ("maco", {"steps": 128, "lr": 0.1}); steps defaults to `steps`."""
    name, _, rest = text.partition(":")
    fields: dict[str, object] = {"steps": steps}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            fields[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            fields[key] = value
    return name, fields


def render_ours(
    loaded: LoadedModel, name: str, fields: dict[str, object], units: list, seed: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    config = RenderConfig(**{"param": name, **fields})  # type: ignore[arg-type]
    run = RunOptions(batch=max(DEFAULT_BATCH, len(units)))
    started = time.perf_counter()
    result = render(loaded, units, config, seed=seed, run=run)
    return result.images, result.values, time.perf_counter() - started


def render_lucent(fields: dict[str, object], classes: list[int]) -> tuple[torch.Tensor, float]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "images.npy"
        worker = Path(__file__).with_name("_lucent_classes.py")
        started = time.perf_counter()
        done = subprocess.run(
            [str(LUCENT_PYTHON), str(worker), str(fields["steps"]), str(out)]
            + [str(c) for c in classes],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
        )
        whole = time.perf_counter() - started
        images = torch.from_numpy(np.load(out)).permute(0, 3, 1, 2).float()
    rendering = float(done.stdout.strip().splitlines()[-1])
    print(f"    lucent: {rendering:.1f} s rendering, {whole:.1f} s whole process", flush=True)
    return images, rendering


@torch.no_grad()
def classify(judge: LoadedModel, images: torch.Tensor, targets: list[int]) -> tuple[list, list]:
    """lite1's top-1 class and p(target) for `(N, 3, H, W)` images in [0, 1]."""
    probs = judge.module(judge.normalize(resize(images, judge.input_size))).softmax(1)
    top = probs.argmax(1).tolist()
    return top, [float(probs[i, t]) for i, t in enumerate(targets)]


def _tag(text: str) -> str:
    return text.replace(":", "_").replace(",", "_").replace("=", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", required=True)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--classes", type=int, default=len(CLASSES))
    parser.add_argument("--start", type=int, default=0, help="first class (a multiple of 5)")
    parser.add_argument("--channels", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="save images + JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipes = [(text, *parse_recipe(text, args.steps)) for text in args.recipe]
    loaded = load_model("efficientnet_lite0")
    if args.channels:
        return channel_check(loaded, recipes, args.seed)
    judge = load_model("efficientnet_lite1")
    names = list(CLASSES[args.start : args.start + args.classes])
    targets = [loaded.class_index(n) for n in names]
    images: dict[str, list[torch.Tensor]] = {text: [] for text, _, _ in recipes}
    seconds: dict[str, float] = {text: 0.0 for text, _, _ in recipes}
    for start in range(0, len(names), CHUNK):
        chunk = targets[start : start + CHUNK]
        for text, name, fields in recipes:
            if name == "lucent":
                batch, spent = render_lucent(fields, chunk)
            else:
                units = [class_logit(c) for c in chunk]
                seed = args.seed + args.start + start
                batch, _, spent = render_ours(loaded, name, fields, units, seed)
            images[text].append(batch)
            if args.out is not None:  # each chunk as soon as it is done
                args.out.mkdir(parents=True, exist_ok=True)
                torch.save(batch, args.out / f"{_tag(text)}_{args.start + start:02d}.pt")
            seconds[text] += spent
            top, p = classify(judge, batch, chunk)
            hits = sum(t == c for t, c in zip(top, chunk, strict=True))
            print(
                f"  classes {args.start + start}-{args.start + start + len(chunk) - 1} {text}: {spent:.1f} s, "
                f"top-1 {hits}/{len(chunk)}, p {np.mean(p):.3f}",
                flush=True,
            )
    rows = []
    for text, _, _ in recipes:
        stacked = torch.cat(images[text])
        top, p = classify(judge, stacked, targets)
        hits = [t == c for t, c in zip(top, targets, strict=True)]
        rows.append(
            {
                "recipe": text,
                "top1": sum(hits),
                "top1_first5": sum(hits[:CHUNK]),
                "mean_p": float(np.mean(p)),
                "mean_p_first5": float(np.mean(p[:CHUNK])),
                "seconds": seconds[text],
                "seconds_per_chunk": seconds[text] / -(-len(names) // CHUNK),
                "per_class": [
                    {"class": n, "top1": judge.labels[t], "p": q}
                    for n, t, q in zip(names, top, p, strict=True)
                ],
            }
        )
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save(stacked, args.out / f"{_tag(text)}.pt")
    n = len(names)
    print(
        f"\n| recipe | top-1 of {n} | top-1 of first 5 | mean p ({n}) | mean p (5) | render s "
        f"| s per {CHUNK} classes |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['recipe']} | {r['top1']}/{n} | {r['top1_first5']}/5 | {r['mean_p']:.3f} | "
            f"{r['mean_p_first5']:.3f} | {r['seconds']:.0f} | {r['seconds_per_chunk']:.1f} |"
        )
    if args.out is not None:
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))


def channel_check(loaded: LoadedModel, recipes: list, seed: int) -> None:
    """The channel objective each recipe reaches on 8 channels of `_blocks.6` (interleaved)."""
    print(f"| recipe | mean channel objective ({CHANNEL_UNITS}) | per channel | render s |")
    print("|---|---|---|---|")
    for text, name, fields in recipes:
        if name == "lucent":
            continue
        _, values, spent = render_ours(loaded, name, fields, [CHANNEL_UNITS], seed)
        listed = " ".join(f"{v:.2f}" for v in values.tolist())
        print(f"| {text} | {values.mean():.3f} | {listed} | {spent:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
