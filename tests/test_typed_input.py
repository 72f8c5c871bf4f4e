"""Dates and counts as analysts type them, read alike at every door: the admin, the API, the CSV
import and the filters. Django's and DRF's readers took what the import refuses, and read some of
it otherwise than meant: "1.000" (a thousand, where a dot groups digits) as 1 person, an ISO week
("2023-W41") as its Monday."""

import pytest
from django.urls import reverse

from incidents import roles
from incidents.models import Claim, Incident
from tests.api_support import API, client_for, incident_url
from tests.factories import make_incident, make_source, make_user
from tests.form_support import saved_unchanged
from tests.test_api_write import new_incident_body
from tests.test_import import HEADER, import_errors


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


class TestCounts:
    def test_the_admin_refuses_a_thousand_written_with_a_dot(self, client, analyst):
        incident = make_incident(review_state="draft", people_count=40, count_qualifier="exact")
        client.force_login(analyst)

        page = saved_unchanged(
            client,
            reverse("admin:incidents_incident_change", args=[incident.pk]),
            "incident_form",
            people_count="1.000",
        )

        assert page.status_code == 200
        assert "Write 1.000 without separators: 1000." in page.content.decode()
        incident.refresh_from_db()
        assert incident.people_count == 40

    @pytest.mark.parametrize(
        ("written", "message"),
        [
            ("2.000", "Write 2.000 without separators: 2000."),
            ("1,200", "Write 1,200 without separators: 1200."),
            ("500.0", "Enter a whole number in the digits 0-9 alone, not 500.0."),
            ("\uff15\uff10\uff10", "Enter a whole number in the digits 0-9 alone, not \uff15\uff10\uff10."),
        ],
    )
    def test_the_api_refuses_a_count_it_would_misread_naming_the_field(self, analyst, written, message):
        client = client_for(analyst)

        incident = client.post(f"{API}/incidents/", new_incident_body(people_count=written), format="json")
        body = new_incident_body(claims=[{"source": make_source().pk, "people_count_min": written}])
        claim = client.post(f"{API}/incidents/", body, format="json")

        assert (incident.status_code, incident.json()) == (400, {"people_count": [message]})
        assert (claim.status_code, claim.json()) == (400, {"claims[0].people_count_min": [message]})
        assert not Incident.objects.exists() and not Claim.objects.exists()

    def test_the_api_reads_a_count_as_a_number_or_as_digits(self, analyst):
        client = client_for(analyst)
        for written in (2000, "2000", " 2000 "):
            answer = client.post(f"{API}/incidents/", new_incident_body(people_count=written), format="json")
            assert answer.status_code == 201, answer.content
            assert answer.json()["people_count"] == 2000

    def test_a_filter_refuses_a_thousand_written_with_a_dot(self, analyst):
        make_incident(people_count=40, count_qualifier="exact")

        answer = client_for(analyst).get(f"{API}/incidents/", {"min_people": "1.000"})

        assert (answer.status_code, answer.json()) == (400, {"min_people": ["Write 1.000 without separators: 1000."]})


class TestDates:
    @pytest.mark.parametrize("written", ["2023-W41", "2023-W41-7", "20231009", "\uff12\uff10\uff12\uff13-10-09"])
    def test_the_api_refuses_a_date_not_written_yyyy_mm_dd_as_the_admin_does(self, analyst, written):
        incident = make_incident(review_state="draft")
        client = client_for(analyst)

        created = client.post(f"{API}/incidents/", new_incident_body(date_end=written), format="json")
        changed = client.patch(incident_url(incident), {"date_start": written, "version": 1}, format="json")

        message = ["Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023."]
        assert (created.status_code, created.json()) == (400, {"date_end": message})
        assert (changed.status_code, changed.json()) == (400, {"date_start": message})

    def test_the_import_refuses_an_iso_week(self, analyst, tmp_path):
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},date_precision\nX,forced-repatriation,2023-10-09,2023-W41,week\n"
        )

        assert "line 2, column date_end: '2023-W41' is not a date; write it as YYYY-MM-DD." in errors

    def test_the_admin_and_the_filters_refuse_digits_other_than_0_9(self, client, analyst):
        # Python's strptime reads full-width digits: the admin's forms and every date filter took
        # what the API's writes refuse.
        written = "\uff12\uff10\uff12\uff13-08-29"
        incident = make_incident(review_state="draft")
        client.force_login(analyst)
        url = reverse("admin:incidents_incident_change", args=[incident.pk])

        page = saved_unchanged(client, url, "incident_form", date_start=written)
        listed = client_for(analyst).get(f"{API}/incidents/", {"date_from": written})

        assert page.status_code == 200 and "Enter the date as YYYY-MM-DD" in page.content.decode()
        message = ["Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023."]
        assert (listed.status_code, listed.json()) == (400, {"date_from": message})

    def test_the_api_reads_a_date_with_spaces_around_it(self, analyst):
        body = new_incident_body(date_start=" 2023-09-18 ")
        answer = client_for(analyst).post(f"{API}/incidents/", body, format="json")
        assert answer.status_code == 201, answer.content
        assert answer.json()["date_start"] == "2023-09-18"
