"""The kept totals behind statistics (`IncidentRollup`) answer exactly as the incidents do: for every
reader, grouping and filter they serve, after every kind of change, and when transactions commit
changes to the same totals at once."""

import importlib
import io
import random
import re
import threading
from datetime import date, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.http import QueryDict
from django.test import Client
from django.test.utils import CaptureQueriesContext

from incidents import roles, statistics
from incidents.importers import Duplicates, import_incidents_csv
from incidents.merges import incident_merge, incident_merge_undo
from incidents.models import (
    NO_COUNTRY,
    DuplicatePair,
    Incident,
    IncidentFacetTotal,
    IncidentPlace,
    IncidentRollup,
    IncidentRollupEntry,
    IncidentType,
    Involvement,
    Place,
)
from incidents.selectors import incident_filterset
from incidents.statistics import FACET_YEARS, PLACE, facet_statistics, incident_statistics
from tests.api_support import API, client_for
from tests.database_support import migrate_incidents_back_to
from tests.factories import incident_type, make_claim, make_incident, make_organization, make_place, make_user

GROUPINGS = ["year", "month", "country", "type", "perpetrator"]
# Filters the kept totals answer; each is also asked with a filter they do not (below).
SERVED_FILTERS = [
    "",
    "date_from=2021-01-01&date_to=2022-12-31",
    "date_from=2020-03-01",
    "date_to=2023-06-30",
    "type=detention",
    "verification=alleged&verification=verified",
    "review_state=draft&review_state=in_review",
    "country=CN",
    "country=KP&date_from=2022-01-01&date_to=2022-12-31",
]
# Selects every incident of these tests (all were changed after 2000) but only the incidents
# themselves can answer it: the reference answer.
FROM_INCIDENTS = "updated_since=2000-01-01T00:00:00Z"
READERS = {
    "anonymous": lambda: None,
    "viewer": lambda: make_user(roles.VIEWER),
    "confidential": lambda: make_user(roles.VIEWER, confidential=True),
}


@pytest.fixture(autouse=True)
def _unthrottled(settings):
    """These tests ask hundreds of questions in a row."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None}}


def answer(client, query: str) -> tuple[dict, bool]:
    """The statistics for `query`, and whether they came from the kept totals."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"{API}/incidents/stats/?{query}")
    assert response.status_code == 200, response.content
    return response.json(), any("incidents_incidentrollup" in query["sql"] for query in queries)


def assert_totals_agree(client, groupings=GROUPINGS, filters=SERVED_FILTERS):
    for group_by in groupings:
        for served in filters:
            query = f"group_by={group_by}&{served}"
            kept, from_totals = answer(client, query)
            reference, reference_from_totals = answer(client, f"{query}&{FROM_INCIDENTS}")
            assert from_totals, query
            assert not reference_from_totals
            assert kept == reference, query


