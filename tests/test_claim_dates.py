"""Each source's claim keeps its own date with its precision: a source's "in July 2021" and another's
"14 July 2021" are told apart, and "since March 2020" or "before 9 October 2023" is one end alone.
The database holds the rule, every door refuses other dates naming the field, and the label says
the date as the source did: in the API, the admin, the public page (in the reader's language), the
release and the history. A confidential claim's date stays as hidden as the claim."""

import csv
import importlib
import io
import logging
from datetime import date

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import translation

from incidents import roles
from incidents.models import Claim, Incident, date_precision_from_dates
from incidents.templatetags.public_pages import dates
from tests.api_support import API, client_for, incident_url
from tests.database_support import migrate_incidents_back_to
from tests.factories import incident_type, make_claim, make_incident, make_source, make_user
from tests.test_admin import incident_post
from tests.test_import import export, rows, run_import, write_csv

# (start, end, precision, the label every door shows)
LABELS = [
    (date(2021, 7, 14), date(2021, 7, 14), "day", "14 July 2021"),
    (date(2021, 7, 1), date(2021, 7, 31), "month", "July 2021"),
    (date(2021, 7, 1), date(2021, 9, 30), "month", "July 2021 – September 2021"),
    (date(2021, 1, 1), date(2021, 12, 31), "year", "2021"),
    (date(2023, 10, 2), date(2023, 10, 8), "week", "Week of 2 October 2023 – 8 October 2023"),
    (date(2023, 10, 2), date(2023, 10, 9), "range", "2 October 2023 – 9 October 2023"),
    (date(2018, 1, 1), date(2022, 12, 31), "unknown", "Date unknown (2018 – 2022)"),
    # One end alone: "since" a start, "before" the day, month or year after an end.
    (date(2021, 7, 14), None, "day", "Since 14 July 2021"),
    (date(2020, 3, 1), None, "month", "Since March 2020"),
    (date(2020, 1, 1), None, "year", "Since 2020"),
    (None, date(2023, 10, 8), "day", "Before 9 October 2023"),
    (None, date(2023, 9, 30), "month", "Before October 2023"),
    (None, date(2022, 12, 31), "year", "Before 2023"),
    (None, None, "unknown", ""),
]


class TestTheModel:
    @pytest.mark.parametrize(("start", "end", "precision", "label"), LABELS)
    def test_the_label_says_the_date_as_the_source_did_and_the_pages_say_the_same(self, start, end, precision, label):
        claim = make_claim(incident=make_incident(), date_start=start, date_end=end, date_precision=precision)

        stored = Claim.objects.get(pk=claim.pk)
        assert stored.date_label == label
        with translation.override("en"):
            assert dates(stored) == label

    @pytest.mark.parametrize(
        ("start", "end", "precision"),
        [
            (date(2021, 7, 1), date(2021, 7, 15), "month"),  # an incident's rule, for both ends
            (date(2020, 3, 5), None, "month"),  # a Month starts on a 1st
            (None, date(2023, 10, 8), "month"),  # and ends on a month's last day
            (date(2020, 3, 1), None, "year"),  # a Year on 1 January
            (None, date(2023, 10, 8), "range"),  # a Range, a Week, an unknown date have two ends
            (date(2021, 7, 14), None, "week"),
            (date(2021, 7, 14), None, "unknown"),
            (None, None, "day"),  # no date is an unknown one
            (None, date.max, "day"),  # no day after it to be before
            (date(2021, 7, 14), date(2021, 7, 14), ""),  # a blank is read before it is written
        ],
    )
    def test_the_database_refuses_dates_their_precision_does_not_say(self, start, end, precision):
        claim = make_claim(incident=make_incident())

        with pytest.raises(IntegrityError, match="claim_date"), transaction.atomic():
            Claim.objects.filter(pk=claim.pk).update(date_start=start, date_end=end, date_precision=precision)

    @pytest.mark.parametrize(
        ("start", "end", "precision"),
        [
            (None, None, "unknown"),
            (date(2021, 7, 14), date(2021, 7, 14), "day"),
            (date(2021, 7, 14), None, "day"),
            (None, date(2023, 10, 8), "day"),
            (date(2021, 7, 1), date(2021, 7, 31), "month"),
            (date(2021, 7, 1), date(2021, 9, 30), "month"),
            (date(2020, 1, 1), date(2021, 12, 31), "year"),
            (date(2021, 7, 1), date(2021, 7, 7), "range"),  # seven days are not told from a Range
            # The last day Python dates reach has no day after it: reading it so was an OverflowError.
            (date(2020, 3, 1), date(9999, 12, 31), "month"),
        ],
    )
    def test_a_precision_left_out_is_read_from_the_dates(self, start, end, precision):
        incident = make_incident()
        saved = make_claim(incident=incident, date_start=start, date_end=end)
        (bulk,) = Claim.objects.bulk_create([Claim(incident=incident, source=make_source(), date_start=start)])

        assert date_precision_from_dates(start, end) == precision
        assert Claim.objects.get(pk=saved.pk).date_precision == precision
        assert bulk.date_precision == date_precision_from_dates(start, None)

    def test_a_precision_given_is_kept(self):
        claim = make_claim(
            incident=make_incident(), date_start=date(2023, 10, 2), date_end=date(2023, 10, 8), date_precision="week"
        )

        assert Claim.objects.get(pk=claim.pk).date_precision == "week"


