"""The analysts' admin through the Django test client: data entry, confidentiality, review workflow,
history, lost-update protection, duplicate warnings and the changelist's cost."""

import html
import json
import re
from datetime import date

import pghistory
import pytest
from axes.models import AccessAttempt
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.db import ProgrammingError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pghistory.models import Events

from incidents import roles, services
from incidents.admin.base import EstimatedCountPaginator
from incidents.models import (
    PLACE_NOWHERE_MESSAGE,
    SEARCHED_TEXT_MAX_LENGTH,
    Claim,
    DuplicatePair,
    Incident,
    Involvement,
    Organization,
    Place,
    Response,
    Source,
    VictimGroup,
)
from incidents.search import IncidentSearch
from tests.api_support import API, client_for
from tests.differential import comparable
from tests.factories import (
    densest_words,
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
    pasted_report,
    two_tumens,
    type_chain,
)
from tests.form_support import form_fields, saved_unchanged
from tests.test_csv_round_trip import history_row_count

CHANGELIST = reverse("admin:incidents_incident_changelist")
ADD = reverse("admin:incidents_incident_add")


def change_url(incident):
    return reverse("admin:incidents_incident_change", args=[incident.pk])


def history_url(obj):
    return reverse(f"admin:incidents_{obj._meta.model_name}_history", args=[obj.pk])


def logged_in(client, user):
    client.force_login(user)
    return client


def management_form(prefix: str, total: int, initial: int = 0) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def incident_post(*, incident=None, claims=(), places=(), **fields) -> dict:
    """The POST an analyst's browser sends from the incident page: the incident's fields, its
    places, and one claim form per entry of `claims` (existing claims carry their id)."""
    data = {
        "title": "80 North Koreans forcibly repatriated from China",
        "incident_type": str(incident_type().pk),
        "description": "",
        "date_start": "2023-08-29",
        "date_end": "2023-08-29",
        "date_precision": "day",
        "people_count": "80",
        "people_count_min": "",
        "people_count_max": "",
        "count_qualifier": "exact",
        "place_list": [str(place.pk) for place in places],
        **management_form("victim_groups", 0),
        **management_form("involvements", 0),
    }
    if incident is not None:
        data["expected_version"] = str(incident.version)
    existing = [claim for claim in claims if isinstance(claim, Claim)]
    data.update(management_form("claims", len(claims), initial=len(existing)))
    for index, claim in enumerate(claims):
        prefix = f"claims-{index}-"
        if isinstance(claim, Claim):
            claim = {
                "id": claim.pk,
                "source": claim.source_id,
                "people_count": claim.people_count,
                "count_qualifier": claim.count_qualifier,
                "source_connection": claim.source_connection,
                "date_start": claim.date_start or "",
                "date_end": claim.date_end or "",
                "date_precision": claim.date_precision,
            }
        data.update(
            {
                f"{prefix}id": str(claim.get("id", "")),
                f"{prefix}incident": str(incident.pk) if incident else "",
                f"{prefix}source": str(claim["source"]),
                f"{prefix}source_connection": claim.get("source_connection", "third_party"),
                f"{prefix}people_count": str(claim.get("people_count", "")),
                f"{prefix}people_count_min": "",
                f"{prefix}people_count_max": "",
                # Exact only with its figure: an exact count is one figure.
                f"{prefix}count_qualifier": claim.get(
                    "count_qualifier", "unknown" if claim.get("people_count") is None else "exact"
                ),
                f"{prefix}date_precision": claim.get("date_precision", ""),
                f"{prefix}date_start": str(claim.get("date_start", "")),
                f"{prefix}date_end": str(claim.get("date_end", "")),
                f"{prefix}excerpt": claim.get("excerpt", ""),
                f"{prefix}locator": "",
            }
        )
        if claim.get("confidential"):
            data[f"{prefix}confidential"] = "on"
    data.update(fields)
    return data


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


@pytest.fixture
def viewer():
    return make_user(roles.VIEWER)


@pytest.fixture
def confidential_reviewer():
    return make_user(roles.REVIEWER, confidential=True)


