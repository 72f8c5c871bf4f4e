"""A change sent twice (a Save pressed twice on a slow connection, a partner tool's PATCH retried
after a timeout): the second finds the version stale by the first, its own writer's. It was refused
as if someone had changed the record ("was changed at …", "was changed by alice" — by alice herself),
and the writer told their save had failed when it had not. Sent again as stored, by the account whose
change was the one since, it is answered as the success it was; anything else is refused as before."""

import pytest
from django.test import Client
from django.urls import reverse

from incidents import merges, roles, services
from incidents.models import DuplicatePair, Incident, IncidentType, Response
from tests.api_support import API, client_for, incident_url
from tests.factories import make_incident, make_organization, make_place, make_source, make_user
from tests.form_support import form_fields
from tests.test_admin import CHANGELIST, change_url, logged_in, messages_of
from tests.test_api_write import new_incident_body

# Each record page with a version, and a field its writer edits.
RECORDS = {
    "source": (lambda: make_source(title="Old title"), "title"),
    "place": (lambda: make_place(name="Old name"), "name"),
    "organization": (lambda: make_organization(name="Old name"), "name"),
    "incidenttype": (lambda: IncidentType.objects.create(slug="old-type", name="Old name"), "name"),
    "response": (
        lambda: Response.objects.create(
            organization=make_organization(), kind="statement", date="2023-10-10", description="Old words"
        ),
        "description",
    ),
}


def record_page(model: str, record) -> str:
    return reverse(f"admin:incidents_{model}_change", args=[record.pk])


def events_of(record) -> int:
    return type(record).pgh_event_model.objects.filter(pgh_obj_id=record.pk).count()


def edited_page(client, model: str, record, field: str, value: str) -> dict:
    """The record's page as a Save sends it, with `value` typed into `field`."""
    data = form_fields(client.get(record_page(model, record)).content.decode(), f"{model}_form")
    return {**data, field: value, "_save": "Save"}


@pytest.mark.django_db
class TestRecordPagesSentTwice:
    @pytest.mark.parametrize("model", RECORDS)
    def test_a_save_pressed_twice_is_answered_as_saved(self, client, model):
        make, field = RECORDS[model]
        record = make()
        data = edited_page(logged_in(client, make_user(roles.ANALYST)), model, record, field, "New words")

        first = client.post(record_page(model, record), data)
        events = events_of(record)
        # What the browser shows is the second answer: "… was changed at …. Your changes were not saved".
        second = client.post(record_page(model, record), data)

        assert first.status_code == second.status_code == 302
        assert second["Location"] == first["Location"]
        assert " was changed successfully." in " ".join(messages_of(second))
        record.refresh_from_db()
        assert (getattr(record, field), record.version) == ("New words", 2)
        assert events_of(record) == events

    @pytest.mark.parametrize("model", RECORDS)
    def test_the_page_changed_after_going_back_is_still_refused(self, client, model):
        make, field = RECORDS[model]
        record = make()
        data = edited_page(logged_in(client, make_user(roles.ANALYST)), model, record, field, "New words")
        client.post(record_page(model, record), data)

        again = client.post(record_page(model, record), {**data, field: "Newer words"})

        assert again.status_code == 200
        assert "Your changes were not saved" in str(again.context["adminform"].form.non_field_errors())
        record.refresh_from_db()
        assert getattr(record, field) == "New words"

    def test_a_colleagues_page_holding_the_same_words_is_refused(self, client):
        # Both typed the same correction; the second to save is told the first did, as before.
        source = make_source(title="Old title")
        colleague = logged_in(Client(), make_user(roles.ANALYST))
        data = edited_page(logged_in(client, make_user(roles.ANALYST)), "source", source, "title", "New title")
        colleague.post(record_page("source", source), edited_page(colleague, "source", source, "title", "New title"))

        refused = client.post(record_page("source", source), data)

        assert refused.status_code == 200
        assert "Your changes were not saved" in str(refused.context["adminform"].form.non_field_errors())

    def test_a_colleagues_save_between_the_two_presses_is_still_refused(self, client):
        source = make_source(title="Old title")
        data = edited_page(logged_in(client, make_user(roles.ANALYST)), "source", source, "title", "New title")
        client.post(record_page("source", source), data)
        colleague = logged_in(Client(), make_user(roles.ANALYST))
        colleague.post(record_page("source", source), edited_page(colleague, "source", source, "notes", "Checked"))

        refused = client.post(record_page("source", source), data)

        assert refused.status_code == 200
        assert "Your changes were not saved" in str(refused.context["adminform"].form.non_field_errors())
        source.refresh_from_db()
        assert (source.title, source.notes, source.version) == ("New title", "Checked", 3)