@pytest.fixture
def world():
    """Forty incidents as varied as real ones: ranges across months and years, unknown figures,
    several countries and perpetrators or none, every review state, some confidential; and four
    whose figures are partial: a minimum alone, a maximum alone, both bounds without a best estimate,
    none at all."""
    draw = random.Random(7)
    detention = incident_type("arbitrary-detention")
    kinds = [
        incident_type(),
        IncidentType.objects.create(slug="detention", name="Detention"),
        IncidentType.objects.create(slug="incommunicado", name="Incommunicado", parent_id=None),
        detention,
    ]
    IncidentType.objects.filter(slug="incommunicado").update(parent=IncidentType.objects.get(slug="detention"))
    places = [
        make_place(name="Dandong", country="CN"),
        make_place(name="Tumen", country="CN"),
        make_place(name="Sinuiju", country="KP"),
        make_place(name="Vladivostok", country="RU"),
        make_place(name="Somewhere at sea", country=""),
    ]
    organizations = [make_organization(name=name) for name in ("Chinese police", "MSS", "KPA")]
    for _ in range(40):
        start = date(2019, 1, 1) + timedelta(days=draw.randrange(6 * 365))
        people = draw.choice([None, draw.randrange(1, 500)])
        incident = make_incident(
            incident_type=draw.choice(kinds),
            date_start=start,
            date_end=start + timedelta(days=draw.choice([0, 0, 5, 40, 400])),
            people_count=people,
            people_count_min=draw.choice([None, people and people // 2]),
            people_count_max=draw.choice([None, people and people * 2]),
            verification=draw.choice(["alleged", "verified", "disputed"]),
            review_state=draw.choice(["draft", "in_review", "published", "published"]),
            confidential=draw.random() < 0.2,
            places=draw.sample(places, draw.choice([0, 1, 1, 2, 3])),
        )
        for organization in draw.sample(organizations, draw.choice([0, 1, 1, 2])):
            Involvement.objects.create(incident=incident, organization=organization, role="perpetrator")
        if draw.random() < 0.3:
            Involvement.objects.create(incident=incident, organization=organizations[0], role="receiving_state")
    # Told apart only by the count of incidents without a figure: the counts of known bounds are
    # those of one incident with both and one with none.
    for index, (low, high) in enumerate([(5, None), (None, 9), (5, 9), (None, None)]):
        incident = make_incident(
            people_count=None,
            people_count_min=low,
            people_count_max=high,
            count_qualifier="unknown" if low is high is None else "about",
            date_start=date(2022, 3, 1 + index),
            date_end=date(2022, 3, 1 + index),
            review_state="published",
            places=[places[index % 2], places[2]],
        )
        Involvement.objects.create(incident=incident, organization=organizations[index % 3], role="perpetrator")
    return {"places": places, "organizations": organizations}


@pytest.mark.parametrize("reader", READERS)
def test_kept_totals_answer_as_the_incidents_do(world, reader):
    assert_totals_agree(client_for(READERS[reader]()))


@pytest.mark.parametrize("reader", READERS)
def test_a_perpetrators_statistics_come_from_its_kept_totals(world, reader):
    """A perpetrator's incidents by year, month, type or verification (also within a country):
    read from the perpetrator's own totals, where they were counted from every incident it is
    perpetrator of (over a million incidents, more than a request may take)."""
    client = client_for(READERS[reader]())
    chinese_police, kpa = world["organizations"][0], world["organizations"][2]
    served = [
        f"perpetrator={chinese_police.pk}",
        f"perpetrator={kpa.pk}&date_from=2021-01-01&date_to=2022-12-31",
        f"perpetrator={chinese_police.pk}&country=CN",
        f"perpetrator={kpa.pk}&type=detention&verification=alleged&verification=verified",
    ]
    assert_totals_agree(client, groupings=["year", "month", "type", "verification"], filters=served)
    # Its countries too, over all its incidents, with those in no country (migration 0056): at a
    # million incidents, counting the largest perpetrator's from the incidents answered 503.
    over_all = [query for query in served if "country" not in query]
    assert_totals_agree(client, groupings=["country"], filters=over_all)
    by_country = answer(client, f"group_by=country&perpetrator={chinese_police.pk}")[0]["results"]
    assert by_country[-1]["group"] is None and by_country[-1]["incidents"] > 0, by_country
    # Its fellow perpetrators (within a country too) and its countries within a country: its own
    # totals, and the entries of its incidents with more than one perpetrator (or country); at a
    # million incidents, counting the largest perpetrator's incidents answered 503.
    assert_totals_agree(client, groupings=["perpetrator"], filters=served)
    fellows = answer(client, f"group_by=perpetrator&perpetrator={chinese_police.pk}")[0]["results"]
    assert len(fellows) > 1 and str(chinese_police.pk) in {row["group"] for row in fellows}, fellows
    # Its countries within a country: those of its incidents there in more than one country.
    within = [query for query in served if "country" in query] + [f"perpetrator={kpa.pk}&country=KP"]
    assert_totals_agree(client, groupings=["country"], filters=within)
    others = answer(client, f"group_by=country&perpetrator={chinese_police.pk}&country=CN")[0]["results"]
    assert len(others) > 1 and others[0]["group"] == "CN", others


@pytest.mark.parametrize("reader", READERS)
def test_a_perpetrator_with_no_incident_the_reader_sees_in_the_country_has_no_group_there(world, reader):
    """Its group in the filter's country was one row whatever the totals held: the country listed
    with 0 incidents where the incidents list none, for a perpetrator with none there or only some
    the reader may not see."""
    secret_police = make_organization(name="Secret police")
    china, korea = world["places"][0], world["places"][2]
    for places, confidential in (([china], False), ([korea], True)):
        incident = make_incident(review_state="published", confidential=confidential, places=places)
        Involvement.objects.create(incident=incident, organization=secret_police, role="perpetrator")
    client = client_for(READERS[reader]())

    assert_totals_agree(
        client,
        groupings=["country"],
        filters=[f"perpetrator={secret_police.pk}&country={country}" for country in ("KP", "RU")],
    )
    assert answer(client, f"group_by=country&perpetrator={secret_police.pk}&country=RU")[0]["results"] == []


def test_kept_totals_follow_every_kind_of_change(world):
    readers = [client_for(None), client_for(READERS["confidential"]())]
    incidents = list(Incident.objects.order_by("pk"))
    places, organizations = world["places"], world["organizations"]
    changes = [
        lambda: Incident.objects.filter(pk=incidents[0].pk).update(
            date_start=date(2018, 12, 30), date_end=date(2019, 2, 2)
        ),
        lambda: Incident.objects.filter(pk=incidents[1].pk).update(incident_type=incident_type("arbitrary-detention")),
        lambda: Incident.objects.filter(review_state="draft").update(review_state="published"),
        lambda: Incident.objects.filter(pk__in=[incidents[2].pk, incidents[3].pk]).update(confidential=True),
        lambda: Incident.objects.filter(pk=incidents[4].pk).update(
            people_count=None, people_count_max=None, count_qualifier="about"
        ),
        lambda: IncidentPlace.objects.filter(incident=incidents[5]).delete(),
        lambda: incidents[6].places.add(places[2], places[3]),
        lambda: Place.objects.filter(pk=places[1].pk).update(country="KP"),
        lambda: Involvement.objects.filter(incident=incidents[7]).delete(),
        lambda: Involvement.objects.create(incident=incidents[8], organization=organizations[2], role="perpetrator"),
        lambda: Involvement.objects.filter(organization=organizations[1]).update(role="receiving_state"),
        lambda: incidents[9].delete(),
        lambda: Incident.objects.filter(pk=incidents[10].pk).update(title="Only the title changed"),
        # Every figure taken away, and a figure given to an incident that had none.
        lambda: Incident.objects.filter(pk__in=[incidents[11].pk, incidents[-2].pk]).update(
            people_count=None, people_count_min=None, people_count_max=None, count_qualifier="unknown"
        ),
        lambda: Incident.objects.filter(pk=incidents[-1].pk).update(people_count_max=30, count_qualifier="at_most"),
    ]
    perpetrators = [f"perpetrator={organization.pk}" for organization in organizations]
    for change in changes:
        change()
        for client in readers:
            assert_totals_agree(client, filters=["", "country=CN", "date_from=2019-01-01&date_to=2019-12-31"])
            assert_totals_agree(client, groupings=["country"], filters=perpetrators)


# The migration that counts the incidents without a figure, and the one before it.
BEFORE_WITHOUT_FIGURE = importlib.import_module(
    "incidents.migrations.0074_statistics_count_incidents_without_figure"
).Migration.dependencies[0][1]
# The one before the migration that counts the best estimate within the range.
BEFORE_BEST_WITHIN_RANGE = importlib.import_module(
    "incidents.migrations.0090_statistics_best_estimate_within_range"
).Migration.dependencies[0][1]
# The migration that keeps each perpetrator within no country, and the one before it.
WITHIN_NO_COUNTRY = "0056_statistics_perpetrator_without_country"
BEFORE_WITHIN_NO_COUNTRY = importlib.import_module(f"incidents.migrations.{WITHIN_NO_COUNTRY}").Migration.dependencies[
    0
][1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_incidents_without_a_figure_already_there_as_the_count_does(world):
    # Each incident of the world was counted as it committed, by the count of migration 0074: the
    # migration, back and forth, fills the same totals for the incidents counted before it.
    columns = [field.attname for field in IncidentRollup._meta.fields if field.name != "id"]
    counted = list(IncidentRollup.objects.order_by(*columns).values_list(*columns))
    assert IncidentRollup.objects.filter(incidents_without_figure__gt=0).exists()
    migrate_incidents_back_to(BEFORE_WITHOUT_FIGURE)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM incidents_incidentrollup")
            assert cursor.fetchone()[0] == len(counted)
            columns_before = connection.introspection.get_table_description(cursor, "incidents_incidentrollup")
        assert "incidents_without_figure" not in [column.name for column in columns_before]
    finally:
        call_command("migrate", "incidents", verbosity=0)

    assert list(IncidentRollup.objects.order_by(*columns).values_list(*columns)) == counted


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_each_perpetrator_within_no_country_as_the_count_does(world):
    # Each incident of the world was counted as it committed, by the count of migration 0056: the
    # migration, back and forth, keeps the same totals for the incidents counted before it.
    columns = [field.attname for field in IncidentRollup._meta.fields if field.name != "id"]
    counted = list(IncidentRollup.objects.order_by(*columns).values_list(*columns))
    assert IncidentRollup.objects.filter(within_country=NO_COUNTRY).exists()
    migrate_incidents_back_to(BEFORE_WITHIN_NO_COUNTRY)
    try:
        assert not IncidentRollup.objects.filter(within_country=NO_COUNTRY).exists()
    finally:
        call_command("migrate", "incidents", verbosity=0)

    assert list(IncidentRollup.objects.order_by(*columns).values_list(*columns)) == counted


def test_an_import_is_counted(world):
    analyst = make_user(roles.ANALYST)
    rows = "\n".join(
        f"Imported {n},forced-repatriation,2022-0{n % 9 + 1}-03,2022-0{n % 9 + 1}-20,{n * 10},Dandong; Sinuiju,MSS"
        for n in range(30)
    )
    report = import_incidents_csv(
        io.BytesIO(f"title,type,date_start,date_end,people_count,places,perpetrators\n{rows}\n".encode()),
        user=analyst,
    )
    assert len(report.created) == 30, report.summary()
    Incident.objects.filter(title__startswith="Imported").update(review_state="published")
    assert_totals_agree(client_for(None), filters=["", "country=KP", "date_from=2022-01-01&date_to=2022-03-31"])


def test_incidents_alike_are_counted_as_each_one_is(world, province):
    # The count adds up the changes of incidents alike in what their cells are made of (months,
    # type, states, countries, perpetrators, places) before making the cells (migration 0078):
    # alike incidents with every kind of figure, known or not, imported at once, then some of them
    # edited in one statement (a change of figures alone, and a change of state), are counted as
    # the statistics count them from the incidents.
    figures = ["", "40", "40", "7"]
    bounds = [("", ""), ("", ""), ("20", "80"), ("7", "")]
    rows = [
        f"Alike {n},forced-repatriation,2022-05-03,2022-05-20,{figures[n % 4]},{bounds[n % 4][0]},"
        f"{bounds[n % 4][1]},Dandong; Sinuiju,MSS; KPA"
        for n in range(40)
    ]
    header = "title,type,date_start,date_end,people_count,people_count_min,people_count_max,places,perpetrators\n"
    report = import_incidents_csv(
        io.BytesIO((header + "\n".join(rows)).encode()), user=make_user(roles.ANALYST), duplicates=Duplicates.ALLOW
    )
    assert len(report.created) == 40, report.summary()
    alike = Incident.objects.filter(title__startswith="Alike")
    alike.update(review_state="published")
    alike.filter(people_count=40).update(people_count=F("people_count") + 5)
    alike.filter(people_count__isnull=True).update(review_state="in_review")

    for reader in READERS.values():
        client = client_for(reader())
        assert_totals_agree(client, filters=["", "country=KP", "review_state=draft&review_state=in_review"])
    assert_facets_agree(make_user(roles.VIEWER, confidential=True), place_ids=[province["border"].pk])


def test_an_imports_totals_are_those_a_recount_makes(world, province):
    """An import notes its incidents for the count once, itself, with the insert triggers off
    (migration 0044): every total, facet and entry after it is what counting everything from
    scratch gives, with nothing else changed after the import that would note them again. Messy
    rows: place names repeated from row to row and across countries, in a province, blank
    figures, no place, no perpetrator, two perpetrators."""
    rows = [
        "Same place again,detention,2021-01-05,2021-01-05,,Dandong,MSS",
        "Same place again,detention,2021-01-05,2021-01-09,12,Dandong,MSS",
        "Two countries,forced-repatriation,2021-12-30,2022-01-02,40,Dandong; Sinuiju,MSS; KPA",
        "Nowhere,detention,2020-06-01,2023-06-01,,,",
        "At sea,forced-repatriation,2022-03-01,2022-03-31,3,Somewhere at sea,KPA",
        "In the province,detention,2019-07-07,2019-07-08,,Tumen; Dandong,",
        "Blank figures,detention,2022-02-02,2022-02-02,,Vladivostok,Chinese police",
    ]
    header = "title,type,date_start,date_end,people_count,places,perpetrators\n"
    report = import_incidents_csv(
        io.BytesIO((header + "\n".join(rows * 3)).encode()), user=make_user(roles.ANALYST), duplicates=Duplicates.ALLOW
    )
    assert len(report.created) == 21, report.summary()

    def kept():
        with connection.cursor() as cursor:
            # What the import's commit would do: count what it noted.
            cursor.execute(
                "SET CONSTRAINTS incident_rollup_count IMMEDIATE; SET CONSTRAINTS incident_rollup_count DEFERRED"
            )
        tables = []
        for model in (IncidentRollup, IncidentFacetTotal, IncidentRollupEntry):
            columns = [field.attname for field in model._meta.fields if field.name != "id"]
            tables.append(list(model.objects.order_by(*columns).values_list(*columns)))
        return tables

    after_import = kept()
    imported = Incident.objects.filter(title__in=[row.split(",")[0] for row in rows]).values("pk")
    assert IncidentRollupEntry.objects.filter(pk__in=imported).count() == 21
    call_command("recount_statistics", stdout=io.StringIO())
    assert kept() == after_import


def test_counting_an_incident_again_changes_nothing(world):
    client = client_for(READERS["confidential"]())
    before = [answer(client, f"group_by={group_by}")[0] for group_by in GROUPINGS]
    with connection.cursor() as cursor:
        cursor.execute("SELECT incident_rollup_count(ARRAY(SELECT id FROM incidents_incident))")
    assert [answer(client, f"group_by={group_by}")[0] for group_by in GROUPINGS] == before


def test_recount_statistics_rebuilds_totals_gone_wrong(world):
    """What migration 0011 does for the incidents already there, and the way back for totals
    loaded with triggers disabled."""
    client = client_for(READERS["confidential"]())
    assert_totals_agree(client, groupings=["year"], filters=[""])  # which counts this test's incidents
    IncidentRollup.objects.filter(dimension="incident").update(incidents=F("incidents") + 5)
    IncidentRollupEntry.objects.filter(pk=Incident.objects.values("pk")[:1]).delete()
    assert answer(client, "group_by=year")[0] != answer(client, f"group_by=year&{FROM_INCIDENTS}")[0]
    out = io.StringIO()
    call_command("recount_statistics", stdout=out)
    assert f"Counted {Incident.objects.count()} incidents" in out.getvalue()
    assert_totals_agree(client, filters=["", "country=CN"])


def test_at_least_40_and_about_500_are_540_people_within_a_range_from_540():
    # "At least 40" added 40 to the range's low sum alone: 500 people, in a range from 540 to 500.
    place = make_place(name="Dandong", country="CN")
    make_incident(people_count=None, people_count_min=40, count_qualifier="at_least", places=[place])
    make_incident(people_count=500, count_qualifier="about", places=[place])
    make_incident(people_count=None, people_count_max=30, count_qualifier="at_most", places=[place])
    client = client_for(None)

    for query in ("group_by=country", f"group_by=country&{FROM_INCIDENTS}", "group_by=year&q=-zzzz"):
        total = answer(client, query)[0]["total"]
        assert (total["people_count_min"], total["people_count"], total["people_count_max"]) == (540, 540, 570), query
    page = Client().get("/statistics/", {"group_by": "country"}).context["table"]["total"]
    assert (page["people_count_min"], page["people_count"], page["people_count_max"]) == (540, 540, 570)


@pytest.fixture
def messy():
    """Incidents with every mix of figures the form allows: a best estimate with or without either
    bound, bounds without one, a minimum or a maximum alone, none; with the qualifiers they read as
    or "about", in several countries, years and perpetrators."""
    draw = random.Random(11)
    places = [make_place(name=name, country=country) for name, country in [("Dandong", "CN"), ("Sinuiju", "KP")]]
    organizations = [make_organization(name=name) for name in ("Chinese police", "MSS")]
    for _ in range(60):
        best = draw.choice([None, draw.randrange(0, 300)])
        low = draw.choice([None, draw.randrange(0, best + 1) if best is not None else draw.randrange(0, 300)])
        high = draw.choice([None, max(best or 0, low or 0) + draw.randrange(0, 300)])
        start = date(2019, 1, 1) + timedelta(days=draw.randrange(4 * 365))
        incident = make_incident(
            people_count=best,
            people_count_min=low,
            people_count_max=high,
            # Blank: read from the figures (exact, at least, at most, about, unknown).
            count_qualifier=draw.choice(["", "", "about"]),
            date_start=start,
            date_end=start + timedelta(days=draw.choice([0, 20, 400])),
            places=draw.sample(places, draw.choice([0, 1, 2])),
        )
        for organization in draw.sample(organizations, draw.choice([0, 1, 2])):
            Involvement.objects.create(incident=incident, organization=organization, role="perpetrator")


@pytest.mark.parametrize("served", ["", FROM_INCIDENTS, "q=-zzzz", "country=CN"])
def test_the_best_estimate_lies_within_the_range_in_every_group(messy, served):
    client = client_for(None)
    for group_by in [*GROUPINGS, "verification"]:
        statistic = answer(client, f"group_by={group_by}&{served}")[0]
        for row in [*statistic["results"], statistic["total"]]:
            low, best, high = row["people_count_min"], row["people_count"], row["people_count_max"]
            # Null: no incident of the group gives that figure (a maximum alone gives neither of
            # the others), so it adds none; a group with a minimum or a best estimate has all three.
            assert (low is None) == (best is None) and (high is None) <= (best is None), (group_by, served, row)
            assert (low or 0) <= (best or 0) <= (high or 0), (group_by, served, row)
    assert_totals_agree(client, groupings=[*GROUPINGS, "verification"], filters=["", "country=CN"])


def test_the_migration_counts_the_best_estimate_within_the_range_as_the_count_does(messy):
    # Each incident was counted as it committed, by this count: the migration, back and forth,
    # leaves the totals a count makes; back, a minimum alone counts in the low sum only again.
    client = client_for(None)
    counted = answer(client, "group_by=year")[0]
    migrate_incidents_back_to(BEFORE_BEST_WITHIN_RANGE)
    try:
        before = answer(client, "group_by=year")[0]["total"]
        assert before["people_count"] < counted["total"]["people_count"]
        assert before["people_count"] < before["people_count_min"]
    finally:
        call_command("migrate", "incidents", verbosity=0)

    assert answer(client, "group_by=year")[0] == counted
    assert_totals_agree(client, groupings=["year", "country"], filters=[""])


@pytest.mark.parametrize(
    ("reader", "query", "indexes"),
    [
        ("anonymous", "group_by=year", {"incident_rollup_overall"}),
        ("anonymous", "group_by=type&date_from=2021-01-01&verification=alleged", {"incident_rollup_overall"}),
        ("viewer", "group_by=month", {"incident_rollup_overall"}),
        ("anonymous", "group_by=perpetrator", {"incident_rollup_by_perpetrator", "incident_rollup_overall"}),
        (
            "anonymous",
            "group_by=perpetrator&date_to=2022-12-31",
            {"incident_rollup_by_perpetrator", "incident_rollup_overall"},
        ),
        (
            "anonymous",
            "group_by=perpetrator&country=CN",
            {"incident_rollup_by_perpetrator", "incident_rollup_in_country"},
        ),
        ("anonymous", "group_by=country", {"incident_rollup_per_country", "incident_rollup_overall"}),
        ("anonymous", "group_by=country&country=CN", {"incident_rollup_in_country"}),
        ("anonymous", "group_by=month&country=KP&type=detention", {"incident_rollup_in_country"}),
        ("anonymous", "group_by=country&perpetrator={perpetrator}", {"incident_rollup_by_perpetrator"}),
    ],
)
def test_statistics_read_their_totals_from_an_index_alone(world, reader, query, indexes):
    """Each statistic is answered from an index that holds every column it reads (migration 0013):
    on a million incidents, reading the table's scattered rows instead cost most of a request."""
    query = query.format(perpetrator=world["organizations"][0].pk)
    with CaptureQueriesContext(connection) as queries:
        assert answer(client_for(READERS[reader]()), query)[1]
    with connection.cursor() as cursor:
        # The test tables are tiny, where reading them whole, or through any index that finds
        # the rows, is about as cheap: ask for the large-table plan. Off: reading the whole table
        # and the index that keeps the totals unique, which finds every total by its later columns
        # (undone with the test's transaction). Index scans stay on: turning them off turns
        # index-only scans off too.
        cursor.execute("ALTER TABLE incidents_incidentrollup DROP CONSTRAINT incident_rollup_cell")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        plans = ""
        for captured in queries:
            if "incidents_incidentrollup" in captured["sql"]:
                # An anonymous reader's statements carry their time bound (tracker/statement_timeout.py).
                statement = re.sub(r"^SET LOCAL statement_timeout = \d+; ", "", captured["sql"])
                cursor.execute(f"EXPLAIN {statement}")
                plans += "\n".join(row[0] for row in cursor.fetchall())

    scans = re.findall(r"(\w[\w ]*Scan)(?: using (\w+))? on incidents_incidentrollup", plans)
    assert {kind for kind, _ in scans} == {"Index Only Scan"}, plans
    assert {index for _, index in scans} == indexes, plans


def _connect():
    settings = connection.settings_dict
    return psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432
    )


def _committing_while_blocked(blocking, statements: list[str]) -> None:
    """Run `statements` and COMMIT on a second connection in a thread; return once it waits for a
    lock that `blocking` (an open transaction) holds, then commit `blocking` and let it finish."""
    errors = []
    with _connect() as other:
        pid = other.info.backend_pid

        def run():
            try:
                with other.transaction():
                    for statement in statements:
                        other.execute(statement)
            except Exception as error:  # reported by the assertion below
                errors.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        with _connect() as observer:
            for _ in range(500):
                waiting = observer.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]
                ).fetchone()
                if waiting and waiting[0]:
                    break
                thread.join(0.01)
            else:
                pytest.fail("the second transaction never waited for the first")
        blocking.commit()
        thread.join(10)
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_transactions_committing_at_once_are_both_counted():
    dandong, sinuiju = make_place(name="Dandong", country="CN"), make_place(name="Sinuiju", country="KP")
    first = make_incident(people_count=10, places=[dandong])
    second = make_incident(people_count=20, places=[dandong])
    client = client_for(None)
    with _connect() as blocking:
        # The first transaction changes an incident and counts it (as at commit), holding its locks.
        blocking.execute("UPDATE incidents_incident SET people_count = 15 WHERE id = %s", [first.pk])
        blocking.execute("SET CONSTRAINTS incident_rollup_count IMMEDIATE")
        # Another incident of the same totals: the second waits to update the totals' row.
        _committing_while_blocked(blocking, [f"UPDATE incidents_incident SET people_count = 25 WHERE id = {second.pk}"])
    assert answer(client, "group_by=country")[0]["results"][0]["people_count"] == 40
    assert_totals_agree(client, filters=[""])
    with _connect() as blocking:
        blocking.execute("UPDATE incidents_incident SET people_count = 30 WHERE id = %s", [first.pk])
        blocking.execute("SET CONSTRAINTS incident_rollup_count IMMEDIATE")
        # The same incident, through its places: the second waits for the first to commit and
        # then counts the incident with both changes.
        _committing_while_blocked(
            blocking,
            [f"INSERT INTO incidents_incidentplace (incident_id, place_id) VALUES ({first.pk}, {sinuiju.pk})"],
        )
    by_country = {row["group"]: row["people_count"] for row in answer(client, "group_by=country")[0]["results"]}
    assert by_country == {"CN": 55, "KP": 30}
    assert_totals_agree(client, filters=["", "country=KP"])


