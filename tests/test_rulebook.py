"""The rules of who may write what hold at every door, because they live in the services.

The differential test runs every kind of write of every door as each role, twice: on data where a
record hidden from the writer would be touched, and on the same data without it. The writer must
get the same answer both times, and the hidden record must come through unchanged. Each numbered
finding of the rulebook issue is reproduced below it.
"""

import io
import json
import re
from dataclasses import dataclass
from datetime import date

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from incidents import roles
from incidents.models import Claim, Incident, IncidentRevision, Involvement, Response, Source, VictimGroup
from tests.api_support import API, client_for, incident_url, results
from tests.differential import comparable
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.test_admin import incident_post, messages_of


@dataclass
class World:
    """What a write acts on, and the records hidden from the writer (None when left out)."""

    incident: Incident
    source: Source
    relay: Source
    response: Response
    hidden_claim: Claim | None
    hidden_source: Source | None
    hidden_incident: Incident | None

    def ids(self) -> list:
        return [self.incident.pk, self.source.pk, self.relay.pk, self.response.pk, self.incident.public_id]


def make_world(*, hidden: bool) -> World:
    """A draft incident with a public claim from `relay`, a public source `source`, and a response
    about the incident. With `hidden`: a confidential claim from `source` on the incident, the
    confidential testimony `relay` cites, and a confidential incident the response is also about."""
    incident = make_incident(review_state="draft", title="Draft incident")
    source, relay = make_source(title="Public report"), make_source(title="Relay")
    make_claim(incident=incident, source=relay, people_count=80, excerpt="eighty")
    response = Response.objects.create(organization=make_organization(), kind="statement", date=date(2023, 10, 1))
    response.incidents.add(incident)
    world = World(incident, source, relay, response, None, None, None)
    if hidden:
        world.hidden_claim = make_claim(
            incident=incident, source=source, people_count=500, excerpt="informant", confidential=True
        )
        world.hidden_source = make_source(title="Informant testimony", confidential=True)
        Source.objects.filter(pk=relay.pk).update(cites=world.hidden_source)
        world.hidden_incident = make_incident(confidential=True, title="Secret incident")
        response.incidents.add(world.hidden_incident)
    world.incident.refresh_from_db()
    return world


def assert_hidden_records_intact(world: World) -> None:
    claim = Claim.objects.get(pk=world.hidden_claim.pk)
    assert (claim.source_id, claim.people_count, claim.excerpt, claim.confidential) == (
        world.source.pk,
        500,
        "informant",
        True,
    )
    assert Source.objects.get(pk=world.relay.pk).cites_id == world.hidden_source.pk
    assert Response.objects.get(pk=world.response.pk).incidents.filter(pk=world.hidden_incident.pk).exists()
    assert Incident.objects.filter(pk=world.hidden_incident.pk).exists()


# What differs between two runs that is no answer's business: ids, times, tokens.
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?")
_ID_KEYS = {"id", "incident", "source", "cites", "organization", "publisher", "public_id", "incidents", "places"}


def _normalised_json(value):
    if isinstance(value, dict):
        return {key: "ID" if key in _ID_KEYS else _normalised_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised_json(item) for item in value]
    if isinstance(value, str):
        return _TIMESTAMP.sub("TIME", value)
    return value


def answer_of(response, world: World) -> tuple:
    """A door's answer, as the writer saw it: status, where it led, messages, body."""
    body = response.content.decode() if hasattr(response, "content") else ""
    if response.get("Content-Type", "").startswith("application/json") and body:
        body = json.dumps(_normalised_json(json.loads(body)), sort_keys=True)
    else:
        body = _TIMESTAMP.sub("TIME", comparable(body, *world.ids()))
        body = re.sub(r"INC-\d+", "INC-ID", body)
    location = comparable(response.get("Location", ""), *world.ids())
    messages = messages_of(response) if hasattr(response, "wsgi_request") else []
    # A record the write created has a new id in each run.
    messages = [re.sub(r"INC-\d+|Organization \d+", "NAME", comparable(text, *world.ids())) for text in messages]
    messages = [re.sub(r"/\d+/", "/NEW/", text) for text in messages]
    # A new record's address (an API 201's Location), like its id in the body.
    location = re.sub(r"/(\d+|INC-\d+)/", "/NEW/", location)
    return response.status_code, location, messages, body


def api_add_claim(user, world):
    body = {"claims": [{"source": world.source.pk, "people_count": 300}], "version": world.incident.version}
    claims = [
        {"id": claim.pk, "source": claim.source_id}
        for claim in Claim.objects.filter(incident=world.incident, confidential=False)
    ]
    body["claims"] = claims + body["claims"]
    return client_for(user).patch(incident_url(world.incident), body, format="json")


