"""Debian's headless Chromium for the Playwright tests: never a browser Playwright downloads."""

import shutil
from pathlib import Path

from playwright.sync_api import Page, expect

# Each page's actions wait up to 15 s (`set_default_timeout` in the fixtures); the assertions wait as
# long, not Playwright's 5 s: under CI's two test workers and its streaming replica, with every
# request routed through the strict-policy handler, a page's scripts were once still loading after
# 5 s (the incident page's map in Korean: `data-points` not yet set), which a reader would only see
# as a slower page.
ASSERTION_TIMEOUT_MS = 15_000


def launch_chromium(playwright):
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run `make browser` (Debian packages chromium and chromium-driver)."
    expect.set_options(timeout=ASSERTION_TIMEOUT_MS)
    # Without background networking Chromium makes no request of its own to hosts this machine cannot reach.
    return playwright.chromium.launch(
        executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    )


AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"

# What axe-core reports of markup the project does not write, by rule: an element of it, or inside
# it, that matches the selector passes. Django's admin, on which the staff's pages are built:
# - its tabular inlines head the column that names each saved row with an empty <th class="original">;
# - its autocomplete (Select2, which Django ships) names an empty single choice's combobox by the
#   choice shown in it, none, and gives a multiple choice's search field no label.
# The public pages need none: the map's Leaflet markup, the charts' canvases pass as they are.
AXE_EXCUSED = {
    "empty-table-header": "th.original",
    "aria-input-field-name": ".select2-container",
    "label": ".select2-container",
}

# Every violation of any impact, minor included: the pages have none; less than every one lets a
# "moderate" regression (a page without a level-one heading, a landmark left out) pass unseen.
AXE_RUN = """async excused => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  const passes = (rule, target) => {
    const element = rule in excused && target.length === 1 && document.querySelector(target[0]);
    return Boolean(element && element.closest(excused[rule]));
  };
  return result.violations
    .map(({id, impact, nodes}) => [id, impact, nodes.map(node => node.target).filter(target => !passes(id, target))])
    .filter(([, , targets]) => targets.length);
}"""


def assert_axe_passes(page: Page) -> None:
    """axe-core (tests/vendor/, from npm) finds nothing wrong in the page as it is now. Evaluated by
    the test's own channel, which the page's Content-Security-Policy does not govern (an injected
    <script> would be refused like any inline script)."""
    page.evaluate(AXE.read_text())
    violations = page.evaluate(AXE_RUN, AXE_EXCUSED)
    assert violations == [], f"{page.url}: {violations}"