@pytest.mark.django_db(transaction=True)
def test_a_change_in_a_repeatable_read_transaction_is_refused_not_miscounted():
    incident = make_incident(people_count=10)
    with _connect() as other:
        other.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        other.execute("UPDATE incidents_incident SET people_count = 11 WHERE id = %s", [incident.pk])
        with pytest.raises(psycopg.errors.RaiseException, match="READ COMMITTED transactions only"):
            other.commit()
    assert answer(client_for(None), "group_by=year")[0]["total"]["people_count"] == 10


def assert_place_totals_agree(user, place_ids):
    """Per place (the public pages' place facet) and with a place filter, kept totals and the
    incidents agree, for each level of the tree."""
    for place_id in [None, *place_ids]:
        for extra in ["", "type=detention", "date_from=2020-03-01"]:
            filters = QueryDict(f"{extra}&place={place_id}" if place_id else extra)
            reference = QueryDict(f"{filters.urlencode()}&{FROM_INCIDENTS}")
            kept = incident_filterset(user=user, filters=filters)
            for group_by in [PLACE, "year", "type"]:
                with CaptureQueriesContext(connection) as queries:
                    answered = incident_statistics(kept, group_by)
                assert any("incidents_incidentrollup" in query["sql"] for query in queries)
                expected = incident_statistics(incident_filterset(user=user, filters=reference), group_by)
                assert answered == expected, (place_id, extra, group_by)


