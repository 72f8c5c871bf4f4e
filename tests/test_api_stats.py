"""Statistics: one request answers "how many people, where, when", never counting an incident twice."""

from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from incidents import roles
from incidents.models import Involvement
from tests.api_support import API, client_for
from tests.factories import incident_type, make_incident, make_organization, make_place, make_user


def on(day: date) -> dict:
    return {"date_start": day, "date_end": day}


def stats(query: str, user=None) -> dict:
    answer = client_for(user).get(f"{API}/incidents/stats/?{query}")
    assert answer.status_code == 200, answer.content
    return answer.json()


def by_group(body: dict) -> dict:
    return {row["group"]: (row["incidents"], row["people_count"]) for row in body["results"]}


@pytest.fixture
def places():
    return {
        "sinuiju": make_place(name="Sinuiju", country="KP"),
        "hyesan": make_place(name="Hyesan", country="KP"),
        "dandong": make_place(name="Dandong", country="CN"),
    }


def test_an_incident_at_two_places_of_one_country_counts_once_there(places):
    make_incident(people_count=500, places=[places["sinuiju"], places["hyesan"], places["dandong"]])
    make_incident(people_count=80, places=[places["dandong"]])
    body = stats("group_by=country")
    assert by_group(body) == {"CN": (2, 580), "KP": (1, 500)}
    assert body["total"] == {
        "incidents": 2,
        "incidents_without_figure": 0,
        "people_count": 580,
        "people_count_min": 580,
        "people_count_max": 580,
    }
    assert [row["label"] for row in body["results"]] == ["China", "North Korea"]


def test_year_and_month_groups_with_ranges(places):
    make_incident(people_count=50, people_count_min=40, people_count_max=60, **on(date(2021, 7, 1)))
    make_incident(people_count=80, **on(date(2023, 8, 29)))
    make_incident(people_count=40, **on(date(2023, 9, 18)))
    body = stats("group_by=year")
    assert body["results"][0] == {
        "group": "2021",
        "label": "2021",
        "incidents": 1,
        "incidents_without_figure": 0,
        "people_count": 50,
        "people_count_min": 40,
        "people_count_max": 60,
    }
    assert by_group(body)["2023"] == (2, 120)
    assert by_group(stats("group_by=month")) == {"2021-07": (1, 50), "2023-08": (1, 80), "2023-09": (1, 40)}


@pytest.mark.parametrize("source", ["", "&min_people=0"], ids=["from kept totals", "from the incidents"])
def test_an_incident_over_more_than_one_month_or_year_counts_in_none_of_them(source):
    # Grouped by the month it starts in, every incident dated only "2023" stood in January 2023 and
    # one of July-September 2021 in July: a January spike no source reported.
    make_incident(people_count=80, **on(date(2023, 1, 14)))
    make_incident(people_count=500, date_start=date(2023, 1, 1), date_end=date(2023, 12, 31), date_precision="year")
    make_incident(people_count=40, date_start=date(2021, 7, 1), date_end=date(2021, 9, 30), date_precision="month")
    make_incident(people_count=9, date_start=date(2021, 12, 1), date_end=date(2022, 1, 31), date_precision="month")
    by_month = stats(f"group_by=month{source}")
    assert by_group(by_month) == {"2023-01": (1, 80), None: (3, 549)}
    assert by_month["results"][-1]["label"] == "Over more than one month"
    by_year = stats(f"group_by=year{source}")
    assert by_group(by_year) == {"2021": (1, 40), "2023": (2, 580), None: (1, 9)}
    assert by_year["results"][-1]["label"] == "Over more than one year"
    assert (
        by_month["total"]
        == by_year["total"]
        == {
            "incidents": 4,
            "incidents_without_figure": 0,
            "people_count": 629,
            "people_count_min": 629,
            "people_count_max": 629,
        }
    )


