"""A slow or failing connection and a client that retries: a request sent twice (a Save pressed twice
before the answer came, a Save again after the browser's Back, a partner tool's POST retried after a
timeout) adds one incident, and the second is answered with the first's result."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from incidents import roles
from incidents.admin import incidents as admin_incidents
from incidents.models import DuplicatePair, Incident, IncidentRevision, IncidentSubmission, Release
from incidents.services import SUBMISSION_KEY_HOURS
from tests.api_support import API, client_for
from tests.factories import make_incident, make_place, make_user
from tests.form_support import form_fields, pair_decision
from tests.test_admin import ADD, change_url, incident_post, logged_in, messages_of
from tests.test_api_write import new_incident_body

# The browser fixture (Chromium watched for Content-Security-Policy violations), shared.
from tests.test_browser import browser_page as browser_page
from tests.test_browser import choose_in_autocomplete, log_in


def add_page_post(client, **fields) -> dict:
    """What the add page's Save posts: its own key (the page as shown) with the incident typed in."""
    page = client.get(ADD).content.decode()
    return {**incident_post(**fields), "submission_key": form_fields(page, "incident_form")["submission_key"]}


@pytest.mark.django_db
class TestAddPageSentTwice:
    def test_a_save_pressed_twice_adds_the_incident_once_and_answers_the_second_as_the_first(self, client):
        analyst = make_user(roles.ANALYST)
        post = add_page_post(logged_in(client, analyst), places=[make_place(name="Dandong", country="CN")])

        first = client.post(ADD, post)
        second = client.post(ADD, post)

        incident = Incident.objects.get()
        assert first.status_code == second.status_code == 302
        assert second["Location"] == first["Location"]
        assert f"{incident.public_id} was added once" in " ".join(messages_of(second))

    def test_save_and_add_another_pressed_twice_adds_one_incident(self, client):
        analyst = make_user(roles.ANALYST)
        post = {**add_page_post(logged_in(client, analyst)), "_addanother": "Save and add another"}

        client.post(ADD, post)
        second = client.post(ADD, post)

        assert Incident.objects.count() == 1
        assert second.status_code == 302 and second["Location"] == ADD

    def test_the_page_saved_then_changed_after_going_back_is_held_and_a_second_save_adds_it(self, client):
        # Back, the title corrected, Save: a second incident, or a correction of the first? Asked.
        analyst = make_user(roles.ANALYST)
        post = add_page_post(logged_in(client, analyst))
        client.post(ADD, post)
        first = Incident.objects.get()

        held = client.post(ADD, {**post, "title": "82 North Koreans forcibly repatriated from China"})

        assert held.status_code == 200 and Incident.objects.count() == 1
        form = held.context["adminform"].form
        assert f"This page was saved already, as {first.public_id}, and changed since" in str(form.non_field_errors())
        again = form_fields(held.content.decode(), "incident_form")
        assert again["title"] == "82 North Koreans forcibly repatriated from China"
        assert again["submission_key"] != post["submission_key"]
        added = client.post(ADD, {**post, "title": again["title"], "submission_key": again["submission_key"]})
        assert added.status_code == 302 and Incident.objects.count() == 2

    def test_two_pages_are_two_incidents(self, client):
        analyst = make_user(roles.ANALYST)
        logged_in(client, analyst)

        client.post(ADD, add_page_post(client))
        client.post(ADD, add_page_post(client))

        assert Incident.objects.count() == 2

    def test_the_same_key_from_another_account_is_its_own(self, client):
        post = add_page_post(logged_in(client, make_user(roles.ANALYST)))
        client.post(ADD, post)

        logged_in(client, make_user(roles.ANALYST)).post(ADD, post)

        assert Incident.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_saves_of_one_page_at_the_same_moment_add_one_incident():
    # The second Save reaches the server while the first is still being written.
    analyst = make_user(roles.ANALYST)
    clients = [logged_in(Client(), analyst) for _ in range(2)]
    post = add_page_post(clients[0])
    barrier, answers = threading.Barrier(2), []

    def save(client):
        try:
            barrier.wait()
            answers.append(client.post(ADD, post).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert answers == [302, 302]
    assert Incident.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_saves_of_one_change_page_at_the_same_moment_change_it_once_and_both_answer_saved():
    analyst = make_user(roles.ANALYST)
    incident = make_incident(title="Old title", review_state="draft")
    clients = [logged_in(Client(), analyst) for _ in range(2)]
    data = form_fields(clients[0].get(change_url(incident)).content.decode(), "incident_form")
    data.update(title="New title", _save="Save")
    barrier, answers = threading.Barrier(2), []

    def save(client):
        try:
            barrier.wait()
            answers.append(client.post(change_url(incident), data).status_code)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    incident.refresh_from_db()
    assert answers == [302, 302]
    assert (incident.title, incident.version) == ("New title", 2)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_analyst_on_a_slow_connection_presses_save_twice_and_adds_one_incident(
    browser_page, live_server, monkeypatch
):
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    make_place(name="Dandong", country="CN")
    # The server answers a second later, as over a slow connection: the second click comes first.
    saving = admin_incidents.incident_create

    def slow_create(**arguments):
        time.sleep(1)
        return saving(**arguments)

    monkeypatch.setattr(admin_incidents, "incident_create", slow_create)
    log_in(page, live_server, "analyst")
    page.goto(f"{live_server.url}/admin/incidents/incident/add/")
    page.fill("#id_title", "Deportation of 80 North Koreans from China")
    choose_in_autocomplete(page, "id_incident_type", "Forced", "Forced repatriation")
    page.fill("#id_date_start", "2023-08-29")
    page.fill("#id_date_end", "2023-08-29")
    page.fill("#id_people_count", "80")
    choose_in_autocomplete(page, "id_place_list", "Dand", "Dandong")

    # Pressed again a moment later, the page still showing while the first Save waits for its answer
    # (from the page itself: Playwright's own click would wait for the first's navigation).
    page.evaluate(
        "() => { const save = document.querySelector('input[name=_save]'); save.click(); "
        "setTimeout(() => save.click(), 300); }"
    )

    expect(page.locator(".messagelist")).to_contain_text("was added")
    page.wait_for_timeout(2500)
    assert Incident.objects.count() == 1


@pytest.mark.django_db
class TestApiPostRetried:
    def test_a_post_retried_with_its_idempotency_key_adds_nothing_and_answers_the_first_incident(self):
        partner = client_for(make_user(roles.ANALYST))

        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-7f3a")
        retried = partner.post(
            f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-7f3a"
        )

        assert first.status_code == retried.status_code == 201
        assert retried.json()["public_id"] == first.json()["public_id"]
        assert retried["Location"] == first["Location"]
        assert Incident.objects.count() == 1

    def test_the_key_sent_with_another_body_is_a_422_naming_it(self):
        partner = client_for(make_user(roles.ANALYST))
        partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-7f3a")

        other = partner.post(
            f"{API}/incidents/", new_incident_body(people_count=41), format="json", HTTP_IDEMPOTENCY_KEY="sync-7f3a"
        )

        assert other.status_code == 422
        assert "Already used for INC-" in other.json()["Idempotency-Key"][0]
        assert Incident.objects.count() == 1

    @pytest.mark.parametrize("key", ["", " padded ", "키", "x" * 256])
    def test_a_key_not_of_the_drafts_shape_is_a_400_naming_it(self, key):
        partner = client_for(make_user(roles.ANALYST))

        answer = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY=key)

        assert answer.status_code == 400 and "Idempotency-Key" in answer.json()
        assert not Incident.objects.exists()

    def test_a_refused_post_uses_no_key(self):
        partner = client_for(make_user(roles.ANALYST))
        refused = partner.post(
            f"{API}/incidents/", new_incident_body(date_end="2023-01-01"), format="json", HTTP_IDEMPOTENCY_KEY="k1"
        )

        corrected = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")

        assert (refused.status_code, corrected.status_code) == (400, 201)

    @pytest.mark.parametrize("since", ["made confidential", "deleted"])
    def test_a_retry_after_its_incident_left_the_writers_view_is_a_new_request(self, since):
        # Answered with the incident, the retry showed an Analyst the incident a Reviewer had since
        # made confidential; answered otherwise than for one deleted, it told them it was hidden.
        partner = client_for(make_user(roles.ANALYST))
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
        hidden = Incident.objects.filter(public_id=first.json()["public_id"])
        if since == "deleted":
            hidden.delete()
        else:
            hidden.update(confidential=True, description="The informant's own account")

        retried = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")

        assert retried.status_code == 201
        assert retried.json()["public_id"] != first.json()["public_id"]
        assert "informant" not in retried.content.decode()
        assert IncidentSubmission.objects.get(key="k1").incident.public_id == retried.json()["public_id"]

    def test_a_key_is_remembered_for_a_day(self):
        writer = make_user(roles.ANALYST)
        partner = client_for(writer)
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")
        partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k2")
        a_day_ago = timezone.now() - timedelta(hours=SUBMISSION_KEY_HOURS, minutes=1)
        IncidentSubmission.objects.update(created_at=a_day_ago)

        reused = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="k1")

        assert reused.status_code == 201 and reused.json()["public_id"] != first.json()["public_id"]
        # The writer's keys older than a day are gone: the table holds about a day of saves.
        assert list(IncidentSubmission.objects.filter(user=writer).values_list("key", flat=True)) == ["k1"]

    def test_the_schema_declares_the_header(self):
        schema = client_for().get(f"{API}/schema/?format=json").json()
        post = schema["paths"]["/api/v1/incidents/"]["post"]
        assert "Idempotency-Key" in [parameter["name"] for parameter in post["parameters"]]
        assert "422" in post["responses"]


