"""Open a static site in headless Chromium with the network blocked, and report what a reader sees.

Playwright drives the system Chromium (Debian's ``/usr/bin/chromium``, or ``$VIZCNN_CHROMIUM``);
Playwright's own browser downloads are never used. Only ``file://`` requests (and ``data:``/``blob:``
URLs, which never reach the network) are allowed: every other request is aborted and recorded, so a
page that would fetch a CDN script, a remote font or an external image fails its check.

Without a Chromium (or without the ``playwright`` package) the tests that need one skip, unless
``VIZCNN_REQUIRE_BROWSER=1`` (CI sets it): then they fail.

Example::

    with open_browser() as browser:
        tab = browser.new_tab()
        tab.goto(site / "index.html")
        check = tab.check(screenshots / "index.png")
        assert not check.problems(), check.problems()
        tab.keyboard_follow("layers/conv1.html")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import pytest

REQUIRE_ENV = "VIZCNN_REQUIRE_BROWSER"  # "1": a missing browser fails the test instead of skipping
CHROMIUM_ENV = "VIZCNN_CHROMIUM"  # path of a Chromium binary to use instead of the one on PATH
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ALLOWED_SCHEMES = ("file", "data", "blob", "about")  # never touch the network
VIEWPORT = {"width": 1280, "height": 800}
IMAGE_TIMEOUT_MS = 30_000  # per lazy image, after it is scrolled into view (a loaded CI is slow)

# Scroll every <img> into view in turn (so loading="lazy" ones start), wait for each to finish or fail,
# then describe them all. Runs in the page through the DevTools protocol, which a CSP does not block.
_LOAD_AND_LIST_IMAGES = """
async (timeoutMs) => {
  const images = Array.from(document.images);
  const timedOut = new Set();
  for (const img of images) {
    img.scrollIntoView({block: "center"});
    if (!img.complete) {
      await new Promise((resolve) => {
        img.addEventListener("load", resolve, {once: true});
        img.addEventListener("error", resolve, {once: true});
        setTimeout(() => { timedOut.add(img); resolve(); }, timeoutMs);
      });
    }
    if (img.complete && img.naturalWidth > 0) {
      try { await img.decode(); } catch (e) { /* a broken image reports naturalWidth 0 below */ }
    }
  }
  window.scrollTo(0, 0);
  return images.map((img) => ({
    src: img.currentSrc || img.src,
    alt: img.getAttribute("alt"),
    naturalWidth: img.naturalWidth,
    naturalHeight: img.naturalHeight,
    loading: img.getAttribute("loading"),
    timedOut: timedOut.has(img) && !img.complete,
  }));
}
"""


_FOCUS_DOCUMENT_START = """
() => {
  const root = document.documentElement;
  const had = root.hasAttribute("tabindex");
  if (!had) root.setAttribute("tabindex", "-1");
  root.focus({preventScroll: true});
  if (!had) root.removeAttribute("tabindex");
  window.scrollTo(0, 0);
}
"""


def find_chromium() -> str | None:
    """Path of a Chromium binary: ``$VIZCNN_CHROMIUM``, else the first of CHROMIUM_NAMES on PATH."""
    override = os.environ.get(CHROMIUM_ENV)
    if override:
        return override if Path(override).exists() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_unavailable() -> str | None:
    """Why no browser test can run here (None when Playwright and a Chromium are both present)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if find_chromium() is None:
        return (
            f"no Chromium found (looked for ${CHROMIUM_ENV}, then {', '.join(CHROMIUM_NAMES)}); "
            "apt-get install chromium"
        )
    return None


def require_browser() -> str:
    """The Chromium path, or skip the calling test (fail it when ``VIZCNN_REQUIRE_BROWSER=1``)."""
    reason = browser_unavailable()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    path = find_chromium()
    assert path is not None
    return path


@dataclass(frozen=True)
class ImageInfo:
    """One <img> as the browser sees it after it was scrolled into view."""

    src: str  # the URL it loaded (currentSrc)
    alt: str | None  # its alt attribute; None when absent
    natural_width: int  # 0 when the image failed to load or decode
    natural_height: int
    loading: str | None  # its loading attribute ("lazy", "eager" or None)
    timed_out: bool = False  # still loading IMAGE_TIMEOUT_MS after it was scrolled into view

    @property
    def loaded(self) -> bool:
        return self.natural_width > 0

    @property
    def has_alt(self) -> bool:
        return bool(self.alt and self.alt.strip())


