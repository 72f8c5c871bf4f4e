"""Writing through the API: who may, what the services refuse, and how lost updates are caught."""

import json
from datetime import date
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from incidents import roles
from incidents.api.serializers import NESTED_ITEMS_MAX
from incidents.models import (
    PLACE_NOWHERE_MESSAGE,
    SEARCHED_TEXT_MAX_LENGTH,
    Claim,
    ConfidentialAccess,
    Incident,
    IncidentType,
    Involvement,
    Organization,
    Place,
    Response,
    Source,
    VictimGroup,
)
from tests.api_support import API, client_for, incident_url
from tests.factories import (
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
    pasted_report,
)
from tests.test_csv_round_trip import history_row_count
from tests.test_write_conflicts import answered_while_held


def new_incident_body(**overrides) -> dict:
    return {
        "title": "Repatriation of 40 from Tumen",
        "incident_type": "forced-repatriation",
        "date_start": "2023-09-18",
        "date_end": "2023-09-18",
        "date_precision": "day",
        "people_count": 40,
        "count_qualifier": "exact",
        **overrides,
    }


class TestTokens:
    def test_username_and_password_give_a_token_that_authenticates(self):
        analyst = make_user(roles.ANALYST, username="alice")
        answer = client_for().post(
            f"{API}/auth/token/", {"username": "alice", "password": "correct horse battery staple"}
        )
        assert answer.status_code == 200
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION=f"Token {answer.json()['token']}")
        draft = make_incident(review_state="draft", created_by=analyst)
        assert client.get(incident_url(draft)).status_code == 200

    def test_wrong_password_answers_400_and_no_token(self):
        make_user(roles.ANALYST, username="alice")
        answer = client_for().post(f"{API}/auth/token/", {"username": "alice", "password": "guess"})
        assert answer.status_code == 400
        assert "token" not in answer.json()

    @pytest.mark.parametrize(("field", "value"), [("expires_at", "2026-12-07T00:00:00Z"), ("nmae", "nightly sync")])
    def test_a_token_request_naming_a_field_it_does_not_have_is_refused_naming_it(self, field, value):
        # Left out, as DRF does: asked for a token expiring tomorrow, or with a misspelt name, the
        # client got one for the default lifetime, or the default name, told nothing.
        make_user(roles.ANALYST, username="alice")
        body = {"username": "alice", "password": "correct horse battery staple", field: value}
        answer = client_for().post(f"{API}/auth/token/", body, format="json")
        assert answer.status_code == 400, answer.content
        assert list(answer.json()) == [field] and "token" not in answer.json()

    def test_a_bad_token_answers_401(self):
        client = client_for()
        client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
        assert client.get(f"{API}/incidents/").status_code == 401

    @pytest.mark.parametrize("scheme", ["Bearer", "Basic", "token-typo"])
    def test_a_token_sent_under_another_scheme_answers_401_naming_the_scheme_read(self, scheme):
        # Read as no credentials, it was answered as an anonymous request, 200, without the drafts
        # its owner may see: a partner's sync silently copied the public data alone.
        reviewer = make_user(roles.REVIEWER)
        draft = make_incident(review_state="draft")
        key = client_for(reviewer)._credentials["HTTP_AUTHORIZATION"].removeprefix("Token ")
        answer = APIClient().get(f"{API}/incidents/", HTTP_AUTHORIZATION=f"{scheme} {key}")
        assert answer.status_code == 401, answer.content
        assert answer["WWW-Authenticate"] == "Token"
        assert "Authorization: Token <key>" in answer.json()["detail"]
        assert draft.public_id not in answer.content.decode()

    def test_a_signed_in_session_is_read_whatever_authorization_header_a_proxy_adds(self, client):
        # A browser behind a password-protected proxy sends `Authorization: Basic …` with every
        # request: the browsable API's signed-in reader is still read by their session, and the
        # public pages, which read no token, answer as ever.
        reviewer = make_user(roles.REVIEWER)
        draft = make_incident(review_state="draft")
        basic = "Basic Zm9vOmJhcg=="
        assert client.get("/", HTTP_AUTHORIZATION=basic).status_code == 200
        client.force_login(reviewer)
        answer = client.get(incident_url(draft), HTTP_AUTHORIZATION=basic)
        assert answer.status_code == 200, answer.content