def test_kept_totals_per_place_count_each_place_with_the_places_inside_it(world):
    """A place's total holds the incidents at it and inside it, once each, and follows places
    moved from one place into another (the places' trigger)."""
    dandong, tumen, sinuiju = world["places"][:3]
    china = make_place(name="China", kind="country", country="CN")
    border = make_place(name="Border provinces", kind="province", country="CN", parent=china)
    Place.objects.filter(pk__in=[dandong.pk, tumen.pk, sinuiju.pk]).update(parent=border)
    readers = [None, make_user(roles.VIEWER, confidential=True)]
    for user in readers:
        assert_place_totals_agree(user, [china.pk, border.pk, dandong.pk])
    with_border = incident_statistics(incident_filterset(user=None, filters=QueryDict("")), PLACE)
    outermost = {row["label"] for row in with_border["results"]}
    assert "China" in outermost and "Dandong" not in outermost

    Place.objects.filter(pk=border.pk).update(parent=None)
    Place.objects.filter(pk=sinuiju.pk).update(parent=None)
    for user in readers:
        assert_place_totals_agree(user, [china.pk, border.pk])
    assert not IncidentRollup.objects.filter(dimension="place", place=china).exists()


FACETS = ["type", "verification", "year", "country", "perpetrator", PLACE]
# Filters the facets' own totals answer (whole years, a country or a place), the statistics'
# totals (whole months) and only the incidents (a sample of them, which here holds them all).
FACET_FILTERS = [
    "",
    "date_from=2021-01-01&date_to=2022-12-31",
    "date_from=2020-01-01",
    "date_to=2023-12-31",
    "type=detention",
    "verification=alleged&verification=verified",
    "review_state=draft&review_state=in_review",
    "country=CN",
    "country=KP&date_from=2022-01-01&date_to=2022-12-31&type=detention",
    "date_from=2020-03-01",
    "min_people=0",
    "country=CN&min_people=0",
]


