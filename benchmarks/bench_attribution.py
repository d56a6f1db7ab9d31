"""Benchmark the attribution methods per method: overhead over one forward pass, and the CAM
family against pytorch-grad-cam (`grad-cam` on PyPI) and torchcam.

For each model (efficientnet_lite0; torchvision resnet18 with random weights) and batch size, on
224 px photos, with the top-1 classes given as targets:

- forward: one forward pass of the same images (no gradient), timed in each repeat beside the
  method (the machine's load drifts), the unit of the overhead column;
- ours: the method's callable (`GradCAMPlusPlus(loaded)(images, targets)`), model guard and all;
- pytorch-grad-cam / torchcam: the same method, same layer and targets, called as their READMEs
  do (the peer gets the normalized batch; its set-up, hooks included, is timed with the call);
- diff: the largest |ours - theirs| over the pixels after each map is rescaled to [0, 1] per
  image (min-max), the check that both compute the same map.

Score-CAM, Ablation-CAM (one forward pass per channel), occlusion, IG and SmoothGrad run on
`--slow-images` images of the batch (default 1), `--slow-repeats` times, at the smallest batch
only (larger batches would explain the same images). Per image = the
time divided by the images the call explained. Runs are interleaved (ours, peers) per repeat;
medians. Device-agnostic: `--device cuda` synchronizes around each call.

Usage:
    .venv/bin/python benchmarks/bench_attribution.py [--quick] [--device cpu] [--threads 2]
        [--models efficientnet_lite0,resnet18] [--batches 1,16] [--methods gradcam,scorecam]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vizcnn import load_model
from vizcnn.attribution import METHODS, make_methods
from vizcnn.attribution.cams import CAMS
from vizcnn.attribution.methods import default_layer
from vizcnn.data.datasets import preprocess
from vizcnn.data.samples import sample_image
from vizcnn.hooks import find_module

SLOW = {"scorecam", "scorecam-fp32", "ablationcam", "occlusion", "ig", "smoothgrad"}
# rows that run a method with other options: name -> (method, options); Score-CAM's default
# runs its masked passes in bfloat16 where the CPU has native bf16 ("auto"), this row in float32
VARIANTS = {"scorecam-fp32": ("scorecam", {"amp": False})}
PHOTOS = ["coffee", "chelsea", "astronaut", "rocket", "motorcycle_left", "camera"]


def _grad_cam_peer(name: str, model: Any, layer: Any) -> Callable[[Any, Any], np.ndarray] | None:
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return None
    classes = {
        "gradcam": pgc.GradCAM,
        "gradcam++": pgc.GradCAMPlusPlus,
        "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM,
        "layercam": pgc.LayerCAM,
        "eigencam": pgc.EigenCAM,
        "scorecam": pgc.ScoreCAM,
        "ablationcam": pgc.AblationCAM,
        "fullgrad": pgc.FullGrad,
    }
    if name not in classes:
        return None

    def run(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        # their progress bars and FullGrad's note about target_layers go to a sink
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            layers = [] if name == "fullgrad" else [layer]
            with classes[name](model=model, target_layers=layers) as cam:
                return cam(x, [ClassifierOutputTarget(int(c)) for c in t.tolist()])

    return run


def _torchcam_peer(name: str, model: Any, layer: Any) -> Callable[[Any, Any], np.ndarray] | None:
    try:
        from torchcam import methods as tc
    except ImportError:
        return None
    classes = {
        "gradcam": tc.GradCAM,
        "gradcam++": tc.GradCAMpp,
        "xgradcam": tc.XGradCAM,
        "layercam": tc.LayerCAM,
        "scorecam": tc.ScoreCAM,
    }
    if name not in classes:
        return None

    def run(x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            extractor = classes[name](model, target_layer=layer)
            try:
                if name == "scorecam":
                    with torch.no_grad():
                        scores = model(x)
                else:
                    scores = model(x)
                cams = extractor(t.tolist(), scores)[0]
            finally:
                extractor.remove_hooks()
        cams = torch.nn.functional.interpolate(
            cams[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
        return cams.detach().cpu().numpy()

    return run


def _unit(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(maps.shape[0], -1).astype(np.float64)
    low, high = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    return ((flat - low) / np.maximum(high - low, 1e-12)).reshape(maps.shape)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="efficientnet_lite0,resnet18")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument(
        "--methods",
        default=",".join([*METHODS, *VARIANTS]),
        help=f"methods and the variants {', '.join(VARIANTS)}",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow-images", type=int, default=1)
    parser.add_argument("--slow-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repeat, the CAM family and gradcam, batch 1, 112 px",
    )
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.batches, args.size = 1, "1", 112
        args.methods = ",".join(["gradcam", *(c.name for c in CAMS), *VARIANTS])
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - start, out

    cam_names = {c.name for c in CAMS} | {"gradcam"}
    batches = [int(b) for b in args.batches.split(",")]
    for model_name in args.models.split(","):
        if model_name == "resnet18":
            loaded = load_model("resnet18", weights="none", seed=0, device=device)
        else:
            loaded = load_model(model_name, device=device)
        # as a user's model comes: parameters that require grad (the peers need them; ours
        # freezes them inside its guard)
        model = loaded.module.eval().requires_grad_(True)
        layer_name = default_layer(loaded)
        layer = find_module(model, layer_name)
        for batch in batches:
            pictures = torch.stack(
                [
                    preprocess(sample_image(PHOTOS[i % len(PHOTOS)]), (args.size, args.size))
                    for i in range(batch)
                ]
            ).to(device)
            with torch.no_grad():
                x_all = loaded.normalize(pictures)
                targets = model(x_all).argmax(1)
            # warm-up: the first backward pass at a new batch size pays for allocations and
            # oneDNN's kernel choice (about 1.4x on lite0's first method at batch 16)
            make_methods(loaded, ["gradcam"])[0](pictures, targets)
            forward_times = []
            for _ in range(max(3, args.repeats)):
                with torch.no_grad():
                    forward_times.append(timed(lambda m=model, xs=x_all: m(xs))[0])
            forward = statistics.median(forward_times)
            print(
                f"\n{model_name} (layer {layer_name}), batch {batch}, {args.size} px, "
                f"{device.type}, {args.threads} threads, medians of {args.repeats}; "
                f"forward {forward * 1000:.0f} ms"
            )
            print(
                "| method | images | ours s/img | ours / forward per img | pytorch-grad-cam s/img "
                "| torchcam s/img | ours / faster peer | diff pgc | diff torchcam |"
            )
            print("|---|---|---|---|---|---|---|---|---|")
            units: dict[str, np.ndarray] = {}
            for name in args.methods.split(","):
                if name in SLOW and batch > args.slow_images and batch != min(batches):
                    continue  # the same images as at the smallest batch: measured there
                count = min(batch, args.slow_images) if name in SLOW else batch
                repeats = args.slow_repeats if name in SLOW else args.repeats
                images, t, x = pictures[:count], targets[:count], x_all[:count]
                base, options = VARIANTS.get(name, (name, {}))
                method = make_methods(loaded, [base], **options)[0]
                peers: dict[str, Callable[[Any, Any], np.ndarray] | None] = {
                    "pgc": None,
                    "tc": None,
                }
                if base in cam_names:
                    peers = {
                        "pgc": _grad_cam_peer(base, model, layer),
                        "tc": _torchcam_peer(base, model, layer),
                    }
                times: dict[str, list[float]] = {"ours": [], "pgc": [], "tc": [], "fwd": []}
                maps: dict[str, Any] = {}
                for _ in range(repeats):
                    with torch.no_grad():  # the unit, timed beside each run: the load drifts
                        times["fwd"].append(timed(lambda m=model, xs=x: m(xs))[0])
                    seconds, ours = timed(lambda m=method, i=images, c=t: m(i, c))
                    times["ours"].append(seconds)
                    maps["ours"] = ours
                    for key, peer in peers.items():
                        if peer is not None:
                            seconds, theirs = timed(lambda p=peer, xs=x, c=t: p(xs, c))
                            times[key].append(seconds)
                            maps[key] = theirs
                per = {k: statistics.median(v) / count for k, v in times.items() if v}
                ours_map = maps["ours"]
                if ours_map.shape[1] != 1:  # a pixel method: |map| summed over the channels
                    ours_map = ours_map.abs().sum(1, keepdim=True)
                ours_unit = _unit(ours_map[:, 0].float().cpu().numpy())
                units[name] = ours_unit
                diffs = {
                    k: f"{np.abs(ours_unit - _unit(np.asarray(maps[k]))).max():.3f}"
                    for k in ("pgc", "tc")
                    if k in maps
                }
                peer_times = [per[k] for k in ("pgc", "tc") if k in per]
                ratio = f"{per['ours'] / min(peer_times):.2f}" if peer_times else "-"
                cell = {k: f"{per[k]:.3f}" if k in per else "-" for k in ("pgc", "tc")}
                print(
                    f"| {name} | {count} | {per['ours']:.3f} | "
                    f"{per['ours'] / per['fwd']:.1f} | {cell['pgc']} | {cell['tc']} | "
                    f"{ratio} | {diffs.get('pgc', '-')} | {diffs.get('tc', '-')} |",
                    flush=True,
                )
            for variant, (base, options) in VARIANTS.items():
                if variant in units and base in units:
                    gap = np.abs(units[variant] - units[base]).max()
                    print(
                        f"{base} default vs {variant} ({options}): max |diff| of the [0, 1] maps "
                        f"{gap:.4f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
