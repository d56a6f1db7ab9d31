"""`ReportConfig`: every option of a report, checked once when it is made."""

from __future__ import annotations

from dataclasses import dataclass

from vizcnn.core.errors import VizError

PROJECTIONS = ("deconv", "guided", "none")
DEFAULT_IMAGES = ("sample:coffee", "sample:chelsea")
DEFAULT_METHODS = ("saliency", "ig", "gradcam")
REPORT_BATCH = 32  # images per forward pass while mining where `RunOptions.batch` is None


@dataclass(frozen=True)
class ReportConfig:
    """What a report shows and how hard each picture is worked; `vizcnn report` options map onto these."""

    layers: tuple[str, ...] = ()  # layers with a page; () = the model's report layers
    units_per_layer: int = 16  # channels 0..N-1 of each layer (clipped to the layer)
    steps: int = 256  # activation-maximization optimizer steps per unit
    image_size: int = 128  # rendered picture side; the network sees it at this size (not 224)
    data: str = "samples"  # data set mined: a folder, a .txt list of paths, or `samples`
    limit: int | None = None  # use only the first N images of the data
    crops: int = 8  # samples: crops per bundled photo (16 photos)
    k: int = 9  # top dataset patches per unit
    projections: str = "none"  # patches next to their deconv / guided projection, or none
    images: tuple[str, ...] = DEFAULT_IMAGES  # images to dream and attribute (file or sample:NAME)
    methods: tuple[str, ...] = DEFAULT_METHODS  # attribution methods shown
    dream_octaves: int = 4  # DeepDream pyramid levels (fewer for small images)
    dream_steps: int = 10  # DeepDream gradient steps per octave
    ablation: str | None = None  # results.json of `vizcnn ablate` to show, or None
    self_contained: bool = False  # one HTML file with every picture inlined

    def __post_init__(self) -> None:
        checks = [
            (
                self.units_per_layer >= 1,
                f"ReportConfig.units_per_layer must be >= 1, got {self.units_per_layer}",
            ),
            (self.steps >= 1, f"ReportConfig.steps must be >= 1, got {self.steps}"),
            (
                self.image_size >= 8,
                f"ReportConfig.image_size must be >= 8 pixels, got {self.image_size}",
            ),
            (
                self.limit is None or self.limit >= 1,
                f"ReportConfig.limit must be >= 1, got {self.limit}",
            ),
            (
                self.dream_octaves >= 1,
                f"ReportConfig.dream_octaves must be >= 1, got {self.dream_octaves}",
            ),
            (
                self.dream_steps >= 1,
                f"ReportConfig.dream_steps must be >= 1, got {self.dream_steps}",
            ),
            (self.crops >= 1, f"ReportConfig.crops must be >= 1, got {self.crops}"),
            (self.k >= 1, f"ReportConfig.k must be >= 1, got {self.k}"),
            (
                self.projections in PROJECTIONS,
                f"unknown ReportConfig.projections {self.projections!r}; use deconv, guided or none",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise VizError(message)
        if len(set(self.layers)) != len(self.layers):
            raise VizError(f"ReportConfig.layers names a layer twice: {', '.join(self.layers)}")