@pytest.mark.django_db
class TestChangeAndDecisionSentTwice:
    def test_a_change_saved_twice_is_answered_as_saved_not_as_someone_elses(self, client):
        analyst = make_user(roles.ANALYST)
        incident = make_incident(title="Old title", review_state="draft")
        data = form_fields(logged_in(client, analyst).get(change_url(incident)).content.decode(), "incident_form")
        data.update(title="New title", _save="Save")

        first = client.post(change_url(incident), data)
        # What the browser shows is the second answer: it read "Your changes were not saved", though they were.
        second = client.post(change_url(incident), data)

        incident.refresh_from_db()
        assert (incident.title, incident.version) == ("New title", 2)
        assert first.status_code == second.status_code == 302
        assert f"{incident.public_id} was changed once" in " ".join(messages_of(second))

    def test_a_stale_page_changed_after_going_back_is_still_refused(self, client):
        analyst = make_user(roles.ANALYST)
        incident = make_incident(title="Old title", review_state="draft")
        data = form_fields(logged_in(client, analyst).get(change_url(incident)).content.decode(), "incident_form")
        client.post(change_url(incident), {**data, "title": "New title", "_save": "Save"})

        again = client.post(change_url(incident), {**data, "title": "Newer title", "_save": "Save"})

        assert again.status_code == 200
        assert "Your changes were not saved" in str(again.context["adminform"].form.non_field_errors())
        incident.refresh_from_db()
        assert incident.title == "New title"

    def test_an_analysts_save_of_a_published_incident_pressed_twice_proposes_one_revision(self, client):
        analyst = make_user(roles.ANALYST)
        incident = make_incident(title="Old title")
        data = form_fields(logged_in(client, analyst).get(change_url(incident)).content.decode(), "incident_form")
        data.update(title="New title", _save="Save")

        client.post(change_url(incident), data)
        second = client.post(change_url(incident), data)

        revision = IncidentRevision.objects.get(incident=incident, state="pending")
        assert f"wait for a Reviewer as revision {revision.pk}" in " ".join(messages_of(second))

    def test_an_api_edit_of_a_published_incident_retried_proposes_one_revision(self):
        incident = make_incident(title="Old title")
        partner = client_for(make_user(roles.ANALYST))
        etag = partner.get(f"{API}/incidents/{incident.public_id}/")["ETag"]

        answers = [
            partner.patch(
                f"{API}/incidents/{incident.public_id}/", {"title": "New title"}, format="json", HTTP_IF_MATCH=etag
            )
            for _ in range(2)
        ]

        assert [answer.status_code for answer in answers] == [202, 202]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        assert IncidentRevision.objects.filter(incident=incident).count() == 1

    def test_a_duplicate_pairs_decision_pressed_twice_stands_and_is_answered_as_decided(self, client):
        reviewer = make_user(roles.REVIEWER)
        pair = DuplicatePair.objects.create(incident_a=make_incident(), incident_b=make_incident(), score=0.9)
        page = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
        decision = {**pair_decision(pair, "different", "Other boats: see the photos"), "_continue": "1"}

        first = logged_in(client, reviewer).post(page, decision)
        second = client.post(page, decision)

        assert first.status_code == second.status_code == 302
        pair.refresh_from_db()
        assert (pair.decision, pair.note, pair.decided_by) == ("different", "Other boats: see the photos", reviewer)

    def test_same_incident_pressed_twice_leads_on_to_the_merge_both_times(self, client):
        reviewer = make_user(roles.REVIEWER)
        pair = DuplicatePair.objects.create(incident_a=make_incident(), incident_b=make_incident(), score=0.9)
        page = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])
        decision = pair_decision(pair, "same")

        first = logged_in(client, reviewer).post(page, decision)
        second = client.post(page, decision)

        assert first.status_code == second.status_code == 302
        assert second["Location"] == first["Location"]

    def test_freeze_a_release_pressed_twice_makes_one_release_and_answers_it(self, client):
        reviewer = make_user(roles.REVIEWER)
        make_incident()
        logged_in(client, reviewer)
        add = "/admin/incidents/release/add/"
        data = form_fields(client.get(add).content.decode())

        first = client.post(add, data)
        second = client.post(add, data)

        release = Release.objects.get()
        assert second["Location"] == first["Location"]
        assert f"{release.name} was released by your first press" in " ".join(messages_of(second))

    def test_a_release_made_by_a_colleague_meanwhile_is_told_and_nothing_is_released(self, client):
        make_incident()
        logged_in(client, make_user(roles.REVIEWER))
        add = "/admin/incidents/release/add/"
        data = form_fields(client.get(add).content.decode())
        logged_in(Client(), make_user(roles.REVIEWER)).post(add, data)

        refused = client.post(add, data)

        assert Release.objects.count() == 1 and refused["Location"] == add
        assert "was released meanwhile by someone else; nothing was released" in " ".join(messages_of(refused))


