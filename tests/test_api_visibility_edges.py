"""Edges of visibility in the API that the main matrix does not reach: citation chains through
hidden sources, responses to hidden incidents, sensitive places written back, and the list's
other formats (CSV of nothing, the browsable API)."""

import html
from datetime import date
from decimal import Decimal

import pghistory
import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from incidents import duplicates, roles, services
from incidents.merges import incident_merge
from incidents.models import DuplicatePair, IncidentRevision, Place, Response
from tests.api_support import API, client_for, incident_url, public_ids, results
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user


class TestSourceFilterFollowsOnlyVisibleLinks:
    def test_an_incident_linked_to_a_source_only_through_a_confidential_relay_is_not_found(self):
        report = make_source(title="NGO report")
        relay = make_source(title="Informant relaying the report", confidential=True, cites=report)
        article = make_source(title="Article relaying the informant", cites=relay)
        through_hidden = make_incident(title="Reported by the article")
        make_claim(incident=through_hidden, source=article)
        direct = make_incident(title="Reported by the report")
        make_claim(incident=direct, source=report)
        url = f"{API}/incidents/?source={report.pk}"
        assert public_ids(client_for().get(url)) == {direct.public_id}
        insider = client_for(make_user(roles.VIEWER, confidential=True))
        assert public_ids(insider.get(url)) == {direct.public_id, through_hidden.public_id}


@pytest.fixture
def responses():
    """A statement about a public incident, one about a confidential incident only, one about a
    draft only, and one about no incident yet."""
    organization = make_organization(name="UNHCR")
    public = make_incident(title="Public")
    secret = make_incident(title="Secret", confidential=True)
    draft = make_incident(title="Draft", review_state="draft")

    def respond(description, *incidents):
        response = Response.objects.create(
            organization=organization, kind="statement", date=date(2023, 9, 1), description=description
        )
        response.incidents.set(incidents)
        return response

    return {
        "public": respond("About the public one", public, secret),
        "secret": respond("About the secret one", secret),
        "draft": respond("About the draft", draft),
        "unlinked": respond("Not linked yet"),
    }


class TestResponsesFollowTheirIncidents:
    @pytest.mark.parametrize(
        ("reader", "expected"),
        [
            (lambda: None, {"public"}),
            (lambda: make_user(None), {"public"}),
            (lambda: make_user(roles.VIEWER), {"public", "draft", "unlinked"}),
            (lambda: make_user(roles.VIEWER, confidential=True), {"public", "secret", "draft", "unlinked"}),
        ],
        ids=["anonymous", "registered", "staff", "staff-confidential"],
    )
    def test_each_reader_sees_the_responses_to_incidents_they_may_see(self, responses, reader, expected):
        client = client_for(reader())
        listed = {response["id"] for response in results(client.get(f"{API}/responses/"))}
        assert listed == {responses[name].pk for name in expected}
        for name, response in responses.items():
            answer = client.get(f"{API}/responses/{response.pk}/")
            assert answer.status_code == (200 if name in expected else 404)

    def test_a_reviewer_without_confidential_access_cannot_delete_a_response_to_a_confidential_incident(
        self, responses
    ):
        reviewer = client_for(make_user(roles.REVIEWER))
        for name in ("public", "secret"):
            answer = reviewer.delete(f"{API}/responses/{responses[name].pk}/")
            assert answer.status_code in (403, 404), (name, answer.status_code)
            assert Response.objects.filter(pk=responses[name].pk).exists()


class TestAnswersToWritesThatLeaveTheirWriterOutOfSight:
    """A write can take its record out of its writer's sight; the answer shows them what they wrote,
    never what the record holds that they may not see."""

    def test_a_writer_who_may_not_see_drafts_returning_an_incident_to_draft_is_answered_no_hidden_claim(self):
        incident = make_incident(review_state="published")
        make_claim(incident=incident, source=make_source(title="Open report"), excerpt="40 deported")
        make_claim(incident=incident, source=make_source(title="Informant K", confidential=True), excerpt="words K")
        make_claim(incident=incident, source=make_source(title="NGO"), confidential=True, excerpt="told in confidence")
        # A partner tool's account: the Reviewer role, not staff, so it sees published incidents
        # and public claims only.
        client = client_for(make_user(roles.REVIEWER, is_staff=False))
        read = client.get(incident_url(incident)).json()
        assert [claim["source_title"] for claim in read["claims"]] == ["Open report"]
        answer = client.patch(
            incident_url(incident), {"review_state": "draft", "version": read["version"]}, format="json"
        )
        assert answer.status_code == 200, answer.content
        assert answer.json()["review_state"] == "draft"
        assert answer.json()["claims"] == read["claims"]
        assert b"Informant" not in answer.content and b"confidence" not in answer.content
        assert client.get(incident_url(incident)).status_code == 404

    def test_a_writer_who_may_not_see_drafts_is_answered_a_new_incident_with_coarsened_coordinates(self):
        province = make_place(name="Jilin", kind="province", latitude=43.6, longitude=126.2)
        facility = make_place(name="Tumen centre", parent=province, latitude=42.9, longitude=129.5, sensitive=True)
        client = client_for(make_user(roles.ANALYST, is_staff=False))
        body = {
            "title": "Repatriation of 40 from Tumen",
            "incident_type": "forced-repatriation",
            "date_start": "2023-09-18",
            "date_end": "2023-09-18",
            "places": [facility.pk],
        }
        answer = client.post(f"{API}/incidents/", body, format="json")
        assert answer.status_code == 201, answer.content
        [place] = answer.json()["places"]
        assert (place["latitude"], place["longitude"]) == (43.6, 126.2)


