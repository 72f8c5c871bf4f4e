"""CSV export through its three doors: GET /api/v1/incidents.csv, the admin, `manage.py export_incidents`."""

import codecs
import csv
import html
import io
import json
import os
import re
import resource
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import date
from wsgiref.util import setup_testing_defaults

import psycopg
import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.http import HttpResponseBase, StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from incidents import exports, roles
from incidents.exports import CHUNK_BYTES, COLUMNS, stream_incidents_csv, write_incidents_csv
from incidents.models import AccessDoor, Incident, Involvement, Release, Source
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
)
from tracker.wsgi import application

EXPORT_URL = "/api/v1/incidents.csv"
# The two HTTP doors of the same export: the CSV endpoint and the incident list's `?format=csv`.
HTTP_DOORS = [EXPORT_URL, "/api/v1/incidents/?format=csv"]


@pytest.fixture(params=HTTP_DOORS)
def door(request):
    return request.param


def export_url(door: str, query: str = "") -> str:
    """`door` with the query string `query` ("?a=1&b=2") added to whatever it already carries."""
    parameters = query.removeprefix("?")
    if not parameters:
        return door
    return f"{door}{'&' if '?' in door else '?'}{parameters}"


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def read_csv(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))


def download(client, query: str = "", door: str = EXPORT_URL) -> bytes:
    response = client.get(export_url(door, query))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return b"".join(response.streaming_content)


def exported_titles(client, query: str = "", door: str = EXPORT_URL) -> set[str]:
    return {row["title"] for row in read_csv(download(client, query, door))}


class TestColumns:
    def test_one_row_per_incident_with_the_documented_columns(self, client):
        china = make_place(name="Tumen", country="CN")
        korea = make_place(name="Hoeryong", country="KP")
        incident = make_incident(
            title="Repatriation at Tumen",
            date_start=date(2023, 10, 2),
            date_end=date(2023, 10, 9),
            date_precision="range",
            people_count=500,
            people_count_min=400,
            people_count_max=600,
            count_qualifier="about",
            verification="corroborated",
            places=[korea, china],
        )
        Involvement.objects.create(
            incident=incident, organization=make_organization(name="Ministry of Public Security"), role="perpetrator"
        )
        Involvement.objects.create(incident=incident, organization=make_organization(name="UNHCR"), role="other")
        rfa = make_source(title="RFA report")
        make_claim(incident=incident, source=rfa, people_count=500)
        hrw = make_source(title="HRW statement")
        make_claim(incident=incident, source=hrw, people_count_min=450, people_count_max=700)

        content = download(client)

        assert content.splitlines()[0].decode() == ",".join(COLUMNS)
        [row] = read_csv(content)
        incident.refresh_from_db()
        assert row == {
            "public_id": incident.public_id,
            "title": "Repatriation at Tumen",
            "type": "forced-repatriation",
            "date_start": "2023-10-02",
            "date_end": "2023-10-09",
            "date_precision": "range",
            "date_label": "2 October 2023 – 9 October 2023",
            "people_count": "500",
            "people_count_min": "400",
            "people_count_max": "600",
            "count_qualifier": "about",
            "countries": "CN; KP",
            "places": "Hoeryong; Tumen",
            "perpetrators": "Ministry of Public Security",
            "verification": "corroborated",
            "review_state": "published",
            "confidential": "false",
            "merged_into": "",
            "source_count": "2",
            "sources": f"HRW statement [#{hrw.pk}]; RFA report [#{rfa.pk}]",
            "claim_min": "450",
            "claim_max": "700",
            "updated_at": incident.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "version": "1",
            "version_audience": "public",
        }

    def test_empty_values_are_empty_cells_and_an_empty_export_still_has_its_header(self, client):
        assert download(client).decode() == ",".join(COLUMNS) + "\n"
        make_incident(people_count=None, count_qualifier="unknown")
        [row] = read_csv(download(client))
        assert (row["people_count"], row["places"], row["sources"], row["source_count"], row["claim_min"]) == (
            "",
            "",
            "",
            "0",
            "",
        )

    def test_cells_with_commas_and_quotes_follow_rfc_4180(self, client):
        # (No cell holds a line break: titles and names are one line, migration 0089.)
        make_incident(title='Raid on "Shelter", Shenyang')
        content = download(client)
        assert b'"Raid on ""Shelter"", Shenyang"' in content
        assert read_csv(content)[0]["title"] == 'Raid on "Shelter", Shenyang'

    def test_korean_and_chinese_names_are_utf8_and_bom_is_added_on_request(self, client):
        make_incident(title="강제북송 遣返", places=[make_place(name="图们")])
        plain, with_bom = download(client), download(client, "?bom=1")
        assert not plain.startswith(codecs.BOM_UTF8)
        assert with_bom == codecs.BOM_UTF8 + plain
        [row] = read_csv(plain)
        assert (row["title"], row["places"]) == ("강제북송 遣返", "图们")


