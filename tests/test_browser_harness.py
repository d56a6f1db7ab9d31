"""The headless-browser harness on hand-written sites whose defects are known (before any report).

Each page plants one kind of defect: a missing or corrupt image, an external image, a console error, an
uncaught exception, a CSP violation, an image without alt text, a link no keyboard can reach; the
harness must report exactly those, and nothing on the clean pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import browser_helpers as bh
from browser_helpers import SiteBrowser, open_browser

pytestmark = pytest.mark.browser

CSP = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'\">"
)
SIZES = {"a.png": (7, 5), "b.png": (12, 3), "lazy.png": (9, 11)}  # (width, height) oracles


def _page(title: str, body: str, csp: bool = True) -> str:
    head = CSP if csp else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{head}'
        f"<title>{title}</title></head><body>{body}</body></html>"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[SiteBrowser]:
    with open_browser() as b:
        yield b


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """index -> layer.html (and back); images of known sizes, one lazy far below the fold."""
    for name, size in SIZES.items():
        Image.new("RGB", size, (200, 30, 30)).save(tmp_path / name)
    (tmp_path / "style.css").write_text(".spacer { height: 6000px; }")
    (tmp_path / "layers").mkdir()
    (tmp_path / "index.html").write_text(
        _page(
            "Index",
            '<nav><a href="layers/one.html">Layer one</a> <a href="other.html">Other</a></nav>'
            '<img src="a.png" alt="first" width="7" height="5">'
            '<link rel="stylesheet" href="style.css"><div class="spacer"></div>'
            '<img src="lazy.png" alt="far below" loading="lazy" width="9" height="11">',
        )
    )
    (tmp_path / "layers" / "one.html").write_text(
        _page(
            "Layer one",
            '<a href="../index.html">Back to index</a><img src="../b.png" alt="unit 0">',
        )
    )
    (tmp_path / "other.html").write_text(_page("Other", '<a href="index.html">index</a>'))
    return tmp_path


def test_clean_site_has_no_problems_and_true_image_sizes(
    browser: SiteBrowser, site: Path, tmp_path: Path
) -> None:
    tab = browser.new_tab()
    tab.goto(site / "index.html")
    check = tab.check(tmp_path / "shots" / "index.png")
    assert check.problems() == []
    assert check.title == "Index"
    sizes = {Path(i.src).name: (i.natural_width, i.natural_height) for i in check.images}
    assert sizes == {"a.png": SIZES["a.png"], "lazy.png": SIZES["lazy.png"]}
    assert [i.loading for i in check.images] == [None, "lazy"]
    # Full page: the screenshot spans the 6000 px spacer, at the viewport's width.
    with Image.open(tmp_path / "shots" / "index.png") as shot:
        assert shot.width == bh.VIEWPORT["width"]
        assert shot.height > 6000


def test_navigation_by_click_keyboard_and_back(browser: SiteBrowser, site: Path) -> None:
    tab = browser.new_tab()
    index = (site / "index.html").resolve().as_uri()
    layer = (site / "layers" / "one.html").resolve().as_uri()
    tab.goto(site / "index.html")
    tab.click_link("layers/one.html")
    assert tab.url == layer
    assert tab.check().title == "Layer one"
    tab.back()
    assert tab.url == index
    # Keyboard: the layer link is the first focusable element, "Other" the second.
    assert tab.keyboard_follow("layers/one.html") == 1
    assert tab.url == layer
    assert tab.keyboard_follow("../index.html") == 1
    assert tab.url == index
    # Tab order counts from the top of the page, wherever focus was before.
    tab.page.focus('a[href="other.html"]')
    assert tab.keyboard_follow("other.html") == 2
    assert tab.check().title == "Other"
    assert tab.links() == [("index.html", "index")]


def test_check_site_visits_every_page_and_pins_each_defect(
    browser: SiteBrowser, site: Path, tmp_path: Path
) -> None:
    (site / "layers" / "two.html").write_text(_page("two", '<img src="gone.png" alt="gone">'))
    checks = browser.check_site(site, tmp_path / "shots")
    pages = [bh.url_path(c.url).relative_to(site.resolve()).as_posix() for c in checks]
    assert pages == ["index.html", "layers/one.html", "layers/two.html", "other.html"]
    # The missing image: broken, its request failed, and the console says so.
    assert [len(c.problems()) for c in checks] == [0, 0, 3, 0]
    assert (tmp_path / "shots" / "layers" / "two.png").is_file()


def test_link_out_of_keyboard_reach_is_reported(browser: SiteBrowser, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        _page("k", '<a href="a.html">reachable</a><a href="b.html" tabindex="-1">mouse only</a>')
    )
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    with pytest.raises(AssertionError, match="no keyboard focus reached the link to 'b.html'"):
        tab.keyboard_follow("b.html")


def test_missing_and_corrupt_images_are_broken(browser: SiteBrowser, tmp_path: Path) -> None:
    Image.new("L", (4, 4)).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (tmp_path / "index.html").write_text(
        _page(
            "broken",
            '<img src="ok.png" alt="ok"><img src="missing.png" alt="missing">'
            '<img src="corrupt.png" alt="corrupt" loading="lazy">',
        )
    )
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    check = tab.check()
    assert sorted(Path(i.src).name for i in check.broken_images) == ["corrupt.png", "missing.png"]
    assert [Path(url).name for url, _ in check.failed_requests] == ["missing.png"]
    assert check.blocked_requests == []
    assert any("broken image" in line and "missing.png" in line for line in check.problems())


def test_external_requests_are_blocked_and_reported(browser: SiteBrowser, tmp_path: Path) -> None:
    # No CSP here, so only the harness's own blocking stands between the page and the network.
    (tmp_path / "index.html").write_text(
        _page(
            "external",
            '<img src="https://example.invalid/remote.png" alt="remote">'
            '<link rel="stylesheet" href="http://example.invalid/font.css">',
            csp=False,
        )
    )
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    check = tab.check()
    assert sorted(check.blocked_requests) == [
        "http://example.invalid/font.css",
        "https://example.invalid/remote.png",
    ]
    assert sorted(url for url, _ in check.failed_requests) == sorted(check.blocked_requests)
    assert all("BLOCKED_BY_CLIENT" in why for _, why in check.failed_requests)
    assert [i.loaded for i in check.images] == [False]


def test_external_image_under_csp_is_still_a_blocked_request(
    browser: SiteBrowser, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text(
        _page("csp", '<img src="https://example.invalid/remote.png" alt="remote">')
    )
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    check = tab.check()
    assert check.blocked_requests == ["https://example.invalid/remote.png"]
    assert any("Content Security Policy" in text for text in check.console_errors)


def test_a_check_reports_only_the_page_it_is_on(browser: SiteBrowser, tmp_path: Path) -> None:
    # Leaving a page cancels its pending loads (net::ERR_ABORTED): no defect of the next page.
    (tmp_path / "bad.html").write_text(
        _page("bad", '<img src="https://example.invalid/x.png" alt="x"><a href="good.html">go</a>')
    )
    (tmp_path / "good.html").write_text(_page("good", '<a href="bad.html">back</a>'))
    tab = browser.new_tab()
    tab.goto(tmp_path / "bad.html")
    tab.click_link("good.html")  # no check on bad.html
    assert tab.check().problems() == []
    tab.goto(tmp_path / "bad.html")
    assert tab.check().blocked_requests == ["https://example.invalid/x.png"]


def test_console_errors_exceptions_and_csp_violations_are_caught(
    browser: SiteBrowser, tmp_path: Path
) -> None:
    (tmp_path / "app.js").write_text(
        'console.log("fine"); console.warn("not an error");\n'
        'console.error("harness-oracle-error");\n'
        'throw new Error("harness-oracle-throw");\n'
    )
    (tmp_path / "index.html").write_text(
        _page(
            "console",
            '<script src="app.js"></script><script>document.title = "inline ran";</script>',
        )
    )
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    check = tab.check()
    assert check.title == "console"  # the CSP stopped the inline script
    assert len(check.console_errors) == 3, check.console_errors
    assert check.console_errors[0] == "harness-oracle-error"
    assert "harness-oracle-throw" in check.console_errors[1]
    assert "Content Security Policy" in check.console_errors[2]
    assert tab.check().console_errors == []  # each check reports what happened since the last one


def test_a_script_that_opens_a_dialog_is_an_error(browser: SiteBrowser, tmp_path: Path) -> None:
    (tmp_path / "evil.js").write_text('alert("injected");')
    (tmp_path / "index.html").write_text(_page("dialog", '<script src="evil.js"></script>'))
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    assert tab.check().console_errors == ["dialog alert: injected"]


def test_images_without_alt_text_are_listed(browser: SiteBrowser, tmp_path: Path) -> None:
    for name in ("a", "b", "c", "d"):
        Image.new("L", (2, 2)).save(tmp_path / f"{name}.png")
    (tmp_path / "index.html").write_text(
        _page(
            "alt",
            '<img src="a.png" alt="described"><img src="b.png"><img src="c.png" alt="  ">'
            '<img src="d.png" alt="">',
        )
    )
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    check = tab.check()
    assert [Path(i.src).name for i in check.images_without_alt] == ["b.png", "c.png", "d.png"]
    assert check.broken_images == []


def test_data_uri_images_load_without_any_request(browser: SiteBrowser, tmp_path: Path) -> None:
    # --self-contained reports inline their images as data: URIs; those are not network requests.
    import base64
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (0, 90, 0)).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    (tmp_path / "index.html").write_text(_page("inline", f'<img src="{uri}" alt="inline">'))
    tab = browser.new_tab()
    tab.goto(tmp_path / "index.html")
    check = tab.check()
    assert check.problems() == []
    assert [(i.natural_width, i.natural_height) for i in check.images] == [(6, 4)]


@pytest.mark.parametrize("require", ["1", ""])
def test_missing_browser_skips_or_fails(monkeypatch: pytest.MonkeyPatch, require: str) -> None:
    monkeypatch.setenv(bh.CHROMIUM_ENV, "/nonexistent/chromium")
    monkeypatch.setenv(bh.REQUIRE_ENV, require)
    assert bh.find_chromium() is None
    reason = bh.browser_unavailable()
    assert reason is not None and "no Chromium found" in reason
    expected = pytest.fail.Exception if require == "1" else pytest.skip.Exception
    with pytest.raises(expected, match="no Chromium found"):
        bh.require_browser()
