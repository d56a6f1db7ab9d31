"""
The HTML report in a browser
============================

Screenshots of the static site that ``vizcnn report`` builds, as a reader sees it: the index (model
card, a strip per layer) and the first layer page (each unit's activation-maximization image, its
top-9 patches, its mean activation). Headless Chromium (Debian's ``chromium`` package, driven by
Playwright's Python package; no browser download) opens the site from ``file://`` with every
non-file request blocked, at a 1280x800 viewport, and saves the visible part of each page.

Run: ``python gallery/plot_report_screenshots.py [SITE_DIR] [OUT_DIR]``. Without ``SITE_DIR`` it
builds the default report (``vizcnn report -o gallery/out/report``: minutes on two CPU cores);
``OUT_DIR`` defaults to ``docs/images/``. Writes ``report_index.png`` and ``report_layer.png``
(JPEG, ``.jpg``, instead when a PNG would exceed 300 KB).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from playwright.sync_api import Page, sync_playwright

QUICK = os.environ.get("VIZCNN_GALLERY_QUICK") == "1"  # small settings (CI, the docs build)

MAX_BYTES = 300_000  # README pictures stay small
VIEWPORT = {"width": 1280, "height": 800}


def build_default_report(site: Path) -> None:
    """Build (or resume) the default report with the CLI, exactly as a user runs it."""
    command = [sys.executable, "-m", "vizcnn.cli.main", "report", "-o", str(site)]
    if QUICK:  # LeNet-5 on 16 sample crops, two units a layer, a few steps: seconds
        command += ["-m", "lenet5_digits", "--data", "samples", "--limit", "16"]
        command += ["--units-per-layer", "2", "--steps", "8"]
    print("+", " ".join(command))
    subprocess.run(command, check=True)


def first_layer_page(page: Page, index_url: str) -> str:
    """URL of the first linked page under a ``layers/`` folder (else the first other .html page)."""
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
    pages = [urljoin(index_url, h) for h in hrefs if urlsplit(h).path.endswith(".html")]
    pages = [url for url in pages if url.split("#")[0] != index_url]
    if not pages:
        raise SystemExit(f"{index_url} links to no other page")
    layer_pages = [url for url in pages if "/layers/" in url or "layer" in Path(url).name]
    return (layer_pages or pages)[0]


def shoot(page: Page, out: Path, stem: str) -> Path:
    """Save the viewport as PNG, or as JPEG when the PNG is over MAX_BYTES; remove the other one."""
    # Lazy images in the viewport load on their own; wait until every one in view has finished.
    page.wait_for_function(
        """() => Array.from(document.images)
             .filter((img) => img.getBoundingClientRect().top < window.innerHeight)
             .every((img) => img.complete)"""
    )
    png, jpg = out / f"{stem}.png", out / f"{stem}.jpg"
    page.screenshot(path=str(png))
    if png.stat().st_size <= MAX_BYTES:
        jpg.unlink(missing_ok=True)
        return png
    page.screenshot(path=str(jpg), type="jpeg", quality=85)
    png.unlink()
    return jpg


def main(site: Path | None, out: Path) -> None:
    if site is None:
        site = out / "report" if QUICK else Path("gallery/out/report")
        build_default_report(site)
    index = site / "index.html"
    if not index.is_file():
        raise SystemExit(f"{index} does not exist: pass the folder that vizcnn report wrote")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:  # the report is built; only its screenshots need a browser
        print("no chromium on PATH, no screenshots: apt-get install chromium")
        return
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        context = browser.new_context(viewport=VIEWPORT)
        # Offline like a reader's laptop: only file:// (and inline data:) reaches the page.
        context.route(
            "**/*",
            lambda route: (
                route.continue_()
                if urlsplit(route.request.url).scheme in ("file", "data")
                else route.abort()
            ),
        )
        page = context.new_page()
        index_url = index.resolve().as_uri()
        page.goto(index_url, wait_until="load")
        written = [shoot(page, out, "report_index")]
        page.goto(first_layer_page(page, index_url), wait_until="load")
        written.append(shoot(page, out, "report_layer"))
        browser.close()
    for path in written:
        print(f"wrote {path} ({path.stat().st_size // 1000} KB)")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None,
        Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/images"),
    )
