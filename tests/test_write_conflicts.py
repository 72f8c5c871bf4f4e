"""Two writes that wait for each other in a cycle: PostgreSQL stops one (a deadlock), and its writer
is told so with a 409 on every door, with nothing of it saved, instead of a server error."""

import io
import threading
import time

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client, RequestFactory

from incidents import roles
from incidents.models import Incident, IncidentRevision, Organization, Place, Source
from tests.api_support import API, client_for, incident_url
from tests.factories import incident_type, make_claim, make_incident, make_place, make_source, make_user
from tests.test_admin import change_url, incident_post
from tests.test_import import HEADER, confirm_form, write_csv
from tracker.write_conflicts import MESSAGE, WriteConflictMiddleware


def wait_until_waiting(connection_of_observer, count: int) -> None:
    """Until `count` other backends of this test's database wait for a lock (those of other databases on
    the server, other workers' tests, are not this test's writes). The observer may be inside a
    transaction (one holding the lock they wait for): PostgreSQL answers pg_stat_activity there from
    a copy taken at its first read, which each look discards."""
    for _ in range(100):
        connection_of_observer.execute("SELECT pg_stat_clear_snapshot()")
        waiting = connection_of_observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
        if waiting >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{count} writes never waited")


def in_threads(*requests) -> tuple[list[threading.Thread], list]:
    """Start each callable in a thread of its own (its own connection, closed at its end); the
    threads, and the list that holds each one's answer (or what it raised), in order, once joined."""
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


def answered_while_held(statement: str, parameters: list, *requests) -> list:
    """Each of `requests`' answer (or what it raised), sent in threads while another connection's
    transaction has run `statement` (a colleague's write holding rows, or deleting them), once every
    one of them waits for it and it has committed."""
    with psycopg.connect(**connection.get_connection_params()) as colleague:
        colleague.execute(statement, parameters)
        threads, answers = in_threads(*requests)
        wait_until_waiting(colleague, len(requests))
    for thread in threads:
        thread.join(30)
    return answers


def while_a_reviewer_closes_a_cycle(incident, place, analyst_writes, *, place_name="Hyesan City") -> dict:
    """Run `analyst_writes` (which links `incident` to `place`) while a reviewer's transaction
    changes `place` (names it `place_name`), then, once the analyst's write waits for that place,
    changes `incident`, which the analyst's write holds: a deadlock, which PostgreSQL ends by stopping
    the analyst's write (the reviewer's transaction waits ten times longer before it would look for
    one). Returns what
    `analyst_writes` returned, under "answer"."""
    result = {}

    def analyst():
        try:
            result["answer"] = analyst_writes()
        finally:
            connection.close()

    with psycopg.connect(**connection.get_connection_params()) as reviewer:
        reviewer.execute("SET deadlock_timeout = '10s'")
        reviewer.execute("UPDATE incidents_place SET name = %s WHERE id = %s", [place_name, place.pk])
        analyst_thread = threading.Thread(target=analyst)
        analyst_thread.start()
        wait_until_waiting(reviewer, 1)
        reviewer.execute("UPDATE incidents_incident SET description = 'Checked' WHERE id = %s", [incident.pk])
    analyst_thread.join(20)
    return result


@pytest.mark.django_db(transaction=True)
def test_through_the_api_the_stopped_write_answers_409_and_saves_nothing():
    incident, place = make_incident(review_state="draft"), make_place(name="Hyesan")
    client = client_for(make_user(roles.ANALYST))

    result = while_a_reviewer_closes_a_cycle(
        incident,
        place,
        lambda: client.patch(
            incident_url(incident), {"places": [place.pk], "title": "Moved"}, format="json", HTTP_IF_MATCH='"1"'
        ),
    )

    answer = result["answer"]
    assert answer.status_code == 409
    assert answer.json() == {
        "detail": "Your change met another change being saved at the same moment, and was not saved: nothing "
        "of it was written. Save it again."
    }
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.title, stored.description, list(stored.places.all())) == (incident.title, "Checked", [])
    # Saving again works, once the reviewer's change is in.
    again = client.patch(
        incident_url(incident), {"places": [place.pk], "title": "Moved"}, format="json", HTTP_IF_MATCH='"1"'
    )
    assert again.status_code == 200 and again.json()["places"][0]["name"] == "Hyesan City"


