"""HTML pages from a `Site`: Jinja2 templates with autoescaping, relative links, no scripts.

Every page carries a Content-Security-Policy meta tag that forbids scripts, remote fonts and
fetching (`CSP`); links and images are relative, so the site works from `file://` and from any
static host. `self_contained=True` gives one page with every picture inlined as a `data:` URI and
the other pages as sections reached by `#anchors`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from vizcnn.core.errors import VizError
from vizcnn.report.html.site import Picture, Site

CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
INDEX = "index.html"
IMAGES = "images.html"
ABLATION = "ablation.html"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("vizcnn.report.html", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = lambda block: json.dumps(block, indent=2, sort_keys=True)
    env.filters["num"] = _number
    return env


def _number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def page_names(site: Site) -> list[str]:
    """File names of the pages of a multi-page site, index first."""
    names = [INDEX, *(layer.page for layer in site.layers)]
    names += [page.page for page in site.concepts]
    if site.images:
        names.append(IMAGES)
    if site.ablation is not None:
        names.append(ABLATION)
    return names


def _anchor(page: str) -> str:
    return page.removesuffix(".html")


def render_pages(
    site: Site, *, self_contained: bool = False, root: str | Path | None = None
) -> dict[str, str]:
    """The site's pages as {file name: HTML}.

    Args:
        site: what to show.
        self_contained: one page, `index.html`, with every picture inlined (`data:` URIs read from
            `root`) and the other pages as sections linked by `#anchors`.
        root: the site folder the pictures' paths are relative to (needed for self_contained).

    Example:
        >>> pages = render_pages(site)
        >>> sorted(pages)[:2]
        ['ablation.html', 'images.html']
    """
    env = _environment()
    names = page_names(site)
    if self_contained:
        if root is None:
            raise VizError("a self-contained report needs the folder its pictures are in")
        folder = Path(root)

        def url(page: str) -> str:
            return "#" + _anchor(page)

        def src(picture: Picture) -> str:
            return _data_uri(folder / picture.path)

        def full(picture: Picture) -> str | None:
            return None  # the full-size picture is not inlined: no link to it

        context = _context(site, names, url, src, full)
        html = env.get_template("single.html").render(**context, page=INDEX)
        return {INDEX: html}

    def url_multi(page: str) -> str:
        return quote(page)

    def src_multi(picture: Picture) -> str:
        return quote(picture.path)

    def full_multi(picture: Picture) -> str | None:
        return quote(picture.full) if picture.full else None

    context = _context(site, names, url_multi, src_multi, full_multi)
    pages = {INDEX: env.get_template("index.html").render(**context, page=INDEX)}
    for layer in site.layers:
        pages[layer.page] = env.get_template("layer.html").render(
            **context, page=layer.page, layer=layer
        )
    for concepts in site.concepts:
        pages[concepts.page] = env.get_template("concepts.html").render(
            **context, page=concepts.page, concepts=concepts
        )
    if site.images:
        pages[IMAGES] = env.get_template("images.html").render(**context, page=IMAGES)
    if site.ablation is not None:
        pages[ABLATION] = env.get_template("ablation.html").render(**context, page=ABLATION)
    return pages


def _context(
    site: Site,
    names: list[str],
    url: Callable[[str], str],
    src: Callable[[Picture], str],
    full: Callable[[Picture], str | None],
) -> dict[str, Any]:
    return {
        "site": site,
        "csp": CSP,
        "url": url,
        "src": src,
        "full": full,
        "anchor": _anchor,
        "unit_id": unit_id,
        "unit_url": lambda page, channel: _unit_url(url(page), page, channel),
        "pages": names,
        "images_page": IMAGES,
        "ablation_page": ABLATION,
        "index_page": INDEX,
    }


def unit_id(page: str, channel: int) -> str:
    """The element id of a unit's box on its layer's page (unique in the single page too)."""
    return f"{_anchor(page)}-c{channel}"


def _unit_url(page_url: str, page: str, channel: int) -> str:
    if page_url.startswith("#"):  # self-contained: the unit's box in the one page
        return "#" + unit_id(page, channel)
    return f"{page_url}#{unit_id(page, channel)}"


def _data_uri(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VizError(f"cannot inline {str(path)!r}: {exc.strerror or exc}") from None
    kind = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