# Like FROM_INCIDENTS, but leaving merged incidents out as lists do (an incremental sync reports them).
LISTED_FROM_INCIDENTS = "min_origins=0"


def assert_facets_agree(user, filters=FACET_FILTERS, place_ids=()):
    """The facets count, group for group, what each statistic counts from the incidents, and
    they are read from the facets' totals wherever those answer."""
    place_filters = [f"place={pk}{extra}" for pk in place_ids for extra in ["", "&date_from=2021-01-01&type=detention"]]
    for served in [*filters, *place_filters]:
        with CaptureQueriesContext(connection) as queries:
            facets = facet_statistics(
                incident_filterset(user=user, filters=QueryDict(served)), FACETS, sample_size=1000
            )
        answered_by_facet_totals = "2020-03-01" not in served and "min_people" not in served
        assert answered_by_facet_totals == any("incidents_incidentfacettotal" in q["sql"] for q in queries), served
        reference = incident_filterset(user=user, filters=QueryDict(f"{served}&{LISTED_FROM_INCIDENTS}"))
        for group_by in FACETS:
            assert facets[group_by]["complete"]
            if group_by == "year":
                # The years holding an incident dated within them, each counting every incident that
                # overlaps it (what choosing the year selects), and those over more than one year.
                spans = [(start.year, end.year) for start, end in reference.qs.values_list("date_start", "date_end")]
                expected = {
                    str(year): sum(start <= year <= end for start, end in spans)
                    for year in sorted({start for start, end in spans if start == end})[-FACET_YEARS:]
                }
                if over_more_than_one := sum(start != end for start, end in spans):
                    expected[None] = over_more_than_one
                counted = {row["group"]: row["incidents"] for row in facets["year"]["results"]}
                assert counted == expected, served
                continue
            expected = [
                {"group": row["group"], "label": row["label"], "incidents": row["incidents"]}
                for row in incident_statistics(reference, group_by)["results"]
            ]
            assert facets[group_by]["results"] == expected, (served, group_by)