class TestCreateIncident:
    def test_analyst_creates_an_incident_with_its_claims_groups_and_involvements(self):
        analyst = make_user(roles.ANALYST)
        place, source, organization = make_place(country="CN"), make_source(), make_organization()
        body = new_incident_body(
            places=[place.pk],
            claims=[{"source": source.pk, "people_count": 40, "excerpt": "40 deported"}],
            victim_groups=[{"count": 40, "sex": "female"}],
            involvements=[{"organization": organization.pk, "role": "perpetrator"}],
            # Server-owned: ignored.
            public_id="INC-000777",
            created_by="mallory",
        )
        answer = client_for(analyst).post(f"{API}/incidents/", body, format="json")
        assert answer.status_code == 201, answer.json()
        created = answer.json()
        incident = Incident.objects.get(public_id=created["public_id"])
        assert created["public_id"] != "INC-000777"
        assert incident.created_by == analyst
        assert (created["version"], created["review_state"]) == (1, "draft")
        assert created["places"][0]["country"] == "CN"
        assert [claim["excerpt"] for claim in created["claims"]] == ["40 deported"]
        assert created["victim_groups"][0]["sex"] == "female"
        assert created["involvements"][0]["organization"] == organization.pk
        assert answer["ETag"] == '"staff.1"'
        assert answer["Location"] == f"http://testserver{incident_url(incident)}"

    def test_a_key_holding_a_nul_character_is_an_unknown_record_not_a_server_error(self):
        # PostgreSQL text cannot hold NUL: looking such a key up raised the database's error (a 500).
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/incidents/", new_incident_body(incident_type="repat\x00riation"), format="json"
        )
        assert answer.status_code == 400
        assert "incident_type" in answer.json()
        assert not Incident.objects.exists()

    @pytest.mark.parametrize("method", ["post", "patch"])
    def test_an_incident_types_parent_holding_a_nul_character_is_an_unknown_type(self, method):
        # The type's `parent` looked the key up as it came: the database's error, a 500.
        client, repatriation = (
            client_for(make_user(roles.ANALYST)),
            IncidentType.objects.get(slug="forced-repatriation"),
        )
        if method == "post":
            answer = client.post(
                f"{API}/incident-types/", {"slug": "new-kind", "name": "New", "parent": "a\x00"}, format="json"
            )
        else:
            body = {"parent": "a\x00", "version": repatriation.version}
            answer = client.patch(f"{API}/incident-types/{repatriation.pk}/", body, format="json")
        assert answer.status_code == 400
        assert answer.json()["parent"] == ["Object with slug=a\\x00 does not exist."]
        assert not IncidentType.objects.filter(slug="new-kind").exists()

    @pytest.mark.parametrize(
        ("user_role", "status"), [(None, 401), (roles.VIEWER, 403), ("registered", 403), (roles.ANALYST, 201)]
    )
    def test_creating_needs_the_add_permission(self, user_role, status):
        user = None if user_role is None else make_user(None if user_role == "registered" else user_role)
        answer = client_for(user).post(f"{API}/incidents/", new_incident_body(), format="json")
        assert answer.status_code == status
        assert Incident.objects.count() == (1 if status == 201 else 0)

    def test_analyst_cannot_publish_or_verify_but_a_reviewer_can(self):
        analyst, reviewer = make_user(roles.ANALYST), make_user(roles.REVIEWER)
        for field, value in (("review_state", "published"), ("verification", "verified")):
            refused = client_for(analyst).post(f"{API}/incidents/", new_incident_body(**{field: value}), format="json")
            assert refused.status_code == 403
            assert "permission" in refused.json()["detail"]
            accepted = client_for(reviewer).post(
                f"{API}/incidents/", new_incident_body(**{field: value}), format="json"
            )
            assert accepted.status_code == 201
            assert accepted.json()[field] == value
        assert Incident.objects.count() == 2

    def test_analyst_may_submit_for_review(self):
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/incidents/", new_incident_body(review_state="in_review"), format="json"
        )
        assert answer.status_code == 201

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"date_end": "2023-09-01"}, "date_end"),
            ({"people_count_min": 50}, "people_count"),
            ({"incident_type": "no-such-type"}, "incident_type"),
            ({"date_start": "18/09/2023"}, "date_start"),
            ({"places": [999999]}, "places"),
        ],
    )
    def test_invalid_incidents_answer_400_naming_the_field(self, overrides, field):
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/incidents/", new_incident_body(**overrides), format="json"
        )
        assert answer.status_code == 400
        assert field in answer.json()
        assert not Incident.objects.exists()

    @pytest.mark.parametrize(
        ("where", "field"),
        [("incident", "description"), ("claim", "claims[0].excerpt")],
        ids=["description", "excerpt"],
    )
    def test_a_whole_report_pasted_in_answers_400_naming_the_field(self, where, field):
        # Its words overflowed the search's tsvector: a 500, no field named.
        text = pasted_report(960_000)
        claim = {"source": make_source().pk, "excerpt": text if where == "claim" else ""}
        body = new_incident_body(description=text if where == "incident" else "", claims=[claim])

        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 400
        assert answer.json() == {
            field: [f"Ensure this value has at most {SEARCHED_TEXT_MAX_LENGTH} characters (it has 960000)."]
        }
        assert not Incident.objects.exists()

    def test_a_day_not_in_the_calendar_is_told_why_not_how_to_write_a_date(self):
        # DRF said "Date has wrong format. Use one of these formats instead: YYYY-MM-DD." of a date
        # written in that format.
        body = new_incident_body(
            date_start="2023-02-30",
            date_end="2023-03-01",
            date_precision="range",
            claims=[{"source": make_source().pk, "date_end": "2023-09-31", "date_precision": "day"}],
        )

        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/incidents/", body, format="json")

        assert answer.status_code == 400
        assert answer.json()["date_start"] == ["2023-02-30 is not a day: February 2023 has 28 days."]
        assert answer.json()["claims[0].date_end"] == ["2023-09-31 is not a day: September 2023 has 30 days."]
        assert not Incident.objects.exists()
        # Not written as YYYY-MM-DD: how to write it, as the admin says.
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/incidents/", new_incident_body(date_start="18/09/2023"), format="json"
        )
        assert answer.json()["date_start"] == ["Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023."]

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("incidents/", '{"title": "x", "places": [1e400]}'),
            ("incidents/", '{"title": "x", "claims": [{"source": 1e400}]}'),
            ("places/", '{"name": "Yanji", "kind": "city", "parent": 1e400}'),
            ("sources/", '{"title": "Report", "kind": "news_article", "cites": -1e400}'),
        ],
    )
    def test_a_number_beyond_any_field_answers_400_naming_it(self, path, body):
        # JSON's 1e400 reads as infinity: an id field handed it to int(), whose OverflowError was a 500.
        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/{path}", body, content_type="application/json")
        assert answer.status_code == 400
        assert "1e400 is beyond any number a field holds" in answer.json()["detail"]

    @pytest.mark.parametrize(
        ("path", "body", "key"),
        [
            ("organizations/", '{"name": "Surrogate Police", "kind": "x\\ud800", "country": "CN"}', "kind"),
            ("incidents/", '{"title": "x", "victim_groups": [{"count": 3, "sex": "\\udc00"}]}', "sex"),
            ("incidents/", '{"title": "x", "places": [["\\ud800"]]}', "places"),
        ],
    )
    def test_a_lone_surrogate_answers_400_naming_its_key(self, path, body, key):
        # JSON may escape half of a UTF-16 pair (`"\\ud800"`); a choice field echoed it in its error,
        # which the renderer cannot encode: a 500 on every write with a choice field.
        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/{path}", body, content_type="application/json")
        assert answer.status_code == 400
        refused = f'"{key}" holds a lone surrogate (half of a UTF-16 pair), which is no character.'
        assert answer.json() == {"detail": f"JSON parse error - {refused}"}
        assert not Organization.objects.exists() and not Incident.objects.exists()

    def test_a_whole_surrogate_pair_is_a_character_like_any_other(self):
        body = json.dumps(new_incident_body(title="Repatriation \U0001f6a8"))  # escaped as a pair
        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/incidents/", body, content_type="application/json")
        assert answer.status_code == 201, answer.content
        assert Incident.objects.get().title == "Repatriation \U0001f6a8"

    def test_an_object_naming_a_key_twice_answers_400_naming_it(self):
        # Python's parser kept the last value, whatever the sender (or a proxy) read as meant.
        organization = make_organization(name="Ministry of State Security")
        reviewer = client_for(make_user(roles.REVIEWER, confidential=True))
        answer = reviewer.patch(
            f"{API}/organizations/{organization.pk}/",
            '{"name": "Ministry of Public Security", "name": "Ministry of State Security (MSS)", "version": 1}',
            content_type="application/json",
        )
        assert answer.status_code == 400
        assert answer.json() == {"detail": 'JSON parse error - "name" is named twice in one object; name it once.'}
        organization.refresh_from_db()
        assert (organization.name, organization.version) == ("Ministry of State Security", 1)
        # In a nested row too.
        body = '{"title": "x", "claims": [{"source": 1, "people_count": 40, "source": 2}]}'
        answer = reviewer.post(f"{API}/incidents/", body, content_type="application/json")
        assert answer.json() == {"detail": 'JSON parse error - "source" is named twice in one object; name it once.'}

    @pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data"])
    def test_a_form_naming_a_field_twice_answers_400_naming_it(self, content_type):
        # A form's parser keeps every value of a key, and a field reading one took the last.
        organization = make_organization(name="Ministry of State Security")
        reviewer = client_for(make_user(roles.REVIEWER, confidential=True))
        body = {"name": ["Ministry of Public Security", "Ministry of State Security (MSS)"], "version": "1"}
        sent = (
            {"data": urlencode(body, doseq=True), "content_type": content_type}
            if content_type == "application/x-www-form-urlencoded"
            else {"data": body, "format": "multipart"}
        )
        answer = reviewer.patch(f"{API}/organizations/{organization.pk}/", **sent)
        assert answer.status_code == 400
        assert answer.json() == {"name": ["Named twice in one form; name it once."]}
        organization.refresh_from_db()
        assert (organization.name, organization.version) == ("Ministry of State Security", 1)

    def test_a_form_repeats_the_key_of_a_field_holding_a_list(self):
        incidents, organization = [make_incident(), make_incident()], make_organization()
        analyst = client_for(make_user(roles.ANALYST))
        body = {
            "organization": organization.pk,
            "kind": "statement",
            "date": "2023-01-01",
            "incidents": [incident.public_id for incident in incidents],
        }
        answer = analyst.post(f"{API}/responses/", body, format="multipart")
        assert answer.status_code == 201, answer.content
        assert sorted(answer.json()["incidents"]) == sorted(incident.public_id for incident in incidents)
        body = {"name": "Bowibu", "kind": "government", "country": "KP", "aliases": ["MSS", "SSD"]}
        answer = analyst.post(
            f"{API}/organizations/", urlencode(body, doseq=True), content_type="application/x-www-form-urlencoded"
        )
        assert answer.status_code == 201, answer.content
        assert answer.json()["aliases"] == ["MSS", "SSD"]

    def test_service_errors_on_claims_name_the_claim_and_field(self):
        source = make_source()
        body = new_incident_body(
            claims=[
                {"source": source.pk, "people_count": 10},
                {"source": make_source().pk, "people_count": 5, "people_count_min": 9},
            ]
        )
        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/incidents/", body, format="json")
        assert answer.status_code == 400
        assert "claims[1].people_count" in answer.json()
        assert not Incident.objects.exists()

    def test_a_claim_cannot_cite_a_source_the_writer_may_not_see(self):
        secret = make_source(confidential=True)
        body = new_incident_body(claims=[{"source": secret.pk, "people_count": 10}])
        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/incidents/", body, format="json")
        assert answer.status_code == 400
        assert answer.json() == {"claims[0].source": [f'Invalid pk "{secret.pk}" - object does not exist.']}

    def test_a_new_incident_s_rows_naming_an_id_answer_400_alike_for_hidden_and_visible_ones(self):
        # A new incident has no rows yet: any id is refused by name, whether it is another incident's
        # confidential claim, its public one, or no claim at all.
        incident = make_incident()
        hidden = make_claim(incident=incident, confidential=True)
        shown = make_claim(incident=incident)
        for claim_id in (hidden.pk, shown.pk, shown.pk + 1000):
            body = new_incident_body(claims=[{"id": claim_id, "source": make_source().pk}])
            answer = client_for(make_user(roles.ANALYST)).post(f"{API}/incidents/", body, format="json")
            assert answer.status_code == 400
            assert answer.json() == {"claims[0].id": [f"A new incident has no claim {claim_id}."]}
        assert Incident.objects.count() == 1