class TestFormulaNeutralisation:
    @pytest.mark.parametrize(
        ("title", "cell"),
        [
            ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
            ("+1 555 0100", "'+1 555 0100"),
            ("-10 people", "'-10 people"),
            ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
            # Already neutralised by hand: one more apostrophe, so an import gives back exactly this.
            ("'=1+1", "''=1+1"),
            ("Harmless = title", "Harmless = title"),
            ("'quoted' title", "'quoted' title"),
        ],
    )
    def test_cells_a_spreadsheet_would_run_start_with_an_apostrophe(self, client, title, cell):
        make_incident(title=title)
        assert read_csv(download(client))[0]["title"] == cell

    def test_names_in_multi_valued_cells_are_neutralised_too(self, client):
        incident = make_incident(places=[make_place(name="=cmd|' /C calc'!A0")])
        evil = make_source(title="@evil")
        make_claim(incident=incident, source=evil)
        Involvement.objects.create(incident=incident, organization=make_organization(name="-2+3"), role="perpetrator")
        [row] = read_csv(download(client))
        assert (row["places"], row["sources"], row["perpetrators"]) == (
            "'=cmd|' /C calc'!A0",
            f"'@evil [#{evil.pk}]",
            "'-2+3",
        )


class TestVisibility:
    """The same matrix as the API: who sees which incidents, and which claims' sources."""

    @pytest.fixture
    def incidents(self):
        public = make_incident(title="public")
        make_incident(title="draft", review_state="draft")
        make_incident(title="in review", review_state="in_review")
        make_incident(title="confidential", confidential=True)
        make_incident(title="confidential draft", confidential=True, review_state="draft")
        make_claim(incident=public, source=make_source(title="Open report"), people_count=80)
        make_claim(incident=public, source=make_source(title="Informant", confidential=True), people_count=120)
        make_claim(incident=public, source=make_source(title="Embargoed note"), people_count=10, confidential=True)
        return public

    EVERYTHING = {"public", "draft", "in review", "confidential", "confidential draft"}

    @pytest.mark.parametrize(
        ("role", "confidential", "expected"),
        [
            ("anonymous", False, {"public"}),
            (None, False, {"public"}),
            (roles.VIEWER, False, {"public", "draft", "in review"}),
            (roles.ANALYST, False, {"public", "draft", "in review"}),
            (roles.REVIEWER, False, {"public", "draft", "in review"}),
            # Confidential access works for staff only, who pass a second factor.
            (None, True, {"public"}),
            (roles.VIEWER, True, EVERYTHING),
            (roles.REVIEWER, True, EVERYTHING),
        ],
    )
    def test_each_reader_exports_exactly_the_incidents_they_may_see(
        self, client, door, incidents, role, confidential, expected
    ):
        if role != "anonymous":
            client.force_login(make_user(role, confidential=confidential))
        assert exported_titles(client, door=door) == expected

    @pytest.mark.parametrize("role", ["anonymous", roles.VIEWER, roles.REVIEWER])
    def test_confidential_claims_and_their_sources_are_left_out(self, client, door, incidents, role):
        if role != "anonymous":
            client.force_login(make_user(role))
        row = next(row for row in read_csv(download(client, door=door)) if row["title"] == "public")
        assert (row["sources"], row["source_count"], row["claim_min"], row["claim_max"]) == (
            "Open report [#{}]".format(Source.objects.get(title="Open report").pk),
            "1",
            "80",
            "80",
        )

    def test_a_reader_with_confidential_access_sees_every_claim(self, client, incidents):
        client.force_login(make_user(roles.VIEWER, confidential=True))
        row = next(row for row in read_csv(download(client)) if row["title"] == "public")
        ids = dict(Source.objects.values_list("title", "pk"))
        assert (row["sources"], row["source_count"], row["claim_min"], row["claim_max"]) == (
            f"Embargoed note [#{ids['Embargoed note']}] [confidential claim]; "
            f"Informant [#{ids['Informant']}] [confidential]; "
            f"Open report [#{ids['Open report']}]",
            "3",
            "10",
            "120",
        )

    def test_a_hidden_source_cannot_be_probed_through_the_source_filter(self, client, door, incidents):
        informant = incidents.claims.get(source__title="Informant").source
        response = client.get(export_url(door, f"?source={informant.pk}"))
        assert response.status_code == 400
        assert "source" in response.json()