@pytest.fixture
def province(world):
    """Dandong and Tumen in a province of China, Sinuiju directly in North Korea's place."""
    dandong, tumen, sinuiju = world["places"][:3]
    china = make_place(name="China", kind="country", country="CN")
    korea = make_place(name="North Korea", kind="country", country="KP")
    border = make_place(name="Border provinces", kind="province", country="CN", parent=china)
    Place.objects.filter(pk__in=[dandong.pk, tumen.pk]).update(parent=border)
    Place.objects.filter(pk=sinuiju.pk).update(parent=korea)
    return {"china": china, "korea": korea, "border": border}


@pytest.mark.parametrize("reader", READERS)
def test_facets_count_as_each_statistic_does(world, province, reader):
    """For every reader: none of the facets' totals counts an incident the reader may not see."""
    place_ids = [province["china"].pk, province["border"].pk, province["korea"].pk, world["places"][0].pk]
    assert_facets_agree(READERS[reader](), place_ids=place_ids)


def test_facet_totals_follow_every_kind_of_change(world, province):
    readers = [None, READERS["confidential"]()]
    incidents = list(Incident.objects.order_by("pk"))
    places, organizations = world["places"], world["organizations"]
    changes = [
        lambda: Incident.objects.filter(pk=incidents[0].pk).update(
            date_start=date(2018, 12, 30), date_end=date(2021, 2, 2)
        ),
        lambda: Incident.objects.filter(pk=incidents[1].pk).update(incident_type=incident_type("arbitrary-detention")),
        lambda: Incident.objects.filter(review_state="draft").update(review_state="published"),
        lambda: Incident.objects.filter(pk__in=[incidents[2].pk, incidents[3].pk]).update(confidential=True),
        lambda: IncidentPlace.objects.filter(incident=incidents[5]).delete(),
        lambda: incidents[6].places.add(places[2], places[3]),
        lambda: Place.objects.filter(pk=places[1].pk).update(country="KP"),
        lambda: Place.objects.filter(pk=province["border"].pk).update(parent=province["korea"]),
        lambda: Involvement.objects.filter(incident=incidents[7]).delete(),
        lambda: Involvement.objects.create(incident=incidents[8], organization=organizations[2], role="perpetrator"),
        lambda: Involvement.objects.filter(organization=organizations[1]).update(role="receiving_state"),
        lambda: incidents[9].delete(),
    ]
    place_ids = [province["china"].pk, province["korea"].pk, province["border"].pk]
    filters = ["", "country=CN", "date_from=2019-01-01&date_to=2019-12-31"]
    for change in changes:
        change()
        for user in readers:
            assert_facets_agree(user, filters=filters, place_ids=place_ids)


