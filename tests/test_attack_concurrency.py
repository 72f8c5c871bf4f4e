"""Two users (or two tabs of one) writing at the same moment, against the real PostgreSQL: each test
holds one write at a lock that another connection keeps, so that the writes meet in a known order."""

import io
import threading
from datetime import date

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from incidents import roles
from incidents.models import DuplicatePair, Incident, IncidentRevision, Response, Source
from tests.api_support import API, client_for, incident_url
from tests.factories import make_incident, make_organization, make_source, make_user
from tests.form_support import pair_decision
from tests.test_import import HEADER, confirm_form
from tests.test_write_conflicts import wait_until_waiting

IMPORT_URL = "/admin/incidents/incident/import/"


def wait_until_waiting_outside(count: int) -> None:
    """`wait_until_waiting` read from a connection of its own, outside any transaction: within one,
    PostgreSQL answers pg_stat_activity from the snapshot it took at its first read."""
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as observer:
        wait_until_waiting(observer, count)


def in_threads(*requests) -> list:
    """Run each callable in a thread of its own (its own connection, closed at its end); their
    answers, in order, once all have finished."""
    answers = [None] * len(requests)

    def run(index, request):
        try:
            answers[index] = request()
        except Exception as error:  # the answer, for the test's assertion
            answers[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(requests)]
    for thread in threads:
        thread.start()
    return threads, answers


@pytest.mark.django_db(transaction=True)
def test_an_import_confirmed_twice_at_once_from_two_tabs_is_written_once():
    # A double click on the preview's "Import 1 row" (or the same preview confirmed from two tabs):
    # the file waits as one PendingImport, which the first confirmation imports and then deletes,
    # so the second is told "Nothing is waiting to be imported". Sent at the same moment, both read
    # the pending file before either deleted it, and both imported it: its new incident twice.
    analyst = make_user(roles.ANALYST)
    tabs = [Client(), Client()]
    for tab in tabs:
        tab.force_login(analyst)
    content = f"{HEADER}\nArrests at the Hyesan market,forced-repatriation,2024-03-01,2024-03-01\n"
    preview = tabs[0].post(IMPORT_URL, {"file": io.BytesIO(content.encode())})
    assert preview.status_code == 200 and 'name="confirm"' in preview.text
    form = confirm_form(preview)

    with psycopg.connect(**connection.get_connection_params()) as blocker:
        # A reviewer renaming the incident type holds it a moment: both confirmations write the new
        # incident and wait there, for the type it links to (`incident_links_lock`).
        blocker.execute("UPDATE incidents_incidenttype SET name = name WHERE slug = 'forced-repatriation'")
        threads, answers = in_threads(*(lambda tab=tab: tab.post(IMPORT_URL, form) for tab in tabs))
        wait_until_waiting_outside(2)
    for thread in threads:
        thread.join(30)

    assert Incident.objects.filter(title="Arrests at the Hyesan market").count() == 1, [
        getattr(answer, "status_code", answer) for answer in answers
    ]


