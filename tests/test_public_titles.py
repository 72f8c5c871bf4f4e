"""Each public page's <title> says what the page shows (WCAG 2.4.2; browser history and bookmarks):
a filtered list, a later page of it and each statistics grouping had the title of every other.
The title echoes only the choices the page itself shows (the facets' chosen values, the search
words in their field), with the queries the page already makes."""

import re
from datetime import date
from html import unescape

import pytest
from django.test import Client

from incidents.models import Involvement
from tests.factories import make_incident, make_organization, make_place

pytestmark = pytest.mark.django_db


def title(response) -> str:
    assert response.status_code == 200, response.status_code
    return unescape(re.search(r"<title>(.*?)</title>", response.content.decode(), re.S)[1])


@pytest.fixture
def incidents():
    china = make_place(name="Dandong", country="CN")
    made = [make_incident(places=[china], date_start=date(2023, 1, day), date_end=date(2023, 1, day)) for day in (1, 2)]
    Involvement.objects.create(incident=made[0], organization=make_organization(name="Ministry of State Security"))
    make_incident(
        places=[make_place(name="Vladivostok", country="RU")], date_start=date(2021, 5, 1), date_end=date(2021, 5, 1)
    )
    return made


def test_a_filtered_list_is_titled_by_the_choices_it_shows(incidents):
    client = Client()

    # The home page is the site's own.
    assert title(client.get("/")) == "Incident Tracker"
    assert title(client.get("/?country=CN")) == "Incidents: China · Incident Tracker"
    assert title(client.get("/?country=CN&date_from=2023-01-01&date_to=2023-12-31")) == (
        "Incidents: China, 2023 · Incident Tracker"
    )
    assert title(client.get("/?q=Dandong")) == "Incidents: “Dandong” · Incident Tracker"
    # Words typed are text in the title, as in their field.
    assert "<title>Incidents: “&lt;b&gt;Dandong” · " in client.get("/?q=<b>Dandong").content.decode()


def test_a_chosen_place_is_named_as_its_path_ends(incidents):
    place = incidents[0].places.get()

    assert title(Client().get(f"/?place={place.pk}")) == "Incidents: Dandong · Incident Tracker"


def test_a_later_page_is_titled_apart_from_the_first(incidents, settings, monkeypatch):
    monkeypatch.setattr("incidents.public.selectors.BROWSE_PAGE_SIZE", 1)
    client = Client()
    first = client.get("/?country=CN")
    later = client.get(f"/?country=CN&cursor={first.context['page'].next_cursor}")

    assert title(later) == "Incidents: China · later page · Incident Tracker"
    assert (
        title(client.get(f"/?cursor={first.context['page'].next_cursor}"))
        == "Incidents · later page · Incident Tracker"
    )


def test_a_value_no_facet_shows_is_not_echoed(incidents):
    # No incident is in Mongolia: the page shows no "Mongolia", nor does its title; a place's id
    # names nothing the reader may not see.
    assert title(Client().get("/?country=MN")) == "Incidents · Incident Tracker"
    assert title(Client().get("/?min_people=0")) == "Incidents · Incident Tracker"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/statistics/", "Statistics by year · Incident Tracker"),
        ("/statistics/?group_by=month", "Statistics by month · Incident Tracker"),
        ("/statistics/?group_by=country", "Statistics by country · Incident Tracker"),
        ("/statistics/?group_by=perpetrator", "Statistics by perpetrator · Incident Tracker"),
        ("/embed/statistics/?group_by=type", "Statistics by type · Incident Tracker"),
    ],
)
def test_each_statistics_grouping_has_its_own_title(incidents, path, expected):
    assert title(Client().get(path)) == expected


def test_a_filtered_map_is_titled_by_the_choices_it_shows(incidents):
    # A tab or a bookmark of the map of China's incidents read "Map", as every other map did.
    client = Client()

    assert title(client.get("/map/")) == "Map · Incident Tracker"
    assert title(client.get("/map/?country=CN")) == "Map: China · Incident Tracker"
    assert title(client.get("/ko/map/?country=CN")) == "지도: 중국 · 사건 기록부"


def test_the_korean_titles_differ_as_the_english_do(incidents):
    client = Client()

    titles = {
        title(client.get(path))
        for path in ("/ko/", "/ko/?country=CN", "/ko/statistics/", "/ko/statistics/?group_by=country")
    }

    assert len(titles) == 4
    assert title(client.get("/ko/?country=CN")) == "사건: 중국 · 사건 기록부"
    assert title(client.get("/ko/statistics/?group_by=country")) == "국가별 통계 · 사건 기록부"


def test_the_titles_cost_no_query(incidents, django_assert_num_queries):
    # As many queries as the same page without the choice in its title (tests/test_public_pages.py).
    client = Client()
    client.get("/?country=CN")
    with django_assert_num_queries(11):
        assert "China" in title(client.get("/?country=CN"))