class TestDataEntry:
    def test_analyst_enters_an_incident_with_its_place_and_claim_in_one_save(self, client, analyst):
        place, source = make_place(name="Dandong", country="CN"), make_source(title="RFA report")
        post = incident_post(
            places=[place], claims=[{"source": source.pk, "people_count": 80, "excerpt": "80 were sent back"}]
        )

        response = logged_in(client, analyst).post(ADD, post)

        assert response.status_code == 302, response.context["adminform"].form.errors
        incident = Incident.objects.get()
        assert incident.title == "80 North Koreans forcibly repatriated from China"
        assert incident.people_count == 80
        assert list(incident.places.all()) == [place]
        assert incident.claims.get().excerpt == "80 were sent back"
        assert incident.created_by == analyst and incident.review_state == "draft"

    def test_the_page_groups_fields_the_way_analysts_think(self, client, analyst):
        page = logged_in(client, analyst).get(ADD).content.decode()

        headings = [" ".join(heading.split()) for heading in re.findall(r"<h2[^>]*>(.*?)</h2>", page, re.DOTALL)]
        assert headings == [
            "What",
            "When",
            "How many",
            "Where",
            "Who: the people it happened to",
            "Who: organizations involved",
            "Evidence: what each source says",
            "Review",
        ]

    def test_a_claims_source_connection_says_what_it_means(self, client, analyst):
        page = logged_in(client, analyst).get(ADD).content.decode()

        assert 'id="id_claims-0-source_connection_helptext"' in page
        assert "How the source knows: as a victim or a witness" in page

    def test_validation_errors_name_the_field_and_the_problem(self, client, analyst):
        post = incident_post(date_end="2023-08-01", people_count="50", people_count_min="60")

        response = logged_in(client, analyst).post(ADD, post)

        errors = response.context["adminform"].form.errors
        assert "is before the start date" in errors["date_end"][0]
        assert "below the minimum" in errors["people_count"][0]
        assert not Incident.objects.exists()

    def test_a_date_that_reads_either_day_or_month_first_is_refused_with_how_to_write_it(self, client, analyst):
        # "09/10/2023", typed for 9 October, was saved as 10 September without a word.
        source = make_source()
        post = incident_post(date_start="09/10/2023", date_end="09/10/2023", claims=[{"source": source.pk}])
        post["claims-0-date_start"] = "10/09/2023"

        response = logged_in(client, analyst).post(ADD, post)

        written_so = ["Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023."]
        assert response.context["adminform"].form.errors["date_start"] == written_so
        assert response.context["inline_admin_formsets"][2].formset.errors[0]["date_start"] == written_so
        assert not Incident.objects.exists()

        post.update(date_start="9 October 2023", date_end="2023-10-09", **{"claims-0-date_start": "Oct 9, 2023"})
        assert logged_in(client, analyst).post(ADD, post).status_code == 302
        assert Incident.objects.get().date_start == Claim.objects.get().date_start == date(2023, 10, 9)

    @pytest.mark.parametrize("field", ["description", "claims-0-excerpt"])
    def test_a_whole_report_pasted_in_is_refused_on_its_field_and_kept_on_the_page(self, client, analyst, field):
        # Its words overflowed the search's tsvector: a 500 page, and everything typed was lost.
        text = pasted_report(960_000)
        post = incident_post(title="Repatriations reported at length", claims=[{"source": make_source().pk}])
        post[field] = text

        response = logged_in(client, analyst).post(ADD, post)

        assert response.status_code == 200
        too_long = [f"Ensure this value has at most {SEARCHED_TEXT_MAX_LENGTH} characters (it has 960000)."]
        if field == "description":
            assert response.context["adminform"].form.errors["description"] == too_long
        else:
            assert response.context["inline_admin_formsets"][2].formset.errors[0]["excerpt"] == too_long
        page = response.content.decode()
        assert html.escape(text) in page and "Repatriations reported at length" in page
        assert not Incident.objects.exists()

    @pytest.mark.parametrize("confidential", [False, True], ids=["public", "confidential"])
    def test_texts_at_the_bound_are_saved_and_searched_whatever_their_words(
        self, client, confidential_reviewer, confidential
    ):
        # Every word new and of two 4-byte characters: the most of the search's 1 MB a text can take.
        # Each fits alone; together, the incident's words (or its words with its confidential
        # claims') overflowed the tsvector (a 500), and the search keeps the words of their start.
        description, excerpt = densest_words(SEARCHED_TEXT_MAX_LENGTH), densest_words(SEARCHED_TEXT_MAX_LENGTH, seed=8)
        post = incident_post(
            title="Repatriations reported at length",
            description=description,
            claims=[{"source": make_source(title="Daily NK").pk, "excerpt": excerpt, "confidential": confidential}],
        )

        response = logged_in(client, confidential_reviewer).post(ADD, post)

        assert response.status_code == 302
        claim = Claim.objects.get()
        assert (claim.incident.description, claim.excerpt, claim.confidential) == (description, excerpt, confidential)
        for words in ("Repatriations", description[:2]):
            assert client_for(confidential_reviewer).get(f"{API}/incidents/", {"q": words}).json()["results"], words

    def test_a_day_not_in_the_calendar_is_told_why_on_the_incident_and_its_claims(self, client, analyst):
        # "2023-02-30" was told "Enter the date as YYYY-MM-DD", the format it was written in.
        post = incident_post(
            date_start="2023-02-30",
            date_end="2023-13-01",
            date_precision="range",
            claims=[{"source": make_source().pk}],
        )
        post["claims-0-date_start"] = "2024-02-30"

        response = logged_in(client, analyst).post(ADD, post)

        errors = response.context["adminform"].form.errors
        assert errors["date_start"] == ["2023-02-30 is not a day: February 2023 has 28 days."]
        assert errors["date_end"] == ["2023-13-01 is not a day: a year has 12 months."]
        claim_errors = response.context["inline_admin_formsets"][2].formset.errors[0]
        assert claim_errors["date_start"] == ["2024-02-30 is not a day: February 2024 has 29 days."]
        assert not Incident.objects.exists()

    def test_every_door_s_date_filter_says_why_a_day_is_not_in_the_calendar(self, client, analyst):
        said = {"date_from": ["2023-02-29 is not a day: February 2023 has 28 days."]}
        api = client_for(analyst)
        for address in (f"{API}/incidents/", f"{API}/incidents.csv", f"{API}/duplicates/"):
            response = api.get(address, {"date_from": "2023-02-29"})
            assert (response.status_code, response.json()) == (400, said), address
        response = logged_in(client, analyst).get(CHANGELIST, {"date_from": "2023-02-29"})
        errors = response.text.split('id="filter-errors"')[1].split("</ul>")[0]
        assert response.status_code == 400
        assert f"<strong>date_from</strong>: {said['date_from'][0]}" in errors

    def test_every_door_s_date_filter_refuses_a_bad_date_with_how_to_write_it(self, client, analyst, tmp_path):
        # The API, the CSV export, the admin lists and the public pages said "Enter a valid date."
        # (and "Enter a valid date/time."), where the admin's forms said how to write one.
        date_so = "Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023."
        time_so = "Enter the time as ISO 8601: 2023-10-09T14:30:00Z for 14:30 UTC on 9 October 2023."
        bad = {"date_from": "29/08/2023", "date_to": "09/10/2023", "updated_since": "yesterday"}
        said = {"date_from": [date_so], "date_to": [date_so], "updated_since": [time_so]}
        api = client_for(analyst)
        for address, other in (
            (f"{API}/incidents/", {}),
            (f"{API}/incidents.csv", {}),
            (f"{API}/incidents/stats/", {"group_by": "year"}),
        ):
            response = api.get(address, {**bad, **other})
            assert (response.status_code, response.json()) == (400, said), address
        pairs = api.get(f"{API}/duplicates/", {"date_from": "29/08/2023"})
        assert (pairs.status_code, pairs.json()) == (400, {"date_from": [date_so]})
        withdrawn = api.get(f"{API}/incidents/withdrawn/", {"since": "29/08/2023"})
        assert (withdrawn.status_code, withdrawn.json()) == (400, {"since": [time_so]})

        with pytest.raises(CommandError, match=re.escape(f"--date-from: {date_so}; --updated-since: {time_so}")):
            call_command(
                "export_incidents", "--date-from", "29/08/2023", "--updated-since", "soon", "-o", str(tmp_path / "x")
            )

        admin_client = logged_in(client, analyst)
        for changelist in (CHANGELIST, reverse("admin:incidents_duplicatepair_changelist")):
            response = admin_client.get(changelist, {"date_from": "29/08/2023"})
            errors = response.text.split('id="filter-errors"')[1].split("</ul>")[0]
            assert response.status_code == 400 and f"<strong>date_from</strong>: {date_so}" in errors, changelist

        for address in ("/", "/map/", "/statistics/", "/embed/map/", "/incidents.csv", "/incidents.geojson"):
            response = Client().get(address, bad)
            errors = html.unescape(response.text.split('<ul class="errors">')[1].split("</ul>")[0])
            assert response.status_code == 400, address
            assert f"› From: {date_so}" in errors and f"› To: {date_so}" in errors, address
            assert f"Last updated: {time_so}" in errors, address
        korean = html.unescape(Client().get("/ko/", bad).text.split('<ul class="errors">')[1].split("</ul>")[0])
        assert "› 시작: 날짜는 YYYY-MM-DD 형식으로 입력하세요: 2023년 10월 9일은 2023-10-09." in korean
        assert "2023년 10월 9일 14:30 UTC는 2023-10-09T14:30:00Z." in korean

    @pytest.mark.parametrize(
        "precision, start, hint",
        [
            ("month", "2021-07-01", "2021-07-31, the month's last day, for a Month (“July 2021”)"),
            ("year", "2021-01-01", "2021-12-31, for a Year (“2021”)"),
            ("day", "2023-08-29", "2023-08-29, the start date again, for a known day"),
            ("week", "2023-08-29", "at most 2023-09-04, for a Week (seven days at most)"),
            ("range", "2023-10-02", "the last day the sources allow (inclusive)"),
        ],
    )
    def test_an_end_date_left_empty_is_asked_for_with_the_day_the_precision_ends_on(
        self, client, analyst, precision, start, hint
    ):
        # "In July 2021": Month, the start typed, the end left empty read "This field is required."
        post = incident_post(date_precision=precision, date_start=start, date_end="")

        response = logged_in(client, analyst).post(ADD, post)

        errors = response.context["adminform"].form.errors
        assert errors["date_end"] == [f"Give the last day of the range too: {hint}."]
        assert not Incident.objects.exists()

    def test_a_claim_with_reversed_counts_is_refused_with_the_reason(self, client, analyst):
        source = make_source()
        post = incident_post(claims=[{"source": source.pk, "people_count": 10}])
        post["claims-0-people_count_max"] = "5"

        response = logged_in(client, analyst).post(ADD, post)

        assert response.status_code == 200
        assert "above the maximum" in response.content.decode()
        assert not Incident.objects.exists()

    def test_the_add_page_says_how_an_uncertain_date_and_figure_are_entered(self, client, analyst):
        # "About 500 ... in July 2021": the page named Date precision, People count min and Count
        # qualifier without a word on what to enter.
        page = html.unescape(logged_in(client, analyst).get(ADD).content.decode())

        assert "“In July 2021”: Month, from 2021-07-01 to 2021-07-31" in page
        assert "“about 500” is 500 and About" in page
        assert "The lowest credible figure" in page and "The highest credible figure" in page

    def test_the_admins_pages_name_the_sites_icon(self, client, analyst):
        # Browsers asked every admin page's /favicon.ico, a 404 (and a console error) each time.
        icon = '<link rel="icon" href="/static/public/favicon.svg" type="image/svg+xml">'
        assert icon in client.get(reverse("admin:login")).content.decode()
        assert icon in logged_in(client, analyst).get(ADD).content.decode()

    def test_a_second_claim_of_one_source_is_refused_on_that_claims_source(self, client, analyst):
        # It read at the top of the page as "claims[1]: Each source may make only one claim per
        # incident.", counted from 0 where the page says "Claim #2", and on no row.
        hrw, daily = make_source(title="HRW"), make_source(title="Daily NK")
        post = incident_post(claims=[{"source": hrw.pk}, {"source": daily.pk}, {"source": hrw.pk}])

        response = logged_in(client, analyst).post(ADD, post)

        assert response.status_code == 200 and not Incident.objects.exists()
        [claims] = [
            formset for formset in response.context["inline_admin_formsets"] if formset.formset.prefix == "claims"
        ]
        assert [form.errors for form in claims.formset.forms] == [
            {},
            {},
            {"source": ["Each source may make only one claim per incident."]},
        ]
        assert "claims[" not in response.content.decode()
        assert response.context["adminform"].form.non_field_errors() == []
        # The API names the same field.
        body = {
            "title": "Repatriation",
            "incident_type": "forced-repatriation",
            "date_start": "2023-08-29",
            "date_end": "2023-08-29",
            "claims": [{"source": hrw.pk}, {"source": hrw.pk}],
        }
        answer = client_for(analyst).post(f"{API}/incidents/", body, format="json")
        assert answer.status_code == 400
        assert answer.json() == {"claims[1].source": ["Each source may make only one claim per incident."]}

    def test_two_rows_naming_one_victim_group_are_refused_on_the_second(self, client, analyst):
        # A page whose rows were copied (or a tampered form) sent the stored group twice: the
        # second row's values went over the first's, and one row was dropped without a word.
        incident = make_incident(review_state="draft")
        group = VictimGroup.objects.create(incident=incident, count=16)
        post = incident_post(incident=incident, **management_form("victim_groups", 2, initial=2))
        for index, (count, sex) in enumerate([(7, "female"), (9, "male")]):
            post.update(
                {
                    f"victim_groups-{index}-id": str(group.pk),
                    f"victim_groups-{index}-incident": str(incident.pk),
                    f"victim_groups-{index}-count": str(count),
                    f"victim_groups-{index}-sex": sex,
                    f"victim_groups-{index}-age_group": "unknown",
                    f"victim_groups-{index}-description": "",
                }
            )

        response = logged_in(client, analyst).post(change_url(incident), post)

        assert response.status_code == 200
        assert "It repeats row 0&#x27;s id; send each victim group once." in response.content.decode()
        assert list(incident.victim_groups.values_list("count", "sex")) == [(16, "unknown")]

    def test_two_claims_swapping_their_sources_are_saved(self, client, analyst):
        # Each row was checked against the other as stored ("This source already has a claim on
        # this incident"): a valid correction was refused. The service writes them in an order
        # that holds (through a deletion and insertion of one row, with its id, for a swap).
        incident = make_incident(review_state="draft")
        hrw, daily = make_source(title="HRW"), make_source(title="Daily NK")
        first, second = make_claim(incident=incident, source=hrw), make_claim(incident=incident, source=daily)
        url = reverse("admin:incidents_incident_change", args=[incident.pk])

        saved = saved_unchanged(
            logged_in(client, analyst), url, "incident_form", **{"claims-0-source": daily.pk, "claims-1-source": hrw.pk}
        )

        assert saved.status_code == 302
        assert sorted(incident.claims.values_list("pk", "source")) == [(first.pk, daily.pk), (second.pk, hrw.pk)]

    def test_an_incident_with_eighty_claims_is_saved(self, client, analyst):
        # Its page posts thirteen fields a claim and more, past Django's default bound of 1,000
        # fields: the Save was a 400 page, and the analyst's typing lost.
        incident = make_incident(review_state="draft")
        sources = Source.objects.bulk_create(Source(title=f"Report {number}") for number in range(80))
        claims = Claim.objects.bulk_create(
            Claim(incident=incident, source=source, people_count=80, source_connection="third_party")
            for source in sources
        )
        post = incident_post(incident=incident, claims=claims, title="Corrected title")
        assert len(post) > 1_000

        response = logged_in(client, analyst).post(change_url(incident), post)

        assert response.status_code == 302
        incident.refresh_from_db()
        assert incident.title == "Corrected title" and incident.claims.count() == 80

    def test_change_page_shows_the_sources_range_beside_the_estimate(self, client, analyst):
        incident = make_incident(people_count=80)
        make_claim(incident=incident, people_count=60)
        make_claim(incident=incident, people_count=100)

        page = logged_in(client, analyst).get(change_url(incident)).content.decode()

        assert "60–100: 1 source says 60, 1 says 100" in page

    def test_each_claim_is_headed_by_its_source_and_the_incident_people_know(self, client, analyst):
        # "Daily NK report on 1" before: the incident's row key, which no page shows anyone.
        incident = make_incident()
        make_claim(incident=incident, source=make_source(title="Daily NK report"))

        page = logged_in(client, analyst).get(change_url(incident)).content.decode()

        assert f"Daily NK report on {incident.public_id}" in page
        assert f"Daily NK report on {incident.pk}<" not in page

    def test_the_page_costs_the_same_queries_however_many_claims_and_organizations(self, client, analyst):
        # Each claim's source and each organization involved were read again by their row's
        # autocomplete: a query per row, 40 more for an incident cited by 40 sources.
        def queries(incident):
            with CaptureQueriesContext(connection) as captured:
                page = client.get(change_url(incident)).content.decode()
            return len(captured), page

        few, many = make_incident(), make_incident()
        make_claim(incident=few, source=make_source(title="Only source"))
        Involvement.objects.create(incident=few, organization=make_organization(name="Only police"), role="perpetrator")
        for number in range(6):
            make_claim(incident=many, source=make_source(title=f"Outlet {number}"))
            Involvement.objects.create(incident=many, organization=make_organization(name=f"Police {number}"))
        logged_in(client, analyst)
        queries(few)  # the session's first page reads what later ones find cached

        few_queries, _ = queries(few)
        many_queries, page = queries(many)

        assert many_queries == few_queries
        for number in range(6):  # each row still shows what it links to, as the selected choice
            source = Source.objects.get(title=f"Outlet {number}")
            assert f'<option value="{source.pk}" selected>Outlet {number}</option>' in page
            police = Organization.objects.get(name=f"Police {number}")
            assert f'<option value="{police.pk}" selected>Police {number}</option>' in page

    def test_the_page_links_to_the_incidents_public_page(self, client, analyst):
        # A reviewer who published an incident had no way from its page to read it as the public does.
        incident = make_incident()

        page = logged_in(client, analyst).get(change_url(incident)).content.decode()

        assert f'<a href="/incidents/{incident.public_id}/" class="viewsitelink">View on site</a>' in page
        assert client.get(f"/incidents/{incident.public_id}/").status_code == 200

    def test_editing_keeps_existing_claims_and_updates_the_incident(self, client, analyst):
        incident = make_incident(review_state="draft")
        claim = make_claim(incident=incident)

        response = logged_in(client, analyst).post(
            change_url(incident), incident_post(incident=incident, claims=[claim], title="Corrected title")
        )

        assert response.status_code == 302
        incident.refresh_from_db()
        assert incident.title == "Corrected title" and incident.version == 2 and incident.updated_by == analyst
        assert list(incident.claims.all()) == [claim]

    def test_only_a_claim_a_merge_marked_offers_the_mark_and_clearing_it_keeps_the_claim(self, client, analyst):
        incident = make_incident(review_state="draft")
        plain, marked = make_claim(incident=incident), make_claim(incident=incident, merge_conflict=True)
        client = logged_in(client, analyst)

        page = client.get(change_url(incident)).content.decode()

        checkboxes = re.findall(r'<input type="checkbox" name="(claims-[^"]+-merge_conflict)"', page)
        hidden = re.findall(r'<input type="hidden" name="(claims-[^"]+-merge_conflict)"', page)
        # The marked claim's box (checked), hidden on the other, the new claim and the template row.
        assert len(checkboxes) == 1 and len(hidden) == 3, (checkboxes, hidden)
        assert (
            client.post(change_url(incident), incident_post(incident=incident, claims=[plain, marked])).status_code
            == 302
        )
        assert set(incident.claims.values_list("pk", "merge_conflict")) == {(plain.pk, False), (marked.pk, False)}

    def test_reviewer_removes_a_claim_with_its_delete_box(self, client, reviewer):
        incident = make_incident(review_state="draft")
        kept, removed = make_claim(incident=incident), make_claim(incident=incident)
        post = incident_post(incident=incident, claims=[kept, removed])
        post["claims-1-DELETE"] = "on"

        response = logged_in(client, reviewer).post(change_url(incident), post)

        assert response.status_code == 302
        assert list(incident.claims.all()) == [kept]

    def test_analyst_removes_a_claim_they_added_by_mistake_as_the_api_lets_them(self, client, analyst):
        incident = make_incident(review_state="draft")
        kept, mistaken = make_claim(incident=incident), make_claim(incident=incident)
        post = incident_post(incident=incident, claims=[kept, mistaken])
        post["claims-1-DELETE"] = "on"

        response = logged_in(client, analyst).post(change_url(incident), post)

        assert response.status_code == 302
        assert list(incident.claims.all()) == [kept]
        # Recorded with its author: readers who may see every claim read it in the history.
        removal = Events.objects.tracks(mistaken).get(pgh_label="delete")
        assert removal.pgh_context["user"] == analyst.pk

    def test_list_shows_date_label_count_range_and_places(self, client, analyst):
        make_incident(
            title="Repatriation in July",
            date_start=date(2021, 7, 1),
            date_end=date(2021, 7, 31),
            date_precision="month",
            people_count=50,
            people_count_min=40,
            people_count_max=60,
            places=[make_place(name="Tumen")],
        )

        page = logged_in(client, analyst).get(CHANGELIST).content.decode()

        assert "July 2021" in page and "50 (40–60)" in page and "Tumen" in page

    def test_list_says_how_a_count_is_given_and_which_place_of_a_name(self, client, analyst):
        # The list showed "500" for "about 500", and "Tumen" for either Tumen.
        jilin = make_place(name="Jilin", kind="province", country="CN")
        north_hamgyong = make_place(name="North Hamgyong", kind="province", country="KP")
        make_incident(
            title="Around 500 sent back",
            people_count=500,
            count_qualifier="about",
            places=[make_place(name="Tumen", parent=jilin, country=""), jilin],
        )
        make_incident(
            title="At least 40 sent back",
            people_count=40,
            count_qualifier="at_least",
            places=[make_place(name="Tumen", parent=north_hamgyong, country="")],
        )

        page = html.unescape(logged_in(client, analyst).get(CHANGELIST).content.decode())

        assert "about 500" in page and "at least 40" in page
        assert "North Hamgyong > Tumen" in page
        # One place a line: paths joined by commas read as one list of words and ">".
        assert '<td class="field-place_names">Jilin<br>Jilin > Tumen</td>' in page

    def test_search_finds_by_public_id_place_and_source_title(self, client, analyst):
        incident = make_incident(title="Sent back", places=[make_place(name="Hyesan crossing")])
        make_claim(incident=incident, source=make_source(title="Daily NK dispatch"))
        make_incident(title="Something else")
        logged_in(client, analyst)

        for term in [incident.public_id, "Hyesan", "Daily NK"]:
            results = list(client.get(CHANGELIST, {"q": term}).context["cl"].result_list)
            assert results == [incident], term

    def test_filters_by_country_and_overlapping_dates(self, client, analyst):
        in_china = make_incident(places=[make_place(country="CN")], date_start=date(2023, 8, 29))
        make_incident(places=[make_place(country="RU")], date_start=date(2023, 8, 29))
        make_incident(places=[make_place(country="CN")], date_start=date(2020, 1, 1), date_end=date(2020, 1, 1))
        logged_in(client, analyst)

        response = client.get(CHANGELIST, {"country": "CN", "date_from": "2023-08-01", "date_to": "2023-08-31"})

        assert list(response.context["cl"].result_list) == [in_china]

    def test_other_admins_have_search_for_autocomplete(self, client, analyst):
        make_place(name="Dandong")
        make_organization(name="Human Rights Watch", acronym="HRW")
        logged_in(client, analyst)

        for model, term, expected in [
            ("place", "Dand", "Dandong"),
            ("organization", "HRW", "Human Rights Watch (HRW)"),
        ]:
            response = client.get(
                reverse("admin:autocomplete"),
                {"app_label": "incidents", "model_name": "incident", "field_name": "places", "term": term}
                if model == "place"
                else {
                    "app_label": "incidents",
                    "model_name": "involvement",
                    "field_name": "organization",
                    "term": term,
                },
            )
            assert [result["text"] for result in response.json()["results"]] == [expected]

    def test_autocomplete_offers_the_place_named_as_typed_first(self, client, analyst):
        # By name alone "China > China-North Korea border area" came first, and Enter picked it
        # as the parent of a North Korean province.
        china = make_place(name="China", kind="country", country="CN")
        make_place(name="China–North Korea border area", kind="border_area", parent=china)
        north_korea = make_place(name="North Korea", kind="country", country="KP")
        make_place(name="North Korea–Russia border", kind="border_area", parent=north_korea)
        make_organization(name="Aid to HRW's witnesses")
        make_organization(name="Human Rights Watch", acronym="HRW")
        logged_in(client, analyst)

        def offered(model_name, field_name, term):
            query = {"app_label": "incidents", "model_name": model_name, "field_name": field_name, "term": term}
            return [result["text"] for result in client.get(reverse("admin:autocomplete"), query).json()["results"]]

        assert offered("place", "parent", "north korea") == [
            "North Korea",
            "North Korea > North Korea–Russia border",
            "China > China–North Korea border area",
        ]
        # An organization by its acronym too.
        assert offered("involvement", "organization", "hrw") == ["Human Rights Watch (HRW)", "Aid to HRW's witnesses"]

    def test_autocomplete_offers_incidents_with_their_dates(self, client, analyst):
        # Two reports of one repatriation read alike by id and title, where a response links one.
        first = make_incident(
            title="About 500 sent back",
            date_precision="range",
            date_start=date(2023, 10, 2),
            date_end=date(2023, 10, 9),
        )
        logged_in(client, analyst)
        query = {"app_label": "incidents", "model_name": "response", "field_name": "incidents", "term": "500"}

        offered = client.get(reverse("admin:autocomplete"), query).json()["results"]

        label = f"{first.public_id}: About 500 sent back (2 October 2023 – 9 October 2023)"
        assert offered == [{"id": str(first.pk), "text": label}]

    def test_autocomplete_offers_sources_with_their_publishers_and_dates(self, client, analyst):
        # HRW's and Amnesty's "Annual report 2023" were offered word for word alike to a claim.
        make_source(title="Annual report 2023", publisher=make_organization(name="Human Rights Watch"))
        make_source(
            title="Annual report 2023",
            publisher=make_organization(name="Amnesty International"),
            published_on=date(2024, 1, 11),
        )
        make_source(title="Annual report 2023 (no publisher)")
        logged_in(client, analyst)
        query = {"app_label": "incidents", "model_name": "claim", "field_name": "source", "term": "Annual report"}

        offered = [result["text"] for result in client.get(reverse("admin:autocomplete"), query).json()["results"]]

        assert sorted(offered) == [
            "Annual report 2023 (no publisher)",
            "Annual report 2023 · Amnesty International · 2024-01-11",
            "Annual report 2023 · Human Rights Watch",
        ]

    @pytest.mark.parametrize(
        ("stored", "typed"),
        [
            # Typed in a Chinese or Japanese keyboard's full-width mode, and stored so.
            ("UNHCR", "\uff35\uff2e\uff28\uff23\uff32"),
            ("\uff35\uff2e\uff28\uff23\uff32", "unhcr"),
            # Half-width katakana, which old Japanese systems still write.
            ("\u30c0\u30f3\u30c9\u30f3", "\uff80\uff9e\uff9d\uff84\uff9e\uff9d"),
        ],
    )
    def test_lists_and_autocompletes_find_a_name_typed_in_another_width(self, client, analyst, stored, typed):
        # Each found nothing, and the autocomplete offered to add a second organization.
        organization = make_organization(name=stored)
        make_organization(name="Human Rights Watch")
        source = make_source(title=f"{stored} annual report", url=f"https://example.org/{stored}")
        make_source(title="Another report")
        place = make_place(name="Dandong", alternate_names=[stored])
        make_place(name="Tumen")
        logged_in(client, analyst)

        def listed(model_name):
            changelist = reverse(f"admin:incidents_{model_name}_changelist")
            return list(client.get(changelist, {"q": typed}).context["cl"].result_list)

        assert listed("organization") == [organization]
        assert listed("source") == [source]
        assert listed("place") == [place]
        query = {"app_label": "incidents", "model_name": "involvement", "field_name": "organization", "term": typed}
        offered = client.get(reverse("admin:autocomplete"), query).json()["results"]
        assert [result["id"] for result in offered] == [str(organization.pk)]

    def test_autocomplete_offers_the_name_typed_in_another_width_first(self, client, analyst):
        make_organization(name="UNHCR Seoul office")
        unhcr = make_organization(name="UNHCR")
        logged_in(client, analyst)
        query = {
            "app_label": "incidents",
            "model_name": "involvement",
            "field_name": "organization",
            "term": "\uff35\uff2e\uff28\uff23\uff32",
        }

        offered = client.get(reverse("admin:autocomplete"), query).json()["results"]

        assert [result["text"] for result in offered] == [str(unhcr), "UNHCR Seoul office"]

    def test_a_list_searching_an_address_field_still_finds_it(self):
        # django-axes' lists search an IP address field, which is compared as an address.
        administrator = make_user(roles.REVIEWER, is_superuser=True)
        client = Client()
        client.force_login(administrator)
        AccessAttempt.objects.create(
            username="alice", ip_address="192.0.2.7", user_agent="", path_info="/admin/login/", failures_since_start=1
        )

        for typed in ["192.0.2.7", "\uff41\uff4c\uff49\uff43\uff45"]:
            response = client.get(reverse("admin:axes_accessattempt_changelist"), {"q": typed})
            assert [attempt.username for attempt in response.context["cl"].result_list] == ["alice"], typed

    def test_autocomplete_finds_a_place_by_its_other_names(self, client, analyst):
        # The place form asks for names in Korean and Chinese; typing one found nothing.
        china = make_place(name="China", kind="country", country="CN")
        make_place(name="Yanji", parent=china, alternate_names=["延吉", "연길", "Yeongil"])
        make_place(name="Hunchun", parent=china)
        logged_in(client, analyst)

        for term in ["연길", "延吉", "yeongil"]:
            query = {"app_label": "incidents", "model_name": "incident", "field_name": "places", "term": term}
            offered = client.get(reverse("admin:autocomplete"), query).json()["results"]
            assert [result["text"] for result in offered] == ["China > Yanji"], term

    @pytest.mark.parametrize(
        ("model_name", "field_name"),
        [("incident", "responses"), ("source", "responses"), ("place", "children"), ("incidenttype", "incidents")],
    )
    def test_autocomplete_refuses_a_reverse_relation_named_as_its_field(self, client, viewer, model_name, field_name):
        # Django read it on as a field of the model's own: an AttributeError, a 500 to any member of
        # staff who typed the address (found by an attack review).
        logged_in(client, viewer)
        query = {"app_label": "incidents", "model_name": model_name, "field_name": field_name, "term": "a"}

        assert client.get(reverse("admin:autocomplete"), query).status_code == 403
        forward = {**query, "model_name": "response", "field_name": "incidents"}
        assert client.get(reverse("admin:autocomplete"), forward).status_code == 200

    def test_places_of_one_name_are_offered_and_shown_by_their_paths(
        self, client, analyst, django_assert_max_num_queries
    ):
        # The province and its city were two identical "Bangkok" choices: an analyst picked one blind.
        thailand = make_place(name="Thailand", kind="country", country="TH")
        province = make_place(name="Bangkok", kind="province", parent=thailand)
        city = make_place(name="Bangkok", kind="city", parent=province)
        for number in range(15):
            make_place(name=f"Bangkok district {number}", parent=city)
        logged_in(client, analyst)
        query = {"app_label": "incidents", "model_name": "incident", "field_name": "places", "term": "Bangkok"}

        with django_assert_max_num_queries(6):  # a fixed number, however many places match
            offered = client.get(reverse("admin:autocomplete"), query).json()["results"]

        assert {"id": str(province.pk), "text": "Thailand > Bangkok"} in offered
        assert {"id": str(city.pk), "text": "Thailand > Bangkok > Bangkok"} in offered
        assert {"id": str(thailand.pk), "text": "Thailand"} not in offered  # its name is not searched
        incident = make_incident(places=[city])
        page = client.get(change_url(incident)).content.decode()
        assert f'<option value="{city.pk}" selected>Thailand &gt; Bangkok &gt; Bangkok</option>' in page

    def test_a_place_made_in_the_pop_up_goes_back_to_the_incident_page_by_its_path(self, client, analyst):
        # The pop-up answered its name alone ("Bangkok"), beside choices shown by their paths.
        thailand = make_place(name="Thailand", kind="country", country="TH")
        province = make_place(name="Bangkok", kind="province", parent=thailand)
        logged_in(client, analyst)

        answer = client.post(
            reverse("admin:incidents_place_add") + "?_popup=1&_to_field=id",
            {"_popup": "1", "_to_field": "id", "name": "Bangkok", "kind": "city", "parent": province.pk},
        )

        city = Place.objects.get(name="Bangkok", parent=province)
        sent = json.loads(html.unescape(re.search(r'data-popup-response="([^"]*)"', answer.content.decode())[1]))
        assert sent == {"value": str(city.pk), "obj": "Thailand > Bangkok > Bangkok"}

    def test_a_place_saved_by_its_name_alone_is_asked_where_it_is(self, client, analyst):
        # A quick "Tumen" from the pop-up became a top-level place in no country, which the
        # statistics count in no country.
        logged_in(client, analyst)
        add = reverse("admin:incidents_place_add") + "?_popup=1&_to_field=id"
        popup = {"_popup": "1", "_to_field": "id", "kind": "city"}

        answer = client.post(add, {**popup, "name": "Tumen"})

        assert answer.status_code == 200 and not Place.objects.exists()
        errors = answer.context["adminform"].form.errors
        assert errors["parent"] == [PLACE_NOWHERE_MESSAGE]
        assert "Say where it is: choose the place that contains it" in html.unescape(answer.content.decode())

        # A country is top-level by right, and a place in China is in China.
        client.post(add, {**popup, "name": "China", "kind": "country", "country": "CN"})
        china = Place.objects.get(name="China")
        client.post(add, {**popup, "name": "Jilin", "kind": "province", "parent": china.pk})
        assert Place.objects.get(name="Jilin").country == "CN"

    def test_a_place_in_no_country_is_kept_so_when_the_analyst_says_so(self, client, analyst):
        logged_in(client, analyst)
        add = reverse("admin:incidents_place_add")

        client.post(add, {"name": "Yellow Sea", "kind": "other", "in_no_country": "on"})
        sea = Place.objects.get(name="Yellow Sea")
        assert sea.parent is None and sea.country == ""
        # Its page says so, and an edit is not asked again.
        change = reverse("admin:incidents_place_change", args=[sea.pk])
        assert client.get(change).context["adminform"].form["in_no_country"].initial is True
        renamed = {"name": "West Sea", "kind": "other", "in_no_country": "on", "expected_version": sea.version}
        assert client.post(change, renamed).status_code == 302
        # Unticked, with neither parent nor country, it is asked where it is, as a new place is.
        answer = client.post(change, {**renamed, "in_no_country": "", "expected_version": sea.version + 1})
        assert answer.context["adminform"].form.errors["parent"] == [PLACE_NOWHERE_MESSAGE]
        sea.refresh_from_db()
        assert (sea.name, sea.parent, sea.country) == ("West Sea", None, "")
        # Said of a place that has a country, it is a contradiction.
        answer = client.post(add, {"name": "Dandong", "kind": "city", "country": "CN", "in_no_country": "on"})
        assert "in_no_country" in answer.context["adminform"].form.errors
        assert not Place.objects.filter(name="Dandong").exists()