@pytest.mark.django_db(transaction=True)
def test_in_the_admin_the_stopped_save_answers_409_and_saves_nothing():
    incident, place = make_incident(review_state="draft"), make_place(name="Hyesan")
    client = Client()
    client.force_login(make_user(roles.ANALYST))

    result = while_a_reviewer_closes_a_cycle(
        incident, place, lambda: client.post(change_url(incident), incident_post(incident=incident, places=[place]))
    )

    answer = result["answer"]
    assert answer.status_code == 409
    assert "met another change being saved at the same moment" in answer.content.decode()
    assert not Incident.objects.get(pk=incident.pk).places.exists()


def moved_to(incident, place) -> str:
    """A CSV file that moves `incident` (at version 1) to `place`, as an analyst edits an export."""
    return write_csv(
        [
            {
                "public_id": incident.public_id,
                "version": "1",
                "title": "Moved",
                "type": incident.incident_type.slug,
                "date_start": incident.date_start.isoformat(),
                "date_end": incident.date_end.isoformat(),
                "places": place.name,
            }
        ]
    )


@pytest.mark.django_db(transaction=True)
def test_through_the_import_command_the_stopped_import_says_so_and_writes_nothing(tmp_path):
    incident, place = make_incident(review_state="draft"), make_place(name="Hyesan")
    analyst = make_user(roles.ANALYST)
    path = tmp_path / "moved.csv"
    path.write_text(moved_to(incident, place))
    errors = io.StringIO()

    def import_file():
        try:
            call_command("import_incidents", str(path), f"--user={analyst.username}", stderr=errors)
        except CommandError as refusal:
            return refusal

    result = while_a_reviewer_closes_a_cycle(incident, place, import_file)

    refusal = result["answer"]
    assert isinstance(refusal, CommandError) and refusal.returncode == 1
    assert str(refusal) == f"1 error in {path}; nothing was imported."
    assert errors.getvalue() == (
        f"{path}: The import met another change being saved at the same moment, and was undone: nothing of it "
        "was written. Import the file again.\n"
    )
    stored = Incident.objects.get(pk=incident.pk)
    assert (stored.title, stored.description, stored.version, list(stored.places.all())) == (
        incident.title,
        "Checked",
        1,
        [],
    )
    # The file, naming the place as the reviewer renamed it, imports once the reviewer's change is in
    # (the version it names is the incident's still: the reviewer's raw UPDATE started no new one).
    path.write_text(moved_to(incident, Place.objects.get(pk=place.pk)))
    call_command("import_incidents", str(path), f"--user={analyst.username}", stdout=io.StringIO())
    assert list(Incident.objects.get(pk=incident.pk).places.values_list("name", flat=True)) == ["Hyesan City"]


@pytest.mark.django_db(transaction=True)
def test_in_the_admins_import_the_stopped_import_is_previewed_again_to_import_once_more():
    incident, place = make_incident(review_state="draft"), make_place(name="Hyesan")
    client = Client()
    client.force_login(make_user(roles.ANALYST))
    import_url = "/admin/incidents/incident/import/"
    preview = client.post(import_url, {"file": io.BytesIO(moved_to(incident, place).encode())})
    assert preview.status_code == 200 and 'name="confirm"' in preview.text

    # The reviewer's change leaves the place's name as the file gives it.
    result = while_a_reviewer_closes_a_cycle(
        incident, place, lambda: client.post(import_url, confirm_form(preview)), place_name="Hyesan"
    )

    answer = result["answer"]
    assert answer.status_code == 409
    assert (
        '<p class="errornote">The import met another change being saved at the same moment, and was undone: '
        "nothing of it was written. Import the file again.</p>" in answer.text
    )
    assert f"line 2: {incident.public_id} Moved — title, places" in answer.text
    assert not Incident.objects.get(pk=incident.pk).places.exists()
    # The file is still waiting: one more click imports it.
    again = client.post(import_url, confirm_form(answer))
    assert again.status_code == 302
    assert list(Incident.objects.get(pk=incident.pk).places.all()) == [place]