@dataclass
class PageCheck:
    """What one page showed: its images, console errors and requests that failed or were blocked."""

    url: str
    title: str
    images: list[ImageInfo]
    console_errors: list[str]  # console.error, uncaught exceptions, CSP violations, load failures,
    # and any alert/confirm/prompt dialog
    failed_requests: list[tuple[str, str]]  # (url, reason), including the blocked ones
    blocked_requests: list[str]  # every request for a URL outside ALLOWED_SCHEMES
    screenshot: Path | None

    @property
    def broken_images(self) -> list[ImageInfo]:
        return [image for image in self.images if not image.loaded]

    @property
    def images_without_alt(self) -> list[ImageInfo]:
        return [image for image in self.images if not image.has_alt]

    def problems(self) -> list[str]:
        """One line per defect (empty for a clean page), for assertion messages."""
        lines = [
            f"{'image still loading' if image.timed_out else 'broken image'}: {image.src}"
            for image in self.broken_images
        ]
        lines += [f"image without alt text: {image.src}" for image in self.images_without_alt]
        lines += [f"console error: {text}" for text in self.console_errors]
        lines += [f"blocked request: {url}" for url in self.blocked_requests]
        lines += [
            f"failed request: {url} ({why})"
            for url, why in self.failed_requests
            if url not in self.blocked_requests
        ]
        return [f"{self.url}: {line}" for line in lines]


@dataclass
class Tab:
    """A page in the blocked-network context, recording its console and requests between checks.

    Each event is tagged with the document it belongs to (a counter bumped by every main-frame
    navigation request), and a check reports only the current document's: leaving a page cancels
    its pending lazy-image loads (net::ERR_ABORTED), which is no defect of the page one lands on.
    """

    page: Any  # playwright.sync_api.Page
    document: int = 0  # number of the current document: main-frame navigation requests so far
    console_errors: list[tuple[int, str]] = field(default_factory=list)
    failed_requests: list[tuple[int, str, str]] = field(default_factory=list)
    blocked_requests: list[tuple[int, str]] = field(default_factory=list)
    _issued_in: dict[Any, int] = field(default_factory=dict)  # request -> its document

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self._error(f"uncaught: {error}"))
        self.page.on("requestfailed", self._on_failed)
        self.page.on("request", self._on_request)
        self.page.on("dialog", self._on_dialog)

    def _error(self, text: str) -> None:
        self.console_errors.append((self.document, text))

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self._error(message.text)

    def _on_dialog(self, dialog: Any) -> None:
        # A static report never opens alert/confirm/prompt: one means a script ran that should not.
        self._error(f"dialog {dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _on_request(self, request: Any) -> None:
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self.document += 1
        self._issued_in[request] = self.document
        if urlsplit(request.url).scheme not in ALLOWED_SCHEMES:
            self.blocked_requests.append((self.document, request.url))

    def _on_failed(self, request: Any) -> None:
        document = self._issued_in.get(request, self.document)
        self.failed_requests.append((document, request.url, request.failure or "failed"))

    @property
    def url(self) -> str:
        return str(self.page.url)

    def goto(self, target: Path | str) -> None:
        """Open a file (Path) or URL and wait for its load event."""
        url = target.resolve().as_uri() if isinstance(target, Path) else target
        self.page.goto(url, wait_until="load")

    def check(self, screenshot: Path | None = None) -> PageCheck:
        """Load every image (lazy ones scrolled into view), then report the page since the last check.

        Args:
            screenshot: where to save a full-page PNG (its folder is created), or None.
        """
        self.page.wait_for_load_state("load")
        raw = self.page.evaluate(_LOAD_AND_LIST_IMAGES, IMAGE_TIMEOUT_MS)
        images = [
            ImageInfo(
                src=item["src"],
                alt=item["alt"],
                natural_width=int(item["naturalWidth"]),
                natural_height=int(item["naturalHeight"]),
                loading=item["loading"],
                timed_out=bool(item["timedOut"]),
            )
            for item in raw
        ]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(screenshot), full_page=True)
        result = PageCheck(
            url=self.url,
            title=str(self.page.title()),
            images=images,
            console_errors=[text for doc, text in self.console_errors if doc == self.document],
            failed_requests=[
                (url, why) for doc, url, why in self.failed_requests if doc == self.document
            ],
            blocked_requests=[url for doc, url in self.blocked_requests if doc == self.document],
            screenshot=screenshot,
        )
        self.console_errors.clear()
        self.failed_requests.clear()
        self.blocked_requests.clear()
        self._issued_in.clear()
        return result

    def links(self) -> list[tuple[str, str]]:
        """Every <a href> on the page as (href attribute, visible text), in document order."""
        pairs = self.page.eval_on_selector_all(
            "a[href]", "els => els.map(a => [a.getAttribute('href'), a.innerText.trim()])"
        )
        return [(str(href), str(text)) for href, text in pairs]

    def _expect(self, href: str) -> str:
        return urljoin(self.url, href).split("#")[0]

    def click_link(self, href: str) -> None:
        """Click the first link whose href attribute is ``href`` with the mouse; wait for the page."""
        expected = self._expect(href)
        link = self.page.locator(f"a[href={_css_string(href)}]").first
        link.scroll_into_view_if_needed()
        link.click()
        self.page.wait_for_url(lambda url: url.split("#")[0] == expected, wait_until="load")

    def keyboard_follow(self, href: str, max_tabs: int | None = None) -> int:
        """Press Tab from the top of the page until the link to ``href`` has focus, then Enter.

        Returns how many Tab presses it took. Raises AssertionError when the link cannot be reached
        with the keyboard (not focusable, or after ``max_tabs`` presses: default, every focusable
        element once).
        """
        expected = self._expect(href)
        if max_tabs is None:
            max_tabs = int(
                self.page.evaluate(
                    "document.querySelectorAll('a[href], button, input, select, textarea, "
                    "[tabindex]').length"
                )
            )
            max_tabs += 2
        # Start from the top of the document, as a reader arriving on the page does. A blur() alone
        # would not do: Chromium keeps the last clicked or focused element as the starting point of
        # Tab (also across Back), so focus the root element itself for a moment.
        self.page.evaluate(_FOCUS_DOCUMENT_START)
        for presses in range(1, max_tabs + 1):
            self.page.keyboard.press("Tab")
            focused = self.page.evaluate(
                "(() => { const el = document.activeElement;"
                " return el && el.tagName === 'A' ? el.getAttribute('href') : null; })()"
            )
            if focused == href:
                self.page.keyboard.press("Enter")
                self.page.wait_for_url(lambda url: url.split("#")[0] == expected, wait_until="load")
                return presses
        raise AssertionError(f"no keyboard focus reached the link to {href!r} on {self.url}")

    def back(self) -> None:
        """The browser's Back button (history), then wait for the page to load."""
        self.page.go_back(wait_until="load")