@pytest.mark.parametrize("source", ["", "&min_people=0"], ids=["from kept totals", "from the incidents"])
def test_a_year_before_1000_is_named_with_four_digits_so_the_groups_sort_as_text(source):
    # "999" sorted after "2021" as text, and "999-01-01" is a date no filter takes.
    make_incident(people_count=3, **on(date(999, 5, 1)))
    make_incident(people_count=50, **on(date(2021, 7, 1)))
    assert [row["group"] for row in stats(f"group_by=year{source}")["results"]] == ["0999", "2021"]
    assert [row["label"] for row in stats(f"group_by=year{source}")["results"]] == ["0999", "2021"]
    assert by_group(stats(f"group_by=month{source}")) == {"0999-05": (1, 3), "2021-07": (1, 50)}


def test_verification_groups_agree_from_kept_totals_and_from_incidents(places):
    make_incident(people_count=500, verification="corroborated", places=[places["dandong"]])
    make_incident(people_count=80, verification="alleged", places=[places["dandong"]])
    make_incident(people_count=40, verification="alleged")
    from_totals = stats("group_by=verification")
    assert by_group(from_totals) == {"alleged": (2, 120), "corroborated": (1, 500)}
    assert [row["label"] for row in from_totals["results"]] == ["Alleged", "Corroborated"]
    assert from_totals["total"]["incidents"] == 3
    # A search is answered from the incidents themselves.
    assert by_group(stats("group_by=verification&min_people=50")) == {"alleged": (1, 80), "corroborated": (1, 500)}


def test_type_and_perpetrator_groups_count_each_incident_once_per_group():
    china, police = make_organization(name="China"), make_organization(name="Border police")
    both = make_incident(people_count=100)
    Involvement.objects.create(incident=both, organization=china, role="perpetrator")
    Involvement.objects.create(incident=both, organization=police, role="perpetrator")
    Involvement.objects.create(incident=both, organization=china, role="receiving_state")
    make_incident(people_count=7, incident_type=incident_type("arbitrary-detention"))
    assert by_group(stats("group_by=type")) == {"forced-repatriation": (1, 100), "arbitrary-detention": (1, 7)}
    perpetrators = stats("group_by=perpetrator")
    assert {row["label"]: row["incidents"] for row in perpetrators["results"]} == {
        "China": 1,
        "Border police": 1,
        "Not recorded": 1,
    }
    assert perpetrators["total"]["incidents"] == 2


def test_filters_apply_to_statistics(places):
    make_incident(people_count=500, places=[places["dandong"]], **on(date(2023, 10, 2)))
    make_incident(people_count=50, places=[places["dandong"]], **on(date(2021, 7, 1)))
    make_incident(people_count=9, places=[places["hyesan"]], **on(date(2023, 1, 1)))
    body = stats("group_by=year&country=CN&type=forced-repatriation&date_from=2023-01-01&date_to=2023-12-31")
    assert by_group(body) == {"2023": (1, 500)}


def test_statistics_count_only_what_the_reader_may_see(places):
    make_incident(people_count=10)
    make_incident(people_count=20, review_state="draft")
    make_incident(people_count=40, confidential=True)
    assert stats("group_by=year")["total"]["people_count"] == 10
    assert stats("group_by=year", make_user(roles.VIEWER))["total"]["people_count"] == 30
    assert stats("group_by=year", make_user(roles.VIEWER, confidential=True))["total"]["people_count"] == 70


# Selects every incident of these tests, but only the incidents themselves answer it (not the kept totals).
COUNTED_FROM_INCIDENTS = "&updated_since=2000-01-01T00:00:00Z"


def without_figure(body: dict) -> dict:
    return {row["group"]: (row["incidents"], row["incidents_without_figure"]) for row in body["results"]}


