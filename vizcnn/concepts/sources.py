"""The data a concept function streams: images in memory, an `ImageSource`, or the DATA text of
the CLI (a folder, a `.txt` list of paths, `samples`), as one `ImageSource`."""

from __future__ import annotations

from pathlib import Path
from typing import TypeAlias

import torch

from vizcnn.core.errors import VizError
from vizcnn.data.datasets import SAMPLE_CROPS, ImageSource, TensorImages, open_dataset
from vizcnn.models.base import LoadedModel

__all__ = ["ConceptData", "open_concept_data"]

# (N, C, H, W) images in [0, 1], an ImageSource, or a folder / .txt list / "samples"
ConceptData: TypeAlias = torch.Tensor | ImageSource | str | Path


def open_concept_data(
    loaded: LoadedModel,
    data: ConceptData,
    *,
    limit: int | None = None,
    crops: int = SAMPLE_CROPS,
    seed: int = 0,
) -> tuple[ImageSource, str]:
    """`data` as an `ImageSource` at the model's input size, and a name for records.

    Refuses, in one line, an empty data set and images of the wrong shape.
    """
    if limit is not None and limit < 1:
        raise VizError(f"limit must be at least 1, got {limit}")
    source: ImageSource
    if isinstance(data, torch.Tensor):
        if data.dim() != 4 or data.shape[1] != loaded.channels:
            raise VizError(
                f"images must be (N, {loaded.channels}, H, W) in [0, 1], got shape "
                f"{tuple(data.shape)}"
            )
        source = TensorImages(data[:limit] if limit is not None else data)
        source.size = loaded.input_size  # preprocessed to the model's size when they differ
        name = f"tensor{tuple(data.shape)}"
    elif isinstance(data, ImageSource):
        source, name = data, f"{type(data).__name__}:{data.fingerprint()}"
        if limit is not None:
            raise VizError("limit applies to a folder, a .txt list or 'samples'; pass fewer images")
    elif isinstance(data, (str, Path)):
        source = open_dataset(
            data,
            loaded.channels,
            loaded.input_size,
            limit=limit,
            crops_per_image=crops,
            seed=seed,
            resize_crop=loaded.resize_crop,
        )
        name = str(data)
    else:
        raise VizError(
            "data must be images (N, C, H, W), an ImageSource, a folder, a .txt list of paths "
            f"or 'samples'; got {type(data).__name__}"
        )
    if len(source) == 0:
        raise VizError(f"no images in {name!r}; concepts need at least one image")
    return source, name