class TestUpdateIncident:
    @pytest.fixture
    def analyst(self):
        return make_user(roles.ANALYST)

    @pytest.fixture
    def incident(self):
        return make_incident(review_state="draft", people_count=80)

    def test_patch_with_current_if_match_saves_and_returns_the_new_etag(self, analyst, incident):
        answer = client_for(analyst).patch(
            incident_url(incident), {"people_count": 90}, format="json", HTTP_IF_MATCH='"1"'
        )
        assert answer.status_code == 200, answer.json()
        assert answer.json()["people_count"] == 90
        assert answer["ETag"] == '"staff.2"'
        incident.refresh_from_db()
        assert (incident.people_count, incident.version, incident.updated_by) == (90, 2, analyst)

    def test_a_patch_of_counts_costs_a_fixed_number_of_queries(self, incident, django_assert_num_queries):
        # An analyst with Confidential access, so the answer shows a confidential claim and records it.
        analyst = make_user(roles.ANALYST, confidential=True, username="alice")
        claim = make_claim(incident=incident, source=make_source(confidential=True), people_count=80)
        client = client_for(analyst)
        body = {"people_count": 90, "people_count_min": None, "people_count_max": None, "count_qualifier": "about"}
        # 13 queries: the token and its user, and its first use recorded; the permissions of the
        # user and of its groups; the incident read with visible_to (get_object); the transaction's
        # savepoint (a test runs in a transaction); the incident locked, checked visible and at the
        # version sent, in one statement; the model's check constraints, all in one query within a
        # savepoint (3); the update; the savepoint's release; the answer built by PostgreSQL,
        # recording the confidential claim it shows, in one statement. Nothing looks up again the
        # relations and the public_id the write keeps as stored. The duplicates' rescoring runs
        # after commit, outside this count.
        with django_assert_num_queries(13):
            answer = client.patch(incident_url(incident), body, format="json", HTTP_IF_MATCH='"1"')
        assert answer.status_code == 200, answer.json()
        assert (answer.json()["people_count"], answer.json()["version"], answer["ETag"]) == (90, 2, '"confidential.2"')
        assert len(answer.json()["claims"]) == 1
        (access,) = ConfidentialAccess.objects.all()
        assert (access.user, access.claim_ids) == (analyst, [claim.pk])
        events = client.get(incident_url(incident, "history/")).json()["results"]
        (update,) = [event for event in events if event["action"] == "update"]
        assert (update["user"], update["changes"]["people_count"]) == ("alice", [80, 90])

    @pytest.mark.parametrize(
        ("rows", "make_row", "row"),
        [
            ("victim_groups", lambda incident: VictimGroup.objects.create(incident=incident, count=16), {"count": 7}),
            (
                "involvements",
                lambda incident: Involvement.objects.create(
                    incident=incident, organization=make_organization(), role="perpetrator"
                ),
                {"role": "facilitator"},
            ),
            # A claim a merge marked as a conflict stands outside the rule of one claim per source.
            (
                "claims",
                lambda incident: make_claim(incident=incident, people_count=80, merge_conflict=True),
                {"people_count": 70},
            ),
        ],
    )
    def test_two_rows_naming_one_id_are_refused_on_the_second(self, analyst, incident, rows, make_row, row):
        # Both rows changed the one stored row, the second's values over the first's: a victim
        # group split into 7 women and 9 men was saved as 9 men, the 7 dropped without a word.
        stored = make_row(incident)
        first = {"id": stored.pk, **{field: getattr(stored, field) for field in row}}
        before = list(getattr(incident, rows).values())
        answer = client_for(analyst).patch(
            incident_url(incident), {"version": 1, rows: [first, {"id": stored.pk, **row}]}, format="json"
        )
        assert answer.status_code == 400, answer.content
        verbose_name = stored._meta.verbose_name
        assert answer.json() == {f"{rows}[1].id": [f"It repeats row 0's id; send each {verbose_name} once."]}
        assert list(getattr(incident, rows).values()) == before

    def test_if_match_star_names_no_version_to_a_change(self, analyst, incident):
        # As for every record (TestOtherResourcesVersions): `*` let a stale edit through.
        answer = client_for(analyst).patch(
            incident_url(incident), {"people_count": 90}, format="json", HTTP_IF_MATCH="*"
        )
        assert answer.status_code == 400 and list(answer.json()) == ["version"], answer.content
        incident.refresh_from_db()
        assert (incident.people_count, incident.version) == (80, 1)

    def test_stale_if_match_answers_412_and_changes_nothing(self, analyst, incident):
        incident.title = "Edited by someone else"
        incident.save()
        answer = client_for(analyst).patch(
            incident_url(incident), {"people_count": 90}, format="json", HTTP_IF_MATCH='"1"'
        )
        assert answer.status_code == 412
        assert 'version "staff.2"' in answer.json()["detail"]
        incident.refresh_from_db()
        assert incident.people_count == 80

    def test_without_if_match_a_stale_body_version_answers_409(self, analyst, incident):
        incident.title = "Edited by someone else"
        incident.save()
        answer = client_for(analyst).patch(incident_url(incident), {"people_count": 90, "version": 1}, format="json")
        assert answer.status_code == 409
        assert "not saved" in answer.json()["detail"]
        incident.refresh_from_db()
        assert incident.people_count == 80

    def test_a_current_if_match_with_a_stale_body_version_answers_409_and_changes_nothing(self, analyst, incident):
        # An HTTP library adds If-Match from a fresh read while the body's `version` is the one the
        # edit was made from: If-Match alone was read, and the stale edit written over the newer one.
        incident.title = "Edited by someone else"
        incident.save()
        answer = client_for(analyst).patch(
            incident_url(incident), {"people_count": 90, "version": 1}, format="json", HTTP_IF_MATCH='"2"'
        )
        assert answer.status_code == 409, answer.content
        assert "version 1" in answer.json()["detail"] and "If-Match" in answer.json()["detail"]
        incident.refresh_from_db()
        assert (incident.people_count, incident.version) == (80, 2)

    def test_if_match_and_body_version_naming_the_same_version_are_accepted(self, analyst, incident):
        answer = client_for(analyst).patch(
            incident_url(incident), {"people_count": 90, "version": 1}, format="json", HTTP_IF_MATCH='"1"'
        )
        assert answer.status_code == 200, answer.content
        assert answer.json()["version"] == 2

    def test_a_body_version_the_incident_never_had_is_named_and_changes_nothing(self, analyst, incident):
        for version in (2, 10**30):
            answer = client_for(analyst).patch(
                incident_url(incident), {"people_count": 90, "version": version}, format="json"
            )
            assert answer.status_code == 400, answer.content
            assert answer.json()["version"] == [
                f"{incident.public_id} never had version {version}: it is at version 1. Send the version you read."
            ]
        incident.refresh_from_db()
        assert (incident.people_count, incident.version) == (80, 1)

    def test_without_if_match_the_current_body_version_is_accepted(self, analyst, incident):
        answer = client_for(analyst).patch(incident_url(incident), {"people_count": 90, "version": 1}, format="json")
        assert answer.status_code == 200
        assert answer.json()["version"] == 2

    def test_claims_read_before_a_source_was_made_public_do_not_delete_its_claim(self, analyst, incident):
        # The analyst read the incident while its claim from an informant's source was hidden from
        # her. A Reviewer then made that source public: sending back the claims she read, at the
        # version she read, deleted the claim she had never seen, as if she had removed it.
        seen = make_claim(incident=incident, source=make_source(title="RFA"))
        informant = make_source(title="Informant", confidential=True)
        unseen = make_claim(incident=incident, source=informant)
        read = client_for(analyst).get(incident_url(incident))
        reviewer = make_user(roles.REVIEWER, confidential=True)
        made_public = client_for(reviewer).patch(
            f"{API}/sources/{informant.pk}/", {"confidential": False, "version": informant.version}, format="json"
        )
        assert made_public.status_code == 200, made_public.json()

        answer = client_for(analyst).patch(
            incident_url(incident),
            {"claims": [{"id": seen.pk, "source": seen.source_id, "excerpt": "Mine"}]},
            format="json",
            HTTP_IF_MATCH=read["ETag"],
        )

        assert answer.status_code == 412
        assert Claim.objects.filter(pk=unseen.pk).exists()
        assert Claim.objects.get(pk=seen.pk).excerpt == ""

    def test_a_rows_errors_are_named_one_way_whichever_check_found_them(self, analyst, incident):
        # A value of the wrong type (the serializer's check) and a rule of the model (the
        # service's) are both named `claims[1].source`; DRF nested the first under its index.
        body = {
            "version": 1,
            "claims": [
                {"source": make_source().pk, "people_count": 5, "people_count_min": 9},
                {"source": "abc"},
            ],
            "victim_groups": [{"count": "x"}],
        }
        typed = client_for(analyst).patch(incident_url(incident), body, format="json")
        body["claims"][1]["source"] = make_source().pk
        del body["victim_groups"]
        ruled = client_for(analyst).patch(incident_url(incident), body, format="json")

        assert typed.status_code == ruled.status_code == 400
        assert typed.json() == {
            "claims[1].source": ["Incorrect type. Expected pk value, received str."],
            "victim_groups[0].count": ["A valid integer is required."],
        }
        assert list(ruled.json()) == ["claims[0].people_count"]

    @pytest.mark.parametrize(
        ("field", "row", "named"),
        [
            ("claims", {}, "claims[0].source"),
            ("claims", {"people_count": 4}, "claims[0].source"),
            ("involvements", {"role": "perpetrator"}, "involvements[0].organization"),
        ],
    )
    @pytest.mark.parametrize("review_state", ["draft", "published"])
    def test_a_patchs_new_row_missing_its_record_is_refused_as_a_post_refuses_it(
        self, analyst, field, row, named, review_state
    ):
        # A PATCH is partial, but a row without an id is a new row: it needs what a POST needs.
        incident = make_incident(review_state=review_state)
        answer = client_for(analyst).patch(
            incident_url(incident), {"version": incident.version, field: [row]}, format="json"
        )
        assert answer.status_code == 400
        assert answer.json() == {named: ["This field is required."]}
        incident.refresh_from_db()
        assert incident.version == 1

    def test_a_write_naming_no_version_is_refused(self, analyst, incident):
        answer = client_for(analyst).patch(incident_url(incident), {"people_count": 90}, format="json")
        assert answer.status_code == 400
        assert "version" in answer.json()

    def test_put_replaces_the_nested_collections(self, analyst, incident):
        old_claim = make_claim(incident=incident, people_count=80)
        replacement_source = make_source()
        body = new_incident_body(
            version=1,
            claims=[
                {"id": old_claim.pk, "source": old_claim.source_id, "people_count": 85},
                {"source": replacement_source.pk, "people_count": 90},
            ],
        )
        answer = client_for(analyst).put(incident_url(incident), body, format="json")
        assert answer.status_code == 200, answer.json()
        assert sorted(claim["people_count"] for claim in answer.json()["claims"]) == [85, 90]
        old_claim.refresh_from_db()
        assert old_claim.people_count == 85

    def test_a_field_the_record_does_not_have_is_refused_naming_it(self, analyst, incident):
        # DRF left such keys out: `"peopel_count": 90` answered 200 with nothing changed.
        claim = make_claim(incident=incident, people_count=80)
        client = client_for(analyst)
        typo = client.patch(incident_url(incident), {"version": 1, "peopel_count": 90}, format="json")
        in_a_row = client.patch(
            incident_url(incident),
            {"version": 1, "claims": [{"id": claim.pk, "source": claim.source_id, "poeple_count": 90}]},
            format="json",
        )
        source = client.patch(f"{API}/sources/{claim.source_id}/", {"version": 1, "titel": "HRW"}, format="json")

        assert (typo.status_code, list(typo.json())) == (400, ["peopel_count"])
        assert typo.json()["peopel_count"][0].startswith("No such field. The fields a write may give: ")
        assert "people_count" in typo.json()["peopel_count"][0]
        assert (in_a_row.status_code, list(in_a_row.json())) == (400, ["claims[0].poeple_count"])
        assert (source.status_code, list(source.json())) == (400, ["titel"])
        incident.refresh_from_db()
        assert (incident.version, incident.people_count) == (1, 80)

    def test_what_a_client_read_it_may_write_back_whole(self, analyst, incident):
        # Read-only fields (public_id, date_label, corroboration, a claim's source_title…) are no
        # unknown fields: a client writes back what it read.
        make_claim(incident=incident, people_count=80)
        client = client_for(analyst)
        read = client.get(incident_url(incident)).json()

        written = client.put(incident_url(incident), {**read, "title": "Corrected"}, format="json")

        assert written.status_code == 200, written.json()
        assert written.json()["title"] == "Corrected"
        source = client.get(f"{API}/sources/{read['claims'][0]['source']}/").json()
        assert client.put(f"{API}/sources/{source['id']}/", source, format="json").status_code == 200

    def test_corrections_that_pass_keys_along_rows_are_saved_in_an_order_that_holds(self, analyst, incident):
        # Police and army recorded as perpetrators, the navy as a facilitator; corrected to the army
        # and the navy: the first row took (army, perpetrator) while the second still held it, and
        # PostgreSQL's unique index answered a 500 to a valid edit.
        police, army, navy = make_organization(), make_organization(), make_organization()
        rows = [(police, "perpetrator"), (army, "perpetrator"), (navy, "facilitator")]
        one, two, three = (
            Involvement.objects.create(incident=incident, organization=organization, role=role)
            for organization, role in rows
        )
        corrected = [(one, army, "perpetrator"), (two, navy, "perpetrator"), (three, navy, "facilitator")]
        involvements = [{"id": row.pk, "organization": org.pk, "role": role} for row, org, role in corrected]

        answer = client_for(analyst).patch(
            incident_url(incident), {"version": 1, "involvements": involvements}, format="json"
        )

        assert answer.status_code == 200, answer.json()
        stored = Involvement.objects.filter(incident=incident).values_list("pk", "organization", "role")
        assert sorted(stored) == sorted((row.pk, org.pk, role) for row, org, role in corrected)

    def test_two_claims_swapping_their_sources_keep_their_ids_and_everything_else(self, analyst, incident):
        # HRW's 80 recorded under Amnesty and Amnesty's 40 under HRW, corrected in one write: no
        # order of two updates holds, so one row goes out and back in with its id.
        hrw, amnesty = make_source(title="HRW"), make_source(title="Amnesty")
        first = make_claim(incident=incident, source=hrw, people_count=80, excerpt="eighty")
        second = make_claim(incident=incident, source=amnesty, people_count=40, excerpt="forty")
        claims = [
            {"id": first.pk, "source": amnesty.pk, "people_count": 80, "excerpt": "eighty"},
            {"id": second.pk, "source": hrw.pk, "people_count": 40, "excerpt": "forty"},
        ]

        answer = client_for(analyst).patch(incident_url(incident), {"version": 1, "claims": claims}, format="json")

        assert answer.status_code == 200, answer.json()
        stored = Claim.objects.filter(incident=incident).values_list("pk", "source", "people_count", "excerpt")
        assert sorted(stored) == [(first.pk, amnesty.pk, 80, "eighty"), (second.pk, hrw.pk, 40, "forty")]
        # Its history has both rows' sources before and after.
        events = client_for(analyst).get(incident_url(incident, "history/")).json()["results"]
        claim_events = [event for event in events if event["record"] == "incidents.Claim"]
        assert {event["record_id"] for event in claim_events} >= {str(first.pk), str(second.pk)}

    def test_replacing_claims_keeps_the_confidential_claims_the_writer_cannot_see(self, analyst, incident):
        hidden = make_claim(incident=incident, source=make_source(confidential=True), people_count=300)
        answer = client_for(analyst).patch(
            incident_url(incident), {"version": 1, "claims": [{"source": make_source().pk}]}, format="json"
        )
        assert answer.status_code == 200, answer.json()
        assert len(answer.json()["claims"]) == 1
        assert Claim.objects.filter(pk=hidden.pk, people_count=300).exists()

    def test_a_hidden_claim_cannot_be_changed_by_naming_its_id(self, analyst, incident):
        hidden = make_claim(incident=incident, people_count=300, confidential=True)
        other_incidents_claim = make_claim(incident=make_incident(), people_count=7)
        for claim in (hidden, other_incidents_claim):
            answer = client_for(analyst).patch(
                incident_url(incident),
                {"version": 1, "claims": [{"id": claim.pk, "source": claim.source_id, "confidential": False}]},
                format="json",
            )
            assert answer.status_code == 400
            assert answer.json() == {"claims[0].id": [f"{incident.public_id} has no claim {claim.pk}."]}
        hidden.refresh_from_db()
        assert hidden.confidential
        incident.refresh_from_db()
        assert incident.version == 1

    def test_analyst_cannot_publish_an_existing_incident(self, analyst, incident):
        answer = client_for(analyst).patch(
            incident_url(incident), {"review_state": "published", "version": 1}, format="json"
        )
        assert answer.status_code == 403
        incident.refresh_from_db()
        assert incident.review_state == "draft"

    def test_reviewer_publishes_and_the_public_then_sees_it(self, incident):
        answer = client_for(make_user(roles.REVIEWER)).patch(
            incident_url(incident), {"review_state": "published", "version": 1}, format="json"
        )
        assert answer.status_code == 200
        assert client_for().get(incident_url(incident)).status_code == 200

    def test_server_owned_fields_cannot_be_written(self, analyst, incident):
        answer = client_for(analyst).patch(
            incident_url(incident),
            {"version": 1, "public_id": "INC-123456", "created_at": "2000-01-01T00:00:00Z", "date_label": "x"},
            format="json",
        )
        assert answer.status_code == 200
        incident.refresh_from_db()
        assert incident.public_id != "INC-123456"
        assert incident.created_at.year != 2000

    def test_writers_cannot_reach_incidents_they_may_not_see(self, analyst):
        secret = make_incident(confidential=True)
        answer = client_for(analyst).patch(incident_url(secret), {"title": "x", "version": 1}, format="json")
        assert answer.status_code == 404