class TestFilters:
    def test_the_incident_list_filters_apply(self, client, door):
        make_incident(title="2021, detention", date_start=date(2021, 7, 1), date_end=date(2021, 7, 31))
        make_incident(
            title="2023, repatriation",
            date_start=date(2023, 8, 29),
            date_end=date(2023, 8, 29),
            places=[make_place(name="Tumen", country="CN"), make_place(name="Onsong", country="KP")],
        )
        make_incident(
            title="2023, detention",
            incident_type=incident_type("arbitrary-detention"),
            date_start=date(2023, 9, 1),
            date_end=date(2023, 9, 1),
        )
        assert exported_titles(client, "?date_from=2021-07-15&date_to=2021-07-20", door) == {"2021, detention"}
        assert exported_titles(client, "?date_from=2023-01-01&type=forced-repatriation", door) == {"2023, repatriation"}
        # The country filter inside the export's own query, where the incidents' table has another alias.
        assert exported_titles(client, "?country=KP", door) == {"2023, repatriation"}

    def test_bad_parameters_get_a_400_naming_each_of_them(self, client, door):
        response = client.get(
            export_url(door, "?date_from=yesterday&type=no-such-type&bom=perhaps"), HTTP_ACCEPT="text/csv"
        )
        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
        assert set(response.json()) == {"date_from", "type", "bom"}
        assert response.json()["date_from"] == ["Enter the date as YYYY-MM-DD: 2023-10-09 for 9 October 2023."]


class TestStreaming:
    def test_the_response_is_a_stream_of_bounded_chunks(self, client):
        make_incidents_for_chunks(500)  # enough rows for several chunks
        response = client.get(EXPORT_URL)
        assert isinstance(response, StreamingHttpResponse)
        assert response["Content-Disposition"].startswith('attachment; filename="incidents-')
        chunks = list(response.streaming_content)
        assert len(chunks) >= 3
        # Sent from the export's file a chunk at a time: memory is bounded by the chunk, not by the
        # export, and the file's size is known before the first byte.
        assert all(len(chunk) <= CHUNK_BYTES for chunk in chunks)
        assert int(response["Content-Length"]) == sum(map(len, chunks))
        assert len(read_csv(b"".join(chunks))) == 500

    def test_the_query_count_does_not_grow_with_the_rows(self, client, django_assert_num_queries):
        for _ in range(5):
            make_claim(incident=make_incident(places=[make_place()]))
        # The client's turn taken, the export slot taken, SAVEPOINT, SET LOCAL datestyle, RELEASE
        # SAVEPOINT, the slot given back, the turn given back once the file is sent. The rows come
        # from one COPY statement on the same connection, which Django's query log does not see.
        with django_assert_num_queries(7):
            assert len(read_csv(download(client))) == 5

    def test_progress_counts_the_data_rows_of_each_chunk(self):
        Incident.objects.bulk_create(
            Incident(
                title="z" * 290, incident_type=incident_type(), date_start=date(2023, 1, 1), date_end=date(2023, 1, 1)
            )
            for _ in range(450)
        )
        reviewer = make_user(roles.REVIEWER)
        counts, out = [], io.BytesIO()
        write_incidents_csv(
            Incident.objects.visible_to(reviewer),
            reviewer,
            out,
            door=AccessDoor.COMMAND,
            export_filters={},
            on_rows=counts.append,
        )
        # One count per chunk (the progress bar's steps), the header not counted.
        assert len(counts) > 1
        assert sum(counts) == len(read_csv(out.getvalue())) == 450

    def test_a_reader_that_stops_early_leaves_the_connection_usable(self):
        Incident.objects.bulk_create(
            Incident(
                title="y" * 290, incident_type=incident_type(), date_start=date(2023, 1, 1), date_end=date(2023, 1, 1)
            )
            for _ in range(600)
        )
        viewer = make_user(roles.VIEWER)
        stream = stream_incidents_csv(
            Incident.objects.visible_to(viewer), viewer, door=AccessDoor.CSV, export_filters={}
        )
        next(stream)
        # What a WSGI server does when the client goes away: close the iterator mid-COPY, which
        # cancels the COPY and rolls back its transaction.
        stream.close()
        assert Incident.objects.count() == 600


def make_incidents_for_chunks(count: int) -> None:
    """`count` published incidents of about 400 bytes a row: CHUNK_BYTES holds about 160 of them."""
    Incident.objects.bulk_create(
        Incident(
            title=f"{number:04d} " + "x" * 290,
            incident_type=incident_type(),
            date_start=date(2023, 1, 1),
            date_end=date(2023, 1, 1),
            review_state="published",
        )
        for number in range(count)
    )


def wsgi_response(path: str, **environ) -> HttpResponseBase:
    """`path` answered by the WSGI application as gunicorn calls it, which then reads the response
    and closes it however the download ends (the test client closes a download only once read to
    its end)."""
    environ = {"PATH_INFO": path, "REMOTE_ADDR": "127.0.0.1", **environ}
    setup_testing_defaults(environ)
    return application(environ, lambda status, headers, exc_info=None: None)


