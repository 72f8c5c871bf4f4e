"""An attacker's pass over every door: every URL the project serves (walked from its URL
configuration, not listed by hand), asked by an anonymous visitor, an analyst without Confidential
access and a superuser, with malformed query strings (every parameter the door's filter set,
paginator or view reads, each given empty, garbage, negative, huge, non-finite, impossible dates,
unicode, NUL bytes, very long, repeated), unknown formats and orderings, ids of hidden records in
the path, and malformed bodies for the API's writes and the admin's forms.

Whatever is asked: never a 5xx; a 400 names the parameter or field at fault; and nothing a reader
may not see (the titles of a confidential incident and source, a confidential claim's excerpt, a
draft's title for the public, a sensitive place's exact coordinates for the public) appears in any
answer, error pages included. Deterministic (a hand-made list of values, no random draws), so a
failure repeats; the module lists every failure it meets, with the request that caused it."""

from datetime import date

import pytest
from rest_framework.test import APIClient

from incidents import roles
from incidents.models import Response
from tests.api_support import client_for
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user

# Recognisable strings planted in what a reader may not see.
CONFIDENTIAL_CANARIES = ("CanaryConfidentialIncident", "CanaryConfidentialSource", "CanaryConfidentialExcerpt")
DRAFT_CANARY = "CanaryDraftIncident"
# A sensitive place's exact coordinates: the public sees those of the place containing it.
SENSITIVE_COORDINATES = ("42.123457", "129.876543")


@pytest.fixture
def world():
    """A public incident with a confidential claim, a draft, a confidential incident with a
    confidential source, and a sensitive town inside a province, each with its canary."""
    province = make_place(name="Fuzz Province", kind="province", latitude=43.0, longitude=128.0)
    town = make_place(name="Fuzz Town", parent=province, sensitive=True, latitude=42.123457, longitude=129.876543)
    organization = make_organization(name="Fuzz Police")
    public = make_incident(title="Public fuzz incident", places=[town])
    public_source = make_source(title="Public fuzz source", publisher=organization)
    make_claim(incident=public, source=public_source, excerpt="public excerpt")
    hidden_source = make_source(title=CONFIDENTIAL_CANARIES[1], confidential=True)
    make_claim(incident=public, source=hidden_source, excerpt=CONFIDENTIAL_CANARIES[2], confidential=True)
    draft = make_incident(title=DRAFT_CANARY, review_state="draft", places=[town])
    confidential = make_incident(title=CONFIDENTIAL_CANARIES[0], confidential=True, places=[town])
    make_claim(incident=confidential, source=hidden_source, confidential=True)
    response = Response.objects.create(organization=organization, kind="statement", date=date(2023, 10, 1))
    response.incidents.set([confidential])
    return {
        "public": public,
        "draft": draft,
        "confidential": confidential,
        "hidden_source": hidden_source,
        "town": town,
        "organization": organization,
        "response": response,
    }


def test_an_actions_address_with_a_format_suffix_answers_like_its_format_parameter(world):
    # The router gives every action a `.json` address beside `?format=json`; the actions took no
    # `format` argument, so each such address was a 500 for anyone (the statistics for anonymous).
    reviewer = make_user(roles.REVIEWER, confidential=True)
    anonymous, staff = APIClient(), APIClient()
    staff.force_authenticate(reviewer)
    stats = anonymous.get("/api/v1/incidents/stats.json", {"group_by": "year"})
    assert stats.status_code == 200
    assert stats.json() == anonymous.get("/api/v1/incidents/stats/", {"group_by": "year"}).json()
    since = {"since": "2020-01-01T00:00:00Z"}
    assert anonymous.get("/api/v1/incidents/withdrawn.json", since).status_code == 200
    history = f"/api/v1/incidents/{world['public'].public_id}/history"
    assert staff.get(f"{history}.json").json() == staff.get(f"{history}/").json()
    assert anonymous.get("/api/v1/releases/incident-tracker-2024.1/files/incidents.csv.json").status_code == 404
    for action in ("revisions/1/accept", "revisions/1/reject", "duplicates/1/merge"):
        assert staff.post(f"/api/v1/{action}.json", {}, format="json").status_code in (400, 404)


def test_a_body_nested_past_the_parsers_depth_is_a_400_naming_it():
    # A few kilobytes of "[" raised RecursionError in the JSON parser: a 500 on every write,
    # the token request's that anyone may send included.
    for path in ("/api/v1/auth/token/", "/api/v1/incidents/"):
        answer = client_for(make_user(roles.ANALYST)).post(path, "[" * 100_000, content_type="application/json")
        assert answer.status_code == 400
        assert "nested too deeply" in answer.json()["detail"]


def test_the_admins_autocomplete_refuses_a_nul_in_its_search(client):
    # Typing a%00b into a claim's source box sent the NUL to PostgreSQL's ILIKE: a 500.
    client.force_login(make_user(roles.ANALYST))
    query = {"app_label": "incidents", "model_name": "claim", "field_name": "source"}
    answer = client.get("/admin/autocomplete/", {**query, "term": "a\x00b"})
    assert answer.status_code == 200
    assert answer.json()["results"] == []


@pytest.mark.parametrize(("parameter", "value"), [("country", "zz"), ("confidential__exact", "maybe")])
def test_the_admins_csv_export_refuses_a_filter_value_naming_it(client, parameter, value):
    # The list answers these with a 400 naming the parameter; its export, made from the same query
    # string, let the refusal through: a 500.
    client.force_login(make_user(roles.ANALYST))
    answer = client.get("/admin/incidents/incident/export.csv", {parameter: value})
    assert answer.status_code == 400
    assert parameter in answer.content.decode()


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/admin/incidents/source/add/", {"title": "Relay", "kind": "news_article", "publisher": "x"}),
        ("/admin/incidents/source/add/", {"title": "Relay", "kind": "news_article", "cites": "1e400"}),
        ("/admin/incidents/place/add/", {"name": "Camp", "kind": "city", "parent": "a\x00b"}),
        ("/admin/incidents/response/add/", {"kind": "statement", "date": "2023-10-01", "incidents": ["x", "NaN"]}),
    ],
)
def test_an_admin_form_sent_back_with_an_id_no_record_has_shows_its_error(client, path, sent):
    # The page drawn again showed each autocomplete's choice by looking it up: `x` for an id
    # raised the field's ValueError, a 500, where the form has its own error to show.
    client.force_login(make_user(roles.ANALYST))
    answer = client.post(path, sent)
    assert answer.status_code == 200
    assert 'class="errornote"' in answer.content.decode()