def test_a_version_conflict_names_the_last_writer_only_to_staff():
    # An incident's `updated_by` reads null for an account that is not staff (a partner tool's):
    # the 409 of its stale write named the colleague who wrote last.
    incident = make_incident(review_state="published")
    partner = client_for(make_user(roles.ANALYST, is_staff=False))
    read = partner.get(incident_url(incident)).json()
    assert read["updated_by"] is None
    reviewer = make_user(roles.REVIEWER, username="alice")
    assert client_for(reviewer).patch(
        incident_url(incident), {"title": "Renamed", "version": read["version"]}, format="json"
    ).status_code in (200, 202)

    stale = partner.patch(incident_url(incident), {"title": "Mine", "version": read["version"]}, format="json")
    staff_stale = client_for(make_user(roles.ANALYST)).patch(
        incident_url(incident), {"title": "Ours", "version": read["version"]}, format="json"
    )

    assert stale.status_code == staff_stale.status_code == 409
    assert "alice" not in stale.content.decode() and "was changed by someone else" in stale.content.decode()
    assert "was changed by alice" in staff_stale.content.decode()


class TestRevisionNamingASourceMadeConfidentialSince:
    def test_its_claims_of_that_source_are_shown_only_to_readers_with_confidential_access(self, client):
        incident = make_incident(review_state="published")
        source = make_source(title="Kim, a guard at Onsong")
        analyst = client_for(make_user(roles.ANALYST))
        read = analyst.get(incident_url(incident)).json()
        body = {"claims": [{"source": source.pk, "excerpt": "he saw 40 sent back"}], "version": read["version"]}
        proposed = analyst.patch(incident_url(incident), body, format="json")
        assert proposed.status_code == 202, proposed.content
        revision = proposed.json()["id"]
        # The informant is recognised: a Reviewer with Confidential access marks the source confidential.
        insider = make_user(roles.REVIEWER, confidential=True)
        services.record_save(user=insider, record=source, data={"confidential": True}, expected_version=source.version)
        reviewer = make_user(roles.REVIEWER)
        answer = client_for(reviewer).get(f"{API}/revisions/{revision}/")
        assert answer.status_code == 200
        assert answer.json()["changes"]["claims"] == []
        assert b"Kim" not in answer.content and b"sent back" not in answer.content
        client.force_login(reviewer)
        page = client.get(reverse("admin:incidents_incidentrevision_change", args=[revision]))
        assert page.status_code == 200
        assert b"Kim" not in page.content and b"sent back" not in page.content
        # Whoever may see the source still reads the whole proposal.
        shown = client_for(insider).get(f"{API}/revisions/{revision}/").json()
        # The proposal keeps the qualifier its figures say (none given: unknown), and the precision
        # its dates say (none given: unknown), as saving would.
        assert shown["changes"]["claims"] == [
            {
                "source": source.pk,
                "excerpt": "he saw 40 sent back",
                "count_qualifier": "unknown",
                "date_precision": "unknown",
            }
        ]
        assert "Kim" in str(shown["diff"])