class TestNamesInTheAdmin:
    """Other names and aliases one per line (a name may hold a comma), and place names told apart
    whatever their case."""

    def test_an_unchanged_save_keeps_other_names_and_aliases_holding_a_comma(self, client, analyst):
        # The API stores "온성, 함경북도" whole; the comma-separated box split it in two on Save.
        make_place(name="North Korea", kind="country", country="KP")
        writer = client_for(analyst)
        place = writer.post(
            f"{API}/places/",
            {"name": "Onsong", "kind": "city", "country": "KP", "alternate_names": ["온성, 함경북도", "Onsŏng"]},
            format="json",
        ).json()
        organization = writer.post(
            f"{API}/organizations/",
            {"name": "Ministry of Unification", "kind": "government", "aliases": ["Ministry of Unification, ROK"]},
            format="json",
        ).json()
        logged_in(client, analyst)

        for model_name, record, form_id in (
            ("place", place, "place_form"),
            ("organization", organization, "organization_form"),
        ):
            url = reverse(f"admin:incidents_{model_name}_change", args=[record["id"]])
            assert saved_unchanged(client, url, form_id).status_code == 302

        assert Place.objects.get(pk=place["id"]).alternate_names == ["온성, 함경북도", "Onsŏng"]
        assert Organization.objects.get(pk=organization["id"]).aliases == ["Ministry of Unification, ROK"]

    def test_other_names_are_typed_one_per_line_trimmed_without_blank_lines(self, client, analyst):
        china = make_place(name="China", kind="country", country="CN")
        logged_in(client, analyst)

        client.post(
            reverse("admin:incidents_place_add"),
            {"name": "Yanji", "kind": "city", "parent": china.pk, "alternate_names": " 연길 \r\n\r\n延吉, 延边\r\n"},
        )

        assert Place.objects.get(name="Yanji").alternate_names == ["연길", "延吉, 延边"]

    def test_a_place_named_as_another_in_its_parent_whatever_the_case_is_refused_naming_it(self, client, analyst):
        china = make_place(name="China", kind="country", country="CN")
        jilin = make_place(name="Jilin", kind="province", parent=china)
        make_place(name="Tumen", parent=jilin)
        make_place(name="tumen", parent=china)  # in another parent: another place
        logged_in(client, analyst)

        answer = client.post(
            reverse("admin:incidents_place_add"), {"name": "TUMEN", "kind": "city", "parent": jilin.pk}
        )

        assert answer.status_code == 200
        assert answer.context["adminform"].form.errors["name"] == [
            "“Tumen” is already in Jilin (names in one place are told apart whatever their case): edit that "
            "place, or name this one apart."
        ]
        assert Place.objects.filter(parent=jilin).count() == 1

    def test_an_organization_named_as_another_whatever_the_case_is_refused_naming_it(self, client, analyst):
        make_organization(name="UNHCR")
        logged_in(client, analyst)

        answer = client.post(reverse("admin:incidents_organization_add"), {"name": "unhcr", "kind": "ngo"})

        assert answer.status_code == 200
        assert "“UNHCR” is already an organization's name" in answer.context["adminform"].form.errors["name"][0]
        assert Organization.objects.count() == 1