@pytest.mark.django_db
class TestMarkPressedTwice:
    def test_mark_verified_pressed_twice_on_the_incidents_page_is_answered_as_marked(self, client):
        incident = make_incident(review_state="in_review")
        page = logged_in(client, make_user(roles.REVIEWER)).get(change_url(incident)).content.decode()
        shown = form_fields(page)["reviewed_version"]
        press = {"action": "mark_verified", "_selected_action": incident.pk, "index": 0, "reviewed_version": shown}

        first = client.post(CHANGELIST, press, follow=True)
        second = client.post(CHANGELIST, press, follow=True)

        assert messages_of(first) == messages_of(second) == [f"Marked verified: {incident.public_id}."]
        incident.refresh_from_db()
        assert (incident.verification, incident.version) == ("verified", 2)

    def test_publish_pressed_twice_is_answered_as_published(self, client):
        # The second press read "Nothing was changed. … is published; publish applies only to in review
        # incidents", of the Reviewer's own publishing.
        incident = make_incident(review_state="in_review")
        page = logged_in(client, make_user(roles.REVIEWER)).get(change_url(incident)).content.decode()
        shown = form_fields(page)["reviewed_version"]
        press = {"action": "publish", "_selected_action": incident.pk, "index": 0, "reviewed_version": shown}

        first = client.post(CHANGELIST, press, follow=True)
        second = client.post(CHANGELIST, press, follow=True)

        assert messages_of(first) == messages_of(second) == [f"Published: {incident.public_id}."]
        incident.refresh_from_db()
        assert (incident.review_state, incident.version) == ("published", 2)

    def test_publish_pressed_after_a_colleague_published_it_is_still_refused(self, client):
        incident = make_incident(review_state="in_review")
        page = logged_in(client, make_user(roles.REVIEWER)).get(change_url(incident)).content.decode()
        press = {
            "action": "publish",
            "_selected_action": incident.pk,
            "index": 0,
            "reviewed_version": form_fields(page)["reviewed_version"],
        }
        logged_in(Client(), make_user(roles.REVIEWER)).post(CHANGELIST, press)

        refused = client.post(CHANGELIST, press, follow=True)

        assert messages_of(refused)[0].startswith("Nothing was changed.")