def test_facet_totals_follow_a_merge_and_its_undo(world, province):
    reviewer = make_user(roles.REVIEWER)
    survivor, merged = Incident.objects.filter(review_state="published", confidential=False).order_by("pk")[:2]
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    place_ids = [province["china"].pk, province["border"].pk]
    merge = incident_merge(user=reviewer, pair=pair, survivor=survivor.public_id)
    for user in [None, reviewer]:
        assert_facets_agree(user, filters=["", "country=CN"], place_ids=place_ids)
    incident_merge_undo(user=reviewer, merge=merge)
    for user in [None, reviewer]:
        assert_facets_agree(user, filters=["", "country=CN"], place_ids=place_ids)


def test_recount_statistics_rebuilds_the_facet_totals(world, province):
    def facet_totals():
        return list(IncidentFacetTotal.objects.order_by(*FACET_KEY).values_list(*FACET_KEY, "incidents"))

    assert_facets_agree(None, filters=[""])  # which counts this test's incidents
    counted = facet_totals()
    IncidentFacetTotal.objects.filter(dimension="place").update(incidents=F("incidents") + 5)
    call_command("recount_statistics", stdout=io.StringIO())
    assert facet_totals() == counted


FACET_KEY = [field.name for field in IncidentFacetTotal._meta.fields if field.name not in ("id", "incidents")]