class TestConfidentiality:
    @pytest.fixture
    def records(self):
        secret_source = make_source(title="Informant testimony", confidential=True)
        public_source = make_source(title="News article")
        secret_incident = make_incident(title="Secret incident", confidential=True)
        public_incident = make_incident(title="Public incident")
        make_claim(incident=public_incident, source=secret_source, excerpt="informant says")
        make_claim(incident=public_incident, source=public_source, confidential=True, excerpt="hidden claim words")
        make_claim(incident=public_incident, source=make_source(title="Open report"), excerpt="open words")
        return {"secret_source": secret_source, "secret_incident": secret_incident, "public_incident": public_incident}

    def test_lists_hide_confidential_incidents_and_sources(self, client, reviewer, records):
        logged_in(client, reviewer)

        incidents = client.get(CHANGELIST).content.decode()
        sources = client.get(reverse("admin:incidents_source_changelist")).content.decode()

        assert "Secret incident" not in incidents and "Public incident" in incidents
        assert "Informant testimony" not in sources and "News article" in sources

    def test_confidential_pages_are_not_found(self, client, reviewer, records):
        logged_in(client, reviewer)

        for url in [
            change_url(records["secret_incident"]),
            history_url(records["secret_incident"]),
            reverse("admin:incidents_source_change", args=[records["secret_source"].pk]),
            history_url(records["secret_source"]),
        ]:
            response = client.get(url)
            assert response.status_code == 302 and response.url == reverse("admin:index"), url

    def test_inline_shows_only_visible_claims(self, client, reviewer, records):
        page = logged_in(client, reviewer).get(change_url(records["public_incident"])).content.decode()

        assert "open words" in page
        assert "informant says" not in page and "hidden claim words" not in page

    def test_sources_say_gives_the_qualifiers_of_only_the_claims_the_reader_may_see(
        self, client, reviewer, confidential_reviewer
    ):
        # "500 people, according to every source" where the sources said "about 500": the bare
        # span read an estimate as an exact count, and dropped "at least".
        incident = make_incident(people_count=500, count_qualifier="about")
        make_claim(incident=incident, people_count=500, count_qualifier="about")
        make_claim(incident=incident, people_count=500, count_qualifier="about")
        make_claim(incident=incident, people_count=37, count_qualifier="at_least", confidential=True)

        page = logged_in(client, reviewer).get(change_url(incident)).content.decode()
        assert "about 500, according to all 2 sources that give a figure" in page
        assert "at least 37" not in page and "37–500" not in page

        page = logged_in(client, confidential_reviewer).get(change_url(incident)).content.decode()
        assert "37–500: 2 sources say about 500, 1 says at least 37" in page

    def test_sources_say_words_a_lone_source_and_no_figure_at_all(self, client, reviewer):
        incident = make_incident(people_count=80)
        make_claim(incident=incident, people_count=None, count_qualifier="unknown")
        assert "No source gives a figure yet." in logged_in(client, reviewer).get(change_url(incident)).content.decode()

        make_claim(incident=incident, people_count=80)
        page = client.get(change_url(incident)).content.decode()
        assert "80, according to the one source that gives a figure" in page

    def test_a_refused_add_does_not_say_no_source_gives_the_figures_typed(self, client, analyst):
        # The summary is of saved claims: the add page re-shown with the claims typed said "No
        # source gives a figure yet" above a claim of 80.
        post = incident_post(claims=[{"source": make_source().pk, "people_count": 80}], title="")

        response = logged_in(client, analyst).post(ADD, post)

        assert response.status_code == 200 and not Incident.objects.exists()
        page = response.content.decode()
        assert "No source gives a figure yet." not in page
        assert "Summed up once the incident and its claims are saved." in page

    def test_a_refused_change_says_its_summary_is_of_the_claims_as_saved(self, client, analyst):
        incident = make_incident(people_count=80, review_state="draft")
        claim = make_claim(incident=incident, people_count=80)
        post = incident_post(incident=incident, claims=[claim], title="")
        post["claims-0-people_count"] = "120"

        response = logged_in(client, analyst).post(change_url(incident), post)

        assert response.status_code == 200
        page = response.content.decode()
        assert "As saved, before the changes below: 80, according to the one source that gives a figure" in page
        # Read again, with nothing typed, it is the summary alone.
        page = client.get(change_url(incident)).content.decode()
        assert "As saved" not in page and "80, according to the one source that gives a figure" in page

    def test_autocomplete_does_not_offer_confidential_sources_or_incidents(self, client, reviewer, records):
        logged_in(client, reviewer)

        sources = client.get(
            reverse("admin:autocomplete"),
            {"app_label": "incidents", "model_name": "claim", "field_name": "source", "term": ""},
        ).json()["results"]
        incidents = client.get(
            reverse("admin:autocomplete"),
            {"app_label": "incidents", "model_name": "response", "field_name": "incidents", "term": "incident"},
        ).json()["results"]

        assert "Informant testimony" not in [result["text"] for result in sources]
        public = records["public_incident"]
        assert [result["text"] for result in incidents] == [f"{public} ({public.date_label})"]

    def test_a_hidden_source_cannot_be_posted_as_a_claims_source(self, client, analyst, records):
        post = incident_post(claims=[{"source": records["secret_source"].pk, "people_count": 80}])

        response = logged_in(client, analyst).post(ADD, post)

        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode()
        assert not Incident.objects.filter(title=post["title"]).exists()

    def test_search_does_not_reveal_confidential_source_titles(self, client, reviewer, records):
        response = logged_in(client, reviewer).get(CHANGELIST, {"q": "Informant"})

        assert list(response.context["cl"].result_list) == []

    def test_saving_does_not_delete_claims_the_editor_cannot_see(self, client, reviewer, records):
        incident = records["public_incident"]
        visible_claim = incident.claims.get(excerpt="open words")

        response = logged_in(client, reviewer).post(
            change_url(incident), incident_post(incident=incident, claims=[visible_claim])
        )

        assert response.status_code == 302
        assert incident.claims.count() == 3

    def test_a_link_to_a_hidden_source_is_neither_shown_nor_cleared(self, client, reviewer, records):
        relay = make_source(title="Relay", cites=records["secret_source"])
        uncited = make_source(title="Relay")
        url = reverse("admin:incidents_source_change", args=[relay.pk])
        logged_in(client, reviewer)

        page = client.get(url).content.decode()
        # The page is the one a source that cites nothing gets: the link is not even hinted at.
        same_page_without_link = client.get(reverse("admin:incidents_source_change", args=[uncited.pk])).content
        response = client.post(
            url,
            {"title": "Relay (edited)", "kind": "news_article", "language": "en", "expected_version": relay.version},
        )

        assert "Informant testimony" not in page
        assert comparable(page, relay.pk) == comparable(same_page_without_link.decode(), uncited.pk)
        assert response.status_code == 302
        relay.refresh_from_db()
        assert relay.title == "Relay (edited)" and relay.cites == records["secret_source"]

    def test_confidential_access_sees_everything(self, client, confidential_reviewer, records):
        logged_in(client, confidential_reviewer)

        assert "Secret incident" in client.get(CHANGELIST).content.decode()
        assert "informant says" in client.get(change_url(records["public_incident"])).content.decode()

    def test_history_leaves_out_hidden_claims(self, client, reviewer, records):
        page = logged_in(client, reviewer).get(history_url(records["public_incident"])).content.decode()

        assert "open words" in page
        assert "informant says" not in page and "hidden claim words" not in page