class TestSensitivePlaceWrittenBack:
    def test_a_writer_who_sees_coarsened_coordinates_keeps_the_exact_ones_by_sending_them_back(self):
        province = make_place(name="Jilin", kind="province", latitude=43.6, longitude=126.2)
        facility = make_place(
            name="Tumen detention centre", parent=province, latitude=42.9, longitude=129.5, sensitive=True
        )
        # Not staff, so shown the province's position; but allowed to edit places.
        writer = make_user(None)
        writer.user_permissions.add(Permission.objects.get(codename="change_place"))
        client = client_for(writer)
        shown = client.get(f"{API}/places/{facility.pk}/").json()
        assert (shown["latitude"], shown["longitude"]) == (43.6, 126.2)
        answer = client.put(f"{API}/places/{facility.pk}/", {**shown, "name": "Tumen centre"}, format="json")
        assert answer.status_code == 200, answer.content
        facility.refresh_from_db()
        assert facility.name == "Tumen centre"
        assert (facility.latitude, facility.longitude) == (Decimal("42.9"), Decimal("129.5"))
        # Other coordinates would overwrite exact ones the writer was never shown: staff set them.
        edited = answer.json()["version"]
        moved = client.patch(
            f"{API}/places/{facility.pk}/", {"latitude": 42.8, "longitude": 129.4, "version": edited}, format="json"
        )
        assert moved.status_code == 400, moved.content
        assert "only staff may change its own" in moved.json()["latitude"][0]
        facility.refresh_from_db()
        assert (facility.latitude, facility.longitude) == (Decimal("42.9"), Decimal("129.5"))

    def test_a_writer_shown_no_coordinates_for_a_sensitive_place_keeps_the_exact_ones_by_sending_them_back(self):
        # No place containing it has coordinates, so it is shown none: a PUT of what was read, null
        # coordinates and all, erased the exact ones its writer was never shown.
        country = make_place(name="Northland", kind="country", country="KP")
        village = make_place(name="Hidden village", parent=country, latitude=42.123457, longitude=129.876543)
        village.sensitive = True
        village.save()
        client = client_for(make_user(roles.ANALYST, is_staff=False))
        shown = client.get(f"{API}/places/{village.pk}/").json()
        assert (shown["latitude"], shown["longitude"]) == (None, None)
        answer = client.put(
            f"{API}/places/{village.pk}/", {**shown, "alternate_names": ["Another name"]}, format="json"
        )
        assert answer.status_code == 200, answer.content
        village.refresh_from_db()
        assert village.alternate_names == ["Another name"]
        assert (village.latitude, village.longitude) == (Decimal("42.123457"), Decimal("129.876543"))

    @pytest.mark.parametrize("sent", [{"latitude": 41.5}, {"longitude": None}], ids=["a figure", "null"])
    def test_a_writer_shown_coarsened_coordinates_is_answered_one_coordinate_alike_whatever_is_stored(self, sent):
        # One coordinate was completed by the stored other where the place has exact coordinates
        # (200, and its real position half overwritten) and refused where it has none: the answer
        # told a partner which informants' places have a recorded position.
        country = make_place(name="Northland", kind="country", country="KP", latitude=40, longitude=127)
        located = make_place(name="Village one", parent=country, latitude=42.123457, longitude=129.876543)
        unlocated = make_place(name="Village two", parent=country)
        Place.objects.filter(pk__in=[located.pk, unlocated.pk]).update(sensitive=True, within_sensitive=True)
        client = client_for(make_user(roles.ANALYST, is_staff=False))
        answers = []
        for place in (located, unlocated):
            shown = client.get(f"{API}/places/{place.pk}/")
            assert (shown.json()["latitude"], shown.json()["longitude"]) == (40.0, 127.0)
            answer = client.patch(f"{API}/places/{place.pk}/", sent, format="json", HTTP_IF_MATCH=shown["ETag"])
            answers.append((answer.status_code, answer.json()))
        missing = ({"latitude", "longitude"} - sent.keys()).pop()
        assert answers == [(400, {missing: ["Give both latitude and longitude, or neither."]})] * 2
        located.refresh_from_db()
        assert (located.latitude, located.longitude) == (Decimal("42.123457"), Decimal("129.876543"))

    def test_a_writer_shown_coarsened_coordinates_may_not_unmark_the_place_to_read_the_exact_ones(self):
        province = make_place(name="Jilin", kind="province", latitude=43.6, longitude=126.2)
        facility = make_place(name="Tumen centre", parent=province, latitude=42.9, longitude=129.5, sensitive=True)
        # A partner tool's account: the Analyst role, which may change places, but not staff.
        client = client_for(make_user(roles.ANALYST, is_staff=False))
        shown = client.get(f"{API}/places/{facility.pk}/").json()
        answer = client.patch(
            f"{API}/places/{facility.pk}/", {"sensitive": False, "version": shown["version"]}, format="json"
        )
        assert answer.status_code == 400, answer.content
        assert "sensitive" in answer.json()
        assert b"42.9" not in answer.content and b"129.5" not in answer.content
        facility.refresh_from_db()
        assert facility.sensitive
        assert client_for().get(f"{API}/places/{facility.pk}/").json()["latitude"] == 43.6
        # Staff see the exact coordinates, and may make them public.
        staff = client_for(make_user(roles.ANALYST))
        unmarked = staff.patch(
            f"{API}/places/{facility.pk}/", {"sensitive": False, "version": facility.version}, format="json"
        )
        assert unmarked.status_code == 200, unmarked.content
        assert client_for().get(f"{API}/places/{facility.pk}/").json()["latitude"] == 42.9


class TestListFormats:
    def test_csv_of_a_filter_that_matches_nothing_is_the_header(self):
        make_incident()
        for url in (f"{API}/incidents.csv?min_people=2147483648", f"{API}/incidents/?format=csv&min_people=2147483648"):
            answer = client_for().get(url)
            assert answer.status_code == 200, url
            lines = b"".join(answer.streaming_content).decode().splitlines()
            assert len(lines) == 1 and lines[0].startswith("public_id,"), lines
        assert results(client_for().get(f"{API}/incidents/?min_people=2147483648")) == []

    def test_the_browsable_api_shows_staff_the_list_with_one_field_per_line(self):
        incident = make_incident(title="Repatriation of 80 women", places=[make_place(name="Dandong")])
        client = client_for(make_user(roles.ANALYST))
        page = client.get(f"{API}/incidents/", HTTP_ACCEPT="text/html")
        assert page.status_code == 200
        html = page.content.decode()
        assert f"&quot;public_id&quot;: &quot;{incident.public_id}&quot;," in html
        assert "\n      &quot;title&quot;: &quot;Repatriation of 80 women&quot;," in html