@pytest.mark.django_db(transaction=True)
def test_two_analysts_adding_the_same_source_at_once_record_it_once():
    # A new source at the address of one its writer may see is refused naming it (409,
    # `looks_like_another_source`) until the writer confirms it is another. Two analysts entering
    # the same article at the same moment were each checked before the other's was committed, and
    # both were recorded: the duplicate the rule exists to prevent, with claims split between them.
    publisher = make_organization(name="Daily NK")
    clients = [client_for(make_user(roles.ANALYST)) for _ in range(2)]
    body = {
        "title": "China returns 500 North Koreans",
        "kind": "news_article",
        "url": "https://www.dailynk.com/english/china-returns-500/",
        "publisher": publisher.pk,
    }

    with psycopg.connect(**connection.get_connection_params()) as blocker:
        # Another write holds the publisher's row a moment, so that both new sources, checked and
        # written, wait for it (the check of their link to it, at commit): it only makes certain the
        # overlap that any two requests a few milliseconds apart have.
        blocker.execute("SELECT FROM incidents_organization WHERE id = %s FOR UPDATE", [publisher.pk])
        threads, answers = in_threads(
            *(lambda client=client: client.post(f"{API}/sources/", body, format="json") for client in clients)
        )
        wait_until_waiting_outside(2)
    for thread in threads:
        thread.join(30)

    statuses = sorted(getattr(answer, "status_code", answer) for answer in answers)
    assert statuses == [201, 409], [getattr(answer, "content", answer) for answer in answers]
    assert Source.objects.filter(url=body["url"]).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_pair_withdrawn_while_a_reviewer_decides_it_is_not_a_server_error():
    # The rescoring after an analyst's edit withdraws a waiting pair that no longer qualifies
    # (`duplicates._refresh`: DELETE … WHERE decision = 'pending'), at the moment a Reviewer decides
    # it. The decision found the pair, then waited for the withdrawal to lock it
    # (`duplicate_pair_decide`: `select_for_update().get`), and found nothing: DoesNotExist, a 500.
    # A pair gone is told as one that no longer waits (or a 404), as a moment later.
    pair = DuplicatePair.objects.create(incident_a=make_incident(), incident_b=make_incident(), score=0.9)
    client = Client()
    client.force_login(make_user(roles.REVIEWER))
    form = {**pair_decision(pair, "different", "Two boats"), "_continue": "1"}
    url = reverse("admin:incidents_duplicatepair_change", args=[pair.pk])

    with psycopg.connect(**connection.get_connection_params()) as rescoring:
        rescoring.execute("DELETE FROM incidents_duplicatepair WHERE id = %s AND decision = 'pending'", [pair.pk])
        threads, answers = in_threads(lambda: client.post(url, form))
        wait_until_waiting_outside(1)
    for thread in threads:
        thread.join(30)

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code < 500
    assert not DuplicatePair.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_source_deleted_while_an_analyst_saves_it_answers_404_not_a_500():
    # A colleague deletes a source at the moment an analyst saves a change to it. The save found
    # the source (`_require_visible`), then waited for the deletion to lock it (`record_save`:
    # `select_for_update().get`), and found nothing: DoesNotExist, a 500. A moment later the same
    # save answers 404, as for any record that does not exist.
    source = make_source(title="Daily NK")
    client = client_for(make_user(roles.ANALYST))
    body = {"title": "Daily NK (Seoul)", "version": source.version}

    with psycopg.connect(**connection.get_connection_params()) as colleague:
        colleague.execute("DELETE FROM incidents_source WHERE id = %s", [source.pk])
        threads, answers = in_threads(lambda: client.patch(f"{API}/sources/{source.pk}/", body, format="json"))
        wait_until_waiting_outside(1)
    for thread in threads:
        thread.join(30)

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code == 404, answer.content
    assert not Source.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_revision_deleted_with_its_incident_while_a_reviewer_accepts_it_answers_404_not_a_500():
    # A Reviewer with Confidential access deletes an incident (Django's cascade deletes its pending
    # revisions first) at the moment another Reviewer accepts one of them. The acceptance found the
    # revision (`_pending_revision`: visible_to … exists()), then waited for the deletion to lock it
    # (`select_for_update().get`), and found nothing: DoesNotExist, a 500.
    incident = make_incident(title="Published title")
    proposed = client_for(make_user(roles.ANALYST)).patch(
        incident_url(incident), {"title": "Proposed title", "version": 1}, format="json"
    )
    assert proposed.status_code == 202, proposed.content
    revision = proposed.json()["id"]
    reviewer = client_for(make_user(roles.REVIEWER))

    with psycopg.connect(**connection.get_connection_params()) as colleague:
        # The first statement of that deletion: the incident's revisions.
        colleague.execute("DELETE FROM incidents_incidentrevision WHERE incident_id = %s", [incident.pk])
        threads, answers = in_threads(lambda: reviewer.post(f"{API}/revisions/{revision}/accept/"))
        wait_until_waiting_outside(1)
    for thread in threads:
        thread.join(30)

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code == 404, answer.content
    assert not IncidentRevision.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_pair_withdrawn_while_a_reviewer_merges_it_is_not_a_server_error():
    # As above, through the API's merge of a waiting pair: `incident_merge` locks both incidents,
    # then waits for the rescoring's withdrawal of the pair (`select_for_update().get`), and finds
    # nothing: DoesNotExist, a 500. Nothing may be merged: the pair is gone.
    first, second = make_incident(), make_incident()
    pair = DuplicatePair.objects.create(incident_a=first, incident_b=second, score=0.9)
    reviewer = client_for(make_user(roles.REVIEWER))

    with psycopg.connect(**connection.get_connection_params()) as rescoring:
        rescoring.execute("DELETE FROM incidents_duplicatepair WHERE id = %s AND decision = 'pending'", [pair.pk])
        threads, answers = in_threads(lambda: reviewer.post(f"{API}/duplicates/{pair.pk}/merge/", {}, format="json"))
        wait_until_waiting_outside(1)
    for thread in threads:
        thread.join(30)

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code in (404, 409), answer.content
    assert not Incident.objects.filter(merged_into__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_two_confidential_incidents_of_one_response_deleted_at_once_leave_it_about_one():
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

    with psycopg.connect(**connection.get_connection_params()) as colleague:
        # A colleague's write holds both incidents a moment: both deletions, checked, wait there.
        colleague.execute("SELECT FROM incidents_incident WHERE id = ANY(%s) FOR UPDATE", [[s.pk for s in secrets]])
        threads, answers = in_threads(
            *(
                lambda deleter=deleter, secret=secret: deleter.delete(incident_url(secret))
                for deleter, secret in zip(deleters, secrets, strict=True)
            )
        )
        wait_until_waiting_outside(2)
    for thread in threads:
        thread.join(30)

    statuses = sorted(getattr(answer, "status_code", answer) for answer in answers)
    assert statuses == [204, 409], answers
    assert statement.incidents.count() == 1
    assert client_for(make_user(roles.ANALYST)).get(f"{API}/responses/{statement.pk}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_claim_citing_a_source_deleted_meanwhile_is_refused_not_a_server_error():
    # A colleague deletes a source (cited by nothing) at the moment an analyst saves a draft with a
    # new claim citing it. The save checked the source was there, wrote the claim, and waited for the
    # deletion (the claim's `lock_source`); once it committed, the claim's foreign key failed at
    # commit: an IntegrityError, a 500. A moment later the same save is refused naming the claim's
    # source (400).
    incident = make_incident(review_state="draft")
    source = make_source(title="Daily NK")
    client = client_for(make_user(roles.ANALYST))
    body = {"claims": [{"source": source.pk, "people_count": 80}]}

    with psycopg.connect(**connection.get_connection_params()) as colleague:
        colleague.execute("DELETE FROM incidents_source WHERE id = %s", [source.pk])
        threads, answers = in_threads(
            lambda: client.patch(incident_url(incident), body, format="json", HTTP_IF_MATCH='"1"')
        )
        wait_until_waiting_outside(1)
    for thread in threads:
        thread.join(30)

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code in (400, 409), answer.content
    assert not Incident.objects.get(pk=incident.pk).claims.exists()
