"""What a report shows, as plain dataclasses: no tensors, no files read, only relative paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import field as _field
from typing import Any

Block = dict[str, Any]  # a provenance block (`vizcnn.io.provenance.provenance`)


@dataclass(frozen=True)
class Picture:
    """A PNG inside the site folder, pre-scaled to the size it is shown at."""

    path: str  # relative to the site root, with forward slashes
    width: int  # pixels, as written in the <img> tag
    height: int
    alt: str  # alternative text (escaped by the templates)
    full: str | None = None  # a larger version to link to, relative to the site root


@dataclass(frozen=True)
class Made:
    """How something shown was made: a title and its provenance block."""

    what: str  # e.g. "render of _blocks.6"
    block: Block


@dataclass(frozen=True)
class HistogramView:
    """A unit's activation histogram as bars of an inline SVG (drawn by the template)."""

    bars: list[tuple[float, float, float, float]]  # (x, y, width, height) in SVG units
    width: int  # of the SVG
    height: int
    low: float  # left edge of the first bar shown (activation)
    high: float  # right edge of the last bar shown
    values: int  # activations counted (images x positions)
    zero_share: float | None = None  # share of the counts in the bin holding 0, if one does


@dataclass(frozen=True)
class UnitView:
    """One channel of a layer, its card: renders, top patches, activation histogram, class
    votes, mean activation."""

    label: str  # unit spec, e.g. `_blocks.6:3`
    channel: int
    render: Picture | None  # activation maximization, full size
    thumb: Picture | None  # the same, small, for strips
    value: float | None  # the render's objective value on its final image
    patches: Picture | None  # top-k dataset patches as one grid
    hits: list[tuple[str, float]] = field(default_factory=list)  # (image name, score), best first
    mean: float | None = None  # mean activation over the data (all images and positions)
    diversity: list[Picture] = field(default_factory=list)  # the other diversity renders
    histogram: HistogramView | None = None  # activations over the data
    votes: list[tuple[str, float]] = field(default_factory=list)  # (class, logit fall)
    accentuations: list[Picture] = field(default_factory=list)  # of its top exemplars


@dataclass(frozen=True)
class LayerView:
    """One layer's page."""

    name: str  # dotted module name (`name#k` for a later call)
    page: str  # file name of its page, e.g. `layer-01-_blocks.6.html`
    type: str  # module class name
    shape: str  # output shape as text, `40x28x28`
    field: str  # receptive field as text
    units: list[UnitView]
    made: list[Made] = _field(default_factory=list)
    vote_images: int = 0  # images the class votes were averaged over (0: none)
    concepts_page: str | None = None  # file name of the layer's concepts page


@dataclass(frozen=True)
class ConceptView:
    """One NMF concept of a layer: its direction render, top patches, heatmaps, importance."""

    index: int
    render: Picture | None
    patches: Picture | None
    heatmaps: list[tuple[str, Picture]]  # (image name, coefficient heatmap over it)
    share: float  # share of the sample's coefficient mass
    importance: float | None  # mean fall of each image's top-1 logit when it is removed
    hits: list[tuple[str, float]] = field(default_factory=list)  # (image, coefficient)


@dataclass(frozen=True)
class ConceptsView:
    """A report layer's concepts page."""

    layer: str  # the report layer
    layer_page: str  # its page
    page: str  # this page's file name
    concept_layer: str  # the non-negative layer factorized
    concepts: list[ConceptView]
    reconstruction_error: float
    sampled: int  # positions factorized
    positions_seen: int
    images: int  # images streamed
    importance_images: int
    made: list[Made] = field(default_factory=list)


@dataclass(frozen=True)
class LayerRowView:
    """One row of the architecture table."""

    name: str
    type: str
    shape: str
    params: int
    field: str  # receptive field size, or `all` / `-`
    stride: str
    offset: str
    page: str | None = None  # the layer's page when the report has one


@dataclass(frozen=True)
class ImageView:
    """One input image: its dream and its attribution maps."""

    name: str  # display name (sample name or file name)
    original: Picture
    dream: Picture | None
    attributions: list[tuple[str, Picture]]  # (method, heat map over the image)
    target: str  # class the maps explain
    predictions: list[tuple[str, float]]  # top-5 (label, probability)
    made: list[Made] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # blank maps, methods equal to another
    # per method: the faithfulness metrics (`vizcnn.attribution.metrics.TABLE_COLUMNS` keys)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # randomization test, per method
    metric_columns: list[tuple[str, str, str]] = field(default_factory=list)  # key, title, better
    road_shares: list[float] = field(default_factory=list)
    sanity_threshold: float = 0.5


@dataclass(frozen=True)
class AblationView:
    """The table of a `vizcnn ablate` run and its chart."""

    source: str  # the results.json given
    title: str
    columns: list[str]
    rows: list[list[str]]
    chart: Picture | None
    notes: list[str]
    made: Made | None


@dataclass(frozen=True)
class ModelCard:
    """The index page's model description."""

    name: str
    weights: str
    input_size: tuple[int, int]
    channels: int
    params: int
    classes: int
    layers: list[LayerRowView]
    filters: Picture | None
    filters_layer: str | None
    made: list[Made] = field(default_factory=list)


@dataclass(frozen=True)
class Site:
    """Everything a report shows; `render_pages` writes it as HTML."""

    title: str
    card: ModelCard
    layers: list[LayerView]
    images: list[ImageView]
    ablation: AblationView | None
    data: str  # the data set mined (shown on the index)
    command: str  # the command line that built it
    created: str  # time stamp
    concepts: list[ConceptsView] = field(default_factory=list)  # one page per layer
