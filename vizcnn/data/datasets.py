"""Image collections for mining: a folder tree, a text list of paths, or crops of bundled photos.

Each item is the image after the model's own preprocessing (shorter side resized to the input
size, then centre-cropped), in [0, 1], with a hash of its 8-bit pixels so that identical images
under two names count once. An unreadable item does not raise: it comes back with an `error`
string, and the miner skips it and lists it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vizcnn.core.errors import VizError
from vizcnn.data.samples import list_image_files, sample_image, sample_names
from vizcnn.io.imaging import load_image, resize
from vizcnn.io.provenance import files_digest, tensor_digest

if TYPE_CHECKING:
    from vizcnn.models.base import ResizeCrop

SAMPLES = "samples"
# timm's interpolation names -> F.interpolate modes (PIL's lanczos and box have no tensor twin:
# bicubic and area are the nearest)
_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "lanczos": "bicubic",
          "box": "area", "hamming": "bilinear", "random": "bilinear"}  # fmt: skip


def preprocess(
    image: torch.Tensor, size: tuple[int, int], resize_crop: ResizeCrop | None = None
) -> torch.Tensor:
    """Bring `(C, h, w)` to the model's input `size` = (H, W).

    Without `resize_crop` (vizcnn's own models): resize (bilinear, antialiased when shrinking)
    so it covers `size`, then centre-crop exactly `size`. With a model's own evaluation recipe
    (timm's `pretrained_cfg`: `LoadedModel.resize_crop`), as timm's eval transform does: resize
    so it covers `size / crop_pct` with the model's interpolation (`squash`: to exactly that
    size), then centre-crop `size`. An image already at `size` with nothing to crop comes back
    as is (no copy).
    """
    height, width = image.shape[-2:]
    mode, cover = "bilinear", (size[0], size[1])
    if resize_crop is not None:
        mode = _MODES.get(resize_crop.interpolation, "bilinear")
        cover = (
            math.floor(size[0] / resize_crop.crop_pct),
            math.floor(size[1] / resize_crop.crop_pct),
        )
    if resize_crop is not None and resize_crop.crop_mode == "squash":
        new_h, new_w = cover
    else:
        scale = max(cover[0] / height, cover[1] / width)
        new_h, new_w = max(cover[0], round(height * scale)), max(cover[1], round(width * scale))
    if (new_h, new_w) != (height, width):
        # antialiased resampling can overshoot [0, 1] a little
        image = resize(image.unsqueeze(0), (new_h, new_w), mode=mode)[0].clamp_(0, 1)
    top, left = (new_h - size[0]) // 2, (new_w - size[1]) // 2
    return image[:, top : top + size[0], left : left + size[1]]


def content_hash(image: torch.Tensor) -> int:
    """64-bit hash of a `(C, H, W)` image's 8-bit quantized pixels (never 0: 0 = empty slot).

    Identical content (after preprocessing) gives the same hash on every process; computed
    per item at load time, so it runs in the DataLoader workers.
    """
    # numpy, not torch: tiny elementwise torch ops start a thread team each, which costs
    # more than the work itself on a busy machine
    values = image.detach().cpu().numpy()
    pixels = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    digest = hashlib.blake2b(pixels.tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


def content_hashes(images: torch.Tensor) -> torch.Tensor:
    """`content_hash` of each image of `(B, C, H, W)`, as a `(B,)` int64 tensor."""
    return torch.tensor([content_hash(image) for image in images], dtype=torch.int64)


SAMPLE_CROPS = 32  # crops per bundled photo in the `samples` data set


class ImageSource(Dataset[dict[str, Any]]):
    """Base class: `load(i)` gives one raw image; items come preprocessed, hashed, never raising.

    Subclasses set `names` (one display name per item) and implement `load`.

    Args:
        channels: colour channels the model takes (1 or 3).
        size: `(H, W)` the model takes.
    """

    names: list[str]
    resize_crop: ResizeCrop | None = None  # the model's own resize and crop (`preprocess`)

    def __init__(self, channels: int, size: tuple[int, int]) -> None:
        self.channels = channels
        self.size = (int(size[0]), int(size[1]))

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> torch.Tensor:
        """The raw image `index` as `(C, h, w)` in [0, 1]; raise on unreadable data."""
        raise NotImplementedError

    def image(self, index: int) -> torch.Tensor:
        """Item `index` preprocessed to `(C, H, W)` in [0, 1] (raises VizError if unreadable)."""
        try:
            raw = self.load(index)
        except VizError:
            raise
        except Exception as exc:  # decoders raise many types; the reason goes to the manifest
            raise VizError(
                f"cannot read {self.names[index]!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if raw.dim() != 3 or raw.shape[-1] < 1 or raw.shape[-2] < 1:
            raise VizError(f"{self.names[index]!r} is not an image (shape {tuple(raw.shape)})")
        return preprocess(raw, self.size, self.resize_crop)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            image = self.image(index)
            return {"image": image, "index": index, "hash": content_hash(image), "error": ""}
        except VizError as exc:
            blank = torch.zeros(self.channels, *self.size)
            return {"image": blank, "index": index, "hash": 0, "error": str(exc)}

    def fingerprint(self) -> str:
        """Identifies the collection (names, size, channels) so a resumed run checks it."""
        described: list[Any] = [self.channels, self.size, self.names]
        if self.resize_crop is not None:  # other images than the default recipe's
            described.append(vars(self.resize_crop))
        text = json.dumps(described)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def content_digest(self) -> str:
        """Follows the items' contents, so a resumed run notices changed data ("" = fixed)."""
        return ""


class FileImages(ImageSource):
    """Image files: `paths` in order; names are the paths as given."""

    def __init__(self, paths: Sequence[str | Path], channels: int, size: tuple[int, int]) -> None:
        super().__init__(channels, size)
        self.paths = [Path(p) for p in paths]
        self.names = [str(p) for p in self.paths]

    def load(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index], self.channels)

    def content_digest(self) -> str:
        """Size and modification time of every file (no reading: a stat per file)."""
        return files_digest(self.paths[: len(self)])


