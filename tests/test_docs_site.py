"""The documentation site, as built: every local link and image resolves, nothing is fetched from the
network, and pages open in headless Chromium (network blocked) with no console error.

The site is CI's build when ``VIZCNN_DOCS_HTML`` names it (``.ci/run`` builds it with the gallery
executed at its quick settings, then runs this file); otherwise this test builds it into a temporary
folder with ``-D plot_gallery=0`` (gallery pages without figures: a minute or two). Skips without the
`docs` extra (Sphinx).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML_ENV = "VIZCNN_DOCS_HTML"

pytestmark = pytest.mark.slow

# tags whose URL the browser fetches by itself (a resource), as opposed to a link a reader follows
RESOURCE_ATTRIBUTES = {
    ("img", "src"),
    ("script", "src"),
    ("link", "href"),
    ("source", "src"),
    ("source", "srcset"),
    ("iframe", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
    ("object", "data"),
}


class _Page(HTMLParser):
    """The ids, links (``<a href>``) and fetched resources of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []
        self.inline_styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            if tag == "a" and name == "href":
                self.links.append(value)
            if (tag, name) in RESOURCE_ATTRIBUTES:
                self.resources.append(value)
            if name == "style":
                self.inline_styles.append(value)
        self._in_style = tag == "style"

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.inline_styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get(HTML_ENV)
    if given:
        html = Path(given)
        assert (html / "index.html").is_file(), f"{HTML_ENV}={given} holds no built site"
        return html
    pytest.importorskip(
        "sphinx", reason="the docs extra (pip install -e '.[docs]') builds the site"
    )
    out = tmp_path_factory.mktemp("docs") / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-D", "plot_gallery=0", "-d", str(out.parent / "doctrees"), "docs", str(out)]
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def pages(site: Path) -> dict[Path, _Page]:
    return {path: _parse(path) for path in sorted(site.rglob("*.html"))}


def _is_remote(url: str) -> bool:
    return url.startswith("//") or urlsplit(url).scheme in ("http", "https", "ftp")


def _local_target(page: Path, url: str) -> tuple[Path, str] | None:
    """The file and fragment a relative URL points at, None for mailto:, data: and remote ones."""
    parts = urlsplit(url)
    if parts.scheme or url.startswith("//"):
        return None
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def test_the_site_has_every_part(site: Path, pages: dict[Path, _Page]) -> None:
    names = {p.relative_to(site).as_posix() for p in pages}
    guides = {f"{p.stem}.html" for p in (ROOT / "docs").glob("*.md") if p.name != "README.md"}
    assert guides <= names, sorted(guides - names)
    from vizcnn.cli.main import LAZY_COMMANDS

    commands = {f"commands/{name}.html" for name in LAZY_COMMANDS}
    assert commands <= names, sorted(commands - names)
    gallery = {f"gallery/{p.stem}.html" for p in (ROOT / "gallery").glob("plot_*.py")}
    assert gallery <= names, sorted(gallery - names)
    import vizcnn

    api = {f"api/generated/vizcnn.{name}.html" for name in vizcnn.__all__}
    assert api <= names, sorted(api - names)
    for topic in ("units", "devices", "scale", "reproducibility", "benchmarks", "notebooks"):
        assert f"topics/{topic}.html" in names


def test_every_command_page_lists_every_option_of_the_cli(site: Path) -> None:
    import click

    from vizcnn.cli.main import app

    ctx = click.Context(app, info_name="vizcnn")
    for name in app.list_commands(ctx):
        command = app.get_command(ctx, name)
        assert command is not None
        text = (site / "commands" / f"{name}.html").read_text(encoding="utf-8")
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.opts[-1] in text, (name, param.opts)


def test_every_local_link_and_image_resolves(site: Path, pages: dict[Path, _Page]) -> None:
    broken = []
    for path, page in pages.items():
        for url in [*page.links, *page.resources]:
            found = _local_target(path, url)
            if found is None:
                continue
            target, fragment = found
            if not target.exists():
                broken.append(f"{path.relative_to(site)}: {url} (no file)")
            elif fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if fragment not in ids:
                    broken.append(f"{path.relative_to(site)}: {url} (no #{fragment})")
    assert not broken, "\n".join(broken[:40])


def test_nothing_is_fetched_from_the_network(site: Path, pages: dict[Path, _Page]) -> None:
    remote = [
        f"{path.relative_to(site)}: {url}"
        for path, page in pages.items()
        for url in page.resources
        if _is_remote(url)
    ]
    css_url = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"])\s*((?:https?:)?//[^'")\s]+)""")
    for path, page in pages.items():
        remote += [
            f"{path.relative_to(site)}: {m}" for s in page.inline_styles for m in css_url.findall(s)
        ]
    for sheet in site.rglob("*.css"):
        remote += [
            f"{sheet.relative_to(site)}: {m}" for m in css_url.findall(sheet.read_text("utf-8"))
        ]
    for script in site.rglob("*.js"):
        text = script.read_text("utf-8", errors="replace")
        remote += [
            f"{script.relative_to(site)}: {m}"
            for m in re.findall(r"""importScripts\(['"](https?:[^'"]+)""", text)
        ]
    assert not remote, "\n".join(remote[:40])


def _browsed_pages(site: Path) -> list[Path]:
    """Every top-level page, each section's index, one page of each generated kind."""
    chosen = sorted(site.glob("*.html"))
    for folder in ("commands", "api", "gallery", "topics"):
        chosen += sorted((site / folder).glob("*.html"))[:4]
    chosen += sorted((site / "api" / "generated").glob("*.html"))[:3]
    return [p for p in chosen if p.name not in ("genindex.html", "search.html")] + [
        site / "search.html"
    ]


@pytest.fixture(scope="module")
def browser(site: Path) -> Iterator[object]:
    from browser_helpers import open_browser

    with open_browser() as b:
        yield b


@pytest.mark.browser
def test_pages_open_in_chromium_offline_without_errors(site: Path, browser: object) -> None:
    from browser_helpers import SiteBrowser

    assert isinstance(browser, SiteBrowser)
    tab = browser.new_tab()
    problems = []
    opened = 0
    for page in _browsed_pages(site):
        tab.goto(page)
        check = tab.check()
        # broken or unlabelled images, console errors, blocked requests; sphinx-gallery's
        # thumbnails carry alt="" on purpose (decorative: the example's title is the link text)
        problems += [p for p in check.problems() if not re.search(r"alt text: \S+_thumb\.\w+$", p)]
        opened += 1
    assert opened > 10
    assert not problems, "\n".join(problems[:40])
