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
class UnitView:
    """One channel of a layer: its rendered image, top patches and mean activation."""

    label: str  # unit spec, e.g. `_blocks.6:3`
    channel: int
    render: Picture | None  # activation maximization, full size
    thumb: Picture | None  # the same, small, for strips
    value: float | None  # the render's objective value on its final image
    patches: Picture | None  # top-k dataset patches as one grid
    hits: list[tuple[str, float]] = field(default_factory=list)  # (image name, score), best first
    mean: float | None = None  # mean activation over the data (all images and positions)


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