def checkbox(page: str, name: str) -> str:
    """The one <input> tag of the field `name` on `page`."""
    [tag] = re.findall(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', page)
    return tag


MARKING_REFUSED = "Only users with Confidential access may mark a record confidential"
PUBLISHING_REFUSED = "Only a Reviewer with Confidential access may make a confidential record public."


class TestConfidentialityIsOfferedOnlyToWhoMayChangeIt:
    """An analyst without Confidential access was offered a "Confidential" box on incidents, claims
    and sources (the "+" pop-ups too) that every save then refused. The box is offered only to a
    writer who may change it from what the record is now (services.confidentiality_change_refusal);
    anyone else sees it, disabled, with the reason under it."""

    SOURCE_ADD = reverse("admin:incidents_source_add")

    @pytest.mark.parametrize(
        ("page", "field"),
        [
            (ADD, "confidential"),
            (ADD, "claims-0-confidential"),
            (f"{SOURCE_ADD}?_to_field=id&_popup=1", "confidential"),
            (SOURCE_ADD, "confidential"),
            ("incident", "confidential"),
            ("incident", "claims-0-confidential"),
            ("source", "confidential"),
        ],
    )
    def test_an_analyst_without_confidential_access_sees_the_box_disabled_and_why(self, client, analyst, page, field):
        incident = make_incident(title="Public incident")
        make_claim(incident=incident)
        url = {
            "incident": change_url(incident),
            "source": reverse("admin:incidents_source_change", args=[make_source().pk]),
        }.get(page, page)

        shown = logged_in(client, analyst).get(url).content.decode()

        assert " disabled" in checkbox(shown, field) and " checked" not in checkbox(shown, field)
        assert MARKING_REFUSED in shown

    def test_with_confidential_access_an_analyst_marks_records_but_makes_none_public(self, client):
        analyst = make_user(roles.ANALYST, confidential=True)
        public, secret = make_incident(title="Public incident"), make_incident(title="Secret", confidential=True)
        make_claim(incident=public)
        make_claim(incident=public, confidential=True)
        logged_in(client, analyst)

        new = client.get(ADD).content.decode()
        public_page = client.get(change_url(public)).content.decode()
        secret_page = client.get(change_url(secret)).content.decode()

        assert " disabled" not in checkbox(new, "confidential") + checkbox(new, "claims-0-confidential")
        assert " disabled" not in checkbox(public_page, "confidential")
        # Its rows are each offered by what they are: the public claim may be marked, the confidential one stays.
        public_row, secret_row = (checkbox(public_page, f"claims-{index}-confidential") for index in (0, 1))
        assert " disabled" not in public_row
        assert " disabled" in secret_row and " checked" in secret_row
        assert " disabled" in checkbox(secret_page, "confidential") and " checked" in checkbox(
            secret_page, "confidential"
        )
        assert PUBLISHING_REFUSED in secret_page and MARKING_REFUSED not in public_page

    def test_a_reviewer_with_confidential_access_is_offered_every_box(self, client, confidential_reviewer):
        secret = make_incident(title="Secret", confidential=True)
        make_claim(incident=secret, confidential=True)

        page = logged_in(client, confidential_reviewer).get(change_url(secret)).content.decode()

        assert " disabled" not in checkbox(page, "confidential") + checkbox(page, "claims-0-confidential")
        assert PUBLISHING_REFUSED not in page and MARKING_REFUSED not in page

    def test_a_box_an_analyst_forges_is_ignored_as_a_disabled_field_is(self, client, analyst):
        # As for the review state the page shows: nothing is changed, the rest is saved. The API,
        # where a client names what it sends, answers 400 naming `confidential` (test_rulebook).
        source = make_source(title="News article")
        post = incident_post(claims=[{"source": source.pk, "people_count": 80, "confidential": True}])
        logged_in(client, analyst)

        incident_answer = client.post(ADD, {**post, "confidential": "on"})
        source_answer = client.post(
            self.SOURCE_ADD, {"title": "Informant", "kind": "testimony", "language": "en", "confidential": "on"}
        )

        assert (incident_answer.status_code, source_answer.status_code) == (302, 302)
        incident = Incident.objects.get(title=post["title"])
        assert not incident.confidential and not incident.claims.get().confidential
        assert not Source.objects.get(title="Informant").confidential

    def test_an_analyst_with_confidential_access_edits_a_confidential_incident_and_it_stays_so(self, client):
        # Her browser sends no value for a disabled box: read as unticked, it was "made public", and refused.
        analyst = make_user(roles.ANALYST, confidential=True)
        secret = make_incident(title="Secret", confidential=True, review_state="draft")
        claim = make_claim(incident=secret, confidential=True, people_count=80)

        answer = logged_in(client, analyst).post(
            change_url(secret), incident_post(incident=secret, claims=[claim], title="Secret, retitled")
        )

        assert answer.status_code == 302, answer.context["adminform"].form.errors
        secret.refresh_from_db()
        assert (secret.title, secret.confidential) == ("Secret, retitled", True)
        assert secret.claims.get().confidential

    def test_who_may_marks_a_record_confidential_in_the_admin(self, client, confidential_reviewer):
        source = make_source(title="News article")
        post = incident_post(claims=[{"source": source.pk, "people_count": 80, "confidential": True}])

        answer = logged_in(client, confidential_reviewer).post(ADD, {**post, "confidential": "on"})

        assert answer.status_code == 302
        incident = Incident.objects.get(title=post["title"])
        assert incident.confidential and incident.claims.get().confidential


class TestLostUpdates:
    def test_the_second_of_two_analysts_gets_a_conflict_and_overwrites_nothing(self, client, analyst):
        incident = make_incident(review_state="draft")
        other_analyst = make_user(roles.ANALYST, username="alice")
        first_form = incident_post(incident=incident, title="Alice's title")
        second_form = incident_post(incident=incident, title="Bob's title")
        logged_in(client, other_analyst).post(change_url(incident), first_form)

        response = logged_in(client, analyst).post(change_url(incident), second_form)

        assert response.status_code == 200
        error = " ".join(response.context["adminform"].form.non_field_errors())
        assert f"{incident.public_id} was changed by alice" in error
        assert "Your changes were not saved" in error
        incident.refresh_from_db()
        assert incident.title == "Alice's title" and incident.version == 2

    def test_two_editors_of_one_source_the_second_gets_a_conflict_and_overwrites_nothing(self, client, analyst):
        # Sources, places, organizations, incident types and responses carry their version too.
        source = make_source(title="Daily NK")
        url = reverse("admin:incidents_source_change", args=[source.pk])
        form = {"kind": "news_article", "language": "en", "expected_version": source.version}
        other_analyst = make_user(roles.ANALYST, username="alice")
        logged_in(client, other_analyst).post(url, {**form, "title": "Daily NK (Seoul)"})

        response = logged_in(client, analyst).post(url, {**form, "title": "Daily NK, edited"})

        assert response.status_code == 200
        error = " ".join(response.context["adminform"].form.non_field_errors())
        assert "Source “Daily NK (Seoul)” was changed" in error and "Your changes were not saved" in error
        source.refresh_from_db()
        assert (source.title, source.version) == ("Daily NK (Seoul)", 2)
        assert (
            logged_in(client, analyst).post(url, {**form, "title": "Edited", "expected_version": 2}).status_code == 302
        )
        source.refresh_from_db()
        assert (source.title, source.version) == ("Edited", 3)

    def test_a_form_with_a_version_the_record_never_had_is_refused_naming_it(self, client, analyst):
        incident = make_incident(review_state="draft")
        form = {**incident_post(incident=incident, title="Changed"), "expected_version": 10**30}

        response = logged_in(client, analyst).post(change_url(incident), form)

        assert response.status_code == 200
        errors = " ".join(response.context["adminform"].form.non_field_errors())
        assert f"never had version {10**30}" in errors
        incident.refresh_from_db()
        assert (incident.title, incident.version) != ("Changed", 2)

    def test_a_form_without_its_version_is_refused(self, client, analyst):
        incident = make_incident(review_state="draft")
        form = incident_post(incident=incident, title="Changed")
        del form["expected_version"]

        response = logged_in(client, analyst).post(change_url(incident), form)

        assert "reload the page" in " ".join(response.context["adminform"].form.non_field_errors())
        incident.refresh_from_db()
        assert incident.title != "Changed"

    def test_a_save_that_changes_nothing_says_so_not_changed_successfully(self, client, analyst):
        # The services wrote nothing, and Django's message said "was changed successfully".
        incident = make_incident(review_state="draft")
        place = make_place(name="Hyesan", kind="city", country="KP")
        logged_in(client, analyst)
        place_url = reverse("admin:incidents_place_change", args=[place.pk])

        saved_incident = saved_unchanged(client, change_url(incident), "incident_form")
        saved_place = saved_unchanged(client, place_url, "place_form")
        continued = saved_unchanged(client, place_url, "place_form", _continue="Save and continue editing")

        assert saved_incident.status_code == 302, saved_incident.content
        assert messages_of(saved_incident) == [
            f'The incident “<a href="{change_url(incident)}">{incident}</a>” was not changed: nothing in the form '
            "differed from what is saved."
        ]
        assert (saved_place.status_code, saved_place.url) == (302, reverse("admin:incidents_place_changelist"))
        assert messages_of(saved_place) == [
            f'The place “<a href="{place_url}">Hyesan</a>” was not changed: nothing in the form differed from what '
            "is saved."
        ]
        assert (continued.status_code, continued.url) == (302, place_url)
        assert Place.objects.get(pk=place.pk).version == place.version
        # Nor does the admin's log ("Recent actions") list a change that did not happen.
        assert not LogEntry.objects.filter(action_flag=CHANGE).exists()
        # A Save that changes something says so, as Django does, and logs it.
        changed = saved_unchanged(client, place_url, "place_form", name="Hyesan City")
        assert messages_of(changed) == [f'The place “<a href="{place_url}">Hyesan City</a>” was changed successfully.']
        assert list(LogEntry.objects.filter(action_flag=CHANGE).values_list("object_repr", flat=True)) == [
            "Hyesan City"
        ]

    def test_a_save_that_changes_nothing_moves_no_version_and_writes_no_history(self, client, analyst):
        # The form as rendered to an Analyst (the claims hidden from them not on it): the incident
        # got a new version, told to every reader with Confidential access, and an update event
        # for itself and each claim on the form; a source citing a hidden one, likewise.
        secret = make_source(title="Informant K", confidential=True)
        relay = make_source(title="Relay article", cites=secret)
        incident = make_incident(review_state="draft", places=[make_place(name="China", kind="country", country="CN")])
        make_claim(incident=incident, source=relay, people_count=30)
        make_claim(incident=incident, source=relay, confidential=True, people_count=12)
        make_claim(incident=incident, source=secret, people_count=50)
        claims = sorted(Claim.objects.filter(incident=incident).values_list("pk", "people_count", "confidential"))
        history = history_row_count()
        logged_in(client, analyst)

        assert saved_unchanged(client, change_url(incident), "incident_form").status_code == 302
        source_url = reverse("admin:incidents_source_change", args=[relay.pk])
        assert saved_unchanged(client, source_url, "source_form").status_code == 302

        assert sorted(Claim.objects.filter(incident=incident).values_list("pk", "people_count", "confidential")) == (
            claims
        )
        assert Incident.objects.get(pk=incident.pk).version == incident.version
        assert Source.objects.values_list("cites", "version").get(pk=relay.pk) == (secret.pk, relay.version)
        assert history_row_count() == history


def run_action(client, action: str, *incidents):
    return client.post(
        CHANGELIST, {"action": action, "_selected_action": [incident.pk for incident in incidents]}, follow=True
    )


class TestReviewWorkflow:
    def test_analyst_submits_a_draft_for_review(self, client, analyst):
        incident = make_incident(review_state="draft")

        response = run_action(logged_in(client, analyst), "submit_for_review", incident)

        incident.refresh_from_db()
        assert incident.review_state == "in_review" and incident.updated_by == analyst
        assert f"Submitted for review: {incident.public_id}." in messages_of(response)

    def test_analyst_may_not_publish_even_by_posting_the_action(self, client, analyst):
        incident = make_incident(review_state="in_review")

        # The menu does not offer it (tests/test_admin_records.py); a hand-made POST changes nothing.
        response = run_action(logged_in(client, analyst), "publish", incident)

        incident.refresh_from_db()
        assert incident.review_state == "in_review" and incident.version == 1
        assert messages_of(response) == ["No action selected."]

    def test_analyst_may_not_mark_verified(self, client, analyst):
        incident = make_incident(review_state="in_review")

        response = run_action(logged_in(client, analyst), "mark_verified", incident)

        incident.refresh_from_db()
        assert incident.verification == "alleged"
        assert messages_of(response) == ["No action selected."]

    def test_viewer_may_not_even_submit(self, client, viewer):
        incident = make_incident(review_state="draft")

        response = run_action(logged_in(client, viewer), "submit_for_review", incident)

        incident.refresh_from_db()
        assert incident.review_state == "draft"
        assert messages_of(response) == ["No action selected."]

    def test_reviewer_publishes_verifies_and_returns_to_draft(self, client, reviewer):
        incident = make_incident(review_state="in_review")
        logged_in(client, reviewer)

        run_action(client, "publish", incident)
        incident.refresh_from_db()
        assert incident.review_state == "published"

        run_action(client, "mark_verified", incident)
        incident.refresh_from_db()
        assert incident.verification == "verified"

        run_action(client, "return_to_draft", incident)
        incident.refresh_from_db()
        assert incident.review_state == "draft" and incident.version == 4

    def test_one_refusal_leaves_every_selected_incident_unchanged(self, client, analyst):
        draft = make_incident(review_state="draft")
        already_in_review = make_incident(review_state="in_review")

        response = run_action(logged_in(client, analyst), "submit_for_review", draft, already_in_review)

        draft.refresh_from_db()
        assert draft.review_state == "draft"
        assert f"{already_in_review.public_id} is in review" in messages_of(response)[0]

    def test_review_fields_are_not_editable_on_the_form(self, client, analyst):
        incident = make_incident(review_state="draft")

        response = logged_in(client, analyst).post(
            change_url(incident), incident_post(incident=incident, review_state="published", verification="verified")
        )

        assert response.status_code == 302
        incident.refresh_from_db()
        assert incident.review_state == "draft" and incident.verification == "alleged"

    def test_a_reviewer_sets_any_verification_the_page_may_suggest(self, client, reviewer):
        # Only "Mark verified" was offered: the page's "suggests Corroborated; a Reviewer decides."
        # had no way to be followed, nor could a report be marked disputed or retracted.
        incident = make_incident(review_state="published")
        logged_in(client, reviewer)

        for verification in ["corroborated", "disputed", "retracted", "alleged"]:
            response = run_action(client, f"mark_{verification}", incident)
            incident.refresh_from_db()
            assert incident.verification == verification
        assert messages_of(response) == [f"Marked alleged: {incident.public_id}."]

    def test_an_analyst_may_not_set_verification_by_any_action(self, client, analyst):
        incident = make_incident(review_state="in_review")

        response = run_action(logged_in(client, analyst), "mark_corroborated", incident)

        incident.refresh_from_db()
        assert incident.verification == "alleged"
        assert messages_of(response) == ["No action selected."]

    def test_the_incidents_page_offers_the_review_actions_its_state_allows(self, client, reviewer, analyst):
        incident = make_incident(review_state="in_review", verification="corroborated")

        offered = logged_in(client, reviewer).get(change_url(incident)).context["review_actions"]

        assert [name for name, _ in offered] == [
            "publish",
            "return_to_draft",
            "mark_alleged",
            "mark_verified",
            "mark_disputed",
            "mark_retracted",
        ]
        draft = make_incident(review_state="draft")
        assert logged_in(client, analyst).get(change_url(draft)).context["review_actions"] == [
            ("submit_for_review", "Submit for review")
        ]

    def test_a_reviewer_publishes_from_the_incidents_page_and_goes_back_to_the_queue(self, client, reviewer):
        incident = make_incident(review_state="in_review")
        queue = f"{CHANGELIST}?review_state__exact=in_review"
        logged_in(client, reviewer)

        page = client.get(change_url(incident), {"_changelist_filters": "review_state__exact=in_review"})
        form = re.search(r'<form method="post" action="([^"]+)" class="review-actions', page.content.decode())
        response = client.post(
            html.unescape(form.group(1)), {"action": "publish", "_selected_action": incident.pk, "index": 0}
        )

        assert response.status_code == 302 and response.url == queue
        incident.refresh_from_db()
        assert incident.review_state == "published"
        assert messages_of(client.get(queue)) == [f"Published: {incident.public_id}."]

    def test_a_review_button_applies_to_the_version_the_page_showed_not_a_colleagues_save_since(self, client, reviewer):
        # The button published whatever was saved when it was clicked: a colleague's edit made
        # while the Reviewer read the page went out unread.
        incident = make_incident(review_state="in_review")
        logged_in(client, reviewer)
        page = client.get(change_url(incident)).content.decode()
        shown = re.search(r'name="reviewed_version" value="(staff\.\d+)"', page).group(1)
        services.incident_update(
            incident=incident, user=make_user(roles.ANALYST), expected_version=incident.version, data={"title": "Later"}
        )

        for action in ("publish", "mark_verified"):
            response = client.post(
                CHANGELIST, {"action": action, "_selected_action": incident.pk, "index": 0, "reviewed_version": shown}
            )
            [message] = messages_of(client.get(response.url))
            assert message.startswith(f"Nothing was changed. {incident.public_id} was changed by ")
        incident.refresh_from_db()
        assert (incident.review_state, incident.verification, incident.title) == ("in_review", "alleged", "Later")
        # Read again, the page's version is the saved one, and its button publishes.
        page = client.get(change_url(incident)).content.decode()
        shown = re.search(r'name="reviewed_version" value="(staff\.\d+)"', page).group(1)
        client.post(
            CHANGELIST, {"action": "publish", "_selected_action": incident.pk, "index": 0, "reviewed_version": shown}
        )
        incident.refresh_from_db()
        assert incident.review_state == "published"

    @pytest.mark.parametrize("refused_for", ["a colleague's save", "a date before the start"])
    def test_after_a_refused_save_the_review_buttons_apply_to_the_version_the_page_was_opened_at(
        self, client, reviewer, refused_for
    ):
        # The page shown again after a refused save gave its buttons the version stored then: a
        # colleague's 5,000 saved while the Reviewer read 500 was published unread by her Publish.
        incident = make_incident(review_state="in_review", people_count=500)
        logged_in(client, reviewer)
        form = form_fields(client.get(change_url(incident)).content.decode(), "incident_form")
        if refused_for == "a colleague's save":
            services.incident_update(
                incident=incident,
                user=make_user(roles.ANALYST),
                expected_version=incident.version,
                data={"people_count": 5000},
            )
        else:
            form["date_end"] = "2000-01-01"
        refused = client.post(change_url(incident), {**form, "_save": "Save"})
        assert refused.status_code == 200
        shown = re.search(r'name="reviewed_version" value="([^"]*)"', refused.content.decode()).group(1)

        client.post(
            CHANGELIST, {"action": "publish", "_selected_action": incident.pk, "index": 0, "reviewed_version": shown}
        )

        incident.refresh_from_db()
        expected = "in_review" if refused_for == "a colleague's save" else "published"
        assert incident.review_state == expected

    @pytest.mark.parametrize(("action", "done"), [("publish", "published"), ("mark_verified", "marked verified")])
    def test_a_selection_holding_nothing_the_reviewer_may_change_says_nothing_was_changed(
        self, client, reviewer, action, done
    ):
        # A hidden incident's id (one made confidential since the page was shown) and a deleted
        # one's: the message read "Published: ." as if something had been.
        hidden = make_incident(review_state="in_review", confidential=True)
        gone = make_incident(review_state="in_review")
        gone_id = gone.pk
        gone.delete()

        response = logged_in(client, reviewer).post(
            CHANGELIST, {"action": action, "_selected_action": [hidden.pk, gone_id]}, follow=True
        )

        assert messages_of(response) == [
            f"Nothing was changed. None of the selected incidents could be {done}: none is in this list any "
            "longer (deleted, merged, changed out of its filters, or hidden from you since the page was shown). "
            "Reload the list and select them again."
        ]
        hidden.refresh_from_db()
        assert (hidden.review_state, hidden.verification) == ("in_review", "alleged")

    @pytest.mark.parametrize("sent", ["9" * 5000, "abc", "²"], ids=["past int's digits", "letters", "not ASCII"])
    def test_a_review_button_sending_no_version_the_page_wrote_changes_nothing(self, client, sent):
        # A run of digits longer than int() reads was a 500; letters were taken for the list's
        # "no version" and published whatever version was stored.
        incident = make_incident(review_state="in_review")
        client.force_login(make_user(roles.REVIEWER))
        response = client.post(
            CHANGELIST, {"action": "publish", "_selected_action": incident.pk, "index": 0, "reviewed_version": sent}
        )
        assert response.status_code == 302
        [message] = messages_of(client.get(response.url))
        assert message == "Nothing was changed. This is no version the incident's page showed: reload the page."
        incident.refresh_from_db()
        assert incident.review_state == "in_review"


def make_pair(first, second, **fields) -> DuplicatePair:
    first, second = sorted([first, second], key=lambda incident: incident.pk)
    return DuplicatePair.objects.create(incident_a=first, incident_b=second, **{"score": 0.9, **fields})


class TestWhatWaitsForAReviewer:
    def test_home_counts_what_waits_and_links_each_queue(self, client, reviewer):
        in_review = [make_incident(review_state="in_review") for _ in range(2)]
        make_incident(review_state="in_review", confidential=True)  # not theirs to see, so not counted
        published = make_incident()
        services.incident_update(
            incident=published, user=make_user(roles.ANALYST), expected_version=1, data={"title": "Proposed"}
        )
        make_pair(*in_review)
        make_pair(in_review[0], published, decision="different", decided_at=published.updated_at)
        # Judged the same by a Reviewer and not merged: still work to do.
        make_pair(in_review[1], published, decision="same", decided_at=published.updated_at)
        # Judged the same and merged (its incident lives on in the survivor): done.
        survivor, merged = make_incident(), make_incident()
        make_pair(survivor, merged, decision="same", decided_at=published.updated_at)
        Incident.objects.filter(pk=merged.pk).update(merged_into=survivor)
        # One the reader may not see, judged the same and not merged: neither counted nor named.
        make_pair(published, make_incident(confidential=True), decision="same", decided_at=published.updated_at)

        response = logged_in(client, reviewer).get(reverse("admin:index"))

        waiting = re.search(r'<div class="module" id="waiting-module">.*?</div>', response.content.decode(), re.S)
        links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', waiting.group(0))
        assert [(html.unescape(url), text) for url, text in links] == [
            (f"{CHANGELIST}?review_state__exact=in_review", "2 incidents in review"),
            (reverse("admin:incidents_incidentrevision_changelist") + "?state__exact=pending", "1 proposed revision"),
            (
                reverse("admin:incidents_duplicatepair_changelist") + "?decision__exact=waiting",
                "2 duplicate pairs to review or merge",
            ),
        ]
        # The link opens on the very pairs counted, and so does the list without a filter.
        pairs = reverse("admin:incidents_duplicatepair_changelist")
        counted = client.get(html.unescape(links[2][0])).context["cl"].result_list
        assert len(counted) == 2 and set(counted) == set(client.get(pairs).context["cl"].result_list)

    def test_the_revisions_and_pairs_queues_open_on_what_waits_and_all_shows_every_row(self, client, reviewer):
        # The lists opened on every row, decided ones mixed in with those that wait.
        first, second, third = (make_incident(title=title) for title in ("First", "Second", "Third"))
        for incident in (first, second):
            services.incident_update(
                incident=incident, user=make_user(roles.ANALYST), expected_version=1, data={"title": "Proposed"}
            )
        services.incident_revision_reject(revision=second.revisions.get(), user=reviewer, note="")
        waiting_pair = make_pair(first, second)
        decided_pair = make_pair(first, third, decision="different", decided_at=first.updated_at)
        waiting_revision, decided_revision = first.revisions.get(), second.revisions.get()
        logged_in(client, reviewer)
        queues = [
            ("incidentrevision", "state__exact", [waiting_revision], [waiting_revision, decided_revision]),
            ("duplicatepair", "decision__exact", [waiting_pair], [waiting_pair, decided_pair]),
        ]
        for (model_name, parameter, waiting, every), home_value in zip(queues, ("pending", "waiting"), strict=True):
            url = reverse(f"admin:incidents_{model_name}_changelist")
            bare = client.get(url)
            shown = set(bare.context["cl"].result_list)
            assert shown == set(waiting), model_name
            # Home's link selects the same rows; the sidebar's "All" shows every row.
            assert set(client.get(url, {parameter: home_value}).context["cl"].result_list) == shown
            assert f'href="?{parameter}=all"' in bare.content.decode()
            assert set(client.get(url, {parameter: "all"}).context["cl"].result_list) == set(every), model_name
            refused = client.get(url, {parameter: "later"})
            assert refused.status_code == 400 and parameter in refused.content.decode()
        # A revision's queue has no choice of its own: "pending" is what waits.
        assert (
            client.get(reverse("admin:incidents_incidentrevision_changelist"), {"state__exact": "waiting"}).status_code
            == 400
        )

    # Each write its own transaction, so that the history's times (a transaction's start) differ.
    @pytest.mark.django_db(transaction=True)
    def test_the_incidents_in_review_sort_by_when_they_were_submitted(self, client, reviewer):
        analyst, confidential_reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)

        def submit(incident, user=analyst):
            return services.incident_transition(incident=incident, action="submit", user=user)

        returned = submit(make_incident(review_state="draft", title="Submitted first, returned, submitted last"))
        older = submit(make_incident(review_state="draft", title="Submitted second"))
        hidden_then = submit(
            make_incident(review_state="draft", title="Submitted third", confidential=True), confidential_reviewer
        )
        submit(make_incident(review_state="draft", title="Submitted fourth"))
        # Edited in review: its last change is now the latest but one, its submission unchanged.
        older = services.incident_update(
            incident=older, user=analyst, expected_version=older.version, data={"title": "Submitted second, edited"}
        )
        returned = services.incident_transition(incident=returned, action="return_to_draft", user=reviewer)
        services.incident_update(
            incident=hidden_then, user=confidential_reviewer, expected_version=hidden_then.version,
            data={"confidential": False},
        )  # fmt: skip
        submit(returned)

        def listed(user, **query):
            response = logged_in(client, user).get(CHANGELIST, query)
            return response.context["cl"]

        in_review = {"review_state__exact": "in_review"}
        # The list opens oldest submitted first (it opened by incident date).
        oldest_first = [incident.title for incident in listed(reviewer, **in_review).result_list]
        seen_whole = [incident.title for incident in listed(confidential_reviewer, **in_review).result_list]
        column = listed(reviewer, **in_review).list_display.index("submitted_at")
        by_column = [incident.title for incident in listed(reviewer, **in_review, o=str(column)).result_list]
        newest_first = [incident.title for incident in listed(reviewer, **in_review, o=f"-{column}").result_list]

        assert "submitted_at" not in listed(reviewer).list_display
        # Made public in review, it counts from then for a Reviewer shown none of its confidential states.
        assert oldest_first == ["Submitted second, edited", "Submitted fourth", "Submitted third", returned.title]
        assert seen_whole == ["Submitted second, edited", "Submitted third", "Submitted fourth", returned.title]
        assert by_column == oldest_first and newest_first == oldest_first[::-1]
        by_last_change = sorted(listed(reviewer, **in_review).result_list, key=lambda incident: incident.updated_at)
        assert [incident.title for incident in by_last_change][:2] == ["Submitted fourth", "Submitted second, edited"]
        # The other lists keep their order, newest incident first (all of one day here: newest row first).
        every = [incident.pk for incident in listed(reviewer).result_list]
        assert every == sorted(every, reverse=True)

    def test_the_incidents_in_review_list_costs_a_fixed_number_of_queries(self, client, reviewer):
        def in_review_page_queries() -> int:
            with CaptureQueriesContext(connection) as queries:
                response = client.get(CHANGELIST, {"review_state__exact": "in_review"})
            assert response.status_code == 200
            return len(queries.captured_queries)

        logged_in(client, reviewer)
        for _ in range(2):
            services.incident_transition(
                incident=make_incident(review_state="draft"), action="submit", user=make_user(roles.ANALYST)
            )
        few = in_review_page_queries()
        for _ in range(6):
            services.incident_transition(
                incident=make_incident(review_state="draft", places=[make_place()]),
                action="submit",
                user=make_user(roles.ANALYST),
            )
        assert in_review_page_queries() == few

    def test_an_incidents_page_names_the_pairs_it_waits_in(self, client, reviewer):
        incident = make_incident(title="Tumen, 80 people")
        other = make_incident(title="Eighty people returned from Tumen")
        pair = make_pair(incident, other)
        make_pair(incident, make_incident(), decision="different", decided_at=incident.updated_at)
        make_pair(incident, make_incident(confidential=True))  # hidden from this Reviewer
        # Judged the same, its merge refused or left: it waits for the merge, and says so.
        same = make_pair(incident, make_incident(), decision="same", decided_at=incident.updated_at, score=0.8)
        # One whose other incident was merged into a third: nothing to do with this pair.
        merged = make_incident()
        make_pair(incident, merged, score=0.7)
        Incident.objects.filter(pk=merged.pk).update(merged_into=other)

        response = logged_in(client, reviewer).get(change_url(incident))

        pair_url = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
        same_url = reverse("admin:incidents_duplicatepair_change", args=[same.pk])
        same_other = same.incident_b if same.incident_a_id == incident.pk else same.incident_a
        assert messages_of(response) == [
            f'{incident.public_id} may be a second report of: <a href="{pair_url}">{other}</a> (score 0.90), '
            f'<a href="{same_url}">{same_other}</a> (score 0.80; decided the same, not merged yet). '
            "Open a pair to compare and decide."
        ]