def incident_body(**fields) -> dict:
    return {
        "title": "Repatriation of 40 from Tumen",
        "incident_type": incident_type().slug,
        "date_start": "2021-07-01",
        "date_end": "2021-07-31",
        "date_precision": "month",
        **fields,
    }


class TestTheApi:
    def test_claims_are_written_and_read_with_their_precision_and_label(self, reviewer):
        sources = [make_source(title=title) for title in ("HRW", "Daily NK", "RFA")]
        body = incident_body(
            claims=[
                {"source": sources[0].pk, "date_start": "2020-03-01", "date_precision": "month"},
                {"source": sources[1].pk, "date_end": "2023-10-08"},
                {"source": sources[2].pk, "date_start": "2021-07-01", "date_end": "2021-07-31"},
            ]
        )

        answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 201, answer.content
        said = [(claim["date_precision"], claim["date_label"]) for claim in answer.json()["claims"]]
        assert said == [("month", "Since March 2020"), ("day", "Before 9 October 2023"), ("month", "July 2021")]
        # The list says the same as the detail, built by PostgreSQL (incidents.api.projections).
        listed = client_for(reviewer).get(f"{API}/incidents/").json()["results"]
        assert [(claim["date_precision"], claim["date_label"]) for claim in listed[0]["claims"]] == said

    @pytest.mark.parametrize(
        ("claim", "field", "message"),
        [
            (
                {"date_start": "2020-03-05", "date_precision": "month"},
                "claims[0].date_precision",
                "A Month is whole months, from a month's first day to a month's last: from 2020-03-05 on is not. "
                "Give 2020-03-01, or choose Day for “since 5 March 2020”.",
            ),
            (
                {"date_end": "2023-10-08", "date_precision": "range"},
                "claims[0].date_precision",
                "A Range lies between two dates: give the start date too, or choose Day, Month or Year for a "
                "source that gives one end alone (“since March 2020”: Month, from 2020-03-01, no end; “before 9 "
                "October 2023”: Day, no start, to 2023-10-08).",
            ),
            (
                {"date_precision": "day"},
                "claims[0].date_precision",
                "A claim without dates has an unknown date: choose Unknown, or give the dates the source gives.",
            ),
            ({"date_precision": "sometime"}, "claims[0].date_precision", '"sometime" is not a valid choice.'),
            (
                {"date_end": "9999-12-31"},
                "claims[0].date_end",
                "An end alone says the source's “before” the day after it, and 9999-12-31 has none: give an "
                "earlier end, or a start too.",
            ),
        ],
    )
    def test_dates_their_precision_does_not_say_are_refused_naming_the_field(self, reviewer, claim, field, message):
        body = incident_body(claims=[{"source": make_source().pk, **claim}])

        answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 400
        assert answer.json()[field] == [message]
        assert not Incident.objects.exists()

    def test_claims_with_one_end_or_none_are_checked_without_a_database_error(self, reviewer, caplog):
        # Django checks the claim's constraint itself before saving; a database error there is
        # logged and lets the whole constraint pass unchecked.
        sources = [make_source(title=title) for title in ("HRW", "Daily NK", "RFA")]
        body = incident_body(
            claims=[
                {"source": sources[0].pk, "date_start": "2020-03-01", "date_precision": "month"},
                {"source": sources[1].pk, "date_end": "2023-09-30", "date_precision": "month"},
                {"source": sources[2].pk},
            ]
        )

        with caplog.at_level(logging.WARNING, logger="django.db.models"):
            answer = client_for(reviewer).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 201, answer.content
        assert [claim["date_label"] for claim in answer.json()["claims"]] == [
            "Since March 2020",
            "Before October 2023",
            "",
        ]
        assert [record.getMessage() for record in caplog.records if record.name.startswith("django.db")] == []

    def test_a_claim_sent_back_without_its_precision_keeps_it(self, reviewer):
        incident = make_incident(review_state="draft")
        claim = make_claim(incident=incident, date_start=date(2020, 3, 1), date_precision="month")
        sent = {"id": claim.pk, "source": claim.source_id, "excerpt": "detained since March 2020"}

        answer = client_for(reviewer).patch(incident_url(incident), {"claims": [sent], "version": 1}, format="json")

        assert answer.status_code == 200, answer.content
        assert answer.json()["claims"][0]["date_label"] == "Since March 2020"
        # Dates it no longer fits are refused, naming it.
        sent["date_start"] = "2020-03-14"
        answer = client_for(reviewer).patch(incident_url(incident), {"claims": [sent], "version": 2}, format="json")
        assert answer.status_code == 400 and "claims[0].date_precision" in answer.json()

    def test_an_analysts_proposal_shows_the_precision_accepting_writes(self):
        incident = make_incident()
        analyst = make_user(roles.ANALYST)
        claims = [{"source": make_source().pk, "date_start": "2021-07-01", "date_end": "2021-07-31"}]

        answer = client_for(analyst).patch(incident_url(incident), {"claims": claims, "version": 1}, format="json")

        assert answer.status_code == 202, answer.content
        assert answer.json()["changes"]["claims"][0]["date_precision"] == "month"

    def test_a_confidential_claims_date_is_as_hidden_as_the_claim(self, reviewer):
        incident = make_incident()
        make_claim(incident=incident, date_start=date(1999, 1, 1), date_precision="year", confidential=True)
        insider = make_user(roles.REVIEWER, confidential=True)

        for reader in (None, reviewer):
            for address in (incident_url(incident), f"{API}/incidents/", incident_url(incident, "history/")):
                assert "1999" not in client_for(reader).get(address).content.decode()
        assert "Since 1999" in client_for(insider).get(incident_url(incident)).content.decode()
        for page in (f"/incidents/{incident.public_id}/", f"/ko/incidents/{incident.public_id}/"):
            assert "1999" not in Client().get(page).content.decode()


