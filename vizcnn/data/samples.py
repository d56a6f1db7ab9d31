"""Bundled sample images (scikit-image and scikit-learn data, offline) and image collections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vizcnn.core.errors import VizError, did_you_mean
from vizcnn.io.imaging import IMAGE_SUFFIXES, channel_refusal

# Natural photographs that ship inside the installed packages (no download).
SKIMAGE_SAMPLES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "motorcycle_left",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
)
SKLEARN_SAMPLES = ("china", "flower")


def sample_names() -> list[str]:
    """Names accepted by `sample_image`."""
    return [*SKIMAGE_SAMPLES, *SKLEARN_SAMPLES]


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    tensor = torch.from_numpy(np.array(array, copy=True)).float().div_(255.0)
    if tensor.dim() == 2:
        return tensor.unsqueeze(0)
    return tensor[..., :3].permute(2, 0, 1).contiguous()


def sample_image(name: str, channels: int = 3) -> torch.Tensor:
    """A bundled photo as `(channels, H, W)` in [0, 1], e.g. `sample_image("coffee")`.

    Grayscale photos are repeated to 3 channels; colour photos become luminance for 1 channel;
    other channel counts are refused (`vizcnn.io.imaging.channel_refusal`).
    """
    if name in SKLEARN_SAMPLES:
        from sklearn.datasets import load_sample_image

        image = _as_tensor(load_sample_image(f"{name}.jpg"))
    elif name in SKIMAGE_SAMPLES:
        import skimage.data

        if name == "motorcycle_left":  # skimage ships it as the left view of a stereo pair
            image = _as_tensor(skimage.data.stereo_motorcycle()[0])
        else:
            image = _as_tensor(getattr(skimage.data, name)())
    else:
        raise VizError(did_you_mean(name, sample_names(), "sample image"))
    if channels == 1 and image.shape[0] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (image * weights).sum(0, keepdim=True)
    if channels not in (1, 3):
        raise channel_refusal(channels, f"the bundled photo {name!r}")
    if channels != image.shape[0]:
        return image.mean(0, keepdim=True).expand(channels, -1, -1).clone()
    return image


def resolve_image_argument(text: str, channels: int = 3) -> tuple[torch.Tensor, str]:
    """An image from a path or `sample:NAME` (bundled), with a display name."""
    from vizcnn.io.imaging import load_image

    if text.startswith("sample:"):
        name = text.split(":", 1)[1]
        return sample_image(name, channels), name
    path = Path(text)
    if path.is_dir():
        raise VizError(
            f"{text!r} is a folder; give one image file or sample:NAME "
            f"({', '.join(sample_names())})"
        )
    if not path.exists():
        raise VizError(
            f"image {text!r} not found; give an image file or sample:NAME "
            f"({', '.join(sample_names())})"
        )
    return load_image(path, channels), path.stem


def list_image_files(root: str | Path) -> list[Path]:
    """Image files under a folder (recursively, sorted) or listed in a text file, one per line."""
    root = Path(root)
    if root.is_dir():
        files = sorted(
            p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    elif root.is_file() and root.suffix.lower() in {".txt", ".lst", ".list"}:
        base = root.parent
        files = []
        for line in root.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                path = Path(line)
                files.append(path if path.is_absolute() else base / path)
    elif root.is_file():
        what = "image file" if root.suffix.lower() in IMAGE_SUFFIXES else "file"
        raise VizError(
            f"data {str(root)!r} is a single {what}; give a folder of images (one image: put "
            "it in a folder), a .txt list of paths, or 'samples'"
        )
    elif str(root).startswith("sample:"):
        raise VizError(
            f"data {str(root)!r} is one bundled photo; give 'samples' (crops of all bundled "
            "photos), a folder of images, or a .txt list of paths"
        )
    else:
        raise VizError(
            f"data {str(root)!r} not found; give a folder of images, a .txt list of paths, or 'samples'"
        )
    return files
