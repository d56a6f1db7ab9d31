"""LRP's overhead over one forward pass, and zennit called directly as the peer.

For efficientnet_lite0 (its shipped weights) and torchvision resnet18 (random weights: timing
only) at 224 px on the CPU, batch 1 and 16: the time of one forward pass of the batch
(no_grad), of `vizcnn.attribution.LRP` (composite epsilon-plus-flat) on it, and of zennit used as
its README shows (the same `EpsilonPlusFlat` composite, zennit's own canonizers:
`SequentialMergeBatchNorm`, plus `ResNetCanonizer` for resnet18; one forward and one backward with
the one-hot-times-logit output relevance). Reports the median seconds per batch and the ratios
LRP / forward and LRP / zennit.

zennit direct does less than ours on lite0: its canonizer merges no BatchNorm there (they are
named attributes, not `nn.Sequential` neighbours), functional and timm activations and residual
sums keep the plain gradient, and it makes no merge-check forward. Ours runs one extra forward (the
BatchNorm pairs and the logits the merge is checked against) and the `TorchFunctionMode`.

Usage: python benchmarks/bench_lrp.py [--repeats 3] [--batches 1,16]
Variants alternate (forward, ours, zennit, ...), so that drifts in machine load hit them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from vizcnn import load_model
from vizcnn.attribution import LRP
from vizcnn.models.base import LoadedModel


def _zennit_direct(loaded: LoadedModel) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from torchvision.models import ResNet
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    module = loaded.module
    canonizers = [ResNetCanonizer()] if isinstance(module, ResNet) else [SequentialMergeBatchNorm()]
    composite = EpsilonPlusFlat(canonizers=canonizers)

    def run(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z = loaded.normalize(x).detach().requires_grad_(True)
        with composite.context(module) as modified:
            out = modified(z)
            picked = torch.zeros_like(out)
            rows = torch.arange(len(out))
            picked[rows, target] = out.detach()[rows, target]
            (relevance,) = torch.autograd.grad(out, z, picked)
        return relevance

    return run


def _forward(loaded: LoadedModel, x: torch.Tensor) -> None:
    with torch.no_grad():
        loaded.module(loaded.normalize(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"threads {torch.get_num_threads()}, load {os.getloadavg()}")
    print(
        f"{'model':<20} {'batch':>5} {'forward s':>10} {'ours s':>8} {'zennit s':>9}"
        f" {'ours/fwd':>9} {'zennit/fwd':>11} {'ours/zennit':>12}"
    )
    for spec in ("efficientnet_lite0", "resnet18"):
        loaded = load_model(spec, weights=None if spec == "efficientnet_lite0" else "none")
        ours = LRP(loaded)
        peer = _zennit_direct(loaded)
        for batch in batches:
            g = torch.Generator().manual_seed(0)
            x = torch.rand(batch, 3, 224, 224, generator=g)
            with torch.no_grad():
                target = loaded.module(loaded.normalize(x)).argmax(1)

            forward = partial(_forward, loaded, x)
            mine = partial(ours, x, target)
            theirs = partial(peer, x, target)

            times: dict[str, list[float]] = {"forward": [], "ours": [], "zennit": []}
            for fn in (forward, mine, theirs):  # warm-up
                fn()
            for _ in range(args.repeats):
                for name, fn in (("forward", forward), ("ours", mine), ("zennit", theirs)):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            f, o, z = (statistics.median(times[k]) for k in ("forward", "ours", "zennit"))
            print(
                f"{spec:<20} {batch:>5} {f:>10.3f} {o:>8.3f} {z:>9.3f}"
                f" {o / f:>9.2f} {z / f:>11.2f} {o / z:>12.2f}"
            )
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