@pytest.mark.django_db(transaction=True)
def test_claims_saved_again_as_they_were_do_not_wait_for_their_sources():
    # An analyst saves an incident with its claims sent back as they were, while a reviewer renames
    # one of their sources. The reviewer's rename waits for the incident's kept export row, which the
    # analyst's save holds from its first statement; were the analyst's save of the unchanged claim to
    # wait for the source in turn (the claims' lock_source trigger, as for a claim that comes to cite
    # it), the two would wait for each other and PostgreSQL would stop one. Here the analyst's save
    # is held at a place (a third write) until the reviewer's rename waits, so they meet in that order.
    incident = make_incident(review_state="draft", title="Deportation at the border")
    source = make_source(title="Daily NK")
    claim = make_claim(incident=incident, source=source)
    place = make_place(name="Hyesan")
    client = client_for(make_user(roles.ANALYST))
    body = {
        "title": "Deportation at Hyesan",
        "places": [place.pk],
        "claims": [{"id": claim.pk, "source": source.pk, "people_count": claim.people_count}],
    }
    result = {}

    def analyst():
        try:
            result["answer"] = client.patch(incident_url(incident), body, format="json", HTTP_IF_MATCH='"1"')
        finally:
            connection.close()

    def reviewer_renames():
        reviewer.execute("UPDATE incidents_source SET title = 'Daily NK (Seoul)' WHERE id = %s", [source.pk])

    parameters = connection.get_connection_params()
    with psycopg.connect(**parameters) as place_writer, psycopg.connect(**parameters) as reviewer:
        reviewer.execute("SET deadlock_timeout = '10s'")
        place_writer.execute("UPDATE incidents_place SET name = 'Hyesan City' WHERE id = %s", [place.pk])
        analyst_thread = threading.Thread(target=analyst)
        analyst_thread.start()
        wait_until_waiting(place_writer, 1)
        reviewer_thread = threading.Thread(target=reviewer_renames)
        reviewer_thread.start()
        wait_until_waiting(place_writer, 2)
        place_writer.commit()
        analyst_thread.join(20)
        reviewer_thread.join(20)
        reviewer.commit()

    assert result["answer"].status_code == 200, result["answer"].content
    exported = b"".join(client.get(f"{API}/incidents.csv").streaming_content).decode()
    assert "Deportation at Hyesan" in exported and "Daily NK (Seoul)" in exported


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "answered"), [("post", 409), ("patch", 409), ("get", None), ("head", None)])
def test_only_a_write_is_answered_as_one_stopped(method, answered):
    # A read stopped with the same class of error (on a replica, a query cancelled for conflicting
    # with recovery) is answered again from the primary by tracker.replicas, not told it saved nothing.
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DO $$ BEGIN RAISE EXCEPTION 'stopped' USING ERRCODE = '40001'; END $$")
    except DatabaseError as error:
        stopped = error
    request = getattr(RequestFactory(), method)("/api/v1/incidents/")

    response = WriteConflictMiddleware(lambda request: None).process_exception(request, stopped)

    assert (response and response.status_code) == answered