def api_put_what_was_read(user, world):
    client = client_for(user)
    read = client.get(incident_url(world.incident))
    if read.status_code != 200:
        return read
    body = {key: value for key, value in read.json().items() if value is not None}
    body["places"] = [place["id"] for place in body.get("places", [])]
    return client.put(incident_url(world.incident), body, format="json")


def api_delete_incident(user, world):
    return client_for(user).delete(incident_url(world.incident), HTTP_IF_MATCH="*")


def api_put_relay_back(user, world):
    client = client_for(user)
    read = client.get(f"{API}/sources/{world.relay.pk}/")
    body = {key: value for key, value in read.json().items() if value is not None and key != "notes"}
    return client.put(f"{API}/sources/{world.relay.pk}/", body, format="json")


def api_patch_response(user, world):
    body = {"incidents": [world.incident.public_id], "kind": "formal_protest"}
    return client_for(user).patch(f"{API}/responses/{world.response.pk}/", body, format="json")


def api_delete_response(user, world):
    return client_for(user).delete(f"{API}/responses/{world.response.pk}/")


def api_delete_source(user, world):
    return client_for(user).delete(f"{API}/sources/{world.source.pk}/")


def admin_client(client, user):
    client.force_login(user)
    return client


def admin_add_claim(user, world, client):
    visible = list(Claim.objects.visible_to(user).filter(incident=world.incident))
    claims = [*visible, {"source": world.source.pk, "people_count": 300}]
    data = incident_post(incident=world.incident, claims=claims, title="Draft incident")
    return admin_client(client, user).post(reverse("admin:incidents_incident_change", args=[world.incident.pk]), data)


def admin_delete_incident(user, world, client):
    url = reverse("admin:incidents_incident_delete", args=[world.incident.pk])
    return admin_client(client, user).post(url, {"post": "yes"})


def admin_save_relay(user, world, client):
    url = reverse("admin:incidents_source_change", args=[world.relay.pk])
    return admin_client(client, user).post(url, {"title": "Relay", "kind": "news_article", "cites": ""})


def admin_save_response(user, world, client):
    url = reverse("admin:incidents_response_change", args=[world.response.pk])
    data = {
        "organization": world.response.organization_id,
        "kind": "formal_protest",
        "date": "2023-10-01",
        "incidents": [world.incident.pk],
        "expected_version": world.response.version,
    }
    return admin_client(client, user).post(url, data)


def admin_delete_response(user, world, client):
    url = reverse("admin:incidents_response_delete", args=[world.response.pk])
    return admin_client(client, user).post(url, {"post": "yes"})


def api_create_incident(user, world):
    body = {
        "title": "Another report",
        "incident_type": "forced-repatriation",
        "date_start": "2023-08-29",
        "date_end": "2023-08-29",
        "claims": [{"source": world.source.pk, "people_count": 300}, {"source": world.relay.pk}],
    }
    return client_for(user).post(f"{API}/incidents/", body, format="json")


def api_create_response(user, world):
    body = {
        "organization": world.response.organization_id,
        "kind": "statement",
        "date": "2023-10-02",
        "incidents": [world.incident.public_id],
        "source": world.relay.pk,
    }
    return client_for(user).post(f"{API}/responses/", body, format="json")


def admin_add_incident(user, world, client):
    data = incident_post(claims=[{"source": world.source.pk, "people_count": 300}], title="Another report")
    return admin_client(client, user).post(reverse("admin:incidents_incident_add"), data)


def admin_action(action):
    def write(user, world, client):
        data = {"action": action, "_selected_action": [world.incident.pk], "index": 0, "post": "yes"}
        return admin_client(client, user).post(reverse("admin:incidents_incident_changelist"), data)

    write.__name__ = f"admin_action_{action}"
    return write


class _CommandAnswer:
    """A management command's outcome in the shape answer_of reads."""

    def __init__(self, code, output):
        self.status_code, self.content = code, output.encode()

    def get(self, key, default=""):
        return default


def import_adding_claim(user, world, tmp_path):
    path = tmp_path / "import.csv"
    sources = "; ".join(["Relay", "Public report"])
    path.write_text(
        "public_id,version,title,type,date_start,date_end,sources\n"
        f"{world.incident.public_id},{world.incident.version},Draft incident,forced-repatriation,"
        f'2023-08-29,2023-08-29,"{sources}"\n'
    )
    out = io.StringIO()
    try:
        call_command("import_incidents", str(path), f"--user={user.username}", stdout=out, stderr=out)
        code = 0
    except CommandError as error:
        out.write(str(error))
        code = 1
    return _CommandAnswer(code, re.sub(r"INC-\d+", "INC-ID", out.getvalue().replace(str(path), "FILE")))