@contextmanager
def slot_taken_elsewhere():
    """The export slot 1 held by another connection, as another worker's export holds it. Given back
    before the connection closes: a closed connection's server process lets its locks go a moment
    later, and under load the next download still met it (503)."""
    with psycopg.connect(**connection.get_connection_params()) as elsewhere:
        elsewhere.execute(f"SELECT pg_advisory_lock({exports._EXPORT_SLOT_NAMESPACE}, 1)")
        yield
        elsewhere.execute(f"SELECT pg_advisory_unlock({exports._EXPORT_SLOT_NAMESPACE}, 1)")


def served_elsewhere(path: str = EXPORT_URL, **environ) -> HttpResponseBase:
    """`path` served, read to its end and closed, from another thread and so on another database
    connection, as another server thread or worker would serve it: the connection of this test
    would take a slot it holds once more (advisory locks stack within a session)."""

    def download():
        try:
            response = wsgi_response(path, **environ)
            response.content_read = b"".join(response)
            response.close()
            return response
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(download).result()


@pytest.fixture
def serve(settings):
    """`wsgi_response` with one export at once; what a test leaves open is closed at its end, as
    the server would close it: a COPY left open holds its connection, which could then not even
    be rolled back."""
    settings.EXPORTS_AT_ONCE = 1
    # The WSGI application closes the database connection around each request; this test's
    # transaction lives on it, so keep it open (as Django's test client does).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    # Downloads other tests left unread were never closed, as a server would close them: their
    # slots are still held by this test's connection.
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock_all()")
    served = []

    def serve(path: str, **environ) -> HttpResponseBase:
        served.append(wsgi_response(path, **environ))
        return served[-1]

    yield serve
    for response in served:
        response.close()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


class TestExportsAtOnce:
    """At most EXPORTS_AT_ONCE downloads are read from the database at once, across every worker:
    each holds a server thread and a connection meanwhile, and a burst of them would leave none to
    other requests."""

    def test_while_every_slot_is_taken_another_export_is_told_when_to_come_back(self, serve):
        with slot_taken_elsewhere():
            busy = serve(EXPORT_URL)
            assert busy.status_code == 503
            assert busy["Retry-After"] == "15"
            assert json.loads(busy.content) == {
                "detail": "Too many CSV exports are running at once (at most 1). Try again in 15 seconds."
            }
            public = serve("/incidents.csv")
            assert (public.status_code, public["Retry-After"]) == (503, "15")
            assert public.content.decode().startswith("Too many CSV exports are running at once (at most 1).")
        assert served_elsewhere().status_code == 200
        assert served_elsewhere("/incidents.csv").status_code == 200

    def test_a_release_download_takes_a_slot_only_while_it_is_read_from_the_database(self, serve):
        # A release file (some 400 MB at a million incidents) is read into a file under a slot, as an
        # export is, then sent from there: its client, however slow, holds no slot meanwhile.
        make_incident(title="Released")
        call_command("release", user=make_user(roles.REVIEWER).username, stdout=io.StringIO())
        release_url = f"/api/v1/releases/{Release.objects.get().name}/files/incidents.csv/"
        downloading = serve(release_url)
        assert next(iter(downloading)).startswith(b"public_id,")
        assert served_elsewhere(REMOTE_ADDR="192.0.2.8").status_code == 200

        # Every slot held elsewhere (another worker's export): the download is told when to come back.
        with slot_taken_elsewhere():
            busy = serve(release_url, REMOTE_ADDR="192.0.2.9")
            assert (busy.status_code, busy["Retry-After"]) == (503, "15")
            assert json.loads(busy.content) == {
                "detail": "Too many downloads are running at once (at most 1). Try again in 15 seconds."
            }
        assert serve(release_url, REMOTE_ADDR="192.0.2.9").status_code == 200

    def test_an_export_sent_away_busy_does_not_spend_the_clients_rate(self, serve, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"export": "1/minute"}}
        with slot_taken_elsewhere():
            assert [served_elsewhere(REMOTE_ADDR="192.0.2.7").status_code for _ in range(3)] == [503, 503, 503]
        assert served_elsewhere(REMOTE_ADDR="192.0.2.7").status_code == 200

    def test_a_download_broken_off_or_never_started_gives_its_slot_back(self, serve):
        make_incidents_for_chunks(300)
        # The client goes away after the first chunk.
        broken_off = serve(EXPORT_URL)
        next(iter(broken_off))
        broken_off.close()
        assert served_elsewhere().status_code == 200
        # The client goes away before it.
        serve("/incidents.csv").close()
        assert served_elsewhere().status_code == 200

    def test_an_export_that_fails_gives_its_slot_and_its_clients_turn_back(self, serve, monkeypatch, settings):
        # In this test's transaction the export's is a savepoint, whose rollback the anonymous
        # statement bound would send behind a `SET LOCAL`, refused once the COPY has failed; a
        # server's export rolls back a transaction of its own, on the connection itself.
        settings.ANON_STATEMENT_TIMEOUT = 0
        # The database fails once the byte order mark is written: before the client is sent a byte.
        monkeypatch.setattr(exports, "copy_statement", lambda *args, **kwargs: "COPY (SELECT 1 / 0) TO STDOUT")
        assert serve(EXPORT_URL, QUERY_STRING="bom=1").status_code == 500
        monkeypatch.undo()
        assert served_elsewhere().status_code == 200  # the same client, on another worker