class TestTheAdmin:
    def test_the_claim_offers_its_precision_before_its_dates_read_from_them_unless_chosen(self, client, reviewer):
        client.force_login(reviewer)

        page = client.get(reverse("admin:incidents_incident_add")).content.decode()

        precision = page.index('name="claims-0-date_precision"')
        assert precision < page.index('name="claims-0-date_start"') < page.index('name="claims-0-date_end"')
        assert '<option value="" selected>From the dates</option>' in page[precision:]
        # The same calendar widget as the incident's dates.
        assert 'name="claims-0-date_start" class="vDateField"' in page

    def test_a_source_saying_since_march_2020_is_entered_and_shown_so(self, client, reviewer):
        client.force_login(reviewer)
        claim = {"source": make_source().pk, "date_start": "2020-03-01", "date_precision": "month"}

        answer = client.post(reverse("admin:incidents_incident_add"), incident_post(claims=[claim]))

        assert answer.status_code == 302
        (claim,) = Claim.objects.all()
        assert (claim.date_start, claim.date_end, claim.date_label) == (date(2020, 3, 1), None, "Since March 2020")
        page = client.get(reverse("admin:incidents_incident_change", args=[claim.incident_id])).content.decode()
        assert "Since March 2020" in page

    def test_dates_their_precision_does_not_say_are_refused_on_the_claims_row(self, client, reviewer):
        client.force_login(reviewer)
        claim = {"source": make_source().pk, "date_end": "2023-10-09", "date_precision": "month"}

        answer = client.post(reverse("admin:incidents_incident_add"), incident_post(claims=[claim]))

        assert answer.status_code == 200
        (claim_errors,) = [errors for errors in answer.context["inline_admin_formsets"][2].formset.errors if errors]
        assert claim_errors["date_precision"] == [
            "A Month is whole months, from a month's first day to a month's last: up to 2023-10-09 is not. Give "
            "2023-10-31, or choose Day for “before 10 October 2023”."
        ]
        assert not Incident.objects.exists()