class TestWritingBackWhatWasRead:
    """A client's GET → PUT of the body it read, with its If-Match: accepted whole (README, "Errors":
    every field a record is read with may be written back), and, nothing in it differing from what
    is stored, changing nothing: no value, no version, no history event."""

    @pytest.fixture
    def world(self):
        """A draft incident an Analyst sees, with claims they see and claims they do not (a
        confidential claim of a public source, a claim of a confidential source), and records
        linked to hidden ones."""
        china = make_place(name="China", kind="country", country="CN")
        town = make_place(name="Tumen", parent=china, latitude="42.966", longitude="129.842", sensitive=True)
        public = make_source(title='=HYPERLINK("x") "quoted", with comma', notes="internal")
        secret = make_source(title="Informant K", confidential=True)
        relay = make_source(title="Relay article", cites=secret)
        organization = make_organization(name="Border Police", aliases=["BP"])
        incident = make_incident(title="עברית e\u0301 title", review_state="draft", places=[town])
        make_claim(incident=incident, source=public, people_count=None, people_count_min=30, count_qualifier="at_least")
        make_claim(incident=incident, source=public, confidential=True, people_count=12, excerpt="secret words")
        make_claim(incident=incident, source=secret, people_count=None, people_count_max=50, count_qualifier="at_most")
        Involvement.objects.create(incident=incident, organization=organization, role="perpetrator")
        VictimGroup.objects.create(incident=incident, count=3, sex="female", nationality="KP")
        hidden = make_incident(title="Hidden one", confidential=True, review_state="draft", places=[town])
        response = Response.objects.create(
            organization=organization, kind="statement", date=date(2023, 9, 1), source=secret
        )
        response.incidents.set([incident, hidden])
        return {"incident": incident, "relay": relay, "town": town, "organization": organization, "response": response}

    @staticmethod
    def claims_of(incident):
        return sorted(
            Claim.objects.filter(incident=incident).values_list(
                "pk", "source_id", "confidential", "people_count", "people_count_min", "people_count_max", "excerpt"
            )
        )

    @staticmethod
    def read(client, url):
        answer = client.get(url)
        assert answer.status_code == 200, answer.content
        return answer.json(), {"HTTP_IF_MATCH": answer.headers["ETag"]}

    @pytest.mark.parametrize("confidential", [False, True], ids=["analyst", "analyst with Confidential access"])
    def test_an_incident_is_written_back_with_its_places_as_read(self, confidential, world):
        # Places are read as objects ({"id": 3, "name": …, "latitude": …}); written only as ids,
        # the body a client read was refused whole: "Incorrect type. Expected pk value, received dict."
        client = client_for(make_user(roles.ANALYST, confidential=confidential))
        url = incident_url(world["incident"])
        body, if_match = self.read(client, url)
        claims = self.claims_of(world["incident"])

        answer = client.put(url, body, format="json", **if_match)

        assert answer.status_code == 200, answer.content
        assert self.claims_of(world["incident"]) == claims
        assert list(world["incident"].places.all()) == [world["town"]]

    def test_a_place_written_as_read_is_named_by_its_id_alone(self, world):
        client = client_for(make_user(roles.REVIEWER))
        url = incident_url(world["incident"])
        body, if_match = self.read(client, url)
        china = Place.objects.get(name="China")

        renamed = client.put(url, {**body, "places": [{"id": china.pk, "name": "Tumen"}]}, format="json", **if_match)
        misspelt = client.put(url, {**body, "places": [{"id": china.pk, "nmae": "China"}]}, format="json")

        assert renamed.status_code == 200, renamed.content
        assert list(world["incident"].places.all()) == [china]
        assert Place.objects.get(pk=china.pk).name == "China"
        assert (misspelt.status_code, misspelt.json()) == (
            400,
            {"places": ['A place is written by its id: 3, or as read, {"id": 3, …}; no place is read with nmae.']},
        )

    def test_an_incident_written_back_unchanged_moves_no_version(self, world):
        # The incident and each claim the writer saw got an "update" history event, and the
        # incident a new version: every reader with Confidential access was told of a change (their
        # pending edit met a conflict, their sync fetched it again), as the import and a proposal
        # that change nothing do not.
        client = client_for(make_user(roles.ANALYST))
        url = incident_url(world["incident"])
        body, if_match = self.read(client, url)
        claims, history = self.claims_of(world["incident"]), history_row_count()

        answer = client.put(url, body, format="json", **if_match)

        assert answer.status_code == 200, answer.content
        assert self.claims_of(world["incident"]) == claims
        assert answer.headers["ETag"] == if_match["HTTP_IF_MATCH"]
        assert Incident.objects.get(pk=world["incident"].pk).version == world["incident"].version
        assert history_row_count() == history

    @pytest.mark.parametrize(
        ("record", "path"),
        [("relay", "sources"), ("town", "places"), ("organization", "organizations"), ("response", "responses")],
    )
    def test_a_record_written_back_unchanged_moves_no_version(self, record, path, world):
        # A source citing a hidden one, a sensitive place, an organization, a response about a
        # hidden incident: what is hidden survived, but the version moved (a place's and an
        # organization's one version for every reader, anonymous ones included) and history grew.
        client = client_for(make_user(roles.ANALYST))
        url = f"{API}/{path}/{world[record].pk}/"
        body, if_match = self.read(client, url)
        stored = type(world[record]).objects.get(pk=world[record].pk)
        history = history_row_count()

        answer = client.put(url, body, format="json", **if_match)

        assert answer.status_code == 200, answer.content
        assert type(stored).objects.get(pk=stored.pk).version == stored.version
        assert answer.headers["ETag"] == if_match["HTTP_IF_MATCH"]
        assert history_row_count() == history
        if record == "relay":
            assert Source.objects.get(pk=stored.pk).cites_id == stored.cites_id
        if record == "response":
            assert stored.incidents.count() == 2 and Response.objects.get(pk=stored.pk).source_id == stored.source_id

    def test_text_stored_with_spaces_around_it_is_written_back_unchanged(self, world):
        # Stored before the doors trimmed (or by SQL): the API trims what it is sent, so the body
        # read came back as a change, a new version, and the spaces were gone without anyone asking.
        incident = world["incident"]
        claim = Claim.objects.filter(incident=incident, confidential=False, source__title__startswith="=").get()
        Claim.objects.filter(pk=claim.pk).update(excerpt="  30 taken \n")
        Incident.objects.filter(pk=incident.pk).update(description=" Seen at the gate. ")
        Organization.objects.filter(pk=world["organization"].pk).update(description=" Border unit ")
        client = client_for(make_user(roles.ANALYST))
        url = incident_url(incident)
        body, if_match = self.read(client, url)
        version, history = Incident.objects.get(pk=incident.pk).version, history_row_count()

        answer = client.put(url, body, format="json", **if_match)

        assert answer.status_code == 200, answer.content
        assert answer.headers["ETag"] == if_match["HTTP_IF_MATCH"]
        assert Incident.objects.get(pk=incident.pk).version == version
        assert history_row_count() == history
        organization_url = f"{API}/organizations/{world['organization'].pk}/"
        organization_body, organization_if_match = self.read(client, organization_url)
        answer = client.put(organization_url, organization_body, format="json", **organization_if_match)
        assert answer.status_code == 200, answer.content
        assert answer.headers["ETag"] == organization_if_match["HTTP_IF_MATCH"]
        assert Organization.objects.get(pk=world["organization"].pk).description == " Border unit "
        # A change of something else leaves them as stored.
        answer = client.put(url, {**body, "title": "Arrests at the gate"}, format="json", **if_match)
        assert answer.status_code == 200, answer.content
        stored = Incident.objects.get(pk=incident.pk)
        assert (stored.title, stored.description) == ("Arrests at the gate", " Seen at the gate. ")
        assert Claim.objects.get(pk=claim.pk).excerpt == "  30 taken \n"
        # A change of the text itself is written, trimmed as always.
        answer = client.put(url, {**answer.json(), "description": "Seen at the gate, at dawn. "}, format="json")
        assert answer.status_code == 200, answer.content
        assert Incident.objects.get(pk=incident.pk).description == "Seen at the gate, at dawn."

    def test_a_proposal_sent_with_text_stored_with_spaces_proposes_only_what_it_changes(self):
        # An Analyst's change of a published incident waits for a Reviewer: its diff showed the
        # text stored with spaces around it as changed (to itself, trimmed), which accepting kept.
        incident = make_incident(title="Arrests at the gate")
        claim = make_claim(incident=incident, people_count=30)
        Incident.objects.filter(pk=incident.pk).update(description=" Seen at the gate. ")
        Claim.objects.filter(pk=claim.pk).update(excerpt="  30 taken ")
        client = client_for(make_user(roles.ANALYST))
        body, if_match = self.read(client, incident_url(incident))

        proposed = client.put(incident_url(incident), {**body, "title": "Arrests at dawn"}, format="json", **if_match)

        assert proposed.status_code == 202, proposed.content
        assert proposed.json()["diff"] == [
            {"field": "Title", "now": "Arrests at the gate", "proposed": "Arrests at dawn"}
        ]
        accepted = client_for(make_user(roles.REVIEWER)).post(f"{API}/revisions/{proposed.json()['id']}/accept/")
        assert accepted.status_code == 200, accepted.content
        stored = Incident.objects.get(pk=incident.pk)
        assert (stored.title, stored.description) == ("Arrests at dawn", " Seen at the gate. ")
        assert Claim.objects.get(pk=claim.pk).excerpt == "  30 taken "


