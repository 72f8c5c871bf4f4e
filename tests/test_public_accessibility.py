"""The public pages for a reader who uses a keyboard, a screen reader or a small phone, in English
and Korean: what axe-core (tests/vendor) does not check or only flags, asserted directly.

- The keyboard's focus ring stands out from what is around it (WCAG 1.4.11, 3:1).
- At 320 CSS px (WCAG 1.4.10's width) no page scrolls sideways: a data table scrolls in its own
  region, which a keyboard can reach.
- The embedded statistics have a level-one heading, as the embedded map and every full page do.
- A cluster of incidents on the map is a button named for what it holds, not a bare number.
"""

import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from tests.browser_support import launch_chromium
from tests.factories import make_claim, make_incident, make_place, make_source

# WCAG's contrast ratio of two computed colours ("rgb(…)" or "rgba(…)").
CONTRAST = """([first, second]) => {
  const luminance = colour => {
    const [r, g, b] = colour.match(/[\\d.]+/g).slice(0, 3).map(value => {
      const channel = Number(value) / 255;
      return channel <= 0.03928 ? channel / 12.92 : ((channel + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [high, low] = [luminance(first), luminance(second)].sort((a, b) => b - a);
  return (high + 0.05) / (low + 0.05);
}"""

# The focused element's ring, and the colour around it: the first opaque background among its
# ancestors (the ring is drawn outside the element, over them).
FOCUS_RING = """() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  let around = element.parentElement;
  while (around && getComputedStyle(around).backgroundColor.match(/^rgba\\(.*, 0\\)$|transparent/)) {
    around = around.parentElement;
  }
  return {
    element: element.outerHTML.slice(0, 80),
    type: element.type || "",
    style: style.outlineStyle,
    width: parseFloat(style.outlineWidth),
    colour: style.outlineColor,
    around: around ? getComputedStyle(around).backgroundColor : "rgb(255, 255, 255)",
  };
}"""


@pytest.fixture
def chromium(monkeypatch, live_server):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()
        connections.close_all()


@pytest.fixture
def published():
    dandong = make_place(name="Dandong", country="CN", latitude=Decimal("40.12"), longitude=Decimal("124.38"))
    incident = make_incident(
        title="Forced repatriation of about 500 North Koreans",
        places=[dandong],
        people_count=500,
        people_count_min=300,
        people_count_max=600,
        count_qualifier="about",
        date_start=date(2023, 10, 1),
        date_end=date(2023, 10, 9),
        date_precision="range",
        # As analysts paste them: an address, a word the width of a phone and more.
        description="Reported at https://www.hrw.org/news/2023/10/12/china-forcibly-returns-north-korean-refugees-500",
    )
    make_claim(
        incident=incident,
        source=make_source(title="데일리NK 보도", language="ko", published_on=date(2023, 10, 10)),
        people_count=500,
        count_qualifier="about",
        excerpt="탈북민 약 500명이 강제 북송되었다",
    )
    make_claim(incident=incident, source=make_source(title="A source of no known language"), excerpt="around 500")
    for number in range(3):
        make_incident(title=f"Deportation {number}", places=[dandong], people_count=None, count_qualifier="unknown")
    return incident


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/", "/map/", "/statistics/"])
def test_the_keyboards_focus_ring_stands_out_from_what_is_around_it(chromium, live_server, published, path):
    # The ring was amber (#e3a008): 2.3:1 on white, 2.1:1 on the header's and the filters' grey,
    # where WCAG 1.4.11 asks 3:1 of what shows a control's state; a reader who moves by keyboard
    # lost their place on a link.
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}{path}")
    if path == "/map/":
        expect(page.locator("#map")).to_have_attribute("data-points", "4")
    faint = []
    for _ in range(30):
        page.keyboard.press("Tab")
        ring = page.evaluate(FOCUS_RING)
        # Chromium's own day, month and year fields; the page itself, past its last control.
        if ring["type"] == "date" or ring["element"].startswith("<body"):
            continue
        contrast = page.evaluate(CONTRAST, [ring["colour"], ring["around"]])
        if ring["style"] == "none" or ring["width"] < 2 or contrast < 3:
            faint.append((ring["element"], ring["colour"], ring["around"], round(contrast, 2)))
    assert faint == []


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prefix", ["", "/ko"])
def test_at_320_pixels_no_page_scrolls_sideways(chromium, live_server, published, prefix):
    # WCAG 1.4.10 reads a page at 320 CSS px. The incident's citation (its address) and a pasted
    # address in its description overflowed the page (325 px in English, 349 in Korean); the
    # statistics' table made the whole page scroll sideways (368 px in English), the embed too.
    page = chromium.new_page(viewport={"width": 320, "height": 800})
    wide = {}
    for path in (
        f"/incidents/{published.public_id}/",
        "/statistics/",
        "/statistics/?group_by=country",
        "/embed/statistics/",
    ):
        page.goto(f"{live_server.url}{prefix}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 320:
            wide[path] = width
        # What scrolls on its own (the table) is reachable by keyboard, to scroll it without a mouse.
        unreachable = page.evaluate("""() => [...document.querySelectorAll("main *")]
          .filter(e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX) && e.scrollWidth > e.clientWidth)
          .filter(e => e.tabIndex < 0 && !e.closest(".leaflet-container")).map(e => e.outerHTML.slice(0, 60))""")
        assert unreachable == [], path
    assert wide == {}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/embed/statistics/", "/ko/embed/statistics/"])
def test_the_embedded_statistics_have_a_level_one_heading(path):
    # The embedded map has one (hidden, for screen readers' lists of headings), the statistics had none.
    make_incident()
    page = Client().get(path).content.decode()

    assert re.search(r"<h1[ >]", page), path


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prefix", ["", "/ko"])
def test_a_cluster_on_the_map_is_named_for_what_it_holds(chromium, live_server, published, prefix):
    # A cluster is a button (Enter zooms into it), and a screen reader said "4, button".
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{live_server.url}{prefix}/map/")
    expect(page.locator("#map")).to_have_attribute("data-points", "4")
    cluster = page.locator(".marker-cluster")
    expect(cluster).to_have_count(1)
    expect(cluster).to_have_attribute("role", "button")
    expect(cluster).to_have_accessible_name("이 지역의 사건 4건" if prefix else "4 incidents in this area")
