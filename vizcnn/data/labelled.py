"""Labelled image collections: `digits`, `sample-crops` and ImageFolders, as images plus labels.

Techniques that need a label per image (linear probes) open their DATA argument here:

- `digits`: scikit-learn's 1797 handwritten digits at 32x32 (grey), in scikit-learn's order,
  labelled 0..9 (`vizcnn.models.lenet.digits_tensors` splits them for `lenet5_digits`).
- `sample-crops`: seeded random crops of the bundled photos (`samples`, `SampleCrops`), each
  labelled with the photo it was cut from (16 classes: astronaut, coffee, ...): a labelled data
  set that ships with the package.
- a folder with one sub-folder per class (an ImageFolder): the sub-folders' sorted names are the
  classes, and every image under a sub-folder (recursively) carries its label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vizcnn.core.errors import VizError
from vizcnn.data.datasets import SAMPLES, FileImages, ImageSource, SampleCrops
from vizcnn.data.samples import list_image_files, sample_names

if TYPE_CHECKING:
    from vizcnn.models.base import ResizeCrop

__all__ = ["DIGITS", "SAMPLE_CROPS_DATA", "LabelledImages", "digit_images", "open_labelled_images"]

DIGITS = "digits"
SAMPLE_CROPS_DATA = "sample-crops"
PROBE_CROPS = 16  # crops per bundled photo in `sample-crops` unless told otherwise


@dataclass
class LabelledImages:
    """Images and one label per image.

    `images[i]["image"]` is item i at the model's size (an `ImageSource`: unreadable items come
    back with an error, not raised); `labels[i]` indexes `classes`.
    """

    images: ImageSource
    labels: list[int]  # class index per item
    classes: list[str]  # class names, index = label
    name: str  # how the data was given (`digits`, a folder, ...)

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.images):
            raise VizError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.labels and not 0 <= min(self.labels) <= max(self.labels) < len(self.classes):
            raise VizError(f"labels must lie in 0..{len(self.classes) - 1} (one per class)")

    def __len__(self) -> int:
        return len(self.labels)


class DigitImages(ImageSource):
    """scikit-learn's digits `(N, 1, 32, 32)` in [0, 1], brought to the model's channels and size.

    Grey digits are repeated to 3 channels for a colour model (as `sample_image` does for grey
    photos) and resized to the model's input size when it is not 32x32.
    """

    def __init__(self, images: torch.Tensor, channels: int, size: tuple[int, int]) -> None:
        if channels not in (1, 3):
            raise VizError(f"digits can be given as 1 or 3 channels; the model takes {channels}")
        super().__init__(channels, size)
        self.images = images
        self.names = [f"digits:{i}" for i in range(len(images))]

    def load(self, index: int) -> torch.Tensor:
        return self.images[index].expand(self.channels, -1, -1)


def digit_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as `(N, 1, 32, 32)` images in [0, 1] and labels `(N,)`, in scikit-learn's
    order (`vizcnn.models.lenet.digits_tensors` splits these for `lenet5_digits`)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1)
    return images, torch.from_numpy(digits.target.astype(np.int64))


def open_labelled_images(
    data: str | Path,
    channels: int,
    size: tuple[int, int],
    *,
    crops_per_image: int = PROBE_CROPS,
    seed: int = 0,
    resize_crop: ResizeCrop | None = None,
) -> LabelledImages:
    """The DATA argument as labelled images: `digits`, `sample-crops` or an ImageFolder.

    Args:
        data: `digits`, `sample-crops` (crops of the bundled photos labelled by photo), or a
            folder with one sub-folder of images per class.
        channels, size: what the model takes, `(H, W)`.
        crops_per_image, seed: the crops of `sample-crops` (`SampleCrops`).
        resize_crop: the model's own resize and crop (`LoadedModel.resize_crop`).

    Example:
        >>> data = open_labelled_images("sample-crops", 3, (224, 224), crops_per_image=4)
        >>> len(data), data.classes[:2]
        (64, ['astronaut', 'coffee'])
    """
    text = str(data)
    if text == DIGITS:
        images, digit_labels = digit_images()
        return LabelledImages(
            DigitImages(images, channels, size),
            [int(v) for v in digit_labels],
            [str(d) for d in range(10)],
            DIGITS,
        )
    if text == SAMPLE_CROPS_DATA:
        crops = SampleCrops(channels, size, crops_per_image, seed)
        crops.resize_crop = resize_crop
        photos = sample_names()
        photo_labels = [photos.index(photo) for photo, *_ in crops.crops]
        return LabelledImages(crops, photo_labels, photos, SAMPLE_CROPS_DATA)
    root = Path(data)
    valid = (
        f"give {DIGITS}, {SAMPLE_CROPS_DATA} or a folder with one sub-folder of images per class"
    )
    if text == SAMPLES:
        raise VizError(
            f"{SAMPLES} has no labels; use {SAMPLE_CROPS_DATA} (each crop labelled with the "
            "photo it came from), digits, or an ImageFolder"
        )
    if not root.is_dir():
        raise VizError(f"data {text!r} is not a labelled data set; {valid}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise VizError(f"{text!r} has no class sub-folders, so its images carry no labels; {valid}")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        files = list_image_files(root / name)
        paths += files
        labels += [index] * len(files)
    files_source = FileImages(paths, channels, size)
    files_source.resize_crop = resize_crop
    return LabelledImages(files_source, labels, classes, text)