@lru_cache(maxsize=32)
def _photo(name: str, channels: int) -> torch.Tensor:
    # Kept as uint8: sixteen photos, some megapixel, are cached once per (worker) process.
    return sample_image(name, channels).mul(255).round().to(torch.uint8)


class SampleCrops(ImageSource):
    """Seeded random square crops of the photos bundled with scikit-image and scikit-learn.

    Crop 0 of each photo is the whole photo; the others have a side of 25% to 100% of the
    photo's shorter side, at random places. Items go round robin over the photos (all crops 0,
    then all crops 1, ...) so that a `limit` still samples every photo. Same seed, same crops;
    photos are read only when an item is loaded.

    Args:
        crops_per_image: crops taken from each bundled photo.
        seed: seeds the crop positions.
    """

    def __init__(
        self,
        channels: int,
        size: tuple[int, int],
        crops_per_image: int = SAMPLE_CROPS,
        seed: int = 0,
    ) -> None:
        super().__init__(channels, size)
        if crops_per_image < 1:
            raise VizError(f"crops per image must be at least 1, got {crops_per_image}")
        self.seed = int(seed)
        generator = torch.Generator().manual_seed(self.seed)
        photos = sample_names()
        # (photo, side, top, left) as fractions: side of the shorter side, top/left of the slack
        draws = torch.rand(crops_per_image, len(photos), 3, generator=generator)
        self.crops: list[tuple[str, float, float, float]] = []
        self.names = []
        for crop in range(crops_per_image):
            for index, photo in enumerate(photos):
                side, top, left = (float(v) for v in draws[crop, index])
                side = 1.0 if crop == 0 else math.sqrt(0.06 + 0.94 * side)
                self.crops.append((photo, side, top, left))
                self.names.append(f"sample:{photo}" if crop == 0 else f"sample:{photo}#{crop}")

    def load(self, index: int) -> torch.Tensor:
        photo, fraction, top_fraction, left_fraction = self.crops[index]
        image = _photo(photo, self.channels)
        if fraction < 1.0:
            height, width = image.shape[-2:]
            side = max(8, int(min(height, width) * fraction))
            top = int(top_fraction * (height - side + 1))
            left = int(left_fraction * (width - side + 1))
            image = image[:, top : top + side, left : left + side]
        return image.float().div(255.0)

    def fingerprint(self) -> str:
        return f"{super().fingerprint()}-seed{self.seed}"