class TestHistory:
    def test_the_history_endpoint_reads_like_the_admins_page(self):
        incident = make_incident(title="Before", places=[make_place(name="Yanji")])
        make_claim(incident=incident, source=make_source(title="Daily NK")).save()  # only updated_at moves
        with pghistory.context(import_file="partner-2023-09.csv"):
            incident.title = "After"
            incident.save()

        events = results(client_for(make_user(roles.VIEWER)).get(f"{API}/incidents/{incident.public_id}/history/"))

        # One test transaction: every event has the same time, so their order is not the point here.
        assert sorted(event["summary"] for event in events) == [
            "Claim (Daily NK) added",
            "Incident changed",
            "Incident created",
            "Place: Yanji added",
        ]
        (change,) = [event for event in events if event["summary"] == "Incident changed"]
        assert change["import_file"] == "partner-2023-09.csv"
        assert change["changes"]["title"] == ["Before", "After"]

    def test_the_raw_record_names_no_record_its_summary_hides(self):
        insider, viewer = make_user(roles.REVIEWER, confidential=True), make_user(roles.VIEWER)
        incident = make_incident()
        informant, daily_nk = make_source(title="Informant", confidential=True), make_source(title="Daily NK")
        claim = make_claim(incident=incident, source=informant)
        body = {"claims": [{"id": claim.pk, "source": daily_nk.pk}], "version": incident.version}
        assert (
            client_for(insider).patch(f"{API}/incidents/{incident.public_id}/", body, format="json").status_code == 200
        )

        def claim_events(reader):
            answer = client_for(reader).get(f"{API}/incidents/{incident.public_id}/history/")
            return sorted(
                (event["summary"], event["changes"] and event["changes"]["source_id"], event["data"]["source_id"])
                for event in results(answer)
                if event["record"] == "incidents.Claim"
            )

        # The claim first cited the confidential source: its id would confirm which record it is, and
        # what the claim said then was the informant's. To this reader it appears with Daily NK.
        assert claim_events(viewer) == [("Claim (Daily NK) added", None, daily_nk.pk)]
        assert claim_events(insider) == [
            ("Claim (Daily NK) changed", [informant.pk, daily_nk.pk], daily_nk.pk),
            ("Claim (Informant) added", None, informant.pk),
        ]

    def test_a_record_made_public_shows_no_state_it_had_while_confidential(self, client):
        # An informant's name in a confidential claim's excerpt (and in the incident's and the
        # source's titles), taken out before a Reviewer with Confidential access made each public:
        # every staff member read it in the history, as the values before that change.
        insider, viewer = make_user(roles.REVIEWER, confidential=True), make_user(roles.VIEWER)
        name = "Kim Chol-su of Hyesan"
        incident = make_incident(title=f"Arrest of {name}", confidential=True, review_state="draft")
        source = make_source(title=f"Testimony of {name}", confidential=True)
        claim = make_claim(
            incident=incident, source=make_source(title="RFA"), confidential=True, excerpt=f"{name} said"
        )
        writer = client_for(insider)
        body = {
            "title": "Arrest of a man",
            "confidential": False,
            "claims": [{"id": claim.pk, "source": claim.source_id, "excerpt": "A man said", "confidential": False}],
            "version": incident.version,
        }
        assert writer.patch(incident_url(incident), body, format="json").status_code == 200
        body = {"title": "Testimony", "confidential": False, "version": source.version}
        assert writer.patch(f"{API}/sources/{source.pk}/", body, format="json").status_code == 200

        answer = client_for(viewer).get(incident_url(incident, "history/"))
        assert answer.status_code == 200
        assert name not in answer.content.decode()
        summaries = sorted((event["summary"], event["action"]) for event in results(answer))
        assert summaries == [("Claim (RFA) added", "insert"), ("Incident created", "insert")]
        client.force_login(viewer)
        for record in (incident, source):
            page = client.get(reverse(f"admin:incidents_{record._meta.model_name}_history", args=[record.pk]))
            assert page.status_code == 200
            assert name not in page.content.decode()
        # Readers with Confidential access read every state, and how it was made public.
        answer = client_for(insider).get(incident_url(incident, "history/"))
        assert name in answer.content.decode()
        assert any(event["changes"] and "confidential" in event["changes"] for event in results(answer))

    # Each write its own transaction, as each request is: a test transaction gives every event one time.
    @pytest.mark.django_db(transaction=True)
    @pytest.mark.parametrize("changed", ["when made public", "after"])
    def test_an_incident_made_public_shows_nothing_its_records_held_while_it_was_confidential(self, changed):
        insider, viewer = make_user(roles.REVIEWER, confidential=True), make_user(roles.VIEWER)
        name = "Kim Chol-su"
        incident = make_incident(title="Arrest", confidential=True, review_state="draft")
        writer = client_for(insider)
        body = {
            "victim_groups": [{"count": 3, "sex": "unknown", "description": f"{name}'s family"}],
            "claims": [{"source": make_source(title="RFA").pk, "excerpt": f"{name} and his family"}],
            "version": 1,
        }
        assert writer.patch(incident_url(incident), body, format="json").status_code == 200
        group, claim = incident.victim_groups.get(), incident.claims.get()
        redacted = {
            "victim_groups": [{"id": group.pk, "description": "a family"}],
            "claims": [{"id": claim.pk, "source": claim.source_id, "excerpt": "a man and his family"}],
        }
        if changed == "when made public":
            body = {"confidential": False, **redacted, "version": 2}
            assert writer.patch(incident_url(incident), body, format="json").status_code == 200
        else:
            body = {"confidential": False, "version": 2}
            assert writer.patch(incident_url(incident), body, format="json").status_code == 200
            assert writer.patch(incident_url(incident), {**redacted, "version": 3}, format="json").status_code == 200

        answer = client_for(viewer).get(incident_url(incident, "history/"))

        assert answer.status_code == 200
        assert name not in answer.content.decode()
        summaries = sorted(event["summary"] for event in results(answer))
        assert summaries == ["Claim (RFA) added", "Incident created", "Victim group added"]
        assert name in client_for(insider).get(incident_url(incident, "history/")).content.decode()

    def test_a_revisions_recorded_proposal_holds_no_claim_of_a_source_made_confidential_since(self):
        # The revisions' list leaves out such a claim; the history's raw record of the revision
        # held it whole, the informant's words included.
        analyst, viewer = make_user(roles.ANALYST), make_user(roles.VIEWER)
        insider = make_user(roles.REVIEWER, confidential=True)
        incident = make_incident()
        seen = make_claim(incident=incident, source=make_source(title="RFA"))
        informant = make_source(title="Informant")
        rows = [{"id": seen.pk, "source": seen.source_id}, {"source": informant.pk, "excerpt": "Kim Chol-su said"}]
        body = {"claims": rows, "version": 1}
        assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202
        body = {"confidential": True, "version": 1}
        assert client_for(insider).patch(f"{API}/sources/{informant.pk}/", body, format="json").status_code == 200

        def proposals(reader):
            answer = client_for(reader).get(incident_url(incident, "history/"))
            assert answer.status_code == 200
            return answer, [
                event["data"]["changes"] for event in results(answer) if event["record"] == "incidents.IncidentRevision"
            ]

        answer, [proposed] = proposals(viewer)
        assert "Kim Chol-su" not in answer.content.decode()
        assert proposed == {"data": {}, "claims": [{"id": seen.pk, "source": seen.source_id}]}
        [listed] = results(client_for(viewer).get(f"{API}/revisions/"))
        assert listed["changes"] == proposed
        answer, [proposed] = proposals(insider)
        # The proposal keeps the qualifier its figures say (none given: unknown), and the precision
        # its dates say (none given: unknown), as saving would.
        assert proposed == {
            "data": {},
            "claims": [rows[0], {**rows[1], "count_qualifier": "unknown", "date_precision": "unknown"}],
        }

    def test_a_duplicate_pair_with_an_incident_the_reader_may_not_see_is_left_out(self, client):
        # The pair's event names the other incident by its id, which is its public id: INC-…
        incident = make_incident()
        secret = make_incident(confidential=True)
        shown = make_incident(review_state="draft")
        for other in (secret, shown):
            DuplicatePair.objects.create(incident_a=incident, incident_b=other, score=0.9)
        viewer = make_user(roles.VIEWER)

        events = results(client_for(viewer).get(f"{API}/incidents/{incident.public_id}/history/"))
        client.force_login(viewer)
        page = client.get(reverse("admin:incidents_incident_history", args=[incident.pk])).content.decode()

        pairs = [event["data"] for event in events if event["record"] == "incidents.DuplicatePair"]
        assert [pair["incident_b_id"] for pair in pairs] == [shown.pk]
        assert "a record you may not see" not in page and page.count("Duplicate pair (") == 1
        everything = client_for(make_user(roles.VIEWER, confidential=True)).get(
            f"{API}/incidents/{incident.public_id}/history/"
        )
        assert len([event for event in results(everything) if event["record"] == "incidents.DuplicatePair"]) == 2

    # Each write its own transaction, as each request is: a test transaction gives every event one time.
    @pytest.mark.django_db(transaction=True)
    def test_a_pairs_events_recorded_while_its_other_incident_was_confidential_stay_hidden(self, client):
        # Decided while the other incident was confidential, with a note only insiders may read; the
        # other incident made public, the public one's history told every staff member the note.
        insider, viewer = make_user(roles.REVIEWER, confidential=True), make_user(roles.VIEWER)
        public = make_incident(title="Arrest at the market")
        secret = make_incident(title="Detained in Hyesan", confidential=True, review_state="draft")
        pair = DuplicatePair.objects.create(incident_a=public, incident_b=secret, score=0.9)
        duplicates.duplicate_pair_decide(
            user=insider, pair=pair, decision="unsure", note="same as informant K's account"
        )
        body = {"confidential": False, "version": secret.version}
        assert client_for(insider).patch(incident_url(secret), body, format="json").status_code == 200

        def doors(reader) -> tuple[list, str, str]:
            """The pair's events in the API's history of `public`, and the admin's history pages of
            `public` and of the pair, as `reader` reads them."""
            answer = client_for(reader).get(incident_url(public, "history/"))
            assert answer.status_code == 200
            events = [event for event in results(answer) if event["record"] == "incidents.DuplicatePair"]
            client.force_login(reader)
            pages = [
                client.get(reverse(f"admin:incidents_{name}_history", args=[record.pk]))
                for name, record in (("incident", public), ("duplicatepair", pair))
            ]
            assert [page.status_code for page in pages] == [200, 200]
            return events, answer.content.decode(), "".join(page.content.decode() for page in pages)

        events, answer, pages = doors(viewer)
        assert events == [] and "informant K" not in answer + pages
        assert "Duplicate pair (" not in pages
        events, answer, pages = doors(insider)
        assert [event["action"] for event in events] == ["insert", "update"]
        assert "informant K" in answer and "informant K" in pages

        # Decided again once both are public: to the viewer the pair appears now, with no values before.
        duplicates.duplicate_pair_decide(user=insider, pair=pair, decision="different", note="Different towns")
        events, answer, pages = doors(viewer)
        assert [(event["summary"], event["action"], event["changes"]) for event in events] == [
            (f"Duplicate pair ({secret}, {insider}) added", "insert", None)
        ]
        assert events[0]["data"]["note"] == "Different towns"
        assert "informant K" not in answer + pages and "Different towns" in pages

    @pytest.mark.django_db(transaction=True)
    def test_a_claims_states_while_its_source_was_confidential_stay_hidden_once_the_source_is_public(self, client):
        insider, analyst = make_user(roles.REVIEWER, confidential=True), make_user(roles.ANALYST)
        incident, informant = make_incident(), make_source(title="Informant K", confidential=True)
        claim = make_claim(incident=incident, source=informant, excerpt="Kim Chol-su crossed at night")
        writer = client_for(insider)
        rows = [{"id": claim.pk, "source": informant.pk, "excerpt": "A man crossed at night"}]
        assert writer.patch(incident_url(incident), {"claims": rows, "version": 1}, format="json").status_code == 200
        body = {"title": "Testimony", "confidential": False, "version": informant.version}
        assert writer.patch(f"{API}/sources/{informant.pk}/", body, format="json").status_code == 200

        # Changed again once its source is public: to the analyst it appears now, with no values before.
        rows = [{"id": claim.pk, "source": informant.pk, "excerpt": "A man crossed at dawn"}]
        assert writer.patch(incident_url(incident), {"claims": rows, "version": 3}, format="json").status_code == 200

        answer = client_for(analyst).get(incident_url(incident, "history/"))
        client.force_login(analyst)
        page = client.get(reverse("admin:incidents_incident_history", args=[incident.pk])).content.decode()

        told = answer.content.decode() + page
        assert "Kim Chol-su" not in told and "at night" not in told and "at dawn" in told
        claims = [event for event in results(answer) if event["record"] == "incidents.Claim"]
        assert [(event["summary"], event["action"], event["changes"]) for event in claims] == [
            ("Claim (Testimony) added", "insert", None)
        ]
        insider_reads = client_for(insider).get(incident_url(incident, "history/")).content.decode()
        assert "Kim Chol-su" in insider_reads and "at night" in insider_reads