API_WRITES = [
    api_add_claim,
    api_put_what_was_read,
    api_delete_incident,
    api_put_relay_back,
    api_patch_response,
    api_delete_response,
    api_delete_source,
    api_create_incident,
    api_create_response,
]
ADMIN_WRITES = [
    admin_add_claim,
    admin_add_incident,
    admin_delete_incident,
    admin_save_relay,
    admin_save_response,
    admin_delete_response,
    admin_action("submit_for_review"),
    admin_action("delete_selected"),
]
ROLES = [
    pytest.param(roles.VIEWER, id="viewer"),
    pytest.param(roles.ANALYST, id="analyst"),
    pytest.param(roles.REVIEWER, id="reviewer"),
]


class TestAWriteAnswersAlikeWhetherOrNotAHiddenRecordExists:
    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("write", API_WRITES, ids=lambda write: write.__name__)
    def test_api(self, role, write):
        user = make_user(role)
        plain, with_hidden = make_world(hidden=False), make_world(hidden=True)
        answers = [answer_of(write(user, world), world) for world in (plain, with_hidden)]
        assert answers[0] == answers[1]
        assert answers[0][0] < 500
        assert_hidden_records_intact(with_hidden)

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("write", ADMIN_WRITES, ids=lambda write: write.__name__)
    def test_admin(self, role, write):
        user = make_user(role)
        plain, with_hidden = make_world(hidden=False), make_world(hidden=True)
        answers = [answer_of(write(user, world, Client()), world) for world in (plain, with_hidden)]
        assert answers[0] == answers[1]
        assert answers[0][0] < 500
        assert_hidden_records_intact(with_hidden)

    @pytest.mark.parametrize("role", ROLES)
    def test_csv_import(self, role, tmp_path):
        user = make_user(role)
        plain, with_hidden = make_world(hidden=False), make_world(hidden=True)
        answers = [answer_of(import_adding_claim(user, world, tmp_path), world) for world in (plain, with_hidden)]
        assert answers[0] == answers[1]
        assert_hidden_records_intact(with_hidden)