class TestThePublicPage:
    def test_each_source_says_its_date_as_worded_in_the_readers_language(self):
        incident = make_incident()
        make_claim(incident=incident, date_start=date(2020, 3, 1), date_precision="month")
        make_claim(incident=incident, date_end=date(2023, 10, 8), date_precision="day")
        make_claim(incident=incident, date_start=date(2021, 7, 1), date_end=date(2021, 7, 31))

        english = Client().get(f"/incidents/{incident.public_id}/").content.decode()
        korean = Client().get(f"/ko/incidents/{incident.public_id}/").content.decode()

        assert all(said in english for said in ("Since March 2020", "Before 9 October 2023", "July 2021"))
        assert all(said in korean for said in ("2020년 3월부터", "2023년 10월 9일 이전", "2021년 7월"))


def test_the_release_gives_each_claims_precision_and_label(reviewer):
    incident = make_incident()
    make_claim(incident=incident, date_end=date(2023, 10, 8), date_precision="day")
    make_claim(incident=incident, date_start=date(2021, 7, 1), date_end=date(2021, 7, 31))

    call_command("release", user=reviewer.username, stdout=io.StringIO())
    (listed,) = client_for().get(f"{API}/releases/").json()["results"]
    (claims,) = [release_file for release_file in listed["files"] if release_file["name"] == "claims.csv"]
    content = b"".join(client_for().get(claims["url"]).streaming_content).decode()

    assert [
        (row["date_start"], row["date_end"], row["date_precision"], row["date_label"])
        for row in csv.DictReader(io.StringIO(content))
    ] == [("", "2023-10-08", "day", "Before 9 October 2023"), ("2021-07-01", "2021-07-31", "month", "July 2021")]


def test_the_history_shows_a_claims_precision_changed(reviewer):
    incident = make_incident(review_state="draft")
    claim = make_claim(incident=incident, date_start=date(2020, 3, 1), date_end=date(2020, 3, 1))
    sent = {"id": claim.pk, "source": claim.source_id, "date_end": None, "date_precision": "month"}
    answer = client_for(reviewer).patch(incident_url(incident), {"claims": [sent], "version": 1}, format="json")
    assert answer.status_code == 200, answer.content

    events = client_for(reviewer).get(incident_url(incident, "history/")).json()["results"]

    (change,) = [event for event in events if event["action"] == "update" and "date_precision" in event["changes"]]
    assert change["changes"]["date_precision"] == ["day", "month"]
    assert change["changes"]["date_label"] == ["1 March 2020", "Since March 2020"]


