"""The public pages in Korean say what they refuse and name their controls in Korean: the people's
bounds the wrong way round, a download's rate, a refused `bom`, the maps' buttons."""

import html
import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import sync_playwright

from tests.browser_support import launch_chromium
from tests.factories import make_incident, make_place

pytestmark = pytest.mark.django_db


def refusals(answer) -> list[str]:
    """The lines of a 400 page's refusal, as its reader reads them."""
    listed = answer.content.decode().split('class="errors"', 1)[1].split("</ul>", 1)[0]
    return [html.unescape(re.sub(r"<[^>]+>", "", item)).strip() for item in re.findall(r"(?s)<li>(.*?)</li>", listed)]


@pytest.mark.parametrize("page", ["/ko/", "/ko/statistics/", "/ko/map/"])
def test_people_bounds_the_wrong_way_round_are_refused_once_in_the_forms_words(page):
    # Said twice, once under each field, in the API's parameter names (min_people, max_people).
    answer = Client().get(page, {"min_people": "10", "max_people": "1"})

    assert answer.status_code == 400
    [refusal] = refusals(answer)
    assert refusal == "인원 (최선 추정치): 최소(10)이 최대(1)보다 많습니다. 두 조건을 모두 만족하는 인원수는 없습니다."


def test_a_downloads_rate_is_said_in_the_pages_language(settings):
    # "(최대 1/hour)": the setting's own English text in a Korean sentence.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "export": "1/hour"},
    }
    make_incident()
    reader = Client(REMOTE_ADDR="192.0.2.91")
    b"".join(reader.get("/ko/incidents.csv").streaming_content)

    refused = reader.get("/ko/incidents.csv")

    assert refused.status_code == 429
    assert refused.content.decode().startswith("요청하신 CSV 내보내기가 너무 많습니다(시간당 최대 1회).")


@pytest.mark.parametrize("download", ["list", "incident"])
def test_a_refused_bom_is_named_as_the_link_that_sets_it(download):
    # Named by its code, `bom`, which no Korean page shows; the "Excel용 CSV" link sets it.
    incident = make_incident()
    path = f"/ko/incidents/{incident.public_id}.csv" if download == "incident" else "/ko/incidents.csv"

    answer = Client().get(path, {"bom": "yes please"})

    assert answer.status_code == 400
    [refusal] = refusals(answer)
    assert refusal.startswith("Excel용 CSV: ")


@pytest.fixture
def korean_reader(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(locale="ko-KR")
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        connections.close_all()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("address", ["map", "incident"])
def test_the_korean_maps_name_their_controls_in_korean(korean_reader, live_server, address):
    # Leaflet's own "Zoom in", "Zoom out" and "Close popup" were what a screen reader announced.
    place = make_place(name="Dandong", country="CN", latitude=Decimal("40.12"), longitude=Decimal("124.38"))
    incident = make_incident(places=[place], date_start=date(2023, 10, 1), date_end=date(2023, 10, 1))
    page = korean_reader
    page.goto(f"{live_server.url}{'/ko/map/' if address == 'map' else f'/ko/incidents/{incident.public_id}/'}")
    page.wait_for_selector("#map[data-points]")
    page.locator(".leaflet-interactive").first.click(force=True)
    page.locator(".leaflet-popup-close-button").wait_for()

    assert [
        (page.locator(selector).get_attribute("aria-label"), page.locator(selector).get_attribute("title"))
        for selector in (".leaflet-control-zoom-in", ".leaflet-control-zoom-out")
    ] == [("확대", "확대"), ("축소", "축소")]
    assert page.locator(".leaflet-popup-close-button").get_attribute("aria-label") == "팝업 닫기"
