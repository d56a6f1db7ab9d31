"""Time to a good picture: objective value and transfer against wall time, per recipe.

Renders the first `--classes` classes of bench_transfer.CLASSES with each recipe (one batch,
recipes one after another) and, every `--every` steps, measures on the current pictures: the
mean class logit of efficientnet_lite0 (the objective, float32, on the untransformed image) and
efficientnet_lite1's top-1 rate and mean p(target) (transfer). The time spent measuring is not
counted. Writes time_to_picture.png (matplotlib) and time_to_picture.json to --out.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_time_to_picture.py --steps 256 \
        --recipe fft --recipe maco --recipe maco:progressive=0.5 --out benchmarks/
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from bench_transfer import CLASSES, classify, parse_recipe  # noqa: E402

from vizcnn import load_model  # noqa: E402
from vizcnn.core.run_options import RunOptions  # noqa: E402
from vizcnn.io.imaging import resize  # noqa: E402
from vizcnn.models.loading import LoadedModel  # noqa: E402
from vizcnn.optvis.config import DEFAULT_BATCH, RenderConfig
from vizcnn.optvis.objectives import class_logit  # noqa: E402
from vizcnn.optvis.rendering import render  # noqa: E402


def curve(
    text: str, loaded: LoadedModel, judge: LoadedModel, targets: list[int], steps: int, every: int
) -> tuple[list[dict[str, float]], torch.Tensor]:
    """Render `targets` with recipe `text`; objective and transfer every `every` steps."""
    name, fields = parse_recipe(text, steps)
    config = RenderConfig(**{"param": name, **fields})  # type: ignore[arg-type]
    run = RunOptions(batch=max(DEFAULT_BATCH, len(targets)))
    index = torch.tensor(targets)
    points: list[dict[str, float]] = []
    clock = {"spent": 0.0, "since": time.perf_counter()}

    @torch.no_grad()
    def observe(step: int, images: torch.Tensor) -> None:
        clock["spent"] += time.perf_counter() - clock["since"]
        if step % every == 0 or step == config.steps:
            logits = loaded.module(loaded.normalize(resize(images, loaded.input_size)))
            objective = float(logits[torch.arange(len(targets)), index].mean())
            top, p = classify(judge, images, targets)
            hits = sum(t == c for t, c in zip(top, targets, strict=True))
            point = {
                "step": step,
                "seconds": clock["spent"],
                "objective": objective,
                "top1_rate": hits / len(targets),
                "mean_p": sum(p) / len(p),
            }
            points.append(point)
            print(f"  {text} step {step}: {point}", flush=True)
        clock["since"] = time.perf_counter()

    result = render(loaded, [class_logit(c) for c in targets], config, observe=observe, run=run)
    return points, result.images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", default=[])
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--every", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks"))
    parser.add_argument("--add", action="store_true", help="keep the curves already in --out")
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the PNG from --out's JSON, no renders"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    saved = args.out / "time_to_picture.json"
    if args.plot_only:
        return plot(json.loads(saved.read_text()), args.out, args.classes, args.steps)
    loaded = load_model("efficientnet_lite0")
    judge = load_model("efficientnet_lite1")
    targets = [loaded.class_index(n) for n in CLASSES[: args.classes]]
    curves: dict[str, list[dict[str, float]]] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.add and saved.is_file():  # add recipes to an earlier run's curves
        curves.update(json.loads(saved.read_text()))
    for text in args.recipe:
        curves[text], images = curve(text, loaded, judge, targets, args.steps, args.every)
        saved.write_text(json.dumps(curves, indent=1))
        torch.save(images, args.out / f"images_{text.replace(':', '_').replace(',', '_')}.pt")
    plot(curves, args.out, args.classes, args.steps)


def plot(curves: dict[str, list[dict[str, float]]], out: Path, classes: int, steps: int) -> None:
    """Objective and transfer against render wall time, one line per recipe."""
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for text, points in curves.items():
        seconds = [p["seconds"] for p in points]
        axes[0].plot(seconds, [p["objective"] for p in points], marker=".", label=text)
        axes[1].plot(seconds, [p["top1_rate"] for p in points], marker=".", label=text)
        axes[2].plot(seconds, [p["mean_p"] for p in points], marker=".", label=text)
    titles = (
        "objective: mean class logit (lite0)",
        "transfer: lite1 top-1 rate",
        "transfer: lite1 mean p(target)",
    )
    for axis, title in zip(axes, titles, strict=True):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("render wall time (s, 1 thread, shared machine)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.suptitle(
        f"{classes} classes of efficientnet_lite0 (class logits), recipes as named; "
        "each run at its own time on a shared machine: compare shapes, not small gaps",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(out / "time_to_picture.png", dpi=110)


if __name__ == "__main__":
    main()