@pytest.mark.parametrize(
    "source", ["", COUNTED_FROM_INCIDENTS, "&q=-river"], ids=["from kept totals", "from the incidents", "leaving out"]
)
def test_statistics_say_how_many_incidents_give_no_figure(places, source):
    """ "1,234 people in 56 incidents" read as complete where 20 of the 56 gave no number: each
    group and the total say how many of their incidents have no figure at all. A minimum or a
    maximum alone is a figure (it adds to the range, a minimum to the best estimate too)."""
    china = make_organization(name="China")
    unknown = {"people_count": None, "count_qualifier": "unknown"}
    counted = [
        make_incident(people_count=80, places=[places["dandong"]]),
        make_incident(**unknown, places=[places["dandong"], places["sinuiju"]]),
        make_incident(people_count=None, people_count_min=5, count_qualifier="at_least", places=[places["hyesan"]]),
        make_incident(people_count=None, people_count_max=7, count_qualifier="at_most"),
        make_incident(**unknown, **on(date(2021, 3, 4))),
        make_incident(**unknown, date_start=date(2022, 1, 1), date_end=date(2023, 12, 31), date_precision="year"),
    ]
    for incident in counted[:2]:
        Involvement.objects.create(incident=incident, organization=china, role="perpetrator")
    # Left out by the search `q=-river`: the kept totals less it (`_kept_minus_left_out`).
    make_incident(**unknown, title="Taken at the river", **on(date(2021, 5, 6)))
    left_out = 1 if source == "&q=-river" else 0

    with CaptureQueriesContext(connection) as queries:
        by_year = stats(f"group_by=year{source}")
    from_kept_totals = any("incidents_incidentrollup" in query["sql"] for query in queries)
    assert from_kept_totals == (source != COUNTED_FROM_INCIDENTS)
    assert without_figure(by_year) == {"2021": (2 - left_out, 2 - left_out), "2023": (4, 1), None: (1, 1)}
    assert by_year["results"][-1]["label"] == "Over more than one year"
    assert by_year["total"]["incidents"] == 7 - left_out
    assert by_year["total"]["incidents_without_figure"] == 4 - left_out
    # The people are those of the incidents with a figure: the best estimate 80 + 5 (a minimum alone
    # is its best estimate too, not only the range's low end: 80 within a range from 85 before), in
    # a range from 80 + 5 to 80 + 5 + 7.
    assert (by_year["total"]["people_count"], by_year["total"]["people_count_min"]) == (85, 85)
    assert by_year["total"]["people_count_max"] == 92
    assert without_figure(stats(f"group_by=month{source}"))["2023-08"] == (4, 1)
    by_country = stats(f"group_by=country{source}")
    assert without_figure(by_country) == {"CN": (2, 1), "KP": (2, 1), None: (4 - left_out, 3 - left_out)}
    assert by_country["total"]["incidents_without_figure"] == 4 - left_out
    by_perpetrator = stats(f"group_by=perpetrator{source}")
    assert without_figure(by_perpetrator) == {str(china.pk): (2, 1), None: (5 - left_out, 3 - left_out)}
    assert by_perpetrator["total"]["incidents_without_figure"] == 4 - left_out
    assert without_figure(stats(f"group_by=type&country=KP{source}")) == {"forced-repatriation": (2, 1)}
    assert stats(f"group_by=verification{source}")["total"]["incidents_without_figure"] == 4 - left_out


def test_incidents_without_a_figure_are_counted_only_for_readers_who_may_see_them(places):
    unknown = {"people_count": None, "count_qualifier": "unknown"}
    make_incident(people_count=10)
    make_incident(**unknown)
    make_incident(**unknown, review_state="draft")
    make_incident(**unknown, confidential=True, places=[places["dandong"]])
    for source in ["", COUNTED_FROM_INCIDENTS]:
        for group_by in ["year", "country"]:
            for reader, seen in [
                (None, 1),
                (make_user(roles.VIEWER), 2),
                (make_user(roles.VIEWER, confidential=True), 3),
            ]:
                body = stats(f"group_by={group_by}{source}", reader)
                assert body["total"]["incidents_without_figure"] == seen, (source, group_by, reader)
                assert sum(row["incidents_without_figure"] for row in body["results"]) == seen


