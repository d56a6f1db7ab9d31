"""A generated report in headless Chromium, offline: every image loads, nothing errs, navigation works.

The site is the report branch's tiny fixture (`report_helpers`): a hand-set network whose first layer
and a class label are named `<script>alert(1)</script>`, noise images (one named with markup), a few
units and steps, so it builds in seconds. Oracles: each image's decoded size in the browser equals its
file's size read with PIL; the markup shows up as literal text (escaped, never run: a script that ran
would open a dialog or break the CSP, both reported as errors); links land on the page they name.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from browser_helpers import PageCheck, SiteBrowser, open_browser, url_path
from report_helpers import EVIL, TINY_RENDER, markup_loaded, tiny_config, write_data
from vizcnn.report import ArtifactStore, build_report, plan_report

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[SiteBrowser]:
    with open_browser() as b:
        yield b


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, data: Path, browser: SiteBrowser) -> Path:
    # browser first: without Chromium the test skips before spending seconds on the build
    root = tmp_path_factory.mktemp("built") / "site"
    loaded = markup_loaded()
    config = tiny_config(data, render=replace(TINY_RENDER, diversity=2))  # cards with 2 renders
    build_report(loaded, plan_report(loaded, config), ArtifactStore(root))
    return root


def _file_sizes_match(check: PageCheck) -> None:
    for image in check.images:
        if image.src.startswith("data:"):
            continue
        with Image.open(url_path(image.src)) as on_disk:
            assert (image.natural_width, image.natural_height) == on_disk.size, image.src


def test_every_page_shows_every_image_with_alt_and_no_error(
    browser: SiteBrowser, site: Path, tmp_path: Path
) -> None:
    checks = browser.check_site(site, tmp_path / "screenshots")
    pages = sorted(url_path(c.url).relative_to(site.resolve()).as_posix() for c in checks)
    assert pages == sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    assert {"index.html", "images.html"} <= set(pages)
    assert len([p for p in pages if p.startswith("layer-")]) == 2  # one page per layer
    for check in checks:
        assert check.problems() == [], "\n".join(check.problems())
        assert check.images, f"{check.url} shows no image"
        assert all(i.loading == "lazy" for i in check.images)
        _file_sizes_match(check)
        with Image.open(check.screenshot) as shot:  # type: ignore[arg-type]
            assert shot.width == 1280 and shot.height >= 800


def test_markup_in_names_is_shown_as_text_never_run(browser: SiteBrowser, site: Path) -> None:
    tab = browser.new_tab()
    tab.goto(site / "index.html")
    layer_links = [(href, text) for href, text in tab.links() if href.startswith("layer-")]
    evil_href = next(href for href, text in layer_links if text == EVIL)
    tab.click_link(evil_href)
    assert EVIL in tab.page.title()
    assert EVIL in tab.page.inner_text("body")
    assert tab.page.locator("script").count() == 0  # no element made from the layer name
    assert tab.check().problems() == []


def test_navigation_index_layer_and_back_by_mouse_and_keyboard(
    browser: SiteBrowser, site: Path
) -> None:
    index = (site / "index.html").resolve().as_uri()
    tab = browser.new_tab()
    tab.goto(site / "index.html")
    links = tab.links()
    layer_hrefs = [href for href, _ in links if href.startswith("layer-") and "#" not in href]
    first, second = dict.fromkeys(layer_hrefs)  # two layers, each linked more than once

    tab.click_link(first)  # mouse: index -> layer page
    assert tab.url == (site / first).resolve().as_uri()
    assert tab.check().problems() == []
    tab.back()  # the browser's Back button
    assert tab.url == index

    tab.keyboard_follow(second)  # keyboard: Tab to the link, Enter
    assert tab.url == (site / second).resolve().as_uri()
    assert "conv2" in tab.page.title()
    hops = tab.keyboard_follow("index.html")  # the layer page's own link home
    assert tab.url == index
    assert hops <= 3, "the link home should come first in the tab order"
    tab.keyboard_follow("images.html")
    assert "Dreams" in tab.page.title()
    assert tab.check().problems() == []

    # A unit's thumbnail on the index opens its layer page scrolled to that unit.
    tab.goto(site / "index.html")
    unit_href = [href for href, _ in links if href.startswith(second + "#")][-1]
    tab.click_link(unit_href)
    fragment = unit_href.split("#")[1]
    assert tab.url == (site / second).resolve().as_uri() + "#" + fragment
    # The unit is scrolled into the viewport (Chromium may do it just after the load event).
    tab.page.wait_for_function(
        "id => { const top = document.getElementById(id).getBoundingClientRect().top;"
        " return top >= 0 && top < window.innerHeight; }",
        arg=fragment,
        timeout=10_000,
    )


def test_self_contained_report_loads_inline_images_only(
    browser: SiteBrowser, data: Path, site: Path, tmp_path: Path
) -> None:
    root = tmp_path / "single"
    shutil.copytree(site, root)  # its cached pictures are reused: only the page is written
    loaded = markup_loaded()
    build_report(
        loaded,
        plan_report(
            loaded,
            tiny_config(data, render=replace(TINY_RENDER, diversity=2), self_contained=True),
        ),
        ArtifactStore(root),
    )
    checks = browser.check_site(root)
    html_files = [url_path(c.url).name for c in checks]
    assert html_files == ["index.html"]
    (check,) = checks
    assert check.problems() == [], "\n".join(check.problems())
    assert check.images and all(i.src.startswith("data:image/") for i in check.images)
    # The same pictures as the multi-page site, inlined: as many images as all its pages together.
    total = sum(len(c.images) for c in browser.check_site(site))
    assert len(check.images) == total


def test_unit_cards_draw_their_histogram_votes_and_links(browser: SiteBrowser, site: Path) -> None:
    tab = browser.new_tab()
    page = site / "layer-02-conv2.html"
    tab.goto(page)
    cards = tab.page.locator("article.card")
    assert cards.count() == 2  # one card per unit shown
    for index in range(cards.count()):
        card = cards.nth(index)
        box = card.locator("svg.hist").bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 20  # drawn, not empty
        assert card.locator("svg.hist rect").count() >= 1
        assert card.locator("img").count() == 3  # render, its diversity render, the patches
        votes = card.locator("table.votes tr")
        assert votes.count() == 3  # three classes, each shown once, labels as text
        assert any(EVIL in votes.nth(r).inner_text() for r in range(votes.count()))
    assert tab.check().problems() == []
    tab.click_link("layer-02-conv2.html#layer-02-conv2-c1")  # the first card's "next" link
    assert tab.url == page.resolve().as_uri() + "#layer-02-conv2-c1"
    assert tab.check().problems() == []


def test_concepts_pages_show_every_concept_and_link_both_ways(
    browser: SiteBrowser, site: Path
) -> None:
    tab = browser.new_tab()
    tab.goto(site / "layer-02-conv2.html")
    tab.click_link("concepts-02-conv2.html")  # the layer page's link to its concepts
    assert "concepts of conv2" in tab.page.title()
    concepts = tab.page.locator("article.concept")
    assert concepts.count() == 3  # k = 6 clipped to the 3 channels of conv2's ReLU
    for index in range(concepts.count()):
        images = concepts.nth(index).locator("img")
        assert images.count() == 3  # direction render, top patches, a heatmap on the image
    check = tab.check()
    assert check.problems() == [], "\n".join(check.problems())
    _file_sizes_match(check)
    tab.click_link("layer-02-conv2.html")  # and back to the units' cards
    assert tab.url == (site / "layer-02-conv2.html").resolve().as_uri()