@pytest.mark.django_db(transaction=True)
def test_an_import_stopped_while_it_copies_new_incidents_says_so_and_writes_nothing(tmp_path):
    # New incidents are written with COPY, whose errors psycopg raises as they are, not as Django's
    # DatabaseError: stopped there (its claim waits for the source a reviewer is changing, while the
    # reviewer adds the organization the import has just created), the import was a traceback.
    source = make_source(title="RFA")
    analyst = make_user(roles.ANALYST)
    path = tmp_path / "new.csv"
    path.write_text(f"{HEADER},sources,perpetrators\nNew,{incident_type().slug},2024-01-01,2024-01-02,RFA,Unit 5\n")
    errors = io.StringIO()
    result = {}

    def import_file():
        try:
            call_command("import_incidents", str(path), f"--user={analyst.username}", "--create-missing", stderr=errors)
        except Exception as refusal:  # whatever it raised is the answer
            result["answer"] = refusal
        finally:
            connection.close()

    with psycopg.connect(**connection.get_connection_params()) as reviewer:
        reviewer.execute("SET deadlock_timeout = '10s'")
        reviewer.execute("UPDATE incidents_source SET title = 'RFA' WHERE id = %s", [source.pk])
        importer = threading.Thread(target=import_file)
        importer.start()
        wait_until_waiting(reviewer, 1)
        reviewer.execute(
            "INSERT INTO incidents_organization "
            "(name, acronym, kind, country, website, description, aliases, version, created_at, updated_at) "
            "VALUES ('Unit 5', '', 'other', '', '', '', '{}', 1, now(), now())"
        )
    importer.join(20)

    refusal = result["answer"]
    assert isinstance(refusal, CommandError) and refusal.returncode == 1, refusal
    assert errors.getvalue() == (
        f"{path}: The import met another change being saved at the same moment, and was undone: nothing of it "
        "was written. Import the file again.\n"
    )
    assert not Incident.objects.filter(title="New").exists()


@pytest.mark.django_db(transaction=True)
def test_a_name_taken_by_a_write_still_open_is_refused_naming_it_not_a_500():
    # Both passed the name's check, which sees only what was committed; the second INSERT waited
    # for the first on the unique index and, once it committed, failed: an IntegrityError, a 500.
    colleague_saved, release = threading.Event(), threading.Event()

    def colleague():
        try:
            with transaction.atomic():
                Organization.objects.create(name="Tumen Border Police", kind="government")
                colleague_saved.set()
                release.wait(20)
        finally:
            connection.close()

    def release_once_the_other_write_waits():
        with psycopg.connect(**connection.get_connection_params()) as observer:
            wait_until_waiting(observer, 1)
        release.set()

    threads = [threading.Thread(target=colleague), threading.Thread(target=release_once_the_other_write_waits)]
    threads[0].start()
    assert colleague_saved.wait(20)
    threads[1].start()
    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/organizations/", {"name": "Tumen Border Police", "kind": "government", "country": "CN"}, format="json"
    )
    for thread in threads:
        thread.join(20)

    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["name"]
    assert Organization.objects.filter(name="Tumen Border Police").count() == 1


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
    preview = tabs[0].post("/admin/incidents/incident/import/", {"file": io.BytesIO(content.encode())})
    assert preview.status_code == 200 and 'name="confirm"' in preview.text
    form = confirm_form(preview)

    # A reviewer renaming the incident type holds it a moment: both confirmations write the new
    # incident and wait there, for the type it links to (`incident_links_lock`).
    answers = answered_while_held(
        "UPDATE incidents_incidenttype SET name = name WHERE slug = 'forced-repatriation'",
        [],
        *(lambda tab=tab: tab.post("/admin/incidents/incident/import/", form) for tab in tabs),
    )

    assert Incident.objects.filter(title="Arrests at the Hyesan market").count() == 1, [
        getattr(answer, "status_code", answer) for answer in answers
    ]