@contextmanager
def files_written_at_most(size: int):
    """Every file this process writes limited to `size` bytes, as a full disk limits them: a write
    past it fails with EFBIG (SIGXFSZ ignored, which would otherwise end the process). Only the
    soft limit changes, which a process may raise again up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    on_signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, on_signal)


def files_open_in(directory) -> list[str]:
    """The files (deleted or not) this process holds open in `directory`."""
    targets = []
    for descriptor in os.listdir("/proc/self/fd"):
        with suppress(FileNotFoundError):  # the listing's own, closed once listed
            targets.append(os.readlink(f"/proc/self/fd/{descriptor}"))
    return [target for target in targets if target.startswith(f"{directory}/")]


class TestSpoolFull:
    """A download's file cannot be written (a full disk, a quota, a size limit): the client is told
    to come back, nothing stays behind, and the operator is told."""

    @pytest.fixture
    def spool_dir(self, settings, tmp_path):
        settings.EXPORT_SPOOL_DIR = str(tmp_path)
        return tmp_path

    def test_an_export_that_finds_no_room_is_told_when_to_come_back(self, serve, spool_dir, caplog):
        make_incidents_for_chunks(300)  # some 120 KB of CSV
        # The file's write itself fails (EFBIG, as ENOSPC would for a full disk); the export's
        # response is written by nothing else in this process.
        with files_written_at_most(16 * 1024):
            full = serve(EXPORT_URL)
            public = serve("/incidents.csv", REMOTE_ADDR="192.0.2.31")
            korean = serve("/ko/incidents.csv", REMOTE_ADDR="192.0.2.32")
        assert (full.status_code, full["Retry-After"]) == (503, "60")
        assert json.loads(full.content) == {
            "detail": "The server has no room to prepare the download just now. Try again in 60 seconds."
        }
        assert (public.status_code, public["Retry-After"]) == (503, "60")
        assert public.content.decode().startswith("The server has no room to prepare the download just now.")
        assert korean.content.decode().startswith("지금은 서버에 다운로드를 준비할 공간이 없습니다.")
        assert list(spool_dir.iterdir()) == [] and files_open_in(spool_dir) == []
        assert "A download could not be written to TRACKER_EXPORT_SPOOL_DIR" in caplog.text
        # The slot and the client's turn were given back: the same client, on another worker.
        assert served_elsewhere().status_code == 200

    def test_a_release_download_that_finds_no_room_is_told_when_to_come_back(self, serve, spool_dir):
        make_incidents_for_chunks(300)
        call_command("release", user=make_user(roles.REVIEWER).username, stdout=io.StringIO())
        release_url = f"/api/v1/releases/{Release.objects.get().name}/files/incidents.csv/"
        with files_written_at_most(16 * 1024):
            full = serve(release_url)
        assert (full.status_code, full["Retry-After"]) == (503, "60")
        assert files_open_in(spool_dir) == []
        # The slot and the client's turn were given back (the release itself, not committed, is
        # seen on this test's connection only).
        assert served_elsewhere().status_code == 200


@pytest.mark.django_db(transaction=True)
class TestSlowReaders:
    """A client reads a download at its own speed (a few KB/s for a slow or hostile one): it must
    hold neither the database nor every export slot meanwhile. Committed rows, seen by the other
    threads' connections."""

    @pytest.fixture
    def slow_reader(self, settings):
        """An export's response of `path`, of which the client reads one chunk, then stops reading
        (closed at the test's end, as the server would close it)."""
        settings.EXPORTS_AT_ONCE = 1
        opened = []

        def slow_reader(path: str, client: Client):
            response = client.get(path)
            assert response.status_code == 200
            opened.append(response)
            next(iter(response.streaming_content))
            return response

        yield slow_reader
        for response in opened:
            response.close()

    def test_a_slow_reader_holds_no_copy_no_snapshot_and_no_slot(self, slow_reader):
        # Enough rows (some 8 MB of CSV) that a COPY streamed to its reader outgrows the socket's
        # buffers and waits for it.
        call_command("generate_demo_data", incidents=20_000, seed=7, verbosity=0)
        slow_reader("/incidents.csv", Client(REMOTE_ADDR="192.0.2.21"))
        # The COPY has ended, and its transaction with it: VACUUM may remove the rows that die
        # meanwhile, in any table.
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
            running = other.execute(
                "SELECT query, backend_xmin FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY%%'"
            ).fetchall()
            readers = other.execute(
                "SELECT backend_xmin FROM pg_stat_activity WHERE pid = %s", [connection.connection.info.backend_pid]
            ).fetchall()
        assert running == []
        assert readers == [(None,)]
        # Another client's export, at another door, gets the slot.
        assert served_elsewhere(REMOTE_ADDR="192.0.2.22").status_code == 200

    def test_a_client_downloads_one_export_at_a_time(self, slow_reader, settings):
        settings.EXPORTS_AT_ONCE = 2
        slow_reader("/incidents.csv", Client())
        # The same address, on another worker: its one export is still being read.
        again = served_elsewhere("/incidents.csv")
        assert (again.status_code, again["Retry-After"]) == (429, "15")
        assert again.content_read.decode() == (
            "Another download of yours is still running; one at a time. Try again in 15 seconds, once it has ended."
        )
        api = served_elsewhere(EXPORT_URL)
        assert (api.status_code, api["Retry-After"]) == (429, "15")
        assert json.loads(api.content_read)["detail"].startswith("Another download of yours is still running;")
        # Another address gets a slot, as the first would have had it not asked twice.
        assert served_elsewhere(REMOTE_ADDR="192.0.2.11").status_code == 200

    def test_an_account_downloads_one_export_at_a_time_from_any_address(self, slow_reader, settings):
        settings.EXPORTS_AT_ONCE = 2
        analyst = Client(REMOTE_ADDR="192.0.2.12")
        analyst.force_login(make_user(roles.VIEWER))
        slow_reader(reverse("admin:incidents_incident_export_csv"), analyst)
        # The same account at another door, from another address.
        cookie = f"{settings.SESSION_COOKIE_NAME}={analyst.cookies[settings.SESSION_COOKIE_NAME].value}"
        assert served_elsewhere("/incidents.csv", REMOTE_ADDR="192.0.2.13", HTTP_COOKIE=cookie).status_code == 429
        assert served_elsewhere("/incidents.csv", REMOTE_ADDR="192.0.2.13").status_code == 200


