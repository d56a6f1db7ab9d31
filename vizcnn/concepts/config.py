"""`ConceptConfig`: what `vizcnn concepts` computes (the CLI's options map onto its fields),
and the default layer of a model's concepts."""

from __future__ import annotations

from dataclasses import dataclass, field

from vizcnn.concepts.discovery import (
    DEFAULT_MAX_POSITIONS,
    IMPORTANCE_IMAGES,
    nonnegative_layers,
)
from vizcnn.concepts.views import DEFAULT_RENDER_STEPS
from vizcnn.core.errors import VizError
from vizcnn.data.datasets import SAMPLE_CROPS
from vizcnn.hooks import Layer
from vizcnn.mining.patches import DEFAULT_THUMBNAIL
from vizcnn.models.base import ModelLike, as_loaded
from vizcnn.optvis.config import RenderConfig

__all__ = ["ConceptConfig", "default_concept_layer"]


@dataclass(frozen=True)
class ConceptConfig:
    """Options of a concepts run (`vizcnn.runs.concepts_folder`, `vizcnn concepts`)."""

    # a non-negative layer (ReLU / ReLU6 output); None: `default_concept_layer`
    layer: Layer | None = None
    k: int = 8  # concepts
    target_class: str | int | None = None  # class mode: factorize images predicted as it
    max_positions: int = DEFAULT_MAX_POSITIONS  # cap of the sample of positions factorized
    patches: int = 9  # top patches per concept
    thumbnail: int = DEFAULT_THUMBNAIL  # patch tile side in pixels
    heatmap_images: int = 4  # images the heatmaps are shown on (spread over the data used)
    importance_images: int = IMPORTANCE_IMAGES  # images the removal importance averages over
    render: RenderConfig = field(default_factory=lambda: RenderConfig(steps=DEFAULT_RENDER_STEPS))
    limit: int | None = None  # a folder / samples: the first `limit` images only
    crops: int = SAMPLE_CROPS  # samples: crops per bundled photo
    max_iter: int = 400  # NMF sweeps at most

    def __post_init__(self) -> None:
        if self.k < 1:
            raise VizError(f"ConceptConfig.k must be at least 1, got {self.k}")
        for name in ("max_positions", "patches", "heatmap_images", "importance_images", "max_iter"):
            if getattr(self, name) < 1:
                raise VizError(
                    f"ConceptConfig.{name} must be at least 1, got {getattr(self, name)}"
                )
        if self.thumbnail < 8:
            raise VizError(
                f"ConceptConfig.thumbnail must be at least 8 pixels, got {self.thumbnail}"
            )
        if self.limit is not None and self.limit < 1:
            raise VizError(f"ConceptConfig.limit must be at least 1, got {self.limit}")
        if self.crops < 1:
            raise VizError(f"ConceptConfig.crops must be at least 1, got {self.crops}")


def default_concept_layer(model: ModelLike) -> str:
    """The model's concept layer: the last ReLU / ReLU6 call inside its default mining layer
    (for efficientnet_lite0 `_blocks.6._swish#1`, the depthwise output of block 6; for a
    torchvision ResNet the last ReLU of its mining stage), else the first one after it."""
    loaded = as_loaded(model)
    near = loaded.layers_for("mine")[0]
    fits = nonnegative_layers(loaded, near=near, count=1_000)
    inside = [spec for spec in fits if spec.startswith(near + ".")]
    if inside:
        return inside[-1]
    if fits:
        return fits[0]
    raise VizError(
        f"{loaded.name} has no ReLU / ReLU6 module to take concepts from; name a layer "
        "(layer=...) whose activations are non-negative"
    )