@pytest.mark.django_db(transaction=True)
def test_a_source_deleted_while_an_analyst_saves_it_answers_404_not_a_500():
    # A colleague deletes a source at the moment an analyst saves a change to it. The save found
    # the source (`_require_visible`), then waited for the deletion to lock it (`record_save`:
    # `select_for_update().get`), and found nothing: DoesNotExist, a 500. A moment later the same
    # save answers 404, as for any record that does not exist.
    source = make_source(title="Daily NK")
    client = client_for(make_user(roles.ANALYST))
    body = {"title": "Daily NK (Seoul)", "version": source.version}

    answers = answered_while_held(
        "DELETE FROM incidents_source WHERE id = %s",
        [source.pk],
        lambda: client.patch(f"{API}/sources/{source.pk}/", body, format="json"),
    )

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

    # The first statement of that deletion: the incident's revisions.
    answers = answered_while_held(
        "DELETE FROM incidents_incidentrevision WHERE incident_id = %s",
        [incident.pk],
        lambda: reviewer.post(f"{API}/revisions/{revision}/accept/"),
    )

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code == 404, answer.content
    assert not IncidentRevision.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_claim_citing_a_source_deleted_meanwhile_is_told_it_met_another_change_not_a_server_error():
    # A colleague deletes a source (cited by nothing) at the moment an analyst saves a draft with a
    # new claim citing it. The save checked the source was there, wrote the claim, and waited for the
    # deletion (the claim's `lock_source`); once it committed, the claim's foreign key failed at
    # commit: an IntegrityError, a 500. It is told it met another change (409), as a deadlock is;
    # saved again, it is refused naming the claim's source (400), as a moment later.
    incident = make_incident(review_state="draft")
    source = make_source(title="Daily NK")
    client = client_for(make_user(roles.ANALYST))
    body = {"claims": [{"source": source.pk, "people_count": 80}]}

    answers = answered_while_held(
        "DELETE FROM incidents_source WHERE id = %s",
        [source.pk],
        lambda: client.patch(incident_url(incident), body, format="json", HTTP_IF_MATCH='"1"'),
    )

    (answer,) = answers
    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code == 409, answer.content
    assert answer.json() == {"detail": MESSAGE}
    assert not Incident.objects.get(pk=incident.pk).claims.exists()
    again = client.patch(incident_url(incident), body, format="json", HTTP_IF_MATCH='"1"')
    assert again.status_code == 400 and list(again.json()) == ["claims[0].source"], again.content


@pytest.mark.django_db(transaction=True)
def test_a_name_an_import_creates_taken_meanwhile_names_the_row_not_the_constraint(tmp_path):
    # A colleague adds "Unit 5" while the import, having checked that no organization has that name,
    # creates it: its INSERT waits for the colleague's on the unique index and fails once it commits.
    # The import said "The data changed during the import … (duplicate key value violates unique
    # constraint "organization_name_unique" DETAIL: Key (lower(name::text))=(unit 5) already exists.)".
    analyst = make_user(roles.ANALYST)
    path = tmp_path / "new.csv"
    path.write_text(
        f"{HEADER},perpetrators\n"
        f"Arrests at the market,{incident_type().slug},2024-01-01,2024-01-02,\n"
        f"Raid,{incident_type().slug},2024-01-01,2024-01-02,Unit 5\n"
    )
    errors = io.StringIO()

    (answer,) = answered_while_held(
        "INSERT INTO incidents_organization "
        "(name, acronym, kind, country, website, description, aliases, version, created_at, updated_at) "
        "VALUES ('Unit 5', '', 'other', '', '', '', '{}', 1, now(), now())",
        [],
        lambda: call_command(
            "import_incidents", str(path), f"--user={analyst.username}", "--create-missing", stderr=errors
        ),
    )

    assert isinstance(answer, CommandError), answer
    assert errors.getvalue() == (
        f"{path}: line 3, column perpetrators: The organization Unit 5 was added by someone else while the file "
        "was being imported, and the import was undone: nothing of it was written. Import the file again: this "
        "row will name the one added.\n"
    )
    assert not Incident.objects.filter(title="Raid").exists()
    call_command("import_incidents", str(path), f"--user={analyst.username}", stdout=io.StringIO())
    raid = Incident.objects.get(title="Raid")
    assert [involvement.organization.name for involvement in raid.involvements.all()] == ["Unit 5"]