class TestCommand:
    def test_it_writes_the_same_csv_with_the_same_filters(self, client, tmp_path):
        make_incident(title="old", date_start=date(2020, 1, 1), date_end=date(2020, 1, 1))
        make_incident(title="new", verification="verified")
        make_incident(title="new draft", review_state="draft")
        output = tmp_path / "incidents.csv"

        call_command("export_incidents", "--date-from", "2023-01-01", "-o", str(output))

        assert output.read_bytes() == download(client, "?date_from=2023-01-01")
        assert {row["title"] for row in read_csv(output.read_bytes())} == {"new"}

    def test_repeatable_options_bom_and_user(self, tmp_path):
        make_incident(title="verified", verification="verified", review_state="draft")
        make_incident(title="disputed", verification="disputed", review_state="draft")
        make_incident(title="alleged", review_state="draft")
        analyst = make_user(roles.ANALYST)
        output = tmp_path / "incidents.csv"

        call_command(
            "export_incidents",
            "--verification=verified",
            "--verification=disputed",
            "--bom",
            f"--user={analyst.username}",
            f"--output={output}",
        )

        content = output.read_bytes()
        assert content.startswith(codecs.BOM_UTF8)
        assert {row["title"] for row in read_csv(content[len(codecs.BOM_UTF8) :])} == {"verified", "disputed"}

    def test_without_user_it_exports_what_the_public_sees(self, tmp_path):
        make_incident(title="public")
        make_incident(title="draft", review_state="draft")
        output = tmp_path / "incidents.csv"
        call_command("export_incidents", "-o", str(output))
        assert {row["title"] for row in read_csv(output.read_bytes())} == {"public"}

    def test_bad_options_name_the_option_and_fail(self, tmp_path):
        with pytest.raises(CommandError, match=r"--date-from: Enter the date as YYYY-MM-DD: 2023-10-09 for") as error:
            call_command("export_incidents", "--date-from", "soon", "-o", str(tmp_path / "x.csv"))
        assert error.value.returncode == 1
        with pytest.raises(CommandError, match="--user: no user is called 'nobody'"):
            call_command("export_incidents", "--user", "nobody")
        with pytest.raises(CommandError, match=r"-o/--output: cannot write .*/no/such/directory/x\.csv: No such file"):
            call_command("export_incidents", "-o", str(tmp_path / "no" / "such" / "directory" / "x.csv"))


