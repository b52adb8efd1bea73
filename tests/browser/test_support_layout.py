"""Support's own pages in a real browser: the view-as banner is readable, and nothing scrolls sideways on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.cli import DEMO_ADMIN, DEMO_SUPPORT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WCAG_AA_TEXT = 4.5


def _channel(value: float) -> float:
    value /= 255
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def relative_luminance(css_colour: str) -> float:
    """WCAG 2 relative luminance of an opaque `rgb(r, g, b)` as getComputedStyle reports it."""
    match = re.fullmatch(r"rgba?\((\d+(?:\.\d+)?), (\d+(?:\.\d+)?), (\d+(?:\.\d+)?)(?:, 1)?\)", css_colour)
    assert match, f"not an opaque colour: {css_colour}"
    red, green, blue = (_channel(float(part)) for part in match.groups())
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(foreground: str, background: str) -> float:
    lighter, darker = sorted((relative_luminance(foreground), relative_luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_ratio_matches_the_wcag_examples():
    assert contrast_ratio("rgb(0, 0, 0)", "rgb(255, 255, 255)") == pytest.approx(21)
    assert contrast_ratio("rgb(118, 118, 118)", "rgb(255, 255, 255)") == pytest.approx(4.54, abs=0.01)
    # The banner as the issue found it: Pico's paragraph grey on the purple.
    assert contrast_ratio("rgb(55, 60, 68)", "rgb(59, 31, 107)") == pytest.approx(1.19, abs=0.01)


def start_viewing_as_merchant(page) -> None:
    log_in(page, DEMO_SUPPORT)
    page.goto("/support/?q=bloom")
    page.get_by_role("link", name="Bloom & Stem Flowers").click()
    page.get_by_label("Reason (ticket number, what the merchant asked)").fill("Ticket 5120: checking the layout")
    page.get_by_label("Your password").fill(DEMO_SUPPORT["password"])
    page.get_by_role("button", name="View as merchant").click()
    expect(page.locator("#impersonation-banner")).to_be_visible()


# Every piece of text in the banner, with the colour it is drawn in and the colour behind it.
BANNER_TEXT_COLOURS = """() => {
  const banner = document.querySelector('#impersonation-banner');
  const opaqueBackground = element => {
    for (let node = element; node; node = node.parentElement) {
      const colour = getComputedStyle(node).backgroundColor;
      if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') return colour;
    }
    return 'rgb(255, 255, 255)';
  };
  return [...banner.querySelectorAll('p, p *, button')].map(element => ({
    text: element.textContent.trim().slice(0, 40),
    colour: getComputedStyle(element).color,
    background: opaqueBackground(element),
  }));
}"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_view_as_banner_is_readable(browser, live_dashboard, viewport):
    """Promise 26: the banner shows on every page, so it must be legible: every text in it is at least 4.5:1."""
    page = browser.new_context(base_url=live_dashboard, viewport=viewport).new_page()
    start_viewing_as_merchant(page)
    texts = page.evaluate(BANNER_TEXT_COLOURS)
    assert len(texts) >= 4  # the sentence, the shop's name, the countdown and both buttons
    for text in texts:
        ratio = contrast_ratio(text["colour"], text["background"])
        assert ratio >= WCAG_AA_TEXT, f"{text['text']!r}: {text['colour']} on {text['background']} is {ratio:.2f}:1"
    page.context.close()


# Pages whose tables and navigation pushed the page sideways on a phone (issue 13, item 10).
STAFF_PAGES = [
    "/support/",
    "/support/?q=bloom",
    "/shops",
    "/support/explain",
    "/support/outbox",
    "/admin/staff",
    "/admin/audit",
    "/admin/api-keys",
]


def assert_fits_the_screen(page) -> None:
    widths = page.evaluate("({page: document.documentElement.scrollWidth, screen: window.innerWidth})")
    assert widths["page"] <= widths["screen"], f"{page.url} scrolls sideways: {widths}"


def assert_account_menu_reachable(page) -> None:
    """The menu's button is on screen, and what it opens (down to Log out) is on screen too."""
    summary = page.locator("details.account-menu > summary")
    box = summary.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"menu off screen on {page.url}: {box}"
    summary.click()
    log_out = page.locator("details.account-menu").get_by_role("button", name="Log out")
    expect(log_out).to_be_visible()
    box = page.locator("details.account-menu > ul").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"menu cut off on {page.url}: {box}"
    assert_fits_the_screen(page)
    summary.click()


def test_admin_and_support_pages_fit_a_phone(browser, live_dashboard):
    page = browser.new_context(base_url=live_dashboard, viewport=PHONE).new_page()
    log_in(page, DEMO_ADMIN)
    for path in STAFF_PAGES:
        page.goto(path)
        assert_fits_the_screen(page)
        assert_account_menu_reachable(page)
    page.goto("/support/?q=bloom")
    page.get_by_role("link", name="Bloom & Stem Flowers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bloom & Stem Flowers")
    assert_fits_the_screen(page)
    # Wide tables scroll inside their own box, not the page.
    page.goto("/admin/audit")
    scroller = page.locator(".overflow-auto", has=page.locator("table"))
    assert scroller.evaluate("box => box.scrollWidth > box.clientWidth")
    page.context.close()


def test_viewing_as_the_merchant_fits_a_phone(browser, live_dashboard):
    page = browser.new_context(base_url=live_dashboard, viewport=PHONE).new_page()
    start_viewing_as_merchant(page)
    for path in ("/", "/notifications", "/history"):
        page.goto(path)
        expect(page.locator("#impersonation-banner")).to_be_visible()
        assert_fits_the_screen(page)
        assert_account_menu_reachable(page)
    page.context.close()
