"""Cost of `capture` on the default model: hook overhead and the gain of the truncated forward.

Usage: python benchmarks/bench_hooks.py [--batch 8] [--repeats 7]
Prints a markdown table of medians; variants run round-robin, so the ratios share one machine state.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from vizcnn import capture, forward_to, load_model
from vizcnn.hooks import model_guard


def interleaved_medians(
    variants: dict[str, Callable[[], object]], repeats: int
) -> dict[str, float]:
    """Median seconds per variant, run round-robin so drifts in machine load hit all alike."""
    for fn in variants.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    model = load_model().module
    x = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    def hooked() -> None:
        with capture(model, ["_blocks.4", "_blocks.9"]) as acts:
            acts.run(x)

    def truncated(layer: str) -> Callable[[], None]:
        def run() -> None:
            with capture(model, [layer], stop_early=True) as acts:
                acts.run(x)

        return run

    variants: dict[str, Callable[[], object]] = {
        "full forward, no hooks (limit)": lambda: model(x),
        "capture 2 layers, full pass": hooked,
    }
    for layer in ("_blocks.4", "_blocks.9", "_blocks.15"):
        variants[f"capture, truncated at {layer}"] = truncated(layer)

    def guarded_truncated() -> None:
        with model_guard(model):
            truncated("_blocks.9")()

    # the state guard (flags saved and restored, buffers copied) around the same truncated pass
    variants["model_guard + capture, truncated at _blocks.9"] = guarded_truncated
    variants["forward_to(_blocks.9) (guard included)"] = lambda: forward_to(model, x, ["_blocks.9"])

    def guard_alone() -> None:
        with model_guard(model):
            pass

    variants["model_guard alone (enter + exit, no forward)"] = guard_alone
    with torch.no_grad():
        medians = interleaved_medians(variants, args.repeats)
    full = medians["full forward, no hooks (limit)"]
    print(
        f"efficientnet_lite0, batch {args.batch}, 224 px, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} interleaved runs"
    )
    print("| pass | seconds | / full forward |")
    print("|---|---|---|")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds:.4f} | {seconds / full:.2f} |")


if __name__ == "__main__":
    main()
