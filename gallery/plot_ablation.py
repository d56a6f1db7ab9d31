"""
Layer-removal ablations: does depth matter on digits?
=====================================================

Zeiler & Fergus (2013, Table 3) removed layers of their ImageNet network, retrained every variant
from scratch, and found that removing one section barely hurts while removing several does: a
QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

minimum depth matters more than any one layer. This script repeats the experiment with LeNet-5
on scikit-learn's digits (the fixed split of `lenet5_digits`): the control and four variants
(drop the last hidden FC, both hidden FC, the middle convolution, both), each trained from
scratch with the same budget, evaluated on the same 450 test images. Writes
`ablation_digits.png` (accuracy change against parameters removed) and `ablation_digits.md`.

Run: ``python gallery/plot_ablation.py [OUT_DIR] [EPOCHS]`` (about a minute on two CPU cores).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import vizcnn
from vizcnn.ablation import DIGITS_VARIANTS, TrainConfig, digits, run_ablation
from vizcnn.ablation.summary import results_chart, results_markdown
from vizcnn.ablation.variants import ZF_TABLE3

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)


def main(out: Path, epochs: int = 15) -> None:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loaded = vizcnn.load_model("lenet5_digits")
    config = TrainConfig(retrain="all", epochs=epochs, from_scratch=True)
    result = run_ablation(
        loaded, DIGITS_VARIANTS, digits("test"), config, train_data=digits("train"), seed=0
    )
    results_chart(result).save(out / "ablation_digits.png")
    text = results_markdown(result, "LeNet-5 on digits, every row trained from scratch")
    text += "\nZeiler & Fergus Table 3 (error %: train top-1 / val top-1 / val top-5):\n\n"
    text += "\n".join(
        f"- {name}: {' / '.join(map(str, errors))}" for name, errors in ZF_TABLE3.items()
    )
    (out / "ablation_digits.md").write_text(text + "\n")
    print(text)
    print(f"{time.perf_counter() - started:.0f} s; wrote {out / 'ablation_digits.png'}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path("gallery/out"),
        int(sys.argv[2]) if len(sys.argv) > 2 else (1 if QUICK else 15),
    )