@pytest.mark.django_db
class TestPartnerRetry:
    def test_a_partner_tools_post_retried_with_its_key_adds_one_incident(self):
        # The very case the key is for: a partner tool's account (not staff) adds a draft, which it
        # may not read, and retries after a timeout.
        partner = client_for(make_user(roles.ANALYST, is_staff=False))

        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-1")
        retried = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-1")

        assert first.status_code == retried.status_code == 201
        assert retried.json()["public_id"] == first.json()["public_id"]
        assert Incident.objects.count() == 1

    def test_a_partner_tools_key_sent_with_another_body_is_a_422(self):
        partner = client_for(make_user(roles.ANALYST, is_staff=False))
        partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-1")

        other = partner.post(
            f"{API}/incidents/", new_incident_body(people_count=41), format="json", HTTP_IDEMPOTENCY_KEY="sync-1"
        )

        assert other.status_code == 422
        assert Incident.objects.count() == 1

    def test_a_partner_tools_retry_after_its_draft_was_made_confidential_is_a_new_request(self):
        partner = client_for(make_user(roles.ANALYST, is_staff=False))
        first = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-1")
        Incident.objects.filter(public_id=first.json()["public_id"]).update(
            confidential=True, description="The informant's own account"
        )

        retried = partner.post(f"{API}/incidents/", new_incident_body(), format="json", HTTP_IDEMPOTENCY_KEY="sync-1")

        assert retried.status_code == 201 and retried.json()["public_id"] != first.json()["public_id"]
        assert "informant" not in retried.content.decode()


@pytest.mark.django_db
def test_a_freeze_page_naming_a_release_that_is_not_there_is_no_server_error(client):
    # The page's `latest_seen` is what the browser sends: one naming a release when there is none
    # (an edited form, a database restored from before it) found "made meanwhile" a release of None.
    make_incident()
    logged_in(client, make_user(roles.REVIEWER))
    add = "/admin/incidents/release/add/"
    data = {**form_fields(client.get(add).content.decode()), "latest_seen": "incident-tracker-2026.1"}

    answer = client.post(add, data)

    assert answer.status_code == 302
    assert Release.objects.count() == 1
