"""The public pages in a real browser (Debian's headless Chromium through Playwright), in English
and Korean: a reader browses, narrows by a facet, opens an incident and switches language.

Every request the pages make is recorded, and any to another host fails the test: the pages load
nothing from outside; each page is served with `Content-Security-Policy: default-src 'self'`
and must cause no violation. axe-core (tests/vendor/, from npm) is run in each page and must
report no violation (`tests.browser_support.assert_axe_passes`), on every page in every state a
reader meets, at a laptop's width and at 320 CSS px. Screenshots go to the pytest temporary
directory (the path is printed), for a person to look at. One Chromium serves the whole module.
"""

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

from incidents.models import Involvement
from incidents.statistics import GROUPINGS
from tests.browser_support import assert_axe_passes, launch_chromium
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source

STRICT_POLICY = "default-src 'self'"


@pytest.fixture(scope="module")
def chromium():
    """One Chromium for the module's tests, each in a context (cookies, storage) of its own."""
    # Playwright's sync API runs an event loop in this thread from here on; Django refuses database
    # calls from a thread with a running loop unless told that these tests' synchronous use is safe.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def reader(chromium, live_server):
    """A browser page whose every request is recorded in `page.requested_hosts`."""
    with chromium.new_context(viewport={"width": 1280, "height": 900}) as context:
        page = context.new_page()
        page.set_default_timeout(15_000)
        hosts, errors = [], []
        page.on("request", lambda request: hosts.append(urlsplit(request.url).netloc))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.requested_hosts, page.console_errors = hosts, errors

        # The strictest policy a deployment may set, whatever this build's middleware sends: any
        # inline script or style, or a load from elsewhere, is refused and reported on the console.
        def with_strict_policy(route):
            response = route.fetch()
            route.fulfill(response=response, headers={**response.headers, "content-security-policy": STRICT_POLICY})

        page.route(f"{live_server.url}/**", with_strict_policy)
        yield page
        # A request still routed as the test ends (a map's GeoJSON) is dropped with its context: its
        # handler's error would otherwise surface in the next test's first call.
        page.unroute_all(behavior="ignoreErrors")
    # While Playwright's loop runs, Django keeps this test's database connection apart from the
    # thread's usual one; close it here, or it outlives the test and blocks dropping the test database.
    connections.close_all()


def assert_accessible_and_local(page: Page, live_server, screenshot: Path | None = None) -> None:
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)
        print(f"screenshot: {screenshot}")
    refused = [error for error in page.console_errors if "Content Security Policy" in error]
    assert refused == [], refused
    assert_axe_passes(page)
    own_host = urlsplit(live_server.url).netloc
    assert set(page.requested_hosts) <= {own_host}, page.requested_hosts