class TestHistoryOfDeletedRecords:
    """A deleted claim's or pair's row is gone; its events say what it was. Both doors show them to
    exactly the readers who could see the record while it existed."""

    @staticmethod
    def both_doors(incident, reader, client, page_size: int = 50) -> dict:
        """What `reader` is told of `incident`'s history: the summaries the API's pages hold (every
        page, `page_size` a page) and how many pages that took, the admin page's summaries and the
        count its pagination is built on."""
        api, url = client_for(reader), incident_url(incident, f"history/?page_size={page_size}")
        summaries, pages = [], 0
        while url:
            answer = api.get(url)
            summaries += [event["summary"] for event in results(answer)]
            url, pages = answer.json()["next"], pages + 1
        client.force_login(reader)
        page = client.get(reverse("admin:incidents_incident_history", args=[incident.pk])).context
        return {
            "api": sorted(summaries),
            "api pages": pages,
            "admin": sorted(entry.summary for entry in page["entries"]),
            "admin count": page["page"].paginator.count,
        }

    def test_an_analyst_reads_the_life_of_a_deleted_public_claim(self, client):
        incident = make_incident()
        claim = make_claim(incident=incident, source=make_source(title="Daily NK"), people_count=40)
        claim.people_count = 45
        claim.save()
        claim.delete()

        told = self.both_doors(incident, make_user(roles.ANALYST), client)

        expected = [
            "Claim (Daily NK) added",
            "Claim (Daily NK) changed",
            "Claim (Daily NK) removed",
            "Incident created",
        ]
        assert told["api"] == told["admin"] == expected

    @pytest.mark.parametrize("hidden_by", ["its source", "itself"])
    def test_a_deleted_confidential_claim_leaves_no_trace_for_a_reader_without_access(self, client, hidden_by):
        informant = make_source(title="Informant K.", confidential=hidden_by == "its source")
        incident, twin = make_incident(), make_incident()
        claim = make_claim(
            incident=incident, source=informant, excerpt="crossed at night", confidential=hidden_by == "itself"
        )
        claim.excerpt = "crossed at dawn"
        claim.save()
        claim.delete()
        reader = make_user(roles.ANALYST)

        # One event a page: an event left out of the entries alone would still cost a page or a count.
        told = self.both_doors(incident, reader, client, page_size=1)
        assert told == self.both_doors(twin, reader, client, page_size=1)
        assert told == {"api": ["Incident created"], "api pages": 1, "admin": ["Incident created"], "admin count": 1}
        page = client.get(reverse("admin:incidents_incident_history", args=[incident.pk])).content.decode()
        for trace in ("Claim (", "crossed at", "Informant K.", "a record you may not see"):
            assert trace not in page
        insider = make_user(roles.VIEWER, confidential=True)
        assert "Claim (Informant K.) removed" in self.both_doors(incident, insider, client)["api"]

    def test_a_deleted_claim_is_hidden_once_its_source_becomes_confidential(self, client):
        # The source's confidentiality now decides, as it does for a claim that still exists.
        source = make_source(title="Defector's memoir")
        incident = make_incident()
        make_claim(incident=incident, source=source).delete()
        source.confidential = True
        source.save()

        told = self.both_doors(incident, make_user(roles.ANALYST), client)

        assert told["api"] == told["admin"] == ["Incident created"]

    def test_a_deleted_claim_whose_source_was_deleted_since_stays_hidden(self, client):
        # Nothing is left to say whether that source was confidential.
        informant = make_source(title="Informant K.", confidential=True)
        incident = make_incident()
        make_claim(incident=incident, source=informant).delete()
        informant.delete()

        told = self.both_doors(incident, make_user(roles.ANALYST), client)

        assert told["api"] == told["admin"] == ["Incident created"]

    def test_a_withdrawn_duplicate_pair_keeps_its_history_for_those_who_see_both_incidents(self, client):
        # A rescoring deletes the waiting pairs that no longer qualify (duplicates._refresh).
        incident, other, secret = make_incident(), make_incident(title="Shown"), make_incident(confidential=True)
        for other_incident in (other, secret):
            DuplicatePair.objects.create(incident_a=incident, incident_b=other_incident, score=0.9).delete()

        told = self.both_doors(incident, make_user(roles.VIEWER), client)

        pairs = [summary for summary in told["api"] if summary.startswith("Duplicate pair")]
        assert told["api"] == told["admin"] and told["admin count"] == 3
        assert pairs == [f"Duplicate pair ({other}) added", f"Duplicate pair ({other}) removed"]


