"""Support's own pages in a real browser: the view-as banner is readable, and nothing scrolls sideways on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from webapp.cli import DEMO_SUPPORT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESKTOP = {"width": 1280, "height": 900}
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


@pytest.mark.parametrize("viewport", [DESKTOP, {"width": 390, "height": 844}], ids=["desktop", "phone"])
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