@pytest.mark.parametrize(
    ("reader", "query"),
    [
        ("anonymous", ""),
        ("anonymous", "country=CN&date_from=2022-01-01&date_to=2022-12-31"),
        ("viewer", "type=detention"),
        ("confidential", "place={place}"),
    ],
)
def test_facets_read_their_totals_from_one_index_alone(world, province, reader, query):
    """Each facet reads one range of the totals' unique index, and nothing else of them (the
    test tables are tiny: the plans are asked for as on a large table, as above)."""
    filters = QueryDict(query.format(place=province["border"].pk))
    with CaptureQueriesContext(connection) as queries:
        facet_statistics(incident_filterset(user=READERS[reader](), filters=filters), FACETS, sample_size=1000)
    plans = ""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        for captured in queries:
            if "incidents_incidentfacettotal" in captured["sql"]:
                cursor.execute(f"EXPLAIN {captured['sql']}")
                plans += "\n".join(row[0] for row in cursor.fetchall())
    scans = re.findall(r"(\w[\w ]*Scan)(?: using (\w+))? on incidents_incidentfacettotal", plans)
    # Type and verification together, year, country, place, perpetrator.
    assert len(scans) == 5, plans
    assert set(scans) == {("Index Only Scan", "incident_facet_total")}, plans


@pytest.fixture
def left_out_words(world, province):
    """Words a search may leave out, in messy places: a second place named Dandong, in another
    country, a second perpetrator with the word in its name, the word in a confidential claim's
    excerpt about an incident elsewhere with no figures, and "whispered" only in confidential claims."""
    incidents = list(Incident.objects.order_by("pk"))
    other_dandong = make_place(name="Dandong", country="KP", parent=province["korea"])
    for incident in incidents[:3]:
        IncidentPlace.objects.create(incident=incident, place=other_dandong)
    border_police = make_organization(name="Dandong border police")
    for incident in incidents[2:6]:
        Involvement.objects.create(incident=incident, organization=border_police, role="perpetrator")
    elsewhere = make_incident(
        places=[world["places"][3]], people_count=None, review_state="published", date_start=date(2021, 4, 2)
    )
    make_claim(incident=elsewhere, excerpt="Seen leaving Dandong at night", confidential=True)
    for incident in incidents[10:13]:
        make_claim(incident=incident, excerpt="whispered in Dandong", confidential=True)
    return {"places": [province["china"], province["border"], province["korea"], other_dandong]}


LEAVING_OUT = ["q=-dandong", "q=-dandong -whispered"]
LEFT_OUT_READERS = {
    "anonymous": lambda: None,
    "reviewer": lambda: make_user(roles.REVIEWER),
    "confidential": lambda: make_user(roles.REVIEWER, confidential=True),
}


def asked(user, client, group_by: str, filters: str) -> tuple[dict, bool]:
    """`answer`, through the API, or for the place grouping (which only the public pages' facet
    offers) from `incident_statistics`."""
    if group_by != PLACE:
        return answer(client, f"group_by={group_by}&{filters}")
    with CaptureQueriesContext(connection) as queries:
        statistic = incident_statistics(incident_filterset(user=user, filters=QueryDict(filters)), PLACE)
    return statistic, any("incidents_incidentrollup" in query["sql"] for query in queries)


@pytest.mark.parametrize("reader", LEFT_OUT_READERS)
def test_leaving_out_a_rare_word_takes_its_few_incidents_from_the_kept_totals(
    world, left_out_words, reader, monkeypatch
):
    """For every reader and grouping: the kept totals less the few incidents that have the word
    answer as counting every incident without it does, and only those few are counted."""
    user = LEFT_OUT_READERS[reader]()
    client = client_for(user)
    border = left_out_words["places"][1].pk
    counted = []

    def counting_incident_sums(incidents, *args, **kwargs):
        counted.append(incidents.count())
        return incident_sums(incidents, *args, **kwargs)

    incident_sums = statistics._incident_sums
    for group_by in [*GROUPINGS, "verification", PLACE]:
        served = ["", "type=detention&date_from=2020-03-01", "review_state=published&verification=alleged"]
        served.append(f"place={border}" if group_by in ("year", "type", PLACE) else "country=CN")
        for filters in served:
            everything, _ = asked(user, client, group_by, filters)
            for leaving_out in LEAVING_OUT:
                query = f"{filters}&{leaving_out}"
                counted.clear()
                with monkeypatch.context() as patched:
                    patched.setattr(statistics, "_incident_sums", counting_incident_sums)
                    subtracted, from_totals = asked(user, client, group_by, query)
                assert from_totals, (group_by, query)
                # The incidents counted are those the search leaves out, none else.
                left_out = everything["total"]["incidents"] - subtracted["total"]["incidents"]
                assert counted == [left_out], (group_by, query)
                with monkeypatch.context() as patched:
                    patched.setattr(statistics, "SUBTRACT_BELOW", 0)
                    reference, reference_from_totals = asked(user, client, group_by, query)
                assert not reference_from_totals, (group_by, query)
                assert subtracted == reference, (group_by, query)