@pytest.mark.django_db
class TestApiWritesRetried:
    @pytest.mark.parametrize("by", ["If-Match", "body"])
    def test_a_sources_patch_retried_answers_200_with_the_source(self, by):
        source = make_source(title="Old title")
        partner = client_for(make_user(roles.ANALYST))
        read = partner.get(f"{API}/sources/{source.pk}/")
        body, headers = {"title": "New title"}, {}
        if by == "If-Match":
            headers["HTTP_IF_MATCH"] = read["ETag"]
        else:
            body.update(version=read.json()["version"], version_audience=read.json()["version_audience"])

        first = partner.patch(f"{API}/sources/{source.pk}/", body, format="json", **headers)
        events = events_of(source)
        retried = partner.patch(f"{API}/sources/{source.pk}/", body, format="json", **headers)

        assert (first.status_code, retried.status_code) == (200, 200)
        assert retried.json() == first.json() and retried["ETag"] == first["ETag"]
        assert events_of(source) == events

    def test_a_places_put_retried_answers_200(self):
        place = make_place(name="Old name")
        partner = client_for(make_user(roles.ANALYST))
        read = partner.get(f"{API}/places/{place.pk}/")
        body = {**read.json(), "name": "New name"}

        first = partner.put(f"{API}/places/{place.pk}/", body, format="json", HTTP_IF_MATCH=read["ETag"])
        retried = partner.put(f"{API}/places/{place.pk}/", body, format="json", HTTP_IF_MATCH=read["ETag"])

        assert (first.status_code, retried.status_code) == (200, 200)
        assert retried.json()["version"] == 2

    def test_a_draft_incidents_patch_retried_answers_200_with_the_incident(self):
        incident = make_incident(title="Old title", review_state="draft")
        partner = client_for(make_user(roles.ANALYST))
        etag = partner.get(incident_url(incident))["ETag"]

        first = partner.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)
        events = events_of(incident)
        retried = partner.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)

        assert (first.status_code, retried.status_code) == (200, 200)
        assert retried.json()["version"] == first.json()["version"] == 2
        assert events_of(incident) == events

    def test_a_retry_with_another_body_is_still_412(self):
        source = make_source(title="Old title")
        partner = client_for(make_user(roles.ANALYST))
        etag = partner.get(f"{API}/sources/{source.pk}/")["ETag"]
        partner.patch(f"{API}/sources/{source.pk}/", {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)

        retried = partner.patch(f"{API}/sources/{source.pk}/", {"title": "Other"}, format="json", HTTP_IF_MATCH=etag)

        assert retried.status_code == 412

    def test_another_account_sending_the_same_change_is_still_412(self):
        # Not its own write: the version it edited was replaced by someone else's.
        incident = make_incident(title="Old title", review_state="draft")
        alice, bob = client_for(make_user(roles.ANALYST)), client_for(make_user(roles.ANALYST))
        etag = alice.get(incident_url(incident))["ETag"]
        alice.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)

        sent = bob.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)

        assert sent.status_code == 412 and "changed by " in sent.json()["detail"]

    def test_a_retry_after_a_colleagues_save_is_still_412(self):
        incident = make_incident(title="Old title", review_state="draft")
        writer = make_user(roles.ANALYST)
        partner = client_for(writer)
        etag = partner.get(incident_url(incident))["ETag"]
        partner.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)
        incident.refresh_from_db()
        services.incident_update(
            incident=incident, user=make_user(roles.ANALYST), expected_version=2, data={"people_count": 81}
        )
        # …and back, so that the incident holds what the retry sends, two versions on.
        incident.refresh_from_db()
        services.incident_update(incident=incident, user=writer, expected_version=3, data={"people_count": 80})

        retried = partner.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)

        assert retried.status_code == 412
        assert Incident.objects.get(pk=incident.pk).version == 4


def merged_into(incident: Incident, survivor: Incident) -> None:
    """A Reviewer decides the two are one event and merges `incident` into `survivor`."""
    pair = DuplicatePair.objects.create(incident_a=incident, incident_b=survivor, score=0.9)
    merges.incident_merge(user=make_user(roles.REVIEWER), pair=pair, survivor=survivor.public_id)