@pytest.mark.django_db(transaction=True)
def test_in_the_admins_import_a_name_taken_meanwhile_is_previewed_again_naming_the_row():
    client = Client()
    client.force_login(make_user(roles.ANALYST))
    import_url = "/admin/incidents/incident/import/"
    content = f"{HEADER},perpetrators\nRaid,{incident_type().slug},2024-01-01,2024-01-02,Unit 5\n"
    preview = client.post(import_url, {"file": io.BytesIO(content.encode()), "create_missing": "on"})
    assert preview.status_code == 200 and "<li>Unit 5</li>" in preview.text

    (answer,) = answered_while_held(
        "INSERT INTO incidents_organization "
        "(name, acronym, kind, country, website, description, aliases, version, created_at, updated_at) "
        "VALUES ('Unit 5', '', 'other', '', '', '', '{}', 1, now(), now())",
        [],
        lambda: client.post(import_url, confirm_form(preview)),
    )

    assert answer.status_code == 409, answer
    assert (
        '<p class="errornote">line 2, column perpetrators: The organization Unit 5 was added by someone else while '
        "the file was being imported, and the import was undone: nothing of it was written. Import the file "
        "again: this row will name the one added.</p>" in answer.text
    )
    assert "<li>Unit 5</li>" not in answer.text
    again = client.post(import_url, confirm_form(answer))
    assert again.status_code == 302
    assert Organization.objects.get().involvements.get().incident.title == "Raid"


@pytest.mark.django_db(transaction=True)
def test_an_import_citing_a_source_deleted_meanwhile_is_told_it_met_another_change_not_the_constraint(tmp_path):
    # A colleague deletes a source (cited by nothing) while an import writes a claim citing it: the
    # claim waited for the deletion (its `lock_source`), and its foreign key failed at commit. The
    # import quoted PostgreSQL: 'violates foreign key constraint "incidents_claim_source_id_…"'.
    source = make_source(title="RFA")
    analyst = make_user(roles.ANALYST)
    path = tmp_path / "new.csv"
    path.write_text(f"{HEADER},sources\nRaid,{incident_type().slug},2024-01-01,2024-01-02,RFA\n")
    errors = io.StringIO()

    (answer,) = answered_while_held(
        "DELETE FROM incidents_source WHERE id = %s",
        [source.pk],
        lambda: call_command("import_incidents", str(path), f"--user={analyst.username}", stderr=errors),
    )

    assert isinstance(answer, CommandError), answer
    assert errors.getvalue() == (
        f"{path}: The import met another change being saved at the same moment, and was undone: nothing of it "
        "was written. Import the file again.\n"
    )
    assert not Incident.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("colleague_writes", "country"),
    [
        # Jilin moved under North Korea (its country as the service gives it, with the move).
        ("UPDATE incidents_place SET parent_id = %(north_korea)s, country = 'KP' WHERE id = %(jilin)s", "KP"),
        # China's code corrected, which the database carries down to Jilin, which follows it.
        ("UPDATE incidents_place SET country = 'TW' WHERE id = %(china)s", "TW"),
    ],
    ids=["province_moved", "country_corrected"],
)
def test_a_town_entered_while_its_province_changes_country_takes_the_new_one(colleague_writes, country):
    # An analyst enters Longjing under Jilin, taking its country, at the moment a colleague's change
    # of Jilin's country commits. Read unlocked, Jilin's old country was taken after the colleague's
    # change had been carried down to the places then inside it: Longjing kept China for good.
    china = make_place(name="China", kind="country", country="CN")
    north_korea = make_place(name="North Korea", kind="country", country="KP")
    jilin = make_place(name="Jilin", kind="province", parent=china, country="")
    analyst = client_for(make_user(roles.ANALYST))
    places = {"china": china.pk, "north_korea": north_korea.pk, "jilin": jilin.pk}

    (answer,) = answered_while_held(
        colleague_writes % places,
        [],
        lambda: analyst.post(f"{API}/places/", {"name": "Longjing", "parent": jilin.pk}, format="json"),
    )

    assert not isinstance(answer, Exception), repr(answer)
    assert answer.status_code == 201, answer.content
    longjing = Place.objects.get(name="Longjing")
    assert (longjing.country, longjing.country_inherited) == (country, True)
    assert Place.objects.get(pk=jilin.pk).country == country