class TestDelete:
    def test_only_reviewers_with_confidential_access_delete_incidents(self):
        incident = make_incident()
        assert client_for(make_user(roles.ANALYST, confidential=True)).delete(incident_url(incident)).status_code == 403
        assert client_for(make_user(roles.REVIEWER)).delete(incident_url(incident)).status_code == 403
        reviewer = make_user(roles.REVIEWER, confidential=True)
        assert client_for(reviewer).delete(incident_url(incident)).status_code == 204
        assert not Incident.objects.filter(pk=incident.pk).exists()

    def test_delete_with_a_stale_if_match_answers_412(self):
        incident = make_incident()
        incident.save()
        reviewer = make_user(roles.REVIEWER, confidential=True)
        answer = client_for(reviewer).delete(incident_url(incident), HTTP_IF_MATCH='"1"')
        assert answer.status_code == 412
        assert Incident.objects.filter(pk=incident.pk).exists()

    def test_delete_with_if_match_star_deletes_whatever_version_is_stored(self):
        # A deletion takes the record as it is: `*` matches any version there, and only there.
        incident = make_incident()
        incident.save()
        answer = client_for(make_user(roles.REVIEWER, confidential=True)).delete(
            incident_url(incident), HTTP_IF_MATCH="*"
        )
        assert answer.status_code == 204
        assert not Incident.objects.filter(pk=incident.pk).exists()

    def test_evidence_in_use_answers_409_naming_what_uses_it(self):
        place = make_place(name="Sinuiju")
        make_incident(places=[place], title="Crossing at Sinuiju")
        answer = client_for(make_user(roles.REVIEWER, confidential=True)).delete(f"{API}/places/{place.pk}/")
        assert answer.status_code == 409
        assert answer.json()["detail"] == "It is still used by incident places; remove those uses first."
        assert Place.objects.filter(pk=place.pk).exists()

    def test_a_confidential_incident_a_response_is_about_alone_is_not_deleted(self, client):
        # Deleted, it left the response about no incident, which every member of staff reads:
        # the statement about the informant's incident reached Analysts without Confidential access.
        secret = make_incident(title="Handover at Hoeryong", confidential=True)
        statement = Response.objects.create(
            organization=make_organization(), kind="statement", date=date(2023, 10, 1), description="Denies it."
        )
        statement.incidents.set([secret])
        deleter = make_user(roles.REVIEWER, confidential=True)

        answer = client_for(deleter).delete(incident_url(secret))
        client.force_login(deleter)
        confirmation = client.get(reverse("admin:incidents_incident_delete", args=[secret.pk]))

        assert answer.status_code == 409
        assert answer.json()["detail"] == "It is still used by responses; remove those uses first."
        page = confirmation.content.decode()
        assert reverse("admin:incidents_response_change", args=[statement.pk]) in page
        # Django's confirmation, told what protects the incident, deletes nothing when posted.
        client.post(reverse("admin:incidents_incident_delete", args=[secret.pk]), {"post": "yes"})
        assert Incident.objects.filter(pk=secret.pk).exists()
        assert client_for(make_user(roles.ANALYST)).get(f"{API}/responses/{statement.pk}/").status_code == 404
        # About another incident too, or about a public one alone, it goes.
        statement.incidents.add(make_incident())
        assert client_for(deleter).delete(incident_url(secret)).status_code == 204

    @pytest.mark.django_db(transaction=True)
    def test_two_confidential_incidents_of_one_response_deleted_at_once_leave_it_about_one(self):
        # A confidential incident that is the only incident of a response is not deleted (409): the
        # response, about none, would be read by every member of staff, with what it says of the
        # informant's incident (`services.record_delete`, `responses_left_about_none`). Two Reviewers
        # deleting the response's two confidential incidents at the same moment each saw the other
        # incident still there, and both deleted theirs: the response, about none, reached Analysts
        # without Confidential access.
        secrets = [make_incident(title=f"Handover at Hoeryong {n}", confidential=True) for n in (1, 2)]
        statement = Response.objects.create(
            organization=make_organization(), kind="statement", date=date(2023, 10, 1), description="Denies it."
        )
        statement.incidents.set(secrets)
        deleters = [client_for(make_user(roles.REVIEWER, confidential=True)) for _ in secrets]

        # A colleague's write holds both incidents a moment: both deletions, checked, wait there.
        answers = answered_while_held(
            "SELECT FROM incidents_incident WHERE id = ANY(%s) FOR UPDATE",
            [[s.pk for s in secrets]],
            *(
                lambda deleter=deleter, secret=secret: deleter.delete(incident_url(secret))
                for deleter, secret in zip(deleters, secrets, strict=True)
            ),
        )

        statuses = sorted(getattr(answer, "status_code", answer) for answer in answers)
        assert statuses == [204, 409], answers
        assert statement.incidents.count() == 1
        assert client_for(make_user(roles.ANALYST)).get(f"{API}/responses/{statement.pk}/").status_code == 404