class TestHistory:
    def test_queryset_update_is_recorded(self):
        incident = make_incident(title="Before")

        Incident.objects.filter(pk=incident.pk).update(title="After")

        updates = Events.objects.tracks(incident).filter(pgh_label="update")
        assert [event.pgh_diff["title"] for event in updates] == [["Before", "After"]]

    def test_bulk_create_is_recorded(self):
        organizations = Organization.objects.bulk_create([Organization(name="Bulk one"), Organization(name="Bulk two")])

        inserts = Events.objects.tracks(organizations).filter(pgh_label="insert")
        assert sorted(event.pgh_data["name"] for event in inserts) == ["Bulk one", "Bulk two"]

    def test_history_page_shows_who_changed_what_from_what_to_what(self, client, analyst):
        analyst.username = "kim.analyst"
        analyst.save()
        incident = make_incident(title="Old title", review_state="draft")
        logged_in(client, analyst).post(change_url(incident), incident_post(incident=incident, title="New title"))

        page = client.get(history_url(incident)).content.decode()

        row = next(row for row in re.findall(r"<tr>.*?</tr>", page, re.DOTALL) if "New title" in row)
        assert "kim.analyst" in row and "<strong>Title</strong>: Old title → New title" in row

    def test_history_page_shows_the_date_each_version_was_labelled_with(self, client, analyst):
        # The history keeps each version's generated label as the incident stored it (migration 0055).
        incident = make_incident(
            date_start=date(2023, 8, 29), date_end=date(2023, 8, 29), date_precision="day", review_state="draft"
        )
        logged_in(client, analyst).post(
            change_url(incident),
            incident_post(incident=incident, date_start="2023-08-01", date_end="2023-08-31", date_precision="month"),
        )

        page = client.get(history_url(incident)).content.decode()

        assert "<strong>Date label</strong>: 29 August 2023 → August 2023" in page
        assert f"<strong>Public id</strong>: — → {incident.public_id}" in page

    def test_incident_history_includes_its_claims_and_places_by_name(self, client, analyst):
        incident = make_incident(places=[make_place(name="Dandong")])
        make_claim(incident=incident, source=make_source(title="Daily NK"), excerpt="eighty people were sent back")

        page = logged_in(client, analyst).get(history_url(incident)).content.decode()

        assert "eighty people were sent back" in page
        assert "Claim (Daily NK) added" in page
        assert "<strong>Source</strong>: — → Daily NK" in page
        assert "Place: Dandong added" in page
        assert f"<strong>Public id</strong>: — → {incident.public_id}" in page

    def test_history_does_not_name_a_hidden_source(self, client, reviewer):
        relay = make_source(title="Relay", cites=make_source(title="Informant testimony", confidential=True))

        page = logged_in(client, reviewer).get(history_url(relay)).content.decode()

        assert "Cites" not in page and "a record you may not see" not in page
        assert "Informant testimony" not in page and f"#{relay.cites_id}" not in page

    def test_history_of_other_records_shows_their_changes(self, client, analyst):
        place = make_place(name="Sinuiju")
        Place.objects.filter(pk=place.pk).update(name="Sinŭiju")

        page = logged_in(client, analyst).get(history_url(place)).content.decode()

        assert "Sinuiju → Sinŭiju" in page

    def test_history_is_read_only(self, client, reviewer):
        incident = make_incident(title="Kept")
        logged_in(client, reviewer)
        events_before = Events.objects.tracks(incident).count()

        page = client.get(history_url(incident)).content.decode()
        response = client.post(history_url(incident), {"title": "Changed"})

        assert "<form" not in page.split('id="content-main"')[1]
        assert response.status_code == 405
        assert Events.objects.tracks(incident).count() == events_before
        # The event tables are append-only in the database itself.
        with pytest.raises(ProgrammingError, match="Cannot update or delete"), transaction.atomic():
            Incident.pgh_event_models["update"].objects.update(title="Rewritten")