class TestRevisionResendingAClaimMadeConfidentialSince:
    """The API replaces the claims it is sent: a client may send a claim back without its id. The
    revision keeps that row, the claim's source, words and figures; once the claim (or its source)
    is made confidential, the row is that claim's content all the same."""

    WORDS = "a guard at Onsong saw 500 sent back"

    def propose_resending(self, incident, claim, **changed):
        analyst = client_for(make_user(roles.ANALYST))
        read = analyst.get(incident_url(incident)).json()
        [row] = [row for row in read["claims"] if row["id"] == claim.pk]
        row = {key: value for key, value in row.items() if key not in ("id", "source_title")} | changed
        body = {"title": "Edited", "claims": [row], "version": read["version"]}
        proposed = analyst.patch(incident_url(incident), body, format="json")
        assert proposed.status_code == 202, proposed.content
        return proposed.json()["id"]

    def make_claim_confidential(self, insider, incident, claim):
        read = client_for(insider).get(incident_url(incident)).json()
        row = {"id": claim.pk, "source": claim.source_id, "confidential": True}
        body = {"claims": [row], "version": read["version"]}
        answer = client_for(insider).patch(incident_url(incident), body, format="json")
        assert answer.status_code == 200, answer.content

    @pytest.mark.parametrize("made_confidential", ["claim", "source"])
    @pytest.mark.parametrize("changed", [{}, {"locator": "para 13"}], ids=["as it was", "changed slightly"])
    def test_readers_without_confidential_access_never_read_it(self, client, made_confidential, changed):
        incident = make_incident(title="Published title")
        source = make_source(title="Daily NK")
        claim = make_claim(incident=incident, source=source, excerpt=self.WORDS, locator="para 12", people_count=500)
        revision = self.propose_resending(incident, claim, **changed)
        insider = make_user(roles.REVIEWER, confidential=True)
        if made_confidential == "claim":
            self.make_claim_confidential(insider, incident, claim)
        else:
            body = {"confidential": True, "version": source.version}
            assert client_for(insider).patch(f"{API}/sources/{source.pk}/", body, format="json").status_code == 200
        reviewer = make_user(roles.REVIEWER)

        detail = client_for(reviewer).get(f"{API}/revisions/{revision}/")
        listed = client_for(reviewer).get(f"{API}/revisions/?state=pending")
        history = client_for(reviewer).get(incident_url(incident, "history/"))
        client.force_login(reviewer)
        page = client.get(reverse("admin:incidents_incidentrevision_change", args=[revision]))
        history_page = client.get(reverse("admin:incidents_incident_history", args=[incident.pk]))

        for answer in (detail, listed, history, page, history_page):
            assert answer.status_code == 200
            text = answer.content.decode()
            assert "Onsong" not in text and "500 sent back" not in text and "para 1" not in text
        assert detail.json()["changes"]["claims"] == []
        # Whoever may see the claim still reads the whole proposal, and decides it.
        shown = client_for(insider).get(f"{API}/revisions/{revision}/").json()
        assert [row["excerpt"] for row in shown["changes"]["claims"]] == [self.WORDS]
        assert "Onsong" in str(shown["diff"])
        if made_confidential == "claim":
            # And is told why it cannot be accepted as it is, beside the stale revision's own reason.
            [refusal] = [row for row in shown["diff"] if row["field"] == "Cannot be accepted"]
            assert refusal["proposed"].startswith(f"It repeats claim {claim.pk} of “Daily NK”, which is confidential")

    def test_a_public_claim_beside_a_confidential_one_of_its_source_is_still_shown_and_accepted(self):
        # A source may make one public and one confidential claim: a new public claim that says
        # something else is the proposer's own, not the confidential one's.
        incident = make_incident(title="Published title")
        source = make_source(title="Daily NK")
        kept = make_claim(incident=incident, source=source, excerpt=self.WORDS, confidential=True)
        public = make_claim(incident=incident, source=make_source(title="RFA"), excerpt="about 500")
        analyst = client_for(make_user(roles.ANALYST))
        body = {
            "claims": [{"id": public.pk, "source": public.source_id}, {"source": source.pk, "excerpt": "500 women"}],
            "version": 1,
        }
        revision = analyst.patch(incident_url(incident), body, format="json").json()["id"]
        reviewer = make_user(roles.REVIEWER)

        shown = client_for(reviewer).get(f"{API}/revisions/{revision}/")

        assert [row.get("excerpt") for row in shown.json()["changes"]["claims"]] == [None, "500 women"]
        assert "Onsong" not in shown.content.decode()
        assert client_for(reviewer).post(f"{API}/revisions/{revision}/accept/").status_code == 200
        kept.refresh_from_db()
        assert (kept.excerpt, kept.confidential) == (self.WORDS, True)
        assert set(incident.claims.values_list("excerpt", "confidential")) == {
            (self.WORDS, True),
            ("about 500", False),
            ("500 women", False),
        }

    def test_a_copy_of_a_confidential_claim_is_refused_to_a_reviewer_who_sees_it_and_tells_others_nothing(self, client):
        # A client that kept the claim from before it was made confidential sends it back afterwards:
        # the revision is not stale, and accepting it made the informant's words public again.
        # Leaving the row out for readers who never saw the claim would answer its author, who
        # wrote the row, whether a hidden claim says exactly that: the row is theirs, as a public
        # claim beside a confidential one of its source is.
        incident = make_incident(title="Published title")
        source = make_source(title="Daily NK")
        claim = make_claim(incident=incident, source=source, excerpt=self.WORDS, locator="para 12", people_count=500)
        analyst = client_for(make_user(roles.ANALYST))
        [row] = [
            {key: value for key, value in row.items() if key not in ("id", "source_title", "date_label")}
            for row in analyst.get(incident_url(incident)).json()["claims"]
        ]
        insider = make_user(roles.REVIEWER, confidential=True)
        self.make_claim_confidential(insider, incident, claim)
        body = {"title": "Edited", "claims": [row], "version": 2}
        proposed = analyst.patch(incident_url(incident), body, format="json")
        assert proposed.status_code == 202, proposed.content
        revision = proposed.json()["id"]

        shown_to_insider = client_for(insider).get(f"{API}/revisions/{revision}/").json()
        client.force_login(insider)
        refused = client.post(
            reverse("admin:incidents_incidentrevision_decide", args=[revision]), {"accept": "1"}, follow=True
        )
        refused_by_api = client_for(insider).post(f"{API}/revisions/{revision}/accept/")

        assert proposed.json()["changes"]["claims"] == [row]
        message = f"It repeats claim {claim.pk} of “Daily NK”, which is confidential and its author may not see"
        assert ("Cannot be accepted", message) in [
            (line["field"], line["proposed"][: len(message)]) for line in shown_to_insider["diff"]
        ]
        assert message in html.unescape(refused.content.decode())
        assert refused_by_api.status_code == 400
        assert list(refused_by_api.json()) == ["claims[0].source"]
        assert list(incident.claims.values_list("pk", "excerpt", "confidential")) == [(claim.pk, self.WORDS, True)]
        incident.refresh_from_db()
        assert incident.title == "Published title"

    def test_an_accepted_revisions_claim_made_confidential_afterwards_leaves_its_record(self, client):
        incident = make_incident(title="Published title")
        source = make_source(title="Daily NK")
        analyst = client_for(make_user(roles.ANALYST))
        body = {"claims": [{"source": source.pk, "excerpt": self.WORDS}], "version": 1}
        revision = analyst.patch(incident_url(incident), body, format="json").json()["id"]
        reviewer = make_user(roles.REVIEWER)
        assert client_for(reviewer).post(f"{API}/revisions/{revision}/accept/").status_code == 200
        [claim] = incident.claims.all()
        self.make_claim_confidential(make_user(roles.REVIEWER, confidential=True), incident, claim)

        detail = client_for(reviewer).get(f"{API}/revisions/{revision}/")
        history = client_for(reviewer).get(incident_url(incident, "history/"))
        client.force_login(reviewer)
        history_page = client.get(reverse("admin:incidents_incident_history", args=[incident.pk]))

        for answer in (detail, history, history_page):
            assert answer.status_code == 200
            assert "Onsong" not in answer.content.decode()
        assert detail.json()["changes"] == {"data": {}, "claims": []}

    def test_the_list_read_without_confidential_access_costs_the_same_however_many_revisions(self):
        reviewer = client_for(make_user(roles.REVIEWER))
        insider = make_user(roles.REVIEWER, confidential=True)

        def propose():
            incident = make_incident(title="Published title")
            claim = make_claim(incident=incident, source=make_source(), excerpt=self.WORDS, locator="p. 2")
            make_claim(incident=incident, source=make_source(), excerpt="other", confidential=True)
            self.propose_resending(incident, claim, locator="p. 3")
            self.make_claim_confidential(insider, incident, claim)

        propose()
        reviewer.get(f"{API}/revisions/")
        counts = []
        for more in (1, 4):
            for _ in range(more):
                propose()
            with CaptureQueriesContext(connection) as queries:
                answer = reviewer.get(f"{API}/revisions/?state=pending&page_size=50")
            counts.append(len(queries))
            assert "Onsong" not in answer.content.decode()
        assert counts[0] == counts[1], counts

    def test_a_merged_incidents_decided_revision_keeps_the_claim_that_moved_to_the_survivor_hidden(self):
        # A merge moves the claim to the survivor, where it is made confidential: the merged
        # incident's revision, rejected before, still held its words for every Reviewer.
        merged = make_incident(title="Published title")
        claim = make_claim(incident=merged, source=make_source(title="Daily NK"), excerpt=self.WORDS)
        revision = self.propose_resending(merged, claim, locator="para 13")
        insider = make_user(roles.REVIEWER, confidential=True)
        services.incident_revision_reject(revision=IncidentRevision.objects.get(pk=revision), user=insider)
        survivor = make_incident(title="Survivor")
        pair = DuplicatePair.objects.create(incident_a=merged, incident_b=survivor, score=0.9)
        incident_merge(user=insider, pair=pair, survivor=survivor.public_id)
        self.make_claim_confidential(insider, survivor, claim)
        reviewer = make_user(roles.REVIEWER)

        detail = client_for(reviewer).get(f"{API}/revisions/{revision}/")
        listed = client_for(reviewer).get(f"{API}/revisions/?state=rejected")

        for answer in (detail, listed):
            assert answer.status_code == 200
            assert "Onsong" not in answer.content.decode()
        assert detail.json()["changes"]["claims"] == []
        assert "Onsong" in client_for(insider).get(f"{API}/revisions/{revision}/").content.decode()