def test_statistics_up_to_the_last_day_a_date_can_have_count_every_incident(places):
    # 31 December 9999 ends its month: the totals answer it, and no "next day" is computed.
    make_incident(people_count=500, places=[places["dandong"]], **on(date(2023, 10, 2)))
    body = stats("group_by=month&date_from=2023-01-01&date_to=9999-12-31")
    assert body["total"]["people_count"] == 500


@pytest.mark.parametrize("group_by", ["year", "country", "perpetrator"])
def test_a_count_beyond_any_an_incident_can_have_counts_nothing(places, group_by):
    # 99,999,999,999 is beyond the column's integers: Django writes no SQL for such a filter.
    make_incident(people_count=500, places=[places["dandong"]])
    body = stats(f"group_by={group_by}&min_people=99999999999")
    assert body["results"] == []
    assert body["total"]["incidents"] == 0


@pytest.mark.parametrize("query", ["", "group_by=week", "group_by=year&date_from=never"])
def test_bad_group_by_or_filter_answers_400_naming_it(query):
    answer = client_for().get(f"{API}/incidents/stats/?{query}")
    assert answer.status_code == 400
    assert set(answer.json()) <= {"group_by", "date_from"}
    assert answer.json()


# Statistics come from the kept totals unless a filter needs the incidents themselves; `min_people=0`
# is such a filter (it leaves out only incidents without a best estimate, and there are none here).
FROM_TOTALS, FROM_INCIDENTS = "", "&min_people=0"


@pytest.mark.parametrize(
    "group_by, source, queries",
    [
        # In a transaction (as in every test) the kept totals first take in its own changes: one
        # query. Then the grouped totals, and for country and perpetrator groups, which share
        # incidents, the overall total.
        *[(group_by, FROM_TOTALS, 2) for group_by in ["year", "month", "type"]],
        *[(group_by, FROM_TOTALS, 3) for group_by in ["country", "perpetrator"]],
        # The grouped sums with the total: their sum where each incident is in exactly one group,
        # else (countries) a sum over the same distinct pairs, once per incident, in the same query.
        *[(group_by, FROM_INCIDENTS, 1) for group_by in ["year", "month", "type", "country"]],
        # An incident with two perpetrators is in two groups: the total is a query of its own.
        ("perpetrator", FROM_INCIDENTS, 2),
    ],
)
def test_statistics_take_a_fixed_number_of_queries_whatever_the_number_of_incidents(
    group_by, source, queries, places, django_assert_num_queries
):
    china, police = make_organization(name="China"), make_organization(name="Border police")
    for number in range(5):
        incident = make_incident(people_count=number, places=[places["dandong"], places["hyesan"]])
        Involvement.objects.create(incident=incident, organization=china, role="perpetrator")
        Involvement.objects.create(incident=incident, organization=police, role="perpetrator")
    with django_assert_num_queries(queries):
        body = stats(f"group_by={group_by}{source}")
    assert body["total"]["incidents"] == 5
    assert body["total"]["incidents_without_figure"] == 0
    assert body["total"]["people_count"] == 10


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        # The statistics are no page: neither an ordering nor a page size means anything there.
        ("group_by=country&ordering=-people_count", "ordering"),
        ("group_by=country&page_size=0", "page_size"),
        ("group_by=country&contry=CN", "contry"),
        # One table cannot be grouped both ways: it was grouped by the last.
        ("group_by=year&group_by=country", "group_by"),
        ("group_by=year&country=CN&country=KP", "country"),
    ],
)
def test_a_parameter_the_statistics_do_not_read_or_given_twice_is_refused_naming_it(places, query, refused):
    response = client_for().get(f"{API}/incidents/stats/?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [refused]


def test_the_statistics_read_their_grouping_the_filters_and_format(places):
    assert client_for().get(f"{API}/incidents/stats/?group_by=year&country=CN&format=json").status_code == 200
