"""What reading fewer crops in the regularizer does to accentuation's results (not its speed).

`accentuate` evaluates the regularizer on the first `reg_crops` of each image's `crops` crops
(default 2 of 8; the balancing step reads all of them). This runs lite0 accentuations of four
units on the four bundled photographs (224 px) with each `reg_crops` given, for each seed, and
reports, on the final *whole* images (no crop, no noise, float32):

- the unit's gain: its objective on the accentuated image minus on the photograph;
- the distance at the regularized layer (`_blocks.2`): `layer_distance(..., "l2")` of the
  accentuated image's activations from the photograph's (0.1 = moved 10 %);
- the mean absolute pixel change.

If fewer crops only add noise to an unbiased estimate of the same regularizer, the three stay
where `reg_crops=crops` puts them, within the spread that another seed gives.

Usage: python benchmarks/bench_accentuate_reg_crops.py [--steps 100] [--reg-crops 8,4,2,1]
       [--seeds 0,1]
"""

from __future__ import annotations

import argparse
import os

import torch

from vizcnn import load_model
from vizcnn.data.samples import sample_image
from vizcnn.hooks import capture, model_guard
from vizcnn.io.imaging import resize
from vizcnn.optvis.accent_regularizer import layer_distance
from vizcnn.optvis.accentuation import accentuate

REG = "_blocks.2"
UNITS = ("_blocks.9:56", "_blocks.5:3", "_blocks.12:100", "_blocks.7:20")
SAMPLES = ("coffee", "chelsea", "astronaut", "rocket")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--crops", type=int, default=8)
    parser.add_argument("--reg-crops", default="8,4,2,1")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    loaded = load_model("efficientnet_lite0")
    photos = torch.cat([resize(sample_image(name)[None], loaded.input_size) for name in SAMPLES])
    photos = photos.clamp(0, 1)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"lite0, {len(UNITS)} units x {len(SAMPLES)} photos x seeds {seeds}, {args.steps} steps, "
        f"{args.crops} crops, reg {REG}; threads {torch.get_num_threads()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )

    def reg_acts(images: torch.Tensor) -> torch.Tensor:
        with (
            model_guard(loaded.module),
            torch.no_grad(),
            capture(loaded.module, [REG], stop_early=True, detach=True) as acts,
        ):
            acts.run(loaded.normalize(images))
        return acts[REG].float()

    original = reg_acts(photos)
    for reg_crops in [int(v) for v in args.reg_crops.split(",")]:
        gains, distances, pixels = [], [], []
        for seed in seeds:
            for unit in UNITS:
                result = accentuate(
                    loaded, photos, unit, steps=args.steps, crops=args.crops,
                    reg_crops=reg_crops, seed=seed,
                )  # fmt: skip
                gains.append(result.values - result.start_values)
                distances.append(layer_distance(reg_acts(result.images), original, "l2"))
                pixels.append((result.images - photos).abs().flatten(1).mean(1))
        gain, distance, pixel = (torch.stack(v) for v in (gains, distances, pixels))
        per_unit = ", ".join(
            f"{u} {g:.2f}/{d:.3f}"
            for u, g, d in zip(
                UNITS,
                gain.view(len(seeds), len(UNITS), -1).mean((0, 2)).tolist(),
                distance.view(len(seeds), len(UNITS), -1).mean((0, 2)).tolist(),
                strict=True,
            )
        )
        print(
            f"reg_crops {reg_crops}: gain {gain.mean():.3f}, distance {distance.mean():.4f}, "
            f"pixel change {pixel.mean():.4f} (per unit gain/distance: {per_unit})",
            flush=True,
        )


if __name__ == "__main__":
    main()