@pytest.fixture
def published():
    border = make_place(name="Dandong", country="CN", latitude=Decimal("40.12"), longitude=Decimal("124.38"))
    china = make_organization(name="Government of China")
    incident = make_incident(
        title="Forced repatriation of about 500 North Koreans",
        places=[border],
        people_count=500,
        people_count_min=300,
        people_count_max=600,
        count_qualifier="about",
        date_start=date(2023, 10, 1),
        date_end=date(2023, 10, 9),
        date_precision="range",
        verification="corroborated",
    )
    Involvement.objects.create(incident=incident, organization=china, role="perpetrator")
    testimony = make_source(title="Informant testimony", confidential=True)
    hrw = make_source(title="HRW statement", cites=testimony, published_on=date(2023, 10, 9))
    make_claim(incident=incident, source=hrw, people_count=500, count_qualifier="about", excerpt="around 500")
    make_claim(incident=incident, source=make_source(title="UCA News", cites=hrw), people_count=300)
    shenyang = make_place(name="Shenyang", country="CN", latitude=Decimal("41.8"), longitude=Decimal("123.4"))
    make_incident(title="Deportation of 80 people", places=[shenyang])
    return incident


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "language, prefix, sources_heading", [("en", "", "What each source says"), ("ko", "/ko", "출처별 진술")]
)
def test_a_reader_browses_narrows_and_reads_an_incident(
    reader, live_server, published, tmp_path, language, prefix, sources_heading
):
    page = reader
    page.goto(f"{live_server.url}{prefix}/")
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(page.locator("table.incidents tbody tr")).to_have_count(2)
    assert_accessible_and_local(page, live_server, tmp_path / f"browse-{language}.png")

    # A facet narrows the list and the address keeps the choice (a permalink).
    page.locator(".facets a", has_text="Government of China").click()
    expect(page.locator("table.incidents tbody tr")).to_have_count(1)
    assert "perpetrator=" in page.url

    page.get_by_role("link", name=published.title).click()
    expect(page.locator("h1")).to_have_text(published.title)
    expect(page.locator("#sources-title")).to_have_text(sources_heading)
    expect(page.locator(".claim")).to_have_count(2)
    # Its one place on a small map, drawn from the page's own list of places.
    expect(page.locator("#map")).to_have_attribute("data-points", "1")
    assert_accessible_and_local(page, live_server, tmp_path / f"incident-{language}.png")

    # The language switch opens the same incident in the other language.
    other = "ko" if language == "en" else "en"
    page.locator(f".languages a[lang={other}]").click()
    expect(page.locator("html")).to_have_attribute("lang", other)
    expect(page.locator("h1")).to_have_text(published.title)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language, prefix", [("en", ""), ("ko", "/ko")])