class TestOtherResourcesVersions:
    """Sources, places, organizations, incident types and responses are edited from a version, as
    incidents are: a stale one is refused, never written over a newer edit."""

    @pytest.fixture(params=["sources", "places", "organizations", "incident-types", "responses"])
    def resource(self, request):
        from datetime import date

        from incidents.models import IncidentType, Response

        make = {
            "sources": lambda: (make_source(title="Daily NK"), {"title": "Daily NK, edited"}),
            "places": lambda: (make_place(name="Tumen"), {"name": "Tumen, edited"}),
            "organizations": lambda: (make_organization(name="NIS"), {"name": "NIS, edited"}),
            "incident-types": lambda: (
                IncidentType.objects.create(slug="refoulement", name="Refoulement"),
                {"name": "Refoulement, edited"},
            ),
            "responses": lambda: (
                Response.objects.create(organization=make_organization(), kind="statement", date=date(2023, 10, 1)),
                {"description": "Edited"},
            ),
        }
        record, change = make[request.param]()
        return f"{API}/{request.param}/{record.pk}/", record, change

    def test_a_stale_version_is_refused_and_the_newer_edit_kept(self, resource):
        url, record, change = resource
        reviewer = client_for(make_user(roles.REVIEWER))
        read = reviewer.get(url)
        assert (read["ETag"], read.json()["version"]) == ('"staff.1"', 1)
        # A colleague's save: the same change sent again by the account that saved it is that save,
        # answered as saved (`services.VersionConflict.by_the_writer_alone`).
        first = client_for(make_user(roles.REVIEWER)).patch(url, {**change, "version": 1}, format="json")
        assert first.status_code == 200, first.content
        assert (first["ETag"], first.json()["version"]) == ('"staff.2"', 2)

        stale_body = reviewer.patch(url, {**change, "version": 1}, format="json")
        stale_header = reviewer.patch(url, change, format="json", headers={"If-Match": '"1"'})
        without = reviewer.patch(url, change, format="json")

        assert stale_body.status_code == 409 and "you edited version 1" in stale_body.json()["detail"]
        assert stale_header.status_code == 412 and "stale" in stale_header.json()["detail"]
        assert without.status_code == 400 and list(without.json()) == ["version"]
        # A version the record never had is a wrong value, not someone's save: no reload cures it.
        never = reviewer.patch(url, {**change, "version": 10**30}, format="json")
        assert never.status_code == 400 and "never had version" in never.json()["version"][0], never.content
        record.refresh_from_db()
        assert record.version == 2
        assert reviewer.patch(url, change, format="json", headers={"If-Match": '"2"'}).status_code == 200

    def test_if_match_star_names_no_version_to_a_change(self, resource):
        # `*` passed, and the stored version stood in for the one edited: a stale edit sent with `*`
        # wrote over a colleague's save. To a change it names no version; the body's is read.
        url, record, change = resource
        reviewer = client_for(make_user(roles.REVIEWER, confidential=True))
        colleague = client_for(make_user(roles.REVIEWER, confidential=True))
        assert colleague.patch(url, {**change, "version": 1}, format="json").status_code == 200

        without = reviewer.patch(url, change, format="json", headers={"If-Match": "*"})
        stale = reviewer.patch(url, {**change, "version": 1}, format="json", headers={"If-Match": "*"})

        assert without.status_code == 400 and list(without.json()) == ["version"], without.content
        assert stale.status_code == 409 and "you edited version 1" in stale.json()["detail"], stale.content
        record.refresh_from_db()
        assert record.version == 2
        current = reviewer.patch(url, {**change, "version": 2}, format="json", headers={"If-Match": "*"})
        assert current.status_code == 200, current.content

    def test_an_empty_if_match_is_refused_as_naming_no_version(self, resource):
        # A script's `If-Match: $ETAG` with ETAG unset was told "your If-Match () is stale. Reload
        # it", which no reload cured.
        url, record, change = resource
        reviewer = client_for(make_user(roles.REVIEWER, confidential=True))
        for write in (reviewer.put, reviewer.patch, reviewer.delete):
            answer = write(url, change, format="json", headers={"If-Match": ""})
            assert answer.status_code == 400 and list(answer.json()) == ["If-Match"], answer.content
        record.refresh_from_db()
        assert record.version == 1