class TestPossibleDuplicates:
    def test_saving_warns_about_incidents_alike_with_links_and_still_saves(self, client, analyst, settings):
        settings.DUPLICATE_WINDOW_DAYS = 7
        dandong, sinuiju = make_place(name="Dandong", country="CN"), make_place(name="Sinuiju", country="KP")
        same_place = make_incident(title="Same place", date_start=date(2023, 9, 3), date_end=date(2023, 9, 3))
        same_place.places.set([dandong])
        make_incident(title="Same country", places=[make_place(name="Tumen", country="CN")])
        make_incident(title="Other country", places=[make_place(name="Vladivostok", country="RU")])
        make_incident(title="Too far apart", date_start=date(2023, 10, 1), date_end=date(2023, 10, 1), places=[dandong])
        make_incident(title="Other type", incident_type=incident_type("arbitrary-detention"), places=[dandong])

        response = logged_in(client, analyst).post(ADD, incident_post(places=[dandong, sinuiju]), follow=True)

        warning = next(message for message in messages_of(response) if message.startswith("Possible duplicates"))
        assert "Same place" in warning and "Same country" in warning
        assert f'href="{change_url(same_place)}"' in warning
        assert "Other country" not in warning and "Too far apart" not in warning and "Other type" not in warning
        assert Incident.objects.filter(title=incident_post()["title"]).exists()

    def test_the_window_is_configurable(self, client, analyst, settings):
        settings.DUPLICATE_WINDOW_DAYS = 0
        dandong = make_place(country="CN")
        make_incident(title="Five days later", date_start=date(2023, 9, 3), date_end=date(2023, 9, 3), places=[dandong])

        response = logged_in(client, analyst).post(ADD, incident_post(places=[dandong]), follow=True)

        assert not [message for message in messages_of(response) if message.startswith("Possible duplicates")]

    # The last day a date can have only ends a range: a start after today is refused.
    @pytest.mark.parametrize(("start", "end"), [("0001-01-01", "0001-01-01"), ("2023-08-29", "9999-12-31")])
    def test_an_incident_on_the_first_or_last_day_a_date_can_have_is_saved_and_compared(
        self, client, analyst, start, end
    ):
        dandong = make_place(country="CN")
        twin = make_incident(title="Same day", date_start=date.fromisoformat(start), date_end=date.fromisoformat(end))
        twin.places.set([dandong])

        response = logged_in(client, analyst).post(
            ADD, incident_post(places=[dandong], date_start=start, date_end=end), follow=True
        )

        assert response.status_code == 200
        assert any("Same day" in message for message in messages_of(response))

    def test_hidden_incidents_are_not_offered_as_duplicates(self, client, analyst):
        dandong = make_place(country="CN")
        make_incident(title="Confidential twin", confidential=True, places=[dandong])

        response = logged_in(client, analyst).post(ADD, incident_post(places=[dandong]), follow=True)

        assert not any("Confidential twin" in message for message in messages_of(response))


class TestChangelistAtScale:
    def make_incidents(self, number: int) -> None:
        for _ in range(number):
            incident = make_incident(places=[make_place(), make_place()])
            make_claim(incident=incident)
            make_claim(incident=incident)

    @pytest.mark.parametrize("incidents_on_page", [2, 30])
    def test_query_count_does_not_grow_with_the_page(
        self, client, analyst, incidents_on_page, django_assert_num_queries
    ):
        self.make_incidents(incidents_on_page)
        logged_in(client, analyst)

        # session, user, user's permissions, groups' permissions; the type filter's types and the
        # country filter's countries; the planner's row estimate and (small result) an exact count;
        # the page of incidents with their types; their places (one prefetch).
        with django_assert_num_queries(10):
            response = client.get(CHANGELIST, {"review_state__exact": "published"})

        assert len(response.context["cl"].result_list) == incidents_on_page

    def test_search_and_filters_keep_the_same_query_count(self, client, analyst, django_assert_num_queries):
        self.make_incidents(3)
        logged_in(client, analyst)

        # As above, and the search's count of its matches in its index (which chooses its plan): the
        # search and the filters are conditions of the same two counting and listing queries.
        with django_assert_num_queries(11):
            response = client.get(CHANGELIST, {"q": "Incident", "country": "CN", "date_from": "2023-01-01"})

        assert len(response.context["cl"].result_list) == 3

    def test_the_list_never_counts_the_whole_table(self, client, confidential_reviewer):
        self.make_incidents(3)
        logged_in(client, confidential_reviewer)

        with CaptureQueriesContext(connection) as queries:
            client.get(CHANGELIST)

        counts = [query["sql"] for query in queries if "COUNT(" in query["sql"]]
        # Without show_full_result_count there is no second count of the unfiltered list, and the one
        # the paginator makes asks PostgreSQL's statistics first.
        assert len(counts) <= 1
        assert any("reltuples" in query["sql"] for query in queries)

    def test_the_list_says_when_its_count_is_an_estimate(self, client, confidential_reviewer, monkeypatch):
        self.make_incidents(3)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE incidents_incident")
        logged_in(client, confidential_reviewer)

        exact = client.get(CHANGELIST).content.decode()
        # As if the table were large: three rows are then above the threshold for counting.
        monkeypatch.setattr(EstimatedCountPaginator, "exact_count_below", 1)
        estimated = client.get(CHANGELIST).content.decode()

        assert '<span id="result-count">3 incidents</span>' in exact
        assert '<span id="result-count">about 3 incidents</span>' in estimated


def test_search_is_served_by_one_index_per_audience(analyst, confidential_reviewer):
    make_incident(title="Caught near the border", places=[make_place(name="Dandong")])
    with connection.cursor() as cursor:
        # The test tables are tiny, where reading them whole is cheapest; ask for the large-table
        # plan, which reads only what an index condition finds.
        cursor.execute("SET LOCAL enable_seqscan = off")

    for user, index in [(analyst, "incident_search_disclosed"), (confidential_reviewer, "incident_search_complete")]:
        found = IncidentSearch.parse("Dandong border").filter(Incident.objects.visible_to(user), user=user)
        assert index in found.explain()


class TestEstimatedCountPaginator:
    def analysed_incidents(self, number: int) -> None:
        for _ in range(number):
            make_incident()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE incidents_incident")

    def count_with_queries(self, paginator):
        with CaptureQueriesContext(connection) as queries:
            count = paginator.count
        return count, [query["sql"] for query in queries]

    def test_unfiltered_large_list_uses_postgres_statistics_not_count(self):
        self.analysed_incidents(5)
        paginator = EstimatedCountPaginator(Incident.objects.order_by("-date_start"), 100)
        paginator.exact_count_below = 5

        count, queries = self.count_with_queries(paginator)

        assert count == 5 and paginator.count_kind == "estimate"
        assert len(queries) == 1 and "reltuples" in queries[0] and "COUNT(" not in queries[0]

    def test_filtered_large_list_uses_the_planners_estimate(self):
        self.analysed_incidents(5)
        paginator = EstimatedCountPaginator(Incident.objects.filter(people_count__gte=0), 100)
        paginator.exact_count_below = 5

        count, queries = self.count_with_queries(paginator)

        assert count == 5
        assert len(queries) == 1 and "EXPLAIN" in queries[0]

    def test_an_underestimated_result_is_counted_only_up_to_the_threshold(self):
        self.analysed_incidents(5)
        for _ in range(3):
            make_incident()  # not yet in the statistics, which still say 5
        paginator = EstimatedCountPaginator(Incident.objects.all(), 100)
        paginator.exact_count_below = 6

        count, queries = self.count_with_queries(paginator)

        assert count == 6 and paginator.count_kind == "at_least"
        assert "LIMIT 6" in queries[-1]

    def test_small_results_are_counted_exactly(self):
        self.analysed_incidents(5)
        make_incident()  # not yet in the statistics

        count, queries = self.count_with_queries(EstimatedCountPaginator(Incident.objects.all(), 100))

        assert count == 6
        assert "COUNT(" in queries[-1]


class TestConfidentialityElsewhere:
    def test_deleting_without_confidential_access_is_refused_alike_whatever_depends_on_it(self, client, reviewer):
        # Refusing only when a confidential record depends on it would reveal that one does.
        publisher, unused = make_organization(name="Daily NK"), make_organization(name="Unused")
        make_source(title="Informant testimony", publisher=publisher, confidential=True)
        logged_in(client, reviewer)

        answers = [
            client.post(reverse("admin:incidents_organization_delete", args=[organization.pk]), {"post": "yes"})
            for organization in (publisher, unused)
        ]

        assert [answer.status_code for answer in answers] == [403, 403]
        assert "Informant testimony" not in answers[0].content.decode()
        assert Organization.objects.filter(pk__in=[publisher.pk, unused.pk]).count() == 2
        page = client.get(reverse("admin:incidents_organization_change", args=[unused.pk])).content.decode()
        assert "deletelink" not in page

    def test_deleting_an_incident_with_a_hidden_claim_is_refused(self, client, reviewer):
        incident = make_incident()
        make_claim(incident=incident, confidential=True)

        client = logged_in(client, reviewer)
        client.post(reverse("admin:incidents_incident_delete", args=[incident.pk]), {"post": "yes"})

        assert Incident.objects.filter(pk=incident.pk).exists()

    def test_reviewer_with_confidential_access_deletes(self, client, confidential_reviewer):
        incident = make_incident()
        make_claim(incident=incident, confidential=True)

        logged_in(client, confidential_reviewer).post(
            reverse("admin:incidents_incident_delete", args=[incident.pk]), {"post": "yes"}
        )

        assert not Incident.objects.filter(pk=incident.pk).exists()

    def test_a_response_about_a_hidden_incident_keeps_that_link_when_edited(self, client, reviewer):
        hidden, shown = make_incident(confidential=True), make_incident(title="Shown incident")
        response_record = Response.objects.create(
            organization=make_organization(), kind="statement", date=date(2023, 9, 1)
        )
        response_record.incidents.set([hidden, shown])
        url = reverse("admin:incidents_response_change", args=[response_record.pk])
        logged_in(client, reviewer)

        page = client.get(url).content.decode()
        client.post(
            url,
            {
                "organization": response_record.organization_id,
                "kind": "formal_protest",
                "date": "2023-09-01",
                "incidents": [shown.pk],
                "expected_version": response_record.version,
            },
        )

        assert hidden.title not in page
        response_record.refresh_from_db()
        assert response_record.kind == "formal_protest"
        assert set(response_record.incidents.all()) == {hidden, shown}

    def test_viewer_reads_but_cannot_change(self, client, viewer):
        incident = make_incident(title="Read only", places=[make_place(name="Dandong")])
        logged_in(client, viewer)

        page = client.get(change_url(incident)).content.decode()
        assert "Dandong" in page and "Expected version" not in page
        response = client.post(change_url(incident), incident_post(incident=incident, title="Changed"))

        assert response.status_code == 403
        incident.refresh_from_db()
        assert incident.title == "Read only"


