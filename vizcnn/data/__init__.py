"""Images in: bundled samples, folders, tensors, and the data sets that techniques stream."""

from vizcnn.data.datasets import ImageSource, open_dataset
from vizcnn.data.labelled import LabelledImages, open_labelled_images
from vizcnn.data.samples import list_image_files, resolve_image_argument, sample_image, sample_names

__all__ = [
    "ImageSource",
    "LabelledImages",
    "list_image_files",
    "open_dataset",
    "open_labelled_images",
    "resolve_image_argument",
    "sample_image",
    "sample_names",
]
