"""Debian's headless Chromium for the Playwright tests: never a browser Playwright downloads."""

import shutil


def launch_chromium(playwright):
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run `make browser` (Debian packages chromium and chromium-driver)."
    # Without background networking Chromium makes no request of its own to hosts this machine cannot reach.
    return playwright.chromium.launch(
        executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    )
