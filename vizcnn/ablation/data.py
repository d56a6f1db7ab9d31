"""Labelled image data for ablations: scikit-learn's digits, an ImageFolder, or unlabelled images.

Items are `(image (C, H, W) in [0, 1], label)`; label -1 marks an image without one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from vizcnn.ablation.evaluate import UNLABELLED
from vizcnn.core.errors import VizError
from vizcnn.data.datasets import FileImages, ImageSource, open_dataset
from vizcnn.data.samples import list_image_files
from vizcnn.models.base import ResizeCrop

DIGITS = "digits"


class TensorData(Dataset[tuple[torch.Tensor, int]]):
    """Images `(N, C, H, W)` in [0, 1] with labels `(N,)` already in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise VizError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def digits(split: str) -> TensorData:
    """scikit-learn's digits at 32x32, the fixed stratified split `lenet5_digits` was trained on.

    Args:
        split: `train` (1347 images) or `test` (450 images).
    """
    from vizcnn.models.lenet import digits_tensors

    train_x, train_y, test_x, test_y = digits_tensors()
    if split == "train":
        return TensorData(train_x, train_y)
    if split == "test":
        return TensorData(test_x, test_y)
    raise VizError(f"digits split {split!r}; use train or test")


class ImageFolderData(Dataset[tuple[torch.Tensor, int]]):
    """An ImageFolder: one sub-folder per class, sorted by name = class index (for ImageNet, the
    sorted synset folders give torchvision's class order)."""

    def __init__(
        self,
        root: str | Path,
        channels: int,
        size: tuple[int, int],
        resize_crop: ResizeCrop | None = None,
    ) -> None:
        root = Path(root)
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not self.classes:
            raise VizError(
                f"{str(root)!r} has no class sub-folders; an ImageFolder needs one per class"
            )
        paths: list[Path] = []
        self.labels: list[int] = []
        for index, name in enumerate(self.classes):
            files = list_image_files(root / name)
            paths += files
            self.labels += [index] * len(files)
        if not paths:
            raise VizError(f"no images in the class folders of {str(root)!r}")
        self.images = FileImages(paths, channels, size)
        self.images.resize_crop = resize_crop

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images.image(index), self.labels[index]


class UnlabelledData(Dataset[tuple[torch.Tensor, int]]):
    """Any `ImageSource` (e.g. the bundled `samples`) with label -1 on every image."""

    def __init__(self, source: ImageSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.source.image(index), UNLABELLED


def open_labelled(
    data: str | Path,
    channels: int,
    size: tuple[int, int],
    *,
    split: str = "test",
    crops_per_image: int = 4,
    seed: int = 0,
    resize_crop: ResizeCrop | None = None,
) -> Dataset[tuple[torch.Tensor, int]]:
    """The DATA argument: `digits`, an ImageFolder (labelled), or `samples`/a flat folder
    (unlabelled: only agreement with the intact model can be measured); images are brought to
    `size` with the model's own `resize_crop` where it has one (`preprocess`)."""
    if str(data) == DIGITS:
        if channels != 1:
            raise VizError(f"digits are 1-channel images; the model takes {channels} channels")
        return digits(split)
    root = Path(data)
    if root.is_dir() and any(p.is_dir() for p in root.iterdir()):
        return ImageFolderData(root, channels, size, resize_crop)
    return UnlabelledData(
        open_dataset(
            data,
            channels,
            size,
            crops_per_image=crops_per_image,
            seed=seed,
            resize_crop=resize_crop,
        )
    )
