"""The static HTML gallery: plain dataclasses in, pages out (templates, charts, inlining, links).

Presentation only: this package imports no technique. `vizcnn.microscope` computes the pictures
and fills the dataclasses of `vizcnn.report.site`; `render_pages` turns them into HTML.
"""

from vizcnn.report.links import broken_links, page_links
from vizcnn.report.pages import render_pages
from vizcnn.report.site import (
    AblationView,
    ImageView,
    LayerRowView,
    LayerView,
    ModelCard,
    Picture,
    Site,
    UnitView,
)

__all__ = [
    "AblationView",
    "ImageView",
    "LayerRowView",
    "LayerView",
    "ModelCard",
    "Picture",
    "Site",
    "UnitView",
    "broken_links",
    "page_links",
    "render_pages",
]