@pytest.mark.django_db
class TestPostRetriedAfterAMerge:
    def test_the_retry_adds_nothing_and_is_sent_to_the_survivor(self):
        # A new incident, for want of the one the key added: the duplicates' queue paired it again
        # with the survivor, for a Reviewer to merge a second time.
        partner = client_for(make_user(roles.ANALYST))
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
        added = Incident.objects.get(public_id=first.json()["public_id"])
        survivor = make_incident(title="Survivor")
        merged_into(added, survivor)

        retried = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")

        assert retried.status_code == 303
        assert retried["Location"].endswith(incident_url(survivor))
        assert retried.json() == {
            "detail": f"{added.public_id} was merged into {survivor.public_id}.",
            "merged_into": survivor.public_id,
        }
        assert Incident.objects.count() == 2
        # Followed, it reads the survivor, as a GET of the merged incident's address leads there.
        assert partner.get(retried["Location"]).json()["public_id"] == survivor.public_id

    def test_the_key_with_another_body_names_the_incident_it_added(self):
        partner = client_for(make_user(roles.ANALYST))
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
        merged_into(Incident.objects.get(public_id=first.json()["public_id"]), make_incident())

        other = partner.post(
            f"{API}/incidents/", new_incident_body(people_count=41), format="json", HTTP_IDEMPOTENCY_KEY="k1"
        )

        assert other.status_code == 422
        assert f"Already used for {first.json()['public_id']}" in other.json()["Idempotency-Key"][0]

    def test_a_partner_tools_draft_merged_into_a_published_incident_is_sent_to_it(self):
        partner = client_for(make_user(roles.ANALYST, is_staff=False))
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
        survivor = make_incident(title="Published survivor")
        merged_into(Incident.objects.get(public_id=first.json()["public_id"]), survivor)

        retried = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")

        assert retried.status_code == 303 and retried.json()["merged_into"] == survivor.public_id

    @pytest.mark.parametrize("hidden", ["a draft", "made confidential"])
    def test_merged_into_an_incident_hidden_from_the_writer_it_is_a_new_request(self, hidden):
        # Named in the answer, the survivor's id (and that it exists) was told to one who may not see it.
        writer = make_user(roles.ANALYST, is_staff=hidden != "a draft")
        partner = client_for(writer)
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
        survivor = make_incident(title="Kept from the writer", review_state="draft")
        merged_into(Incident.objects.get(public_id=first.json()["public_id"]), survivor)
        if hidden == "made confidential":
            Incident.objects.filter(pk=survivor.pk).update(confidential=True)

        retried = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")

        assert retried.status_code == 201
        assert survivor.public_id not in retried.content.decode()
        assert retried.json()["public_id"] not in (first.json()["public_id"], survivor.public_id)

    def test_a_merge_undone_answers_with_the_incident_again(self):
        partner = client_for(make_user(roles.ANALYST))
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
        reviewer = make_user(roles.REVIEWER)
        added, survivor = Incident.objects.get(public_id=first.json()["public_id"]), make_incident()
        pair = DuplicatePair.objects.create(incident_a=added, incident_b=survivor, score=0.9)
        merge = merges.incident_merge(user=reviewer, pair=pair, survivor=survivor.public_id)
        merges.incident_merge_undo(user=reviewer, merge=merge)

        retried = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")

        assert retried.status_code == 201 and retried.json()["public_id"] == added.public_id


@pytest.mark.django_db
class TestSentTwiceAndWhatIsHidden:
    def test_a_change_hidden_from_the_writer_since_tells_nothing_in_the_retrys_answer(self):
        # A Reviewer with Confidential access made the source cite an informant's testimony between
        # the two: a refusal now, where there was none without it, would have told the Analyst so.
        source = make_source(title="Old title")
        secret = make_source(title="An informant's testimony", confidential=True)
        partner, url = client_for(make_user(roles.ANALYST)), f"{API}/sources/{source.pk}/"
        etag = partner.get(url)["ETag"]
        first = partner.patch(url, {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)
        source.refresh_from_db()
        services.record_save(
            user=make_user(roles.REVIEWER, confidential=True),
            record=source,
            data={"cites": secret},
            expected_version=source.version,
        )

        retried = partner.patch(url, {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)

        assert retried.status_code == 200
        assert retried.json() == first.json() and retried["ETag"] == first["ETag"]
        source.refresh_from_db()
        assert (source.title, source.cites) == ("New title", secret)

    def test_a_responses_page_sent_twice_keeps_the_link_its_writer_may_not_see(self, client):
        seen, hidden = make_incident(), make_incident(confidential=True)
        response = Response.objects.create(
            organization=make_organization(), kind="statement", date="2023-10-10", description="Old words"
        )
        response.incidents.set([seen, hidden])
        data = edited_page(logged_in(client, make_user(roles.ANALYST)), "response", response, "description", "New")

        client.post(record_page("response", response), data)
        second = client.post(record_page("response", response), data)

        assert second.status_code == 302
        assert set(response.incidents.all()) == {seen, hidden}
        response.refresh_from_db()
        assert (response.description, response.version) == ("New", 2)

    def test_the_version_read_with_access_taken_away_since_is_refused_even_from_its_own_writer(self, client):
        # Read with Confidential access, changed, then the access taken away: the count read is not
        # theirs to compare with, whoever changed the record since (`AccessChangedSinceRead`).
        writer = make_user(roles.ANALYST, confidential=True)
        incident = make_incident(title="Old title", review_state="draft")
        partner = client_for(writer)
        etag = partner.get(incident_url(incident))["ETag"]
        partner.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)
        writer.groups.remove(*writer.groups.filter(name=roles.CONFIDENTIAL_ACCESS))

        retried = partner.patch(incident_url(incident), {"title": "New title"}, format="json", HTTP_IF_MATCH=etag)

        assert retried.status_code == 412 and "access you no longer have" in retried.json()["detail"]