class TestAdmin:
    @pytest.fixture
    def viewer(self, client):
        user = make_user(roles.VIEWER)
        client.force_login(user)
        return user

    def test_the_changelist_offers_the_export_buttons_and_action(self, client, viewer):
        make_incident()
        response = client.get(reverse("admin:incidents_incident_changelist") + "?review_state__exact=published")
        assert response.status_code == 200
        export_url = reverse("admin:incidents_incident_export_csv")
        assert f'href="{export_url}?review_state__exact=published"' in response.text
        assert f'href="{export_url}?review_state__exact=published&amp;bom=1"' in response.text
        assert 'value="export_selected_as_csv"' in response.text

    def test_the_button_exports_what_the_changelist_filters_select(self, client, viewer):
        make_incident(title="published")
        make_incident(title="draft", review_state="draft")
        make_incident(title="confidential", confidential=True)

        response = client.get(reverse("admin:incidents_incident_export_csv") + "?review_state__exact=draft&bom=1")

        content = b"".join(response.streaming_content)
        assert content.startswith(codecs.BOM_UTF8)
        assert [row["title"] for row in read_csv(content[3:])] == ["draft"]
        everything = read_csv(b"".join(client.get(reverse("admin:incidents_incident_export_csv")).streaming_content))
        # The viewer may not see confidential incidents, whatever the changelist itself shows.
        assert {row["title"] for row in everything} == {"published", "draft"}

    def test_bad_changelist_filters_are_a_400(self, client, viewer):
        response = client.get(reverse("admin:incidents_incident_export_csv") + "?no_such_field=1")
        assert response.status_code == 400

    @staticmethod
    def refusal_of(response) -> str:
        """The errors a 400 page of the admin names, one "parameter: message" a line."""
        assert response.status_code == 400
        assert not isinstance(response, StreamingHttpResponse)
        errors = response.content.decode().split('id="filter-errors">')[1].split("</ul>")[0]
        return " ".join(html.unescape(re.sub(r"<[^>]+>", "", errors)).split())

    @pytest.mark.parametrize(
        ("q", "said"),
        [
            # The list answers it "This search cannot be run" and no row; the export sent an empty
            # file, which reads as "no incident matches".
            ("a b c d e f g h i", 'Search at most 8 words or "phrases" at a time (this search has 9).'),
            # The list's own search form dropped it, and the export sent every incident.
            ("border\x00", "Null characters are not allowed."),
        ],
        ids=["nine words", "NUL"],
    )
    def test_a_search_the_list_refuses_is_a_400_naming_it_not_a_file(self, client, viewer, q, said):
        make_incident(title="a b c d e f g h i border")

        response = client.get(reverse("admin:incidents_incident_export_csv"), {"q": q})

        assert self.refusal_of(response) == f"q: {said}"
        # Nothing left waiting for the next page: the refusal was this page's.
        assert messages_of(response) == []

    def test_a_choice_no_filter_offers_is_a_400_naming_the_value_not_an_empty_file(self, client, viewer):
        make_incident()

        response = client.get(reverse("admin:incidents_incident_export_csv"), {"review_state__exact": "publishd"})

        refusal = self.refusal_of(response)
        assert refusal.startswith("review_state__exact: “publishd” is not one of the choices:")
        assert "published" in refusal.removeprefix("review_state__exact: “publishd”")

    @pytest.mark.parametrize("bom", ["1", "true", "True", "yes", "on"])
    def test_bom_is_read_as_the_api_reads_it(self, client, viewer, bom):
        make_incident()
        response = client.get(reverse("admin:incidents_incident_export_csv"), {"bom": bom})
        assert b"".join(response.streaming_content).startswith(codecs.BOM_UTF8)

    @pytest.mark.parametrize("bom", ["0", "false", "no", "off"])
    def test_bom_read_as_false_sends_no_mark(self, client, viewer, bom):
        make_incident()
        response = client.get(reverse("admin:incidents_incident_export_csv"), {"bom": bom})
        assert not b"".join(response.streaming_content).startswith(codecs.BOM_UTF8)

    def test_a_bom_neither_true_nor_false_is_a_400_naming_it(self, client, viewer):
        # It was taken for "no mark": Excel then garbled the Korean names of a file asked with one.
        make_incident()

        response = client.get(reverse("admin:incidents_incident_export_csv"), {"bom": "perhaps"})

        assert self.refusal_of(response) == "bom: Must be a valid boolean."

    def test_the_action_exports_the_selected_incidents(self, client, viewer):
        chosen, hidden = make_incident(title="chosen"), make_incident(title="hidden", confidential=True)
        make_incident(title="not selected")
        response = client.post(
            reverse("admin:incidents_incident_changelist"),
            {"action": "export_selected_as_csv", "_selected_action": [chosen.pk, hidden.pk]},
        )
        assert isinstance(response, StreamingHttpResponse)
        # Neither the unselected incident nor the selected one the viewer may not see.
        assert [row["title"] for row in read_csv(b"".join(response.streaming_content))] == ["chosen"]

    def test_people_without_admin_access_are_sent_to_log_in(self, client):
        client.force_login(make_user(None))
        response = client.get(reverse("admin:incidents_incident_export_csv"))
        assert response.status_code == 302
        assert "/login/" in response["Location"]