class TestOtherResources:
    def test_analyst_creates_a_source_and_model_rules_apply(self):
        analyst = make_user(roles.ANALYST)
        answer = client_for(analyst).post(
            f"{API}/sources/", {"title": "Daily NK", "kind": "news_article", "url": "not a url"}, format="json"
        )
        assert answer.status_code == 400
        assert "url" in answer.json()
        answer = client_for(analyst).post(f"{API}/sources/", {"title": "Daily NK", "kind": "news_article"})
        assert answer.status_code == 201
        assert Source.objects.filter(title="Daily NK").exists()

    def test_a_new_source_is_located_at_its_own_address_not_at_the_article_it_cites(self):
        # DRF's Location was the body's `url`: the article, not the record.
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/sources/", {"title": "Daily NK", "kind": "news_article", "url": "https://dailynk.com/a"}
        )
        assert answer.status_code == 201
        assert answer["Location"] == f"http://testserver{API}/sources/{answer.json()['id']}/"

    def test_place_rules_name_the_field(self):
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/places/", {"name": "Half", "latitude": "41.0"}, format="json"
        )
        assert answer.status_code == 400
        assert "longitude" in answer.json()

    def test_database_constraints_answer_400_not_500(self):
        make_place(name="Hyesan", parent=None, country="KP")
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/places/", {"name": "Hyesan", "country": "KP"}, format="json"
        )
        assert answer.status_code == 400
        # On the name, naming the place that holds it.
        assert list(answer.json()) == ["name"]
        assert answer.json()["name"][0].startswith("“Hyesan” is already a top-level place")

    def test_a_source_cannot_cite_a_hidden_source(self):
        secret = make_source(confidential=True)
        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/sources/", {"title": "Relay", "cites": secret.pk}, format="json"
        )
        assert answer.status_code == 400
        assert "cites" in answer.json()

    def test_replacing_a_responses_incidents_keeps_those_the_writer_cannot_see(self):
        from datetime import date

        from incidents.models import Response

        secret, public, added = make_incident(confidential=True), make_incident(), make_incident()
        response = Response.objects.create(organization=make_organization(), kind="statement", date=date(2023, 10, 1))
        response.incidents.set([secret, public])
        answer = client_for(make_user(roles.ANALYST)).patch(
            f"{API}/responses/{response.pk}/", {"incidents": [added.public_id], "version": 1}, format="json"
        )
        assert answer.status_code == 200
        assert answer.json()["incidents"] == [added.public_id]
        assert set(response.incidents.all()) == {secret, added}

    def test_editing_a_source_does_not_reveal_the_hidden_source_it_cites(self):
        relay = make_source(title="Relay", cites=make_source(confidential=True))
        answer = client_for(make_user(roles.ANALYST)).patch(
            f"{API}/sources/{relay.pk}/", {"title": "Relay (updated)", "version": relay.version}, format="json"
        )
        assert answer.status_code == 200
        assert (answer.json()["title"], answer.json()["cites"]) == ("Relay (updated)", None)
        relay.refresh_from_db()
        assert relay.cites_id is not None

    def test_sending_back_the_null_shown_for_a_hidden_link_keeps_the_link(self):
        hidden = make_source(confidential=True)
        relay = make_source(title="Relay", cites=hidden)
        analyst = client_for(make_user(roles.ANALYST))
        shown = analyst.get(f"{API}/sources/{relay.pk}/").json()
        answer = analyst.put(f"{API}/sources/{relay.pk}/", shown | {"title": "Relay, edited"}, format="json")
        assert answer.status_code == 200, answer.json()
        relay.refresh_from_db()
        assert (relay.title, relay.cites_id) == ("Relay, edited", hidden.pk)

    def test_a_writer_who_is_not_staff_sending_back_the_null_shown_for_a_sources_notes_keeps_them(self):
        source = make_source(title="Article", notes="The author is our informant's cousin.")
        # A partner tool's account: the Analyst role, which may change sources, but not staff.
        client = client_for(make_user(roles.ANALYST, is_staff=False))
        shown = client.get(f"{API}/sources/{source.pk}/").json()
        assert shown["notes"] is None
        answer = client.put(f"{API}/sources/{source.pk}/", shown | {"title": "Article, edited"}, format="json")
        assert answer.status_code == 200, answer.content
        assert answer.json()["notes"] is None
        source.refresh_from_db()
        assert (source.title, source.notes) == ("Article, edited", "The author is our informant's cousin.")
        created = client.post(f"{API}/sources/", shown | {"title": "Another article"}, format="json")
        assert created.status_code == 201, created.content
        assert Source.objects.get(title="Another article").notes == ""

    def test_a_writer_who_is_not_staff_can_neither_erase_nor_overwrite_a_sources_notes(self):
        # Shown null, a partner's "" (null as many clients send it back) erased the notes, and its
        # text replaced them, answered with null as if nothing had happened.
        source = make_source(title="Article", notes="The author is our informant's cousin.")
        client = client_for(make_user(roles.ANALYST, is_staff=False))
        shown = client.get(f"{API}/sources/{source.pk}/").json()
        blank = client.patch(f"{API}/sources/{source.pk}/", {"notes": "", "version": shown["version"]}, format="json")
        assert blank.status_code == 200, blank.content
        # Notes not sent are not theirs to answer for (a first fix refused every edit of a source
        # with notes, which told partners which sources have them).
        edited = client.patch(
            f"{API}/sources/{source.pk}/", {"title": "Article, edited", "version": shown["version"]}, format="json"
        )
        assert edited.status_code == 200, edited.content
        shown = edited.json()
        body = {name: value for name, value in shown.items() if value is not None and name != "notes"}
        assert client.put(f"{API}/sources/{source.pk}/", body, format="json").status_code == 200
        for sent in ("Mine", "The author is our informant's cousin."):
            # Refused whatever is stored: an answer that differed when the notes were guessed would tell them.
            answer = client.patch(
                f"{API}/sources/{source.pk}/", {"notes": sent, "version": shown["version"]}, format="json"
            )
            assert answer.status_code == 400
            assert answer.json() == {"notes": ["Only staff write a source's notes: send null."]}
        source.refresh_from_db()
        assert source.notes == "The author is our informant's cousin."
        created = client.post(f"{API}/sources/", {"title": "Another article", "notes": "Mine"}, format="json")
        assert created.status_code == 400
        assert not Source.objects.filter(title="Another article").exists()
        # Staff write them.
        staff = client_for(make_user(roles.ANALYST))
        answer = staff.patch(f"{API}/sources/{source.pk}/", {"notes": "", "version": shown["version"]}, format="json")
        assert answer.status_code == 200, answer.content
        source.refresh_from_db()
        assert source.notes == ""

    def test_viewer_cannot_write(self):
        answer = client_for(make_user(roles.VIEWER)).post(f"{API}/organizations/", {"name": "X"}, format="json")
        assert answer.status_code == 403


class TestAPlaceSaysWhereItIs:
    """A quick "Tumen" became a top-level place in no country, which the statistics count in no
    country: a place names its parent or its country, or says it lies in no country (a sea)."""

    @pytest.fixture
    def analyst(self):
        return client_for(make_user(roles.ANALYST))

    def test_a_place_by_its_name_alone_is_refused_naming_parent(self, analyst):
        answer = analyst.post(f"{API}/places/", {"name": "Tumen", "kind": "city"}, format="json")

        assert answer.status_code == 400
        assert answer.json() == {"parent": [PLACE_NOWHERE_MESSAGE]}
        assert not Place.objects.exists()

    def test_a_place_with_a_parent_a_country_or_in_no_country_is_created(self, analyst):
        china = analyst.post(f"{API}/places/", {"name": "China", "kind": "country", "country": "CN"}, format="json")
        jilin = analyst.post(f"{API}/places/", {"name": "Jilin", "parent": china.json()["id"]}, format="json")
        sea = analyst.post(f"{API}/places/", {"name": "Yellow Sea", "in_no_country": True}, format="json")

        assert (china.status_code, jilin.status_code, sea.status_code) == (201, 201, 201)
        assert jilin.json()["country"] == "CN"
        assert "in_no_country" not in sea.json()
        assert set(Place.objects.values_list("name", "country")) == {
            ("China", "CN"),
            ("Jilin", "CN"),
            ("Yellow Sea", ""),
        }

    def test_in_no_country_said_of_a_place_with_a_country_is_refused(self, analyst):
        answer = analyst.post(
            f"{API}/places/", {"name": "Dandong", "country": "CN", "in_no_country": True}, format="json"
        )

        assert answer.status_code == 400
        assert list(answer.json()) == ["in_no_country"]
        assert not Place.objects.exists()

    def test_clearing_parent_and_country_is_refused(self, analyst):
        tumen = make_place(name="Tumen", parent=make_place(name="Jilin", country="CN"))

        answer = analyst.patch(
            f"{API}/places/{tumen.pk}/", {"parent": None, "country": "", "version": tumen.version}, format="json"
        )

        assert answer.status_code == 400
        assert answer.json() == {"parent": [PLACE_NOWHERE_MESSAGE]}
        tumen.refresh_from_db()
        assert (tumen.parent.name, tumen.country) == ("Jilin", "CN")

    def test_a_place_kept_in_no_country_is_edited_without_saying_so_again(self, analyst):
        # Saved in no country before the rule, or by a writer who said so.
        sea = make_place(name="Yellow Sea", country="")

        renamed = analyst.patch(f"{API}/places/{sea.pk}/", {"name": "West Sea", "version": sea.version}, format="json")
        denied = analyst.patch(f"{API}/places/{sea.pk}/", {"in_no_country": False, "version": 2}, format="json")

        assert renamed.status_code == 200, renamed.content
        assert denied.status_code == 400 and list(denied.json()) == ["parent"]
        sea.refresh_from_db()
        assert (sea.name, sea.parent, sea.country) == ("West Sea", None, "")


