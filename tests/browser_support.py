"""Debian's headless Chromium for the Playwright tests: never a browser Playwright downloads."""

import shutil

from playwright.sync_api import expect

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
