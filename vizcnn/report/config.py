"""`ReportConfig`: every option of a report, checked once when it is made.

The techniques' recipes are their own configs (`RenderConfig`, `DreamConfig`, `MineConfig`),
checked where they are made; the report only adds what it alone decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vizcnn.core.errors import VizError
from vizcnn.deepdream.config import DreamConfig
from vizcnn.mining.patches import DEFAULT_PROJECTIONS, PROJECTIONS
from vizcnn.mining.streaming import MineConfig
from vizcnn.optvis.config import RenderConfig

DEFAULT_IMAGES = ("sample:coffee", "sample:chelsea")
DEFAULT_METHODS = ("saliency", "ig", "gradcam")
REPORT_BATCH = 32  # images per forward pass while mining where `RunOptions.batch` is None
MAX_DIVERSITY = 8  # renders per unit on a card

__all__ = [
    "DEFAULT_IMAGES",
    "DEFAULT_METHODS",
    "MAX_DIVERSITY",
    "PROJECTIONS",
    "REPORT_BATCH",
    "ReportConfig",
]


def report_render() -> RenderConfig:
    """The report's render recipe: fewer steps than `vizcnn render` (256), 128 px, lucid's fft."""
    return RenderConfig(steps=256, size=128, param="fft")


def report_mine() -> MineConfig:
    """The report's mining recipe; its `layer` and `channels` are set per layer page."""
    return MineConfig(layer="")


@dataclass(frozen=True)
class ReportConfig:
    """What a report shows and how hard each picture is worked; `vizcnn report` options map onto
    these. `render`, `dream` and `mine` are the techniques' own configs: the builder sets what
    is per page or per image (the render's size clipped to the model's input, the units mined);
    the dream's `layers` () are the model's dream layers."""

    layers: tuple[str, ...] = ()  # layers with a page; () = the model's report layers
    units_per_layer: int = 16  # channels 0..N-1 of each layer (clipped to the layer)
    render: RenderConfig = field(default_factory=report_render)  # each unit's picture; the
    # network sees it at its size (not 224), clipped to the model's input size
    data: str = "samples"  # data set mined: a folder, a .txt list of paths, or `samples`
    limit: int | None = None  # use only the first N images of the data
    crops: int = 8  # samples: crops per bundled photo (16 photos)
    mine: MineConfig = field(default_factory=report_mine)  # top patches per unit (k, rank)
    projections: str = DEFAULT_PROJECTIONS  # patches next to their deconv / guided projection
    images: tuple[str, ...] = DEFAULT_IMAGES  # images to dream and attribute (file or sample:NAME)
    methods: tuple[str, ...] = DEFAULT_METHODS  # attribution method names shown
    dream: DreamConfig = field(default_factory=DreamConfig)  # each image's dream
    ablation: str | None = None  # results.json of `vizcnn ablate` to show, or None
    vote_images: int = 16  # first N images of the data for each unit's class votes; 0 = none
    vote_classes: int = 5  # classes shown per unit (those whose logit falls most)
    accentuations: int = 1  # top exemplars per unit accentuated on its card; 0 = none
    accent_steps: int = 16  # steps of each accentuation (2 crops a step: the report's recipe)
    concepts: int = 6  # k NMF concepts on each layer's concepts page; 0 = no concepts pages
    concept_positions: int = 4096  # cap of the uniform sample of positions factorized
    self_contained: bool = False  # one HTML file with every picture inlined

    def __post_init__(self) -> None:
        checks = [
            (
                self.units_per_layer >= 1,
                f"ReportConfig.units_per_layer must be >= 1, got {self.units_per_layer}",
            ),
            (
                self.limit is None or self.limit >= 1,
                f"ReportConfig.limit must be >= 1, got {self.limit}",
            ),
            (self.crops >= 1, f"ReportConfig.crops must be >= 1, got {self.crops}"),
            (
                self.projections in PROJECTIONS,
                f"unknown ReportConfig.projections {self.projections!r}; use deconv, guided or none",
            ),
            (
                1 <= self.render.diversity <= MAX_DIVERSITY,
                f"ReportConfig.render.diversity must be 1..{MAX_DIVERSITY} (renders per unit on "
                f"its card), got {self.render.diversity}",
            ),
            (
                self.vote_images >= 0,
                f"ReportConfig.vote_images must be >= 0 (0: no class votes), got {self.vote_images}",
            ),
            (
                self.accentuations >= 0,
                f"ReportConfig.accentuations must be >= 0 (0: none), got {self.accentuations}",
            ),
            (
                self.accent_steps >= 1,
                f"ReportConfig.accent_steps must be >= 1, got {self.accent_steps}",
            ),
            (
                self.concepts >= 0,
                f"ReportConfig.concepts must be >= 0 (0: no concepts pages), got {self.concepts}",
            ),
            (
                self.concept_positions >= 1,
                f"ReportConfig.concept_positions must be >= 1, got {self.concept_positions}",
            ),
            (
                self.vote_classes >= 1,
                f"ReportConfig.vote_classes must be >= 1, got {self.vote_classes}",
            ),
            (
                self.mine.layer == "" and self.mine.channels is None,
                "ReportConfig.mine.layer and .channels are set per page; name layers with "
                "ReportConfig.layers and units with ReportConfig.units_per_layer",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise VizError(message)
        if len(set(self.layers)) != len(self.layers):
            raise VizError(f"ReportConfig.layers names a layer twice: {', '.join(self.layers)}")