class TensorImages(ImageSource):
    """Images already in memory: `(N, C, H, W)` in [0, 1] (preprocessed if not at the model size)."""

    def __init__(self, images: torch.Tensor, names: Sequence[str] | None = None) -> None:
        super().__init__(int(images.shape[1]), (int(images.shape[2]), int(images.shape[3])))
        self.images = images
        self.names = (
            list(names) if names is not None else [f"tensor:{i}" for i in range(len(images))]
        )

    def load(self, index: int) -> torch.Tensor:
        return self.images[index]

    def content_digest(self) -> str:
        """The bytes of the images in use."""
        return tensor_digest(self.images[: len(self)])


def open_dataset(
    data: str | Path,
    channels: int,
    size: tuple[int, int],
    *,
    limit: int | None = None,
    crops_per_image: int = SAMPLE_CROPS,
    seed: int = 0,
    resize_crop: ResizeCrop | None = None,
) -> ImageSource:
    """The DATA argument as a data set: a folder tree, a `.txt` list of paths, or `samples`.

    Args:
        data: folder (any tree of images, e.g. an ImageFolder), text file of paths (one per line,
            relative to the file), or `samples` (crops of the bundled photos).
        channels, size: what the model takes, `(H, W)`.
        limit: keep only the first `limit` images.
        crops_per_image, seed: for `samples`.
        resize_crop: the model's own resize and crop (`LoadedModel.resize_crop`; `preprocess`).

    Example:
        >>> dataset = open_dataset("samples", 3, (224, 224), limit=64)
        >>> dataset[0]["image"].shape
        torch.Size([3, 224, 224])
    """
    if limit is not None and limit < 1:
        raise VizError(f"limit must be at least 1, got {limit}")
    dataset: ImageSource
    if str(data) == SAMPLES:
        dataset = SampleCrops(channels, size, crops_per_image, seed)
    else:
        dataset = FileImages(list_image_files(data), channels, size)
    dataset.resize_crop = resize_crop
    if limit is not None:
        dataset = _limited(dataset, limit)
    if len(dataset) == 0:
        raise VizError(
            f"no images in {str(data)!r}; give a folder with images "
            "(.jpg, .png, ...), a .txt list of paths, or 'samples'"
        )
    if channels not in (1, 3):  # photos do not have them: refuse now, not image by image
        dataset.image(0)
    return dataset


def _limited(dataset: ImageSource, limit: int) -> ImageSource:
    dataset.names = dataset.names[:limit]
    return dataset


@dataclass
class Batch:
    """A collated batch: images `(B, C, H, W)`, data-set indices, content hashes, errors."""

    images: torch.Tensor  # (B, C, H, W) in [0, 1]; zeros where `errors` is non-empty
    indices: torch.Tensor  # (B,) int64 positions in the data set (image ids)
    hashes: torch.Tensor  # (B,) int64 content hashes (`content_hash`), 0 for unreadable items
    errors: list[str]  # "" for a good item, else why it was skipped


def collate(items: list[dict[str, Any]]) -> Batch:
    """DataLoader `collate_fn` for `ImageSource` items."""
    return Batch(
        # numpy's single-threaded copy: torch.stack's thread team stalls on a busy machine
        images=torch.from_numpy(np.stack([item["image"].numpy() for item in items])),
        indices=torch.tensor([item["index"] for item in items], dtype=torch.int64),
        hashes=torch.tensor([item["hash"] for item in items], dtype=torch.int64),
        errors=[item["error"] for item in items],
    )