def test_on_a_phone_no_page_is_wider_than_the_screen_and_the_incidents_read_one_under_another(
    reader, live_server, published, tmp_path, language, prefix
):
    # At 390 px the incidents' five columns overflowed the page in English (477 px) and squeezed
    # the Korean headings to a syllable a line; the statistics' table overflowed in English.
    page = reader
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/statistics/", "/statistics/?group_by=month", f"/incidents/{published.public_id}/", "/map/"):
        page.goto(f"{live_server.url}{prefix}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    page.goto(f"{live_server.url}{prefix}/")
    row = page.locator("table.incidents tbody tr").first
    expect(row).to_contain_text(published.title)
    # Each fact of an incident on a line of its own, labelled, the width of the screen.
    verification = row.locator("td").last
    assert verification.bounding_box()["width"] > 300
    label = verification.evaluate("cell => getComputedStyle(cell, '::before').content")
    assert label == ('"Verification: "' if language == "en" else '"검증 상태: "')
    assert_accessible_and_local(page, live_server, tmp_path / f"browse-phone-{language}.png")


# How many of a canvas's pixels are painted: a chart drawn, not an empty box.
PAINTED_PIXELS = """canvas => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let alpha = 3; alpha < pixels.length; alpha += 4) if (pixels[alpha]) painted++;
  return painted;
}"""


def assert_charts_drawn(page: Page, groups: int) -> None:
    """Both charts are drawn, one bar or point per group of the table beside them."""
    expect(page.locator("#charts")).to_be_visible()
    for chart in ("#chart-incidents", "#chart-people"):
        expect(page.locator(chart)).to_have_attribute("data-drawn", str(groups))
        assert page.locator(chart).evaluate(PAINTED_PIXELS) > 1000, chart


# The tooltip of a chart's first bar or point, as Chart.js would draw it on hovering: its lines
# under the label (`after`) and under the whole body (`afterBody`).
TOOLTIP = """canvas => {
  const chart = Chart.getChart(canvas);
  chart.tooltip.setActiveElements([{datasetIndex: 0, index: 0}], {x: 0, y: 0});
  chart.update();
  return {after: chart.tooltip.body.flatMap(item => item.after), afterBody: chart.tooltip.afterBody};
}"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("language", "prefix", "group_by", "no_figure", "not_in_sums"),
    [
        ("en", "", "country", "No figure: 1", "Incidents with no figure, not in these sums: 1"),
        ("ko", "/ko", "year", "수치 없음: 1", "수치 없는 사건 (이 합계에 포함되지 않음): 1"),
    ],
)
def test_statistics_charts_draw_the_tables_numbers_accessibly_and_locally(
    reader, live_server, published, tmp_path, language, prefix, group_by, no_figure, not_in_sums
):
    # In the same country and year: the tooltips say the incidents give no figure, which the people leave out.
    make_incident(people_count=None, count_qualifier="unknown", places=list(published.places.all()))
    reader.goto(f"{live_server.url}{prefix}/statistics/?group_by={group_by}")
    expect(reader.locator("table.statistics tbody tr")).to_have_count(1)
    assert_charts_drawn(reader, groups=1)
    assert reader.locator("#chart-incidents").evaluate(TOOLTIP)["after"] == [no_figure]
    assert reader.locator("#chart-people").evaluate(TOOLTIP)["afterBody"] == [not_in_sums]
    assert_accessible_and_local(reader, live_server, tmp_path / f"statistics-{group_by}-{language}.png")

    # The embed of the same statistics draws the same charts.
    reader.goto(f"{live_server.url}{prefix}/embed/statistics/?group_by={group_by}&type=forced-repatriation")
    assert_charts_drawn(reader, groups=1)
    assert_accessible_and_local(reader, live_server, tmp_path / f"embed-statistics-{language}.png")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_without_javascript_the_statistics_are_the_table_alone(chromium, live_server, published):
    with chromium.new_context(java_script_enabled=False) as context:
        page = context.new_page()
        page.goto(f"{live_server.url}/statistics/?group_by=year")
        expect(page.locator("table.statistics tbody tr")).to_have_count(1)
        expect(page.locator("#charts")).to_be_hidden()
    connections.close_all()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_map_draws_the_filtered_incidents_from_the_sites_own_files(reader, live_server, published, tmp_path):
    reader.goto(f"{live_server.url}/ko/map/?type=forced-repatriation")
    # map.js records how many points it placed once the GeoJSON download arrived.
    expect(reader.locator("#map")).to_have_attribute("data-points", "2")
    expect(reader.locator("#map path.leaflet-interactive").first).to_be_visible()
    assert_accessible_and_local(reader, live_server, tmp_path / "map-ko.png")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("language, prefix", [("en", ""), ("ko", "/ko")])
def test_every_public_page_in_every_state_passes_axe_at_a_laptops_width_and_at_320_px(
    reader, live_server, published, language, prefix
):
    # What the other tests leave out: each statistics grouping, the embeds, the pages of a refusal,
    # and an incident whose sources wrote in another language than the page's.
    make_claim(
        incident=published,
        source=make_source(
            title="데일리NK 보도" if language == "en" else "Le Monde", language="ko" if language == "en" else "fr"
        ),
        excerpt="약 500명" if language == "en" else "environ 500 personnes",
    )
    pages = {
        **{f"/statistics/?group_by={grouping}": 200 for grouping in GROUPINGS},
        "/embed/statistics/?group_by=month": 200,
        "/embed/map/?country=CN": 200,
        "/?date_from=29+August": 400,
        "/incidents/INC-999999/": 404,
        f"/incidents/{published.public_id}/": 200,
        f"/?country=CN&cursor={published.date_start.isoformat()}_{published.pk}": 200,
    }
    for width in (1280, 320):
        reader.set_viewport_size({"width": width, "height": 900})
        for path, status in pages.items():
            assert reader.goto(f"{live_server.url}{prefix}{path}").status == status, path
            if "map" in path:
                # The incidents placed once their GeoJSON arrived (map.js), which axe then reads too.
                expect(reader.locator("#map")).to_have_attribute("data-points", re.compile(r"\d"))
            assert_accessible_and_local(reader, live_server)