def test_an_import_keeps_each_claims_date_and_precision(reviewer, tmp_path):
    # The CSV names each incident's sources, not their claims' dates: a row that keeps a source
    # keeps its claim as it is, date and precision included, and a source added, or named by a new
    # incident's row, becomes a claim without a date.
    incident = make_incident(review_state="draft")
    kept = make_claim(incident=incident, date_end=date(2023, 10, 8), date_precision="day")
    added = make_source(title="Newly cited")
    (row,) = rows(export(reviewer, tmp_path))
    row["sources"] += f"; {added.title} [#{added.pk}]"
    new_row = {**row, "public_id": "", "version": "", "title": "Created alongside"}

    run_import(reviewer, tmp_path, write_csv([row, new_row]))

    said = {
        (claim.incident.title, claim.source_id): (claim.date_precision, claim.date_label)
        for claim in Claim.objects.select_related("incident")
    }
    assert said == {
        (incident.title, kept.source_id): ("day", "Before 9 October 2023"),
        (incident.title, added.pk): ("unknown", ""),
        ("Created alongside", kept.source_id): ("unknown", ""),
        ("Created alongside", added.pk): ("unknown", ""),
    }


# The migration that gives claims their precision, and the one before it.
CLAIM_PRECISIONS = importlib.import_module("incidents.migrations.0075_claim_date_precision").Migration
BEFORE_CLAIM_PRECISIONS = CLAIM_PRECISIONS.dependencies[0][1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_each_claim_the_precision_its_dates_say_recorded_in_history():
    with_claims, without_claims = make_incident(), make_incident()
    cases = {
        (date(2021, 7, 14), date(2021, 7, 14)): ("day", "14 July 2021"),
        (date(2021, 7, 1), date(2021, 7, 31)): ("month", "July 2021"),
        (date(2021, 1, 1), date(2022, 12, 31)): ("year", "2021 – 2022"),
        (date(2021, 7, 1), date(2021, 7, 15)): ("range", "1 July 2021 – 15 July 2021"),
        (date(2020, 3, 5), None): ("day", "Since 5 March 2020"),
        (None, date(2023, 10, 8)): ("day", "Before 9 October 2023"),
        (None, None): ("unknown", ""),
    }
    claims = {dates: make_claim(incident=with_claims) for dates in cases}
    migrate_incidents_back_to(BEFORE_CLAIM_PRECISIONS)
    try:
        for (start, end), claim in claims.items():
            Claim.objects.filter(pk=claim.pk).update(date_start=start, date_end=end)
    finally:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())

    read = {
        dates: Claim.objects.values_list("date_precision", "date_label").get(pk=claim.pk)
        for dates, claim in claims.items()
    }
    assert read == cases
    assert all(date_precision_from_dates(*dates) == precision for dates, (precision, _) in cases.items())
    # A new version of the incident with claims, so that syncs read it again; the change is in the
    # claims' history, by no user.
    assert dict(Incident.objects.values_list("pk", "version")) == {with_claims.pk: 2, without_claims.pk: 1}
    events = apps.get_model("incidents", "ClaimEvent").objects.filter(pgh_obj_id=claims[(None, date(2023, 10, 8))].pk)
    last = events.order_by("pgh_id").last()
    assert (last.pgh_label, last.pgh_context_id, last.date_precision, last.date_label) == (
        "update",
        None,
        "day",
        "Before 9 October 2023",
    )
    incident_events = apps.get_model("incidents", "IncidentEvent").objects.filter(pgh_obj=with_claims)
    assert incident_events.order_by("pgh_id").last().version == 2