@pytest.mark.parametrize("claims", [1, 6])
def test_history_page_query_count_does_not_grow_with_events(client, analyst, claims, django_assert_num_queries):
    incident = make_incident(places=[make_place()])
    for _ in range(claims):
        make_claim(incident=incident)
        make_claim(incident=incident).delete()
    with pghistory.context(user=analyst.pk):
        Incident.objects.filter(pk=incident.pk).update(title="Renamed")
    logged_in(client, analyst)

    # session, user, user's and groups' permissions; the incident (or a merged one the user may
    # follow: `history_read_by`); the ids of its claims (existing and deleted) and of its revisions the user may see;
    # when the incident, those it shares a pair or a merge with and its claims' sources were
    # confidential (their recorded states, in one query: never, here); the page of
    # events and their count; the acting users; the names of the types, incidents, places and
    # sources the events point to.
    with django_assert_num_queries(15):
        client.get(history_url(incident))


def test_a_bad_filter_value_gets_a_400_naming_the_parameter(client, analyst):
    response = logged_in(client, analyst).get(CHANGELIST, {"date_from": "29/08/2023", "country": "CN"})

    assert response.status_code == 400
    page = response.content.decode()
    errors = page.split('id="filter-errors"')[1].split("</ul>")[0]
    assert "<strong>date_from</strong>: Enter the date as YYYY-MM-DD:" in errors and "country" not in errors
    assert f'href="{CHANGELIST}?country=CN"' in page


def test_the_type_filter_lists_a_chain_of_types_deeper_than_pythons_recursion_limit(client, analyst):
    # Stored before types nested at most 10 levels: the filter's choices were made by a recursion a
    # level, and the changelist answered 500 (RecursionError).
    chain = type_chain(1100)

    response = logged_in(client, analyst).get(CHANGELIST, {"type": chain[-1].slug})

    assert response.status_code == 200
    assert "\u2003" * 1099 + "Level 1100" in response.content.decode()


class TestStaleRevisions:
    """A revision proposed from a version a later change replaced cannot be accepted: the reviewer
    rejects it and its author proposes again. The page says so, not "reload, then apply again"."""

    def revision_url(self, revision):
        return reverse("admin:incidents_incidentrevision_change", args=[revision.pk])

    def test_accepting_a_stale_revision_tells_the_reviewer_to_reject_it(self, client, analyst, reviewer):
        incident = make_incident(title="Published title")
        logged_in(client, analyst).post(change_url(incident), incident_post(incident=incident, title="First"))
        logged_in(client, analyst).post(change_url(incident), incident_post(incident=incident, title="Second"))
        first, second = incident.revisions.order_by("id")
        logged_in(client, reviewer)
        decide = "admin:incidents_incidentrevision_decide"
        client.post(reverse(decide, args=[second.pk]), {"accept": "1", "note": ""})

        page = client.get(self.revision_url(first)).content.decode()
        response = client.post(reverse(decide, args=[first.pk]), {"accept": "1", "note": ""}, follow=True)

        assert "cannot be accepted" in page and 'name="accept"' not in page and 'name="reject"' in page
        [message] = messages_of(response)
        assert f"revision {first.pk} was proposed from version 1" in message
        assert "reject it" in message and "reload it" not in message and "you edited" not in message
        incident.refresh_from_db()
        first.refresh_from_db()
        assert (incident.title, first.state) == ("Second", "pending")

    def test_a_revision_moving_an_incident_to_another_place_of_its_places_name_shows_the_move(
        self, client, analyst, reviewer
    ):
        # Compared by name, Tumen (China) for Tumen (North Korea) read "Nothing: the incident already
        # holds these values", and accepting moved the incident to another country.
        chinese_tumen, korean_tumen = two_tumens()
        incident = make_incident(places=[chinese_tumen])
        revision = services.incident_update(
            incident=incident, user=analyst, expected_version=incident.version, places=[korean_tumen]
        )

        page = html.unescape(logged_in(client, reviewer).get(self.revision_url(revision)).content.decode())

        assert "Nothing: the incident already holds these values" not in page
        assert "China > Jilin > Tumen" in page and "North Korea > North Hamgyong > Tumen" in page

    @pytest.mark.parametrize("sent", ["as a new row", "on the claim's own row"])
    def test_a_revision_moving_a_claim_to_another_source_of_its_title_shows_the_move(self, analyst, reviewer, sent):
        # Compared by title, HRW's "Annual report 2023" for Amnesty's read "Nothing: the incident
        # already holds these values", and accepting it moved the claim to the other source.
        hrw = make_source(title="Annual report 2023", publisher=make_organization(name="Human Rights Watch"))
        amnesty = make_source(title="Annual report 2023", publisher=make_organization(name="Amnesty International"))
        incident = make_incident(people_count=500)
        claim = make_claim(incident=incident, source=hrw, people_count=500)
        row = {"source": amnesty, "people_count": 500} | ({"id": claim.pk} if sent == "on the claim's own row" else {})
        revision = services.incident_update(
            incident=incident, user=analyst, expected_version=incident.version, claims=[row]
        )

        diff = client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()["diff"]

        # One row changing the claim, or (a new row) one removing HRW's and one adding Amnesty's.
        assert {row["field"] for row in diff} == {"Claims"}
        assert "Amnesty International" in str(diff) and "Human Rights Watch" in str(diff)

    def test_a_decision_naming_neither_button_changes_nothing(self, client, analyst, reviewer):
        # It rejected the revision: only Accept accepted, anything else rejected.
        incident = make_incident(title="Published title")
        logged_in(client, analyst).post(change_url(incident), incident_post(incident=incident, title="Proposed"))
        revision = incident.revisions.get()
        decide = reverse("admin:incidents_incidentrevision_decide", args=[revision.pk])

        response = logged_in(client, reviewer).post(decide, {"note": "by a script"}, follow=True)

        assert messages_of(response)[-1] == "Nothing was changed: choose Accept or Reject."
        revision.refresh_from_db()
        assert revision.state == "pending"
        client.post(decide, {"reject": "Reject", "note": ""})
        revision.refresh_from_db()
        assert revision.state == "rejected"


def test_a_published_incidents_page_names_the_revisions_that_wait_for_a_reviewer(client, analyst):
    """The page shows the published version: without a word, an analyst who reopens it after
    proposing a change sees the old values, as if the change were lost, and proposes it again."""
    incident = make_incident(title="Published title")
    form = incident_post(incident=incident, title="Proposed title")
    logged_in(client, analyst).post(change_url(incident), form, follow=True)
    revision = incident.revisions.get()

    response = client.get(change_url(incident))

    [message] = messages_of(response)
    assert f"revision {revision.pk}" in message and "wait for a Reviewer" in message
    assert reverse("admin:incidents_incidentrevision_change", args=[revision.pk]) in message
    assert "is proposed as another revision" in message
    assert response.context["adminform"].form.initial["title"] == "Published title"
    # A Reviewer's save applies at once, and leaves the waiting revision stale.
    reviewer = make_user(roles.REVIEWER)
    [message] = messages_of(logged_in(client, reviewer).get(change_url(incident)))
    assert "applies at once" in message and "stale" not in message
    logged_in(client, reviewer).post(
        change_url(incident), incident_post(incident=incident, title="Reviewed"), follow=True
    )
    [message] = messages_of(client.get(change_url(incident)))
    assert f"revision {revision.pk}</a> (by {analyst.username}; stale: it cannot be accepted)" in message
    services.incident_revision_reject(revision=revision, user=make_user(roles.REVIEWER))
    assert messages_of(client.get(change_url(incident))) == []


def test_a_pending_revisions_page_offers_its_decision_not_a_close_button_above_the_differences(client, analyst):
    # A "Close" button stood between the revision's facts and what accepting would change, above
    # the Accept and Reject buttons: two ways out, the first leaving the page undecided.
    incident = make_incident(title="Published title")
    logged_in(client, analyst).post(change_url(incident), incident_post(incident=incident, title="Proposed"))
    revision = incident.revisions.get()
    page_url = reverse("admin:incidents_incidentrevision_change", args=[revision.pk])
    reviewer = make_user(roles.REVIEWER)

    page = logged_in(client, reviewer).get(page_url).content.decode()

    assert 'class="closelink"' not in page and 'name="accept"' in page
    # Read by who may not decide, or once decided, it is a page to close.
    assert 'class="closelink"' in logged_in(client, analyst).get(page_url).content.decode()
    services.incident_revision_reject(revision=revision, user=reviewer)
    assert 'class="closelink"' in logged_in(client, reviewer).get(page_url).content.decode()


def test_home_says_where_the_history_is_not_recent_actions_it_does_not_keep(client, analyst):
    # Django's "Recent actions: None available" read its own admin log, which the project does not
    # keep (database triggers record every change), and said so after a day's edits.
    incident = make_incident(title="Before", review_state="draft")
    logged_in(client, analyst).post(change_url(incident), incident_post(incident=incident, title="After"))
    assert Events.objects.tracks(incident).filter(pgh_label="update").exists()

    home = client.get(reverse("admin:index")).content.decode()

    assert "Recent actions" not in home and "None available" not in home
    assert "open a\n    record and choose <strong>History</strong>" in home
    assert Incident.objects.get().title == "After"


def test_home_lists_the_daily_work_first(client, analyst):
    # Django lists apps and models by name: an administrator's Home began with accounts and Axes'
    # lockouts, and everyone's list of records with "Duplicate pairs", Incidents fifth.
    def listed(user):
        app_list = logged_in(client, user).get(reverse("admin:index")).context["app_list"]
        return [(app["app_label"], [model["object_name"] for model in app["models"]]) for app in app_list]

    assert listed(analyst) == [
        (
            "incidents",
            [
                "Incident",
                "Source",
                "Place",
                "Organization",
                "Response",
                "IncidentType",
                "DuplicatePair",
                "IncidentRevision",
                "IncidentMerge",
                "Release",
            ],
        )
    ]
    administrator = make_user(roles.REVIEWER, is_superuser=True)
    apps = listed(administrator)
    assert apps[0][0] == "incidents" and apps[0][1][:3] == ["Incident", "Source", "Place"]
    assert apps[0][1][-1] == "ConfidentialAccess"
    others = [label for label, _ in apps[1:]]
    assert "axes" in others and "auth" in others
    # The others keep Django's order, by their names.
    names = [app["name"] for app in client.get(reverse("admin:index")).context["app_list"][1:]]
    assert names == sorted(names, key=lambda name: str(name).lower())
    # An app's own page lists its models in the same order.
    app_page = client.get(reverse("admin:app_list", args=["incidents"]))
    assert [model["object_name"] for model in app_page.context["app_list"][0]["models"]] == apps[0][1]


def test_the_incident_list_refuses_a_filter_of_one_value_given_twice_naming_it():
    """`?country=CN&country=KP` listed North Korea's incidents alone, 200: the list's own filters
    read one value (the last); a field's filter reads every value, and still does."""
    china = make_place(name="China", kind="country", country="CN")
    korea = make_place(name="North Korea", kind="country", country="KP")
    make_incident(title="In China", places=[china])
    make_incident(title="In North Korea", places=[korea])
    client = logged_in(Client(), make_user(roles.REVIEWER))
    url = reverse("admin:incidents_incident_changelist")
    response = client.get(f"{url}?country=CN&country=KP")
    assert response.status_code == 400
    assert response.context["errors"] == {"country": ["Given 2 times; give it once."]}
    assert client.get(f"{url}?q=a&q=b").status_code == 400
    both = client.get(f"{url}?verification__exact=alleged&verification__exact=corroborated")
    assert both.status_code == 200


@pytest.mark.parametrize("model", ["incident", "source", "place", "organization", "incidenttype", "response"])
def test_a_viewer_reads_every_records_page(client, viewer, model):
    # A Viewer's pages are read-only, their forms without the fields a writer edits: the place's
    # form set the help of a `parent` field it did not have, a 500 on every place's page.
    china = make_place(name="China", kind="country", country="CN")
    records = {
        "incident": lambda: make_incident(),
        "source": lambda: make_source(),
        "place": lambda: make_place(name="Tumen", kind="city", parent=china, latitude=42.97, longitude=129.84),
        "organization": lambda: make_organization(),
        "incidenttype": lambda: incident_type("forced-repatriation"),
        "response": lambda: Response.objects.create(
            organization=make_organization(), kind="statement", date="2023-10-10"
        ),
    }
    record = records[model]()
    client.force_login(viewer)

    page = client.get(reverse(f"admin:incidents_{model}_change", args=[record.pk]))

    assert page.status_code == 200
    assert b'name="_save"' not in page.content