@dataclass
class SiteBrowser:
    """A headless Chromium whose only context aborts every request outside ALLOWED_SCHEMES."""

    context: Any  # playwright.sync_api.BrowserContext

    def new_tab(self) -> Tab:
        return Tab(self.context.new_page())

    def check_site(self, site: Path, screenshots: Path | None = None) -> list[PageCheck]:
        """Open every ``*.html`` file under ``site`` in turn and check it (full-page screenshots of
        each saved under ``screenshots`` with the same relative path, ``.png``, when given)."""
        tab = self.new_tab()
        checks = []
        for html in sorted(site.rglob("*.html")):
            tab.goto(html)
            shot = None
            if screenshots is not None:
                shot = screenshots / html.relative_to(site).with_suffix(".png")
            checks.append(tab.check(shot))
        tab.page.close()
        return checks


def _route(route: Any) -> None:
    if urlsplit(route.request.url).scheme in ALLOWED_SCHEMES:
        route.continue_()
    else:
        route.abort("blockedbyclient")


@contextmanager
def open_browser(executable: str | None = None) -> Iterator[SiteBrowser]:
    """Launch headless Chromium (the system one) with the network blocked; close it on exit.

    Args:
        executable: the Chromium binary; default ``require_browser()`` (skips or fails without one).
    """
    from playwright.sync_api import sync_playwright

    executable = executable or require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--disable-dev-shm-usage", "--disable-gpu"],  # containers: small /dev/shm, no GPU
        )
        try:
            context = browser.new_context(viewport=VIEWPORT, service_workers="block")
            context.route("**/*", _route)
            yield SiteBrowser(context)
        finally:
            browser.close()


def url_path(url: str) -> Path:
    """The local path of a ``file://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        raise ValueError(f"not a file:// URL: {url}")
    return Path(unquote(parts.path))


def _css_string(text: str) -> str:
    """``text`` as a quoted CSS string for an attribute selector."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
