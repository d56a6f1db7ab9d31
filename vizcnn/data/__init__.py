"""Images in: bundled samples, folders, tensors, and the data sets that techniques stream."""

from vizcnn.data.datasets import ImageSource, open_dataset
from vizcnn.data.samples import list_image_files, resolve_image_argument, sample_image, sample_names

__all__ = [
    "ImageSource",
    "list_image_files",
    "open_dataset",
    "resolve_image_argument",
    "sample_image",
    "sample_names",
]