# --- Query parameters the export does not read, and single-valued ones given twice -------------


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        # "A bad parameter gets a 400 with JSON naming it" (README, "Export"), but an ordering, a
        # page size and a cursor were passed over, 200: the whole file, newest first, where a
        # client asked for one row or another order.
        ("ordering=zzz", "ordering"),
        ("ordering=people_count", "ordering"),
        ("page_size=1", "page_size"),
        ("cursor=***", "cursor"),
        ("contry=CN", "contry"),
        ("country=CN&country=KP", "country"),
        ("bom=1&bom=0", "bom"),
        # A script's `bom=$BOM` with BOM unset: "no mark" here, a 400 at the admin and the public pages.
        ("bom=", "bom"),
    ],
)
def test_a_parameter_the_export_does_not_read_or_given_twice_is_refused_naming_it(door, query, refused):
    make_incident(title="Published")
    response = Client().get(export_url(door, query))
    assert response.status_code == 400
    assert list(json.loads(response.content)) == [refused]


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/incidents.csv?contry=CN", "contry"),
        ("/incidents.csv?ordering=zzz", "ordering"),
        ("/incidents.csv?cursor=2024-01-01.1", "cursor"),
        ("/incidents.csv?country=CN&country=KP", "country"),
        ("/incidents.geojson?ordering=zzz", "ordering"),
        ("/incidents.geojson?utm_source=newsletter", "utm_source"),
        ("/map/incidents.geojson?contry=CN", "contry"),
        ("/incidents/INC-000000.csv?country=CN", "country"),
    ],
)
def test_the_public_downloads_refuse_a_parameter_they_do_not_read_naming_it(path, refused):
    """The public site's data downloads, as the API's: its pages pass over what they do not read
    (a shared link's `utm_source`), but a download that answered every incident for `?contry=`
    was taken for the one asked for."""
    incident = make_incident(title="Published")
    response = Client().get(path.replace("INC-000000", incident.public_id))
    assert response.status_code == 400
    assert [error["parameter"] for error in response.context["errors"]] == [refused]


def test_the_browse_pages_download_links_carry_its_filters_alone():
    """The page's own cursor and the `utm_source` a shared link brought along stay behind, so the
    links do not meet the downloads' refusal of a parameter they do not read."""
    make_incident(title="Published", verification="alleged")
    page = Client().get("/?verification=alleged&verification=corroborated&utm_source=x&q=returned").content.decode()
    links = set(re.findall(r'href="(/incidents\.(?:csv|geojson)[^"]*)"', page))
    assert links == {
        "/incidents.csv?verification=alleged&amp;verification=corroborated&amp;q=returned",
        "/incidents.csv?verification=alleged&amp;verification=corroborated&amp;q=returned&amp;bom=1",
        "/incidents.geojson?verification=alleged&amp;verification=corroborated&amp;q=returned",
    }
    for link in links:
        assert Client().get(html.unescape(link)).status_code == 200
    map_page = Client().get("/map/?country=CN&utm_source=x").content.decode()
    assert 'data-features="/map/incidents.geojson?country=CN"' in map_page


@pytest.mark.parametrize("option", ["--country", "--user", "-o"])
def test_the_export_command_refuses_an_option_of_one_value_given_twice(tmp_path, option):
    """`--country CN --country KP` exported North Korea's incidents alone: argparse's "store" kept
    the last value without a word (`--verification`, the one repeatable filter, is "append")."""
    make_user(roles.ANALYST, username="one")
    values = {"--country": ("CN", "KP"), "--user": ("one", "one"), "-o": (tmp_path / "a.csv", tmp_path / "b.csv")}
    first, second = values[option]
    with pytest.raises(CommandError, match=f"{option}: given twice"):
        call_command("export_incidents", option, str(first), option, str(second), "-o", str(tmp_path / "out.csv"))


def test_the_export_command_reads_every_value_of_a_repeatable_filter(tmp_path):
    make_incident(title="Alleged", verification="alleged")
    make_incident(title="Corroborated", verification="corroborated")
    make_incident(title="Disputed", verification="disputed")
    output = tmp_path / "out.csv"
    call_command("export_incidents", "--verification", "alleged", "--verification", "corroborated", "-o", str(output))
    assert {row["title"] for row in read_csv(output.read_bytes())} == {"Alleged", "Corroborated"}


@pytest.mark.parametrize("path", [reverse("admin:incidents_incident_export_csv"), "/incidents.csv"])
def test_the_admins_and_the_public_download_refuse_bom_given_twice(client, path):
    # The admin's export read the last value, where every other door refuses a repeated parameter.
    make_incident()
    client.force_login(make_user(roles.REVIEWER))

    answer = client.get(f"{path}?bom=1&bom=0")

    assert answer.status_code == 400
    assert "Given 2 times; give it once." in answer.content.decode()