@pytest.mark.parametrize("hidden", [True, False], ids=["a confidential incident remains", "none remains"])
def test_unlinking_the_last_incident_a_writer_sees_from_a_response_is_refused_alike(hidden):
    # Left about none, the response stayed in its writer's list ("linked to no incident yet"); left
    # about a confidential incident, it left it (404): reading it again told an Analyst without
    # Confidential access whether it is about a confidential incident too.
    seen = make_incident(title="Published")
    response = Response.objects.create(organization=make_organization(), kind="statement", date=date(2023, 9, 1))
    response.incidents.set([seen, *([make_incident(title="Secret", confidential=True)] if hidden else [])])
    client = client_for(make_user(roles.ANALYST))
    shown = client.get(f"{API}/responses/{response.pk}/").json()
    assert shown["incidents"] == [seen.public_id]

    answer = client.patch(
        f"{API}/responses/{response.pk}/", {"incidents": [], "version": shown["version"]}, format="json"
    )

    assert answer.status_code == 400
    assert answer.json() == {"incidents": [services.LAST_INCIDENT_SEEN_MESSAGE]}
    assert client.get(f"{API}/responses/{response.pk}/").json() == shown
    # Another incident linked in the same write, the last one seen goes.
    other = make_incident(title="The right one")
    body = {"incidents": [other.public_id], "version": shown["version"]}
    assert client.patch(f"{API}/responses/{response.pk}/", body, format="json").status_code == 200
