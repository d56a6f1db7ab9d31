"""Link checking: every `src` and `href` of a site's pages must name a file inside the site."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.found.append((name, value))
            if name == "id" and value is not None:
                self.ids.add(value)


def page_links(html: str) -> tuple[list[tuple[str, str]], set[str]]:
    """The (attribute, value) of every `src`/`href` in `html`, and the element ids it defines."""
    parser = _Links()
    parser.feed(html)
    parser.close()
    return parser.found, parser.ids


def broken_links(root: str | Path) -> list[str]:
    """Every `src`/`href` of the HTML pages in `root` that does not resolve inside it.

    `data:` URIs pass; `#anchor` links must name an id of their page; anything with a scheme or
    a host (http:, //cdn, file:) or leading outside the folder is broken.

    Returns:
        One line per broken link, `page: attribute=value (why)`; empty when all resolve.
    """
    folder = Path(root).resolve()
    problems: list[str] = []
    parsed = {
        page.name: page_links(page.read_text(encoding="utf-8"))
        for page in sorted(folder.glob("*.html"))
    }
    for name, (links, ids) in parsed.items():
        for attribute, value in links:
            why = _why_broken(folder, value, ids, parsed)
            if why:
                problems.append(f"{name}: {attribute}={value[:80]} ({why})")
    return problems


def _why_broken(
    folder: Path,
    value: str,
    ids: set[str],
    pages: dict[str, tuple[list[tuple[str, str]], set[str]]],
) -> str | None:
    if value.startswith("data:"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "not a relative link"
    if not parts.path:
        return None if parts.fragment in ids else "no such anchor"
    target = (folder / unquote(parts.path)).resolve()
    if not target.is_relative_to(folder):
        return "outside the site"
    if not target.is_file():
        return "no such file"
    if parts.fragment and target.parent == folder and target.name in pages:
        return None if parts.fragment in pages[target.name][1] else "no such anchor"
    return None