class TestFindings:
    def test_1_a_reviewer_without_confidential_access_cannot_delete_through_the_api(self):
        incident = make_incident()
        hidden = make_claim(incident=incident, confidential=True)
        answer = client_for(make_user(roles.REVIEWER)).delete(incident_url(incident), HTTP_IF_MATCH="*")
        assert answer.status_code == 403
        assert Claim.objects.filter(pk=hidden.pk).exists()

    def test_2_a_claim_beside_a_hidden_claim_from_the_same_source_is_kept(self):
        analyst = make_user(roles.ANALYST)
        incident = make_incident(review_state="draft")
        source = make_source(title="Daily NK")
        hidden = make_claim(incident=incident, source=source, confidential=True, people_count=500)
        body = {"claims": [{"source": source.pk, "people_count": 300}], "version": incident.version}
        answer = client_for(analyst).patch(incident_url(incident), body, format="json")
        assert answer.status_code == 200, answer.content
        assert [claim["people_count"] for claim in answer.json()["claims"]] == [300]
        assert set(incident.claims.values_list("people_count", "confidential")) == {(300, False), (500, True)}
        assert Claim.objects.get(pk=hidden.pk).people_count == 500

    def test_2_the_admin_inline_keeps_it_too(self, client):
        analyst = make_user(roles.ANALYST)
        incident = make_incident(review_state="draft")
        source = make_source(title="Daily NK")
        make_claim(incident=incident, source=source, confidential=True, people_count=500)
        data = incident_post(incident=incident, claims=[{"source": source.pk, "people_count": 300}])
        answer = admin_client(client, analyst).post(
            reverse("admin:incidents_incident_change", args=[incident.pk]), data
        )
        assert answer.status_code == 302
        assert set(incident.claims.values_list("people_count", "confidential")) == {(300, False), (500, True)}

    def test_3_an_analysts_edit_of_a_published_incident_waits_for_a_reviewer(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        incident = make_incident(title="Published title", people_count=80)
        answer = client_for(analyst).patch(
            incident_url(incident), {"title": "Edited", "people_count": 81, "version": 1}, format="json"
        )
        assert answer.status_code == 202, answer.content
        revision = answer.json()
        assert revision["state"] == "pending" and revision["proposed_by"] == analyst.username
        assert {row["field"]: row["proposed"] for row in revision["diff"]} == {"Title": "Edited", "People count": "81"}
        public = client_for().get(incident_url(incident)).json()
        assert (public["title"], public["people_count"], public["version"]) == ("Published title", 80, 1)

        decided = client_for(reviewer).post(f"{API}/revisions/{revision['id']}/accept/", {"note": "checked"})
        assert decided.status_code == 200, decided.content
        assert decided.json()["state"] == "accepted" and decided.json()["decided_by"] == reviewer.username
        public = client_for().get(incident_url(incident)).json()
        assert (public["title"], public["people_count"], public["version"]) == ("Edited", 81, 2)

    def test_3_a_rejected_revision_changes_nothing_and_stays_in_history(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        incident = make_incident(title="Published title")
        client_for(analyst).patch(incident_url(incident), {"title": "Edited", "version": 1}, format="json")
        revision = IncidentRevision.objects.get(incident=incident)
        assert client_for(analyst).post(f"{API}/revisions/{revision.pk}/reject/").status_code == 403
        assert client_for(reviewer).post(f"{API}/revisions/{revision.pk}/reject/", {"note": "no"}).status_code == 200
        incident.refresh_from_db()
        revision.refresh_from_db()
        assert incident.title == "Published title" and revision.state == "rejected"
        again = client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/")
        assert again.status_code == 400
        assert "already rejected" in again.json()["state"][0]

    def test_3_a_stale_revision_cannot_be_accepted(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        incident = make_incident(title="Published title")
        client_for(analyst).patch(incident_url(incident), {"title": "First", "version": 1}, format="json")
        client_for(analyst).patch(incident_url(incident), {"title": "Second", "version": 1}, format="json")
        first, second = IncidentRevision.objects.order_by("id")
        assert client_for(reviewer).post(f"{API}/revisions/{second.pk}/accept/").status_code == 200
        answer = client_for(reviewer).post(f"{API}/revisions/{first.pk}/accept/")
        assert answer.status_code == 409
        assert "cannot be accepted: reject it" in answer.json()["detail"]
        incident.refresh_from_db()
        assert incident.title == "Second"

    def test_3_accepting_never_deletes_a_claim_hidden_from_the_proposer(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        hidden, shown = make_claim(incident=incident, confidential=True), make_claim(incident=incident)
        client_for(analyst).patch(incident_url(incident), {"claims": [], "version": 1}, format="json")
        revision = IncidentRevision.objects.get(incident=incident)
        assert client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/").status_code == 200
        assert list(incident.claims.values_list("pk", flat=True)) == [hidden.pk]
        assert not Claim.objects.filter(pk=shown.pk).exists()

    def test_3_revisions_by_someone_with_confidential_access_go_to_reviewers_who_have_it(self):
        analyst = make_user(roles.ANALYST, confidential=True)
        incident = make_incident()
        client_for(analyst).patch(incident_url(incident), {"title": "x", "version": 1}, format="json")
        revision = IncidentRevision.objects.get(incident=incident)
        assert client_for(make_user(roles.REVIEWER)).get(f"{API}/revisions/{revision.pk}/").status_code == 404
        insider = client_for(make_user(roles.REVIEWER, confidential=True))
        assert insider.get(f"{API}/revisions/{revision.pk}/").status_code == 200

    @pytest.mark.parametrize("role", [roles.ANALYST, roles.REVIEWER])
    def test_3_making_an_incident_or_a_claim_public_needs_a_reviewer_with_confidential_access(self, role):
        writer = make_user(role, confidential=True)
        allowed = role == roles.REVIEWER
        secret = make_incident(confidential=True, review_state="draft")
        answer = client_for(writer).patch(incident_url(secret), {"confidential": False, "version": 1}, format="json")
        assert answer.status_code == (200 if allowed else 400), answer.content
        if not allowed:
            assert "Reviewer with Confidential access" in answer.json()["confidential"][0]
        incident = make_incident(review_state="draft")
        claim = make_claim(incident=incident, confidential=True)
        body = {"claims": [{"id": claim.pk, "source": claim.source_id, "confidential": False}], "version": 1}
        answer = client_for(writer).patch(incident_url(incident), body, format="json")
        assert answer.status_code == (200 if allowed else 400), answer.content
        claim.refresh_from_db()
        assert claim.confidential is not allowed

    def test_an_analyst_without_confidential_access_cannot_create_what_she_could_not_see(self):
        analyst = make_user(roles.ANALYST)
        answer = client_for(analyst).post(
            f"{API}/sources/", {"title": "Informant", "kind": "testimony", "confidential": True}, format="json"
        )
        assert answer.status_code == 400
        assert "Confidential access" in answer.json()["confidential"][0]
        assert not Source.objects.filter(title="Informant").exists()


class TestRevisions:
    def test_sending_back_what_was_read_proposes_nothing(self):
        analyst = make_user(roles.ANALYST)
        incident = make_incident()
        make_claim(incident=incident, excerpt="eighty")
        answer = api_put_what_was_read(analyst, make_world_around(incident))
        assert answer.status_code == 200, answer.content
        assert not IncidentRevision.objects.exists()

    def test_every_change_of_a_claim_shows_in_the_diff(self):
        analyst = make_user(roles.ANALYST)
        incident = make_incident()
        claim = make_claim(incident=incident, excerpt="eighty")
        body = {"claims": [{"id": claim.pk, "source": claim.source_id, "locator": "p. 4"}], "version": 1}
        answer = client_for(analyst).patch(incident_url(incident), body, format="json")
        assert answer.status_code == 202, answer.content
        [change] = answer.json()["diff"]
        assert change["field"] == "Claims" and "p. 4" in change["proposed"] and "p. 4" not in change["now"]

    def test_the_diff_shows_the_one_claim_that_changes_with_only_its_changed_fields(self, client):
        # Every claim was listed on both sides, whole: a locator added to one of two claims was a
        # word to find in two paragraphs.
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        incident = make_incident(people_count=50)
        hrw = make_claim(incident=incident, source=make_source(title="HRW"), excerpt="Some 50 were sent back")
        uca = make_claim(incident=incident, source=make_source(title="UCA News"), people_count=None, excerpt="40 to 60")
        report = make_source(title="RFA")
        third = {"source_connection": "third_party"}
        body = {
            "version": 1,
            "claims": [
                {
                    "id": hrw.pk,
                    "source": hrw.source_id,
                    "people_count": 50,
                    "excerpt": "Some 50 were sent back",
                    **third,
                },
                {"id": uca.pk, "source": uca.source_id, "excerpt": "40 to 60", "locator": "para 29", **third},
                {"source": report.pk, "people_count": 45},
            ],
        }
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get()

        diff = client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()["diff"]

        assert diff == [
            {"field": "Claims", "now": "UCA News (locator —)", "proposed": "UCA News (locator para 29)"},
            {
                "field": "Claims",
                "now": "—",
                # The qualifier and the date's precision left out, as accepting writes them: 45 alone
                # is exact, no date unknown.
                "proposed": "RFA (people count 45, count qualifier Exact, date precision Unknown, "
                "source connection Unknown)",
            },
        ]
        client.force_login(reviewer)
        page = client.get(reverse("admin:incidents_incidentrevision_change", args=[revision.pk])).content.decode()
        assert "UCA News (locator para 29)" in page and "HRW" not in page

    def test_a_victim_groups_changed_count_shows_in_the_diff(self):
        # A victim group was named by its description alone: its count changed, nothing showed.
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        incident = make_incident(people_count=500)
        women = VictimGroup.objects.create(incident=incident, count=500, sex="female", description="mostly women")
        body = {
            "version": 1,
            "victim_groups": [{"id": women.pk, "count": 400, "sex": "female", "description": "mostly women"}],
        }
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get()

        diff = client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()["diff"]

        assert diff == [
            {"field": "Victim groups", "now": "mostly women (count 500)", "proposed": "mostly women (count 400)"}
        ]

    def test_a_patch_giving_a_claim_one_field_shows_that_field_alone_changed(self):
        # A PATCH's claim row gives the fields it changes; read as a new claim, its source was
        # missing (the 202 and the revision's page answered 500) and every other field read as cleared.
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        incident = make_incident()
        claim = make_claim(incident=incident, source=make_source(title="UCA News"), excerpt="eighty")
        police = Involvement.objects.create(
            incident=incident, organization=make_organization(name="Border police"), role="perpetrator"
        )
        body = {
            "claims": [{"id": claim.pk, "locator": "para 29"}],
            "involvements": [{"id": police.pk, "role": "facilitator"}],
            "version": 1,
        }

        answer = client_for(analyst).patch(incident_url(incident), body, format="json")

        assert answer.status_code == 202, answer.content
        expected = [
            {"field": "Claims", "now": "UCA News (locator —)", "proposed": "UCA News (locator para 29)"},
            {
                "field": "Involvements",
                "now": "Border police (role Perpetrator)",
                "proposed": "Border police (role Facilitator)",
            },
        ]
        assert answer.json()["diff"] == expected
        revision = IncidentRevision.objects.get()
        assert client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()["diff"] == expected
        # The claim deleted since: the row names no source, and the page still reads.
        Claim.objects.filter(pk=claim.pk).delete()
        assert client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()["diff"] == [
            {
                "field": "Claims",
                "now": "—",
                # The row changed the locator alone, and says nothing of the qualifier.
                "proposed": "A claim (locator para 29, source connection Unknown)",
            },
            expected[1],
        ]

    def test_an_imports_proposal_keeping_a_claim_is_read_and_accepted(self, tmp_path, client):
        # The import names a kept claim's source by its column, source_id: the revision's page, the
        # Reviewers' queue holding it and its acceptance answered 500.
        from tests.test_import import export, rows, run_import, write_csv

        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        incident = make_incident()
        make_claim(incident=incident, source=make_source(title="RFA report"), excerpt="about 450")
        make_source(title="New report")
        [row] = rows(export(analyst, tmp_path))
        row.update(sources="RFA report; New report")
        assert "1 proposed for review" in run_import(analyst, tmp_path, write_csv([row]))
        revision = IncidentRevision.objects.get()

        answer = client_for(reviewer).get(f"{API}/revisions/{revision.pk}/")

        assert answer.status_code == 200
        assert answer.json()["diff"] == [
            {
                "field": "Claims",
                "now": "—",
                "proposed": "New report (count qualifier Unknown, date precision Unknown, source connection Unknown)",
            }
        ]
        client.force_login(reviewer)
        assert client.get(reverse("admin:incidents_incidentrevision_changelist")).status_code == 200
        assert client.get(reverse("admin:incidents_incidentrevision_change", args=[revision.pk])).status_code == 200
        assert client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/").status_code == 200
        assert sorted(incident.claims.values_list("source__title", "excerpt")) == [
            ("New report", ""),
            ("RFA report", "about 450"),
        ]

    def test_a_victim_group_numbered_like_a_claim_hidden_from_the_proposer_shows_its_change(self):
        # The claims that accepting keeps were left out of the victim groups and involvements too,
        # by number: a group with a hidden claim's id read as added, its change lost.
        from django.db import connection

        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        hidden = make_claim(incident=incident, source=make_source(title="Informant"), confidential=True)
        public = make_claim(incident=incident, source=make_source(title="Daily NK"))
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('incidents_victimgroup', 'id'), %s, false)", [hidden.pk]
            )
        women = VictimGroup.objects.create(incident=incident, count=500, sex="female", description="mostly women")
        assert women.pk == hidden.pk
        body = {
            "version": 1,
            "claims": [{"id": public.pk, "locator": "p. 4"}],
            "victim_groups": [{"id": women.pk, "count": 400}],
        }
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get()

        assert client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()["diff"] == [
            {"field": "Claims", "now": "Daily NK (locator —)", "proposed": "Daily NK (locator p. 4)"},
            {"field": "Victim groups", "now": "mostly women (count 500)", "proposed": "mostly women (count 400)"},
        ]

    def test_a_claim_hidden_from_the_proposer_shows_as_kept_to_a_reviewer_who_sees_it(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        claim = make_claim(incident=incident, source=make_source(title="Daily NK"), excerpt="eighty")
        make_claim(incident=incident, source=make_source(title="Informant"), confidential=True)
        body = {"claims": [{"id": claim.pk, "source": claim.source_id, "locator": "p. 4"}], "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get()

        [change] = client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()["diff"]

        # Accepting keeps it (incident_revision_accept): the diff must not show it removed.
        assert "Informant" not in str(change)
        assert change["field"] == "Claims" and change["now"].startswith("Daily NK (")
        assert "locator p. 4" in change["proposed"] and "locator —" in change["now"]
        client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/")
        assert incident.claims.filter(source__title="Informant").exists()

    def test_a_revision_proposed_before_a_source_was_made_public_cannot_delete_its_claim(self):
        # The proposer sent the claims she saw; the informant's claim was hidden from her. Once a
        # Reviewer made the informant's source public, accepting her revision deleted that claim.
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        seen = make_claim(incident=incident, source=make_source(title="RFA"))
        informant = make_source(title="Informant", confidential=True)
        unseen = make_claim(incident=incident, source=informant)
        body = {"claims": [{"id": seen.pk, "source": seen.source_id, "excerpt": "Mine"}], "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get(incident=incident)
        made_public = client_for(reviewer).patch(
            f"{API}/sources/{informant.pk}/", {"confidential": False, "version": informant.version}, format="json"
        )
        assert made_public.status_code == 200, made_public.json()

        answer = client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/")

        assert answer.status_code == 409
        assert Claim.objects.filter(pk=unseen.pk).exists()

    def test_a_revision_naming_a_place_deleted_since_is_refused_not_accepted_without_it(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        tumen, namyang = make_place(name="Tumen"), make_place(name="Namyang")
        incident = make_incident(places=[tumen])
        body = {"places": [tumen.pk, namyang.pk], "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get(incident=incident)
        assert client_for(reviewer).delete(f"{API}/places/{namyang.pk}/").status_code == 204

        answer = client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/")

        assert answer.status_code == 400
        assert f"place {namyang.pk} it names was deleted since" in answer.json()["places"][0]
        revision.refresh_from_db()
        assert revision.state == "pending"
        assert list(incident.places.all()) == [tumen]

    def test_a_revision_naming_a_source_deleted_since_is_still_listed_shown_and_rejected(self, client):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        report = make_source(title="New report")
        body = {"claims": [{"source": report.pk, "people_count": 40}], "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get(incident=incident)
        assert client_for(reviewer).delete(f"{API}/sources/{report.pk}/").status_code == 204
        reviewers = client_for(reviewer)

        # The queue answered 400 as a whole, the revision's API detail too, its admin page 500.
        listed = reviewers.get(f"{API}/revisions/?state=pending")
        assert listed.status_code == 200
        [change] = results(listed)[0]["diff"]
        assert f"source {report.pk} it names was deleted since" in change["proposed"]
        assert reviewers.get(f"{API}/revisions/{revision.pk}/").status_code == 200
        client.force_login(reviewer)
        page = client.get(reverse("admin:incidents_incidentrevision_change", args=[revision.pk]))
        assert page.status_code == 200
        assert "deleted since" in page.content.decode()
        assert reviewers.post(f"{API}/revisions/{revision.pk}/accept/").status_code == 400
        assert reviewers.post(f"{API}/revisions/{revision.pk}/reject/").status_code == 200

    def test_a_revision_proposed_before_its_author_was_given_confidential_access_cannot_delete_a_hidden_claim(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        seen = make_claim(incident=incident, source=make_source(title="RFA"))
        hidden = make_claim(incident=incident, source=make_source(title="Informant"), confidential=True)
        body = {"claims": [{"id": seen.pk, "source": seen.source_id, "excerpt": "Mine"}], "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get(incident=incident)
        analyst.groups.add(Group.objects.get(name=roles.CONFIDENTIAL_ACCESS))

        answer = client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/")

        assert answer.status_code == 400
        assert "Confidential access has been given to its author since they proposed it" in answer.json()["claims"][0]
        assert Claim.objects.filter(pk=hidden.pk).exists()
        assert client_for(reviewer).post(f"{API}/revisions/{revision.pk}/reject/").status_code == 200

    def test_a_revision_proposed_before_its_author_lost_confidential_access_is_refused_as_such(self):
        # Its claims are those she saw, the confidential ones too; accepting would have changed them
        # on the word of someone who may no longer read them (and answered that her claims were
        # not the incident's).
        analyst = make_user(roles.ANALYST, confidential=True)
        reviewer = make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        seen = make_claim(incident=incident, source=make_source(title="RFA"))
        hidden = make_claim(incident=incident, source=make_source(title="Informant"), confidential=True)
        body = {
            "claims": [
                {"id": seen.pk, "source": seen.source_id, "excerpt": "Mine"},
                {"id": hidden.pk, "source": hidden.source_id, "confidential": True, "people_count": 12},
            ],
            "version": 1,
        }
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get(incident=incident)
        analyst.groups.remove(Group.objects.get(name=roles.CONFIDENTIAL_ACCESS))

        answer = client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/")

        assert answer.status_code == 400
        assert "Confidential access has been taken away from its author since" in answer.json()["claims"][0]
        hidden.refresh_from_db()
        assert hidden.people_count == 80  # as it was
        assert client_for(reviewer).post(f"{API}/revisions/{revision.pk}/reject/").status_code == 200

    def test_a_revision_whose_author_was_deleted_cannot_delete_a_claim_they_never_saw(self):
        # With no proposer, accepting replaced the claims the accepting Reviewer sees: the informant's
        # claim, which the analyst never saw and the differences never named, was deleted.
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        seen = make_claim(incident=incident, source=make_source(title="RFA"), people_count=30)
        hidden = make_claim(incident=incident, source=make_source(title="Informant", confidential=True))
        body = {"claims": [{"id": seen.pk, "source": seen.source_id, "people_count": 31}], "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get(incident=incident)
        analyst.delete()  # they left the organisation
        reviewers = client_for(reviewer)

        [refusal, _] = reviewers.get(f"{API}/revisions/{revision.pk}/").json()["diff"]
        answer = reviewers.post(f"{API}/revisions/{revision.pk}/accept/")

        assert refusal["proposed"].startswith("Its author's account has been deleted")
        assert answer.status_code == 400
        assert answer.json()["claims"] == [refusal["proposed"]]
        assert Claim.objects.filter(pk=hidden.pk).exists()
        assert Claim.objects.get(pk=seen.pk).people_count == 30
        assert reviewers.post(f"{API}/revisions/{revision.pk}/reject/").status_code == 200

    @pytest.mark.parametrize("hidden_row", ["new claim", "claim given the source"])
    def test_accepting_a_revision_tells_nothing_of_a_source_made_confidential_since_it_was_proposed(self, hidden_row):
        # The proposer cited a public source, which a Reviewer with Confidential access then made
        # confidential (an informant recognised). A Reviewer without that access was shown the
        # revision without it, and accepting answered 400 `{"claims[1].source": ["No source 2."]}`:
        # the hidden source's id and that the revision held it, only when it did.
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        insider = make_user(roles.REVIEWER, confidential=True)
        answers = []
        for hidden in (False, True):
            incident = make_incident(title="Published title")
            seen = make_claim(incident=incident, source=make_source(title="RFA"), people_count=80)
            informant = make_source(title="Informant")
            rows = [{"id": seen.pk, "source": seen.source_id, "excerpt": "Mine"}]
            if hidden and hidden_row == "new claim":
                rows.append({"source": informant.pk, "people_count": 5})
            if hidden and hidden_row == "claim given the source":
                other = make_claim(incident=incident, source=make_source(title="Daily NK"), people_count=40)
                rows.append({"id": other.pk, "source": informant.pk})
            elif not hidden and hidden_row == "claim given the source":
                other = make_claim(incident=incident, source=make_source(title="Daily NK"), people_count=40)
                rows.append({"id": other.pk, "source": other.source_id})
            body = {"title": "Edited", "claims": rows, "version": 1}
            assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
            revision = IncidentRevision.objects.get(incident=incident)
            made_confidential = client_for(insider).patch(
                f"{API}/sources/{informant.pk}/", {"confidential": True, "version": 1}, format="json"
            )
            assert made_confidential.status_code == 200, made_confidential.content
            shown = client_for(reviewer).get(f"{API}/revisions/{revision.pk}/").json()
            answer = client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/")
            assert answer.status_code == 200, answer.content
            incident.refresh_from_db()
            claims = sorted(incident.claims.values_list("source__title", "people_count", "excerpt"))
            answers.append((shown["diff"], incident.title, claims))
            assert not incident.claims.filter(source=informant).exists()
            if hidden_row == "claim given the source":
                assert Claim.objects.get(pk=other.pk).source.title == "Daily NK"
        assert answers[0] == answers[1]

    def test_a_reviewer_who_sees_the_source_made_confidential_since_is_told_why_the_revision_cannot_be_accepted(self):
        analyst, insider = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
        incident = make_incident(title="Published title")
        informant = make_source(title="Informant")
        body = {"claims": [{"source": informant.pk, "people_count": 5}], "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        revision = IncidentRevision.objects.get(incident=incident)
        made_confidential = client_for(insider).patch(
            f"{API}/sources/{informant.pk}/", {"confidential": True, "version": 1}, format="json"
        )
        assert made_confidential.status_code == 200, made_confidential.content

        answer = client_for(insider).post(f"{API}/revisions/{revision.pk}/accept/")

        assert answer.status_code == 400
        assert answer.json() == {
            "claims[0].source": [
                f"Its author may no longer cite “{informant}” (source {informant.pk}), made confidential since "
                "they proposed this: reject it, and they can propose again."
            ]
        }
        assert not incident.claims.exists()


def make_world_around(incident: Incident) -> World:
    return World(incident, None, None, None, None, None, None)


class TestRevisionHistory:
    def test_the_incident_history_records_proposal_and_acceptance_with_their_users(self):
        analyst, reviewer = make_user(roles.ANALYST, username="alice"), make_user(roles.REVIEWER, username="bob")
        incident = make_incident(title="Published title")
        client_for(analyst).patch(incident_url(incident), {"title": "Edited", "version": 1}, format="json")
        revision = IncidentRevision.objects.get()
        client_for(reviewer).post(f"{API}/revisions/{revision.pk}/accept/", {"note": "checked"})
        events = client_for(reviewer).get(incident_url(incident, "history/")).json()["results"]
        revision_events = [(event["user"], event["action"]) for event in events if "Revision" in event["record"]]
        assert revision_events == [("alice", "insert"), ("bob", "update")]
        [title_change] = [event for event in events if event["changes"] and "title" in event["changes"]]
        assert title_change["user"] == "bob" and title_change["changes"]["title"] == ["Published title", "Edited"]

    def test_a_revision_carrying_confidential_claims_stays_out_of_other_readers_history(self):
        insider = make_user(roles.ANALYST, confidential=True)
        incident = make_incident()
        claim = make_claim(incident=incident, confidential=True, excerpt="informant words")
        body = {"claims": [{"id": claim.pk, "source": claim.source_id, "excerpt": "new informant words"}], "version": 1}
        assert client_for(insider).patch(incident_url(incident), body, format="json").status_code == 202
        history = client_for(make_user(roles.REVIEWER)).get(incident_url(incident, "history/")).content.decode()
        assert "informant words" not in history and "Revision" not in history
        history = client_for(make_user(roles.REVIEWER, confidential=True)).get(incident_url(incident, "history/"))
        assert "Revision" in history.content.decode()