class TestHistory:
    def test_staff_read_who_changed_what_including_claims(self):
        analyst = make_user(roles.ANALYST, username="alice")
        create = client_for(analyst).post(
            f"{API}/incidents/",
            new_incident_body(claims=[{"source": make_source().pk, "people_count": 40}]),
            format="json",
        )
        url = f"{API}/incidents/{create.json()['public_id']}/"
        client_for(analyst).patch(url, {"people_count": 45, "version": 1}, format="json")
        events = client_for(make_user(roles.VIEWER)).get(f"{url}history/").json()["results"]
        assert {(event["record"], event["action"]) for event in events} >= {
            ("incidents.Incident", "insert"),
            ("incidents.Claim", "insert"),
            ("incidents.Incident", "update"),
        }
        (update,) = [event for event in events if event["action"] == "update"]
        assert update["user"] == "alice"
        assert update["changes"]["people_count"] == [40, 45]

    def test_history_is_for_staff_only(self):
        incident = make_incident()
        assert client_for().get(incident_url(incident, "history/")).status_code == 401
        refused = client_for(make_user()).get(incident_url(incident, "history/"))
        assert refused.status_code == 403 and refused.json()["detail"] == "Only staff may read an incident's history."
        # Each staff-only door names itself: the revisions' said it was the history.
        revisions = client_for(make_user()).get(f"{API}/revisions/")
        assert revisions.status_code == 403 and revisions.json()["detail"] == "Only staff may read proposed revisions."

    def test_history_leaves_out_claims_the_reader_may_not_see(self):
        incident = make_incident()
        make_claim(incident=incident, source=make_source(confidential=True), excerpt="informant's words")
        viewer_events = client_for(make_user(roles.VIEWER)).get(incident_url(incident, "history/")).json()
        assert not [event for event in viewer_events["results"] if event["record"] == "incidents.Claim"]
        insider = client_for(make_user(roles.VIEWER, confidential=True))
        insider_events = insider.get(incident_url(incident, "history/")).json()["results"]
        assert [event["record"] for event in insider_events].count("incidents.Claim") == 1

    def test_a_long_history_pages_oldest_first_like_every_list(self):
        analyst = make_user(roles.ANALYST)
        incident = make_incident(review_state="in_review")
        for version, count in enumerate((81, 82, 83, 84), start=1):
            answer = client_for(analyst).patch(
                incident_url(incident), {"people_count": count, "version": version}, format="json"
            )
            assert answer.status_code == 200, answer.content
        client, url, counts = client_for(make_user(roles.VIEWER)), incident_url(incident, "history/?page_size=2"), []
        while url:
            page = client.get(url).json()
            assert len(page["results"]) <= 2
            counts += [event["data"]["people_count"] for event in page["results"]]
            url = page["next"]
        assert counts == [80, 81, 82, 83, 84]

    def test_history_of_a_hidden_incident_answers_404(self):
        secret = make_incident(confidential=True)
        assert client_for(make_user(roles.VIEWER)).get(incident_url(secret, "history/")).status_code == 404


def test_clients_over_their_rate_are_throttled(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "2/minute", "user": None}}
    client = client_for()
    statuses = [client.get(f"{API}/incidents/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Signed-in clients count separately, per account.
    assert client_for(make_user()).get(f"{API}/incidents/").status_code == 200


def test_anonymous_clients_are_counted_at_the_anonymous_rate_alone(settings):
    # The signed-in rate is the accounts' (README, "Configuration"), not a second limit on addresses.
    rates = {"anon": "3/minute", "user": "1/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    client = client_for()
    assert [client.get(f"{API}/incidents/").status_code for _ in range(4)] == [200, 200, 200, 429]
    signed_in = client_for(make_user())
    assert [signed_in.get(f"{API}/incidents/").status_code for _ in range(2)] == [200, 429]


class TestListsOfRecordsAreBounded:
    """Each item of a write's lists is looked up and checked on its own: a 2.5 MB body of 30,000
    claims held a worker for minutes. A list longer than NESTED_ITEMS_MAX is refused naming it,
    before any item is read, and nothing is written."""

    TOO_MANY = NESTED_ITEMS_MAX + 1

    def refused(self, path: str, body: dict, django_assert_max_num_queries) -> dict:
        analyst = make_user(roles.ANALYST)
        client = client_for(analyst)
        incidents_before = Incident.objects.count()
        # The session, the user and their permissions: none for the items.
        with django_assert_max_num_queries(15):
            answer = client.post(path, body, format="json")
        assert answer.status_code == 400, answer.content
        assert Incident.objects.count() == incidents_before
        return answer.json()

    @pytest.mark.parametrize("field", ["claims", "victim_groups", "involvements"])
    def test_an_incidents_rows(self, field, django_assert_max_num_queries):
        row = {
            "claims": {"source": 1, "people_count": 5},
            "victim_groups": {"count": 5, "sex": "unknown"},
            "involvements": {"organization": 1, "role": "perpetrator"},
        }[field]
        errors = self.refused(
            f"{API}/incidents/", new_incident_body(**{field: [row] * self.TOO_MANY}), django_assert_max_num_queries
        )
        assert errors == {field: [f"Ensure this field has no more than {NESTED_ITEMS_MAX} elements."]}

    def test_an_incidents_places_and_a_responses_incidents(self, django_assert_max_num_queries):
        place, incident, organization = make_place(), make_incident(), make_organization()
        errors = self.refused(
            f"{API}/incidents/", new_incident_body(places=[place.pk] * self.TOO_MANY), django_assert_max_num_queries
        )
        assert errors == {"places": [f"Ensure this field has no more than {NESTED_ITEMS_MAX} elements."]}
        body = {"organization": organization.pk, "kind": "statement", "date": "2023-01-01"}
        errors = self.refused(
            f"{API}/responses/",
            {**body, "incidents": [incident.public_id] * self.TOO_MANY},
            django_assert_max_num_queries,
        )
        assert errors == {"incidents": [f"Ensure this field has no more than {NESTED_ITEMS_MAX} elements."]}


class TestOneLineFields:
    """A title or a name is one line: the admin's one-line box drops a line break, and its next
    Save glued the words ("About 500returned"). Every door refuses it, naming the field."""

    @pytest.mark.parametrize(
        ("path", "body", "field", "message"),
        [
            (
                "incidents/",
                new_incident_body(title="About 500\nreturned"),
                "title",
                "A title is one line: remove the line break.",
            ),
            (
                "sources/",
                {"title": "Report\r\non Tumen", "kind": "news_article"},
                "title",
                "A title is one line: remove the line break.",
            ),
            (
                "organizations/",
                {"name": "Ministry\tof Unification", "kind": "government"},
                "name",
                "A name is one line of text: remove the control character U+0009.",
            ),
            (
                "places/",
                {"name": "Onsong", "kind": "city", "country": "KP", "alternate_names": ["온성\u2028함경북도"]},
                "alternate_names[0]",
                "An other name is one line: remove the line break.",
            ),
        ],
    )
    def test_a_line_break_or_control_character_answers_400_naming_the_field(self, path, body, field, message):
        answer = client_for(make_user(roles.ANALYST)).post(f"{API}/{path}", body, format="json")

        assert answer.status_code == 400, answer.content
        assert message in str(answer.json()[field])
        assert not (Incident.objects.exists() or Source.objects.exists() or Place.objects.exists())

    def test_a_place_named_as_another_in_its_parent_whatever_the_case_answers_400_naming_it(self):
        china = make_place(name="China", kind="country", country="CN")
        make_place(name="Tumen", parent=china)

        answer = client_for(make_user(roles.ANALYST)).post(
            f"{API}/places/", {"name": "tumen", "kind": "city", "parent": china.pk}, format="json"
        )

        assert answer.status_code == 400, answer.content
        assert "“Tumen” is already in China" in str(answer.json()["name"])
        assert Place.objects.filter(parent=china).count() == 1


@pytest.mark.parametrize(
    ("body_of", "named"),
    [
        (lambda records: {"places": [records["other_place"].pk + 0.5]}, "places"),
        (
            lambda records: {
                "involvements": [{"organization": records["organization"].pk + 0.5, "role": "perpetrator"}]
            },
            "involvements[0].organization",
        ),
        (lambda records: {"claims": [{"source": records["source"].pk + 0.5}]}, "claims[0].source"),
    ],
    ids=["place", "organization", "source"],
)
def test_an_id_that_is_not_a_whole_number_is_refused_naming_it_not_read_as_another_record(body_of, named):
    """`"places": [3.5]` was read as place 3 (Django truncates the float it is given), answered 200:
    a client's bad value put the incident at another place, or named another perpetrator."""
    town = make_place(name="Tumen")
    records = {"other_place": make_place(name="Jilin"), "organization": make_organization(), "source": make_source()}
    incident = make_incident(places=[town], review_state="draft")

    answer = client_for(make_user(roles.ANALYST)).patch(
        incident_url(incident), {**body_of(records), "version": incident.version}, format="json"
    )

    assert answer.status_code == 400, answer.content
    assert named in answer.json(), answer.json()
    assert list(incident.places.values_list("pk", flat=True)) == [town.pk]
    assert not incident.involvements.exists() and not incident.claims.exists()
