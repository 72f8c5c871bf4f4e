"""An incident reported as "at least 500" (a minimum, no best estimate) is found, sorted and exported
by the figure the statistics count it as (`querysets.people_estimate`: the best estimate, else the
minimum), at every door that filters or sorts by people: the API's list, its cursor pages and its
CSV, the statistics, the public pages and their download."""

import csv
import io

import pytest

from tests.api_support import API, client_for, public_ids, results
from tests.factories import make_incident

pytestmark = pytest.mark.django_db


@pytest.fixture
def figures():
    """One incident of each way a report gives its people, named by it."""
    return {
        "about 300": make_incident(title="About 300", people_count=300),
        "at least 500": make_incident(title="At least 500", people_count=None, people_count_min=500),
        "80, 50 to 150": make_incident(title="Eighty", people_count=80, people_count_min=50, people_count_max=150),
        "at most 50": make_incident(title="At most 50", people_count=None, people_count_max=50),
        "unknown": make_incident(title="Unknown", people_count=None),
    }


def named(figures, *names) -> set[str]:
    return {figures[name].public_id for name in names}


def test_the_filters_compare_the_minimum_where_no_best_estimate_is_given(figures):
    anyone = client_for()
    assert public_ids(anyone.get(f"{API}/incidents/?min_people=100")) == named(figures, "about 300", "at least 500")
    assert public_ids(anyone.get(f"{API}/incidents/?min_people=500")) == named(figures, "at least 500")
    assert public_ids(anyone.get(f"{API}/incidents/?max_people=100")) == named(figures, "80, 50 to 150")
    assert public_ids(anyone.get(f"{API}/incidents/?min_people=300&max_people=500")) == named(
        figures, "about 300", "at least 500"
    )


def test_the_statistics_count_what_the_filter_selects(figures):
    answer = client_for().get(f"{API}/incidents/stats/?group_by=year&min_people=100")
    assert answer.status_code == 200, answer.content
    assert answer.json()["total"]["incidents"] == 2
    assert answer.json()["total"]["people_count"] == 800


@pytest.mark.parametrize("ordering", ["-people_count", "people_count"])
def test_a_minimum_sorts_by_its_figure_on_every_cursor_page(figures, ordering):
    """Page by page (one incident each, the cursor comparing the figure), as on one page: "at least
    500" above "about 300", where it sorted among the unknown counts (below any figure)."""
    by_people = [figures[name].public_id for name in ("at least 500", "about 300", "80, 50 to 150")]
    unknown = named(figures, "at most 50", "unknown")
    anyone = client_for()
    one_page = [row["public_id"] for row in results(anyone.get(f"{API}/incidents/?ordering={ordering}"))]
    if ordering.startswith("-"):
        assert (one_page[:3], set(one_page[3:])) == (by_people, unknown)
    else:
        assert (set(one_page[:2]), one_page[2:]) == (unknown, by_people[::-1])
    walked, url = [], f"{API}/incidents/?ordering={ordering}&page_size=1"
    while url:
        body = anyone.get(url).json()
        walked += [row["public_id"] for row in body["results"]]
        url = body["next"]
    assert walked == one_page


def test_the_exports_select_what_the_list_selects(figures):
    anyone = client_for()
    answer = anyone.get(f"{API}/incidents/?format=csv&min_people=100")
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(answer.streaming_content).decode("utf-8-sig"))))
    assert {row["public_id"] for row in rows} == named(figures, "about 300", "at least 500")
    assert {row["people_count_min"] for row in rows if row["public_id"] == figures["at least 500"].public_id} == {"500"}


def test_the_public_pages_find_it_and_their_download_too(figures, client):
    page = client.get("/?min_people=400")
    assert page.status_code == 200
    text = page.content.decode()
    assert "At least 500" in text
    assert "About 300" not in text
    download = client.get("/incidents.csv?min_people=400")
    assert download.status_code == 200
    body = b"".join(download.streaming_content).decode("utf-8-sig")
    assert {row["public_id"] for row in csv.DictReader(io.StringIO(body))} == named(figures, "at least 500")
