"""LeNet-5 for scikit-learn's digits: a 1-channel, 32x32 model small enough to train in seconds.

The shipped weights `vizcnn/models/weights/lenet5_digits.pt` are made by
`vizcnn train-digits --replace-bundled` (fixed split and seed); `load_model("lenet5_digits")`
retrains them if the file is missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vizcnn.core.errors import VizError
from vizcnn.models.base import LoadedModel
from vizcnn.models.checkpoints import load_weights_file
from vizcnn.models.default_layers import default_layers
from vizcnn.models.random_init import build_random, describe_random

WEIGHTS_PATH = Path(__file__).parent / "weights" / "lenet5_digits.pt"
DIGITS_MEAN = (0.25,)  # mean ink level of the upsampled digits, rounded
DIGITS_STD = (0.35,)
SPLIT_SEED = 0
TEST_FRACTION = 0.25


class LeNet5(nn.Module):
    """The classic LeNet-5 layout (conv 6@5x5, pool, conv 16@5x5, pool, fc 120, 84, 10), ReLU."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as `(N, 1, 32, 32)` images in [0, 1]: train x, train y, test x, test y."""
    from sklearn.model_selection import train_test_split

    from vizcnn.data.labelled import digit_images

    images, labels = digit_images()
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=labels.numpy()
    )
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def normalize_digits(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(DIGITS_MEAN, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(DIGITS_STD, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def train_lenet5(epochs: int = 30, seed: int = 0) -> tuple[LeNet5, float]:
    """Train LeNet-5 on the digits split; returns the model and its test accuracy."""
    generator = torch.Generator().manual_seed(seed)
    train_x, train_y, test_x, test_y = digits_tensors()
    model = LeNet5()
    with torch.no_grad():  # deterministic init from our generator, not the global one
        for param in model.parameters():
            if param.dim() > 1:
                bound = (
                    6.0 / (param.shape[1] * param[0].numel() // param.shape[1] + param.shape[0])
                ) ** 0.5
                param.copy_((torch.rand(param.shape, generator=generator) * 2 - 1) * bound)
            else:
                param.zero_()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            images = torch.roll(train_x[batch], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(normalize_digits(images)), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    return model, lenet5_accuracy(model, test_x, test_y)


def lenet5_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        predicted = model(normalize_digits(images)).argmax(1)
    return float((predicted == labels).float().mean())


def load_lenet(
    weights: str | None = None, *, trust: bool = False, seed: int | None = 0
) -> LoadedModel:
    """`lenet5_digits`: the bundled weights, random ones (`"none"`, from `seed`) or a state dict.

    Example:
        >>> loaded = load_lenet()  # 1 channel, 32 px, labels "0".."9"
    """
    choice = (weights or "DEFAULT").strip()
    module = build_random(LeNet5, seed if choice.lower() == "none" else 0)
    if choice.lower() == "none":
        source = describe_random(seed)
    elif choice.upper() == "DEFAULT" and WEIGHTS_PATH.is_file():
        module.load_state_dict(torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True))
        source = f"digits ({WEIGHTS_PATH.name})"
    elif choice.upper() == "DEFAULT":  # a source checkout without the weights file: seconds
        module, _ = train_lenet5()
        source = "digits (trained on first use)"
    elif Path(choice).is_file():
        source = load_weights_file(module, choice, "lenet5_digits", trust)
    else:
        raise VizError(
            f"weights {choice!r} for lenet5_digits: not a file; use DEFAULT, none or a state-dict path"
        )
    return LoadedModel(
        name="lenet5_digits",
        module=module,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        input_size=(32, 32),
        labels=[str(d) for d in range(10)],
        default_layers=default_layers("lenet5_digits"),
        weights=source,
    )
