"""The report's HTML: plain dataclasses in, pages out (templates, charts, inlining, links).

Presentation only: this package imports no technique and not the builder.
`vizcnn.report.builder` computes the pictures and fills the dataclasses of
`vizcnn.report.html.site`; `render_pages` turns them into HTML.
"""

from vizcnn.report.html.links import broken_links, page_links
from vizcnn.report.html.pages import render_pages
from vizcnn.report.html.site import (
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
