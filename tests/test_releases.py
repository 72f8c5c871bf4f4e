"""Citable dataset releases: made by Reviewers (command, admin, API), immutable, listed and
downloadable with checksums, valid Frictionless packages, identical when rebuilt, and public data only."""

import csv
import hashlib
import io
import json
import math
import threading
import time
from importlib import import_module
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from frictionless import validate

from incidents import exports, releases, roles, services
from incidents.merges import incident_merge
from incidents.models import DuplicatePair, Incident, Release, ReleaseFile, Response
from incidents.releases import build_release_files, release_facts
from tests.api_support import API, client_for
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user

YEAR = timezone.now().year
FIRST = f"incident-tracker-{YEAR}.1"
# TRACKER_DATA_LICENSE, _TITLE and _URL as settings.DATA_LICENSE holds them: a Frictionless licence.
CC_BY = {
    "name": "CC-BY-4.0",
    "title": "Creative Commons Attribution 4.0 International",
    "path": "https://creativecommons.org/licenses/by/4.0/",
}


@pytest.fixture
def published():
    """A published incident at a place, with a public claim and a response."""
    place = make_place(name="Dandong", latitude=40.1, longitude=124.4)
    incident = make_incident(title="Published repatriation", places=[place])
    make_claim(incident=incident, source=make_source(title="Public report"), excerpt="80 people")
    response = Response.objects.create(organization=make_organization(), kind="statement", date=incident.date_start)
    response.incidents.add(incident)
    return incident


def release(user) -> dict:
    """Release as `user` through the command, and read it back from the API."""
    call_command("release", user=user.username, stdout=io.StringIO())
    listed = client_for().get(f"{API}/releases/").json()["results"]
    return listed[0]


def download(url: str) -> bytes:
    response = client_for().get(url)
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def files_of(listed: dict) -> dict[str, bytes]:
    return {release_file["name"]: download(release_file["url"]) for release_file in listed["files"]}


def rows(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))


class TestMakingAndReadingReleases:
    def test_a_reviewer_releases_and_anyone_downloads_files_matching_their_checksums(self, reviewer, published):
        listed = release(reviewer)
        assert listed["name"] == FIRST
        assert listed["incidents"] == 1
        assert (
            listed["citation"]
            == f"Incident Tracker contributors ({YEAR}). Incident Tracker data set, release {FIRST} [Data set]."
        )
        assert {release_file["name"] for release_file in listed["files"]} == {
            "CHANGES.csv",
            "README.md",
            "claims.csv",
            "codebook.md",
            "datapackage.json",
            "incident_places.csv",
            "incident_types.csv",
            "incidents.csv",
            "involvements.csv",
            "organizations.csv",
            "places.csv",
            "response_incidents.csv",
            "responses.csv",
            "sources.csv",
            "victim_groups.csv",
        }
        for release_file in listed["files"]:
            content = download(release_file["url"])
            assert hashlib.sha256(content).hexdigest() == release_file["sha256"]
            assert len(content) == release_file["size"]
        assert [row["public_id"] for row in rows(files_of(listed)["incidents.csv"])] == [published.public_id]

    def test_the_readme_cites_it_and_the_codebook_explains_columns_from_the_models_help_texts(
        self, reviewer, published
    ):
        files = files_of(release(reviewer))
        assert f"Incident Tracker data set, release {FIRST} [Data set]." in files["README.md"].decode()
        codebook = files["codebook.md"].decode()
        assert "| `date_start` | date (required) | First day of the range the incident lies in. |" in codebook
        assert "`at_least`: At least" in codebook
        # A claim's figures are the source's, not the analysts': "People count min." did not say so.
        assert "| `people_count_min` | integer | The lowest figure the source gives. |" in codebook
        assert (
            "| `date_start` | date | First day of the dates the source gives; empty for none, or for an end alone. |"
            in codebook
        )
        # Each source's date keeps its precision, and its label says it as the source did.
        assert "| `date_precision` | string | How precisely the source dates it:" in codebook
        assert "| `date_label` | string | The dates as the source gives them (e.g. July 2021, Since March" in codebook

    def test_the_same_data_gives_the_same_bytes_whatever_language_is_active(self, reviewer, published):
        # The codebook's choices ("`at_least`: At least") are translated labels: made while Korean was
        # active (a Reviewer's freeze in the admin, a thread a Korean page left so), they read "최소".
        facts = release_facts()
        in_english = {
            file.name: b"".join(file) for file in build_release_files(name=FIRST, year=YEAR, previous=None, facts=facts)
        }
        with translation.override("ko"):
            in_korean = {
                file.name: b"".join(file)
                for file in build_release_files(name=FIRST, year=YEAR, previous=None, facts=facts)
            }
        assert "`at_least`: At least" in in_english["codebook.md"].decode()
        assert in_korean == in_english

    def test_a_list_cell_reads_back_as_its_names_even_a_name_holding_the_separator(self, reviewer, published):
        # "Kirin; Chi-lin" is one alternate name: written bare, the cell read as three names, and the
        # codebook said both "comma-separated" (the admin form's hint) and "Separated by '; '".
        names = ["吉林省", "Kirin; Chi-lin", 'The "old" name', " spaced "]
        place = published.places.get()
        place.alternate_names = names
        place.save()
        organization = make_organization(name="State Security", aliases=["MSS; Bowibu", "보위부"])
        files = files_of(release(reviewer))

        def names_in(cell: str) -> list[str]:
            return next(csv.reader([cell], delimiter=";", skipinitialspace=True))

        (released_place,) = rows(files["places.csv"])
        assert names_in(released_place["alternate_names"]) == names
        (released,) = [row for row in rows(files["organizations.csv"]) if row["id"] == str(organization.pk)]
        assert names_in(released["aliases"]) == ["MSS; Bowibu", "보위부"]
        codebook = files["codebook.md"].decode()
        assert "comma-separated" not in codebook
        assert "read the cell as a CSV line whose separator is ';'" in codebook

    def test_a_directory_it_cannot_write_is_refused_before_anything_is_released(self, reviewer, published, tmp_path):
        blocked = tmp_path / "a file, not a directory"
        blocked.write_text("")
        with pytest.raises(CommandError, match=r"--output: cannot write into .*a file, not a directory"):
            call_command("release", user=reviewer.username, output=str(blocked / "releases"))
        assert not Release.objects.exists()

    def test_only_a_reviewer_may_release(self, client, published):
        analyst = make_user(roles.ANALYST)
        with pytest.raises(CommandError, match="only Reviewers"):
            call_command("release", user=analyst.username)
        assert client_for(analyst).post(f"{API}/releases/").status_code == 403
        assert client_for().post(f"{API}/releases/").status_code in (401, 403)
        client.force_login(analyst)
        assert client.get(reverse("admin:incidents_release_add")).status_code == 403
        client.post(reverse("admin:incidents_release_add"))
        assert not Release.objects.exists()

    def test_a_reviewer_releases_through_the_api(self, reviewer, published):
        response = client_for(reviewer).post(f"{API}/releases/")
        assert response.status_code == 201, response.content
        assert response.json()["name"] == FIRST
        assert client_for().get(f"{API}/releases/{FIRST}/").json()["incidents"] == 1

    def test_a_reviewer_freezes_a_release_in_the_admin(self, client, reviewer, published):
        client.force_login(reviewer)
        # The list's button says what it does, as the README names it (it read "Add release").
        listed = client.get(reverse("admin:incidents_release_changelist")).content.decode()
        assert f'href="{reverse("admin:incidents_release_add")}" class="addlink">Freeze a release</a>' in listed
        assert "Add release" not in listed
        assert "Freeze the release" in client.get(reverse("admin:incidents_release_add")).content.decode()
        answer = client.post(reverse("admin:incidents_release_add"), follow=True)
        page = answer.content.decode()
        assert f"Released {FIRST}: 1 incident." in page
        sha = ReleaseFile.objects.get(release__name=FIRST, name="incidents.csv").sha256
        assert sha in page

    def test_a_second_release_numbers_on_and_lists_what_changed(self, reviewer, published):
        withdrawn = make_incident(title="Later returned to draft")
        release(reviewer)
        added = make_incident(title="Newly published")
        published.title = "Published repatriation (corrected)"
        published.save()
        Incident.objects.filter(pk=withdrawn.pk).update(review_state="draft")
        listed = release(reviewer)
        assert listed["name"] == f"incident-tracker-{YEAR}.2"
        assert rows(files_of(listed)["CHANGES.csv"]) == sorted(
            [
                {"public_id": added.public_id, "change": "added", "merged_into": ""},
                {"public_id": published.public_id, "change": "updated", "merged_into": ""},
                {"public_id": withdrawn.public_id, "change": "withdrawn", "merged_into": ""},
            ],
            key=lambda row: row["public_id"],
        )

    def test_an_incident_merged_since_names_its_survivor_only_when_the_survivor_is_released(self, reviewer, published):
        duplicate = make_incident(title="The same repatriation, another report")
        hidden_duplicate = make_incident(title="Reported again")
        draft_survivor = make_incident(title="Draft survivor", review_state="draft")
        release(reviewer)
        incident_merge(
            user=reviewer,
            pair=DuplicatePair.objects.create(incident_a=published, incident_b=duplicate, score=0.9),
            survivor=published.public_id,
        )
        incident_merge(
            user=reviewer,
            pair=DuplicatePair.objects.create(incident_a=hidden_duplicate, incident_b=draft_survivor, score=0.9),
            survivor=draft_survivor.public_id,
        )
        content = files_of(release(reviewer))["CHANGES.csv"]
        changes = rows(content)
        assert {"public_id": duplicate.public_id, "change": "merged", "merged_into": published.public_id} in changes
        # The survivor is a draft: naming it would reveal it, so the merged incident is only withdrawn.
        assert {"public_id": hidden_duplicate.public_id, "change": "withdrawn", "merged_into": ""} in changes
        assert draft_survivor.public_id not in content.decode()

    def test_an_incident_returned_to_draft_then_merged_is_only_withdrawn(self, reviewer, published):
        # Its address answers 404 to the public (no redirect to the survivor: the public may not
        # follow an unpublished incident), and so must the release: "merged" would tell of the draft.
        drafted = make_incident(title="Reported again, since returned to draft")
        release(reviewer)
        Incident.objects.filter(pk=drafted.pk).update(review_state="draft")
        incident_merge(
            user=reviewer,
            pair=DuplicatePair.objects.create(incident_a=published, incident_b=drafted, score=0.9),
            survivor=published.public_id,
        )
        assert client_for().get(f"{API}/incidents/{drafted.public_id}/").status_code == 404
        changes = rows(files_of(release(reviewer))["CHANGES.csv"])
        assert {"public_id": drafted.public_id, "change": "withdrawn", "merged_into": ""} in changes

    def test_the_list_costs_two_queries_whatever_its_length(self, reviewer, published, django_assert_num_queries):
        release(reviewer)
        release(reviewer)
        # 1 query for the page of releases, 1 for their files (without their content).
        with django_assert_num_queries(2):
            assert len(client_for().get(f"{API}/releases/").json()["results"]) == 2

    def test_an_unknown_file_or_release_is_a_404(self, reviewer, published):
        release(reviewer)
        assert client_for().get(f"{API}/releases/{FIRST}/files/secrets.csv/").status_code == 404
        assert client_for().get(f"{API}/releases/incident-tracker-1999.1/").status_code == 404

    def test_a_download_streams_its_file_a_slice_per_statement(self, reviewer, published, monkeypatch):
        # A million incidents' file is some 250 MB: read whole, it would sit in the server's memory
        # for each client downloading it.
        release(reviewer)
        stored = ReleaseFile.objects.get(name="incidents.csv")
        monkeypatch.setattr(releases, "FILE_CHUNK_BYTES", 100)
        monkeypatch.setattr(exports, "CHUNK_BYTES", 60)
        with CaptureQueriesContext(connection) as queries:
            response = client_for().get(f"{API}/releases/{FIRST}/files/incidents.csv/")
            assert response.streaming
            assert int(response["Content-Length"]) == stored.size > 250
            chunks = list(response.streaming_content)
        assert b"".join(chunks) == bytes(stored.content)
        # Read into the download's file a statement per slice, under an export slot (see
        # test_csv.py), then sent from the file a chunk at a time.
        slices = [query for query in queries if "substring(content" in query["sql"]]
        assert len(slices) == math.ceil(stored.size / 100)
        assert [len(chunk) for chunk in chunks[:-1]] == [60] * (len(chunks) - 1)

    def test_a_range_resumes_a_download_and_a_held_copy_is_not_sent_again(self, reviewer, published, monkeypatch):
        release(reviewer)
        stored = bytes(ReleaseFile.objects.get(name="incidents.csv").content)
        size = len(stored)
        url = f"{API}/releases/{FIRST}/files/incidents.csv/"
        whole = client_for().get(url)
        etag = whole["ETag"]
        assert b"".join(whole.streaming_content) == stored  # read to its end, and closed: its file is gone
        # Slices smaller than the ranges, so that a range starts and ends inside them.
        monkeypatch.setattr(releases, "FILE_CHUNK_BYTES", 7)

        def get(**headers):
            response = client_for().get(url, headers=headers)
            return response, b"".join(response.streaming_content) if response.streaming else response.content

        for asked, start, end in [
            ("bytes=10-29", 10, 30),
            ("bytes=10-", 10, size),
            ("bytes=-25", size - 25, size),
            (f"bytes=0-{size + 100}", 0, size),
            (f"bytes={size - 1}-", size - 1, size),
            # Positions of any length, past every file, without a 500 (int() reads at most 4,300 digits).
            ("bytes=0-" + "9" * 5000, 0, size),
            ("bytes=-" + "9" * 5000, 0, size),
            ("bytes=00000000000000000000000000010-29", 10, 30),
        ]:
            response, body = get(Range=asked)
            assert response.status_code == 206, asked
            assert body == stored[start:end], asked
            assert response["Content-Range"] == f"bytes {start}-{end - 1}/{size}", asked
            assert int(response["Content-Length"]) == end - start, asked
            assert response["ETag"] == etag

        # Past the end: 416 saying the size, as JSON like every error of the API.
        for asked in (f"bytes={size}-", "bytes=-0", "bytes=" + "9" * 5000 + "-"):
            response, _ = get(Range=asked)
            assert response.status_code == 416, asked
            assert response["Content-Range"] == f"bytes */{size}"
            assert f"{size:,} bytes" in response.json()["detail"]
        # Several ranges, another unit, nonsense, or a range of another version: the whole file.
        for headers in (
            {"Range": "bytes=0-1,5-6"},
            {"Range": "items=0-1"},
            {"Range": "bytes=9-3"},
            {"Range": "bytes=-"},
            {"Range": "bytes=\u0663-5"},  # an Arabic-Indic three: not a DIGIT of RFC 9110
            {"Range": "bytes=10-29", "If-Range": '"another version"'},
        ):
            response, body = get(**headers)
            assert (response.status_code, body) == (200, stored), headers
            assert response["Accept-Ranges"] == "bytes"
        response, body = get(Range="bytes=10-29", **{"If-Range": etag})
        assert (response.status_code, body) == (206, stored[10:30])
        # A client that holds this version is told so, and sent nothing.
        response, body = get(**{"If-None-Match": etag})
        assert (response.status_code, body, response["ETag"]) == (304, b"", etag)

    def test_files_are_stored_uncompressed_so_that_a_slice_reads_only_its_own_pages(self):
        # A compressed value is inflated from its start for every slice: downloading a 250 MB file
        # a megabyte at a time would inflate some 30 GB.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT attstorage FROM pg_attribute WHERE attrelid = 'incidents_releasefile'::regclass "
                "AND attname = 'content'"
            )
            assert cursor.fetchone() == ("e",)


class TestReleasesNeverChange:
    def test_the_database_refuses_to_change_or_delete_a_release_or_its_files(self, reviewer, published):
        release(reviewer)
        for attempt in (
            lambda: ReleaseFile.objects.filter(name="incidents.csv").update(content=b"forged"),
            lambda: ReleaseFile.objects.all().delete(),
            lambda: Release.objects.update(incidents=0),
        ):
            with pytest.raises(IntegrityError, match="Releases are immutable"), transaction.atomic():
                attempt()

    def test_the_api_and_the_admin_offer_no_change(self, client, reviewer, published):
        release(reviewer)
        superuser = make_user(is_superuser=True, is_staff=True)
        assert client_for(superuser).delete(f"{API}/releases/{FIRST}/").status_code == 405
        assert client_for(superuser).put(f"{API}/releases/{FIRST}/", {}).status_code == 405
        client.force_login(superuser)
        pk = Release.objects.get().pk
        assert client.post(reverse("admin:incidents_release_delete", args=[pk])).status_code == 403
        assert "Save" not in client.get(reverse("admin:incidents_release_change", args=[pk])).content.decode()

    def test_a_past_releases_citation_stays_as_its_readme_says_whatever_the_settings_say_since(
        self, client, settings, reviewer, published
    ):
        # Made again from the settings at each read, the list's and the admin's citation followed a
        # renamed project that the release's own README never named.
        settings.RELEASE_AUTHOR, settings.RELEASE_TITLE = "Original Authors", "Original Title"
        first = release(reviewer)
        frozen = first["citation"]
        assert frozen.startswith("Original Authors") and frozen in files_of(first)["README.md"].decode()
        release(reviewer)

        settings.RELEASE_AUTHOR, settings.RELEASE_TITLE = "Renamed Project", "Renamed Data set"

        listed = client_for().get(f"{API}/releases/").json()["results"]
        assert [entry["citation"] for entry in listed] == [frozen.replace(".1 [", ".2 ["), frozen]
        client.force_login(reviewer)
        page = client.get(reverse("admin:incidents_release_change", args=[Release.objects.get(number=1).pk]))
        assert frozen in page.content.decode() and "Renamed" not in page.content.decode()

    def test_a_later_release_is_never_as_of_a_moment_before_the_one_before(self, reviewer, published):
        # As of the latest change of an incident it holds: the latest changed one returned to draft,
        # the next release was "as of" a moment before the last, when that incident was published.
        later = make_incident(title="Published later")
        first = release(reviewer)
        services.incident_transition(incident=later, action="return_to_draft", user=reviewer)

        second = release(reviewer)

        assert rows(files_of(second)["CHANGES.csv"]) == [
            {"public_id": later.public_id, "change": "withdrawn", "merged_into": ""}
        ]
        assert second["as_of"] > first["as_of"]
        withdrawn = client_for().get(f"{API}/incidents/withdrawn/?since=2000-01-01T00:00:00Z").json()["results"]
        assert [parse_datetime(second["as_of"])] == [parse_datetime(row["withdrawn_at"]) for row in withdrawn]

    def test_migration_0114_fills_each_release_made_before_it_with_the_citation_its_readme_gives(
        self, reviewer, published
    ):
        frozen = release(reviewer)["citation"]
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # The release's own checks, before ALTER TABLE.
            cursor.execute("ALTER TABLE incidents_release DISABLE TRIGGER release_immutable")
            cursor.execute("UPDATE incidents_release SET citation = ''")
            cursor.execute("ALTER TABLE incidents_release ENABLE TRIGGER release_immutable")
            cursor.execute(import_module("incidents.migrations.0114_release_citation_frozen").FILL_FROM_README)
        assert Release.objects.get().citation == frozen
        with pytest.raises(IntegrityError, match="Releases are immutable"), transaction.atomic():
            Release.objects.update(citation="forged")


class TestReleaseFiles:
    def test_the_same_data_gives_the_same_bytes(self, reviewer, published):
        release(reviewer)
        stored = {release_file.name: bytes(release_file.content) for release_file in ReleaseFile.objects.all()}
        built = build_release_files(name=FIRST, year=YEAR, previous=None, facts=release_facts())
        rebuilt = {file.name: b"".join(file) for file in built}
        assert rebuilt == stored
        # A second release of unchanged data holds the very same tables.
        second = files_of(release(reviewer))
        assert {name: second[name] for name in stored if name.endswith(".csv") and name != "CHANGES.csv"} == {
            name: content for name, content in stored.items() if name.endswith(".csv") and name != "CHANGES.csv"
        }

    def test_frictionless_validates_the_package_and_catches_a_tampered_file(self, reviewer, published, tmp_path):
        informant = make_source(title="Informant", confidential=True)
        make_claim(incident=published, source=make_source(title="Relay", cites=informant))
        call_command("release", user=reviewer.username, output=str(tmp_path), stdout=io.StringIO())
        package = Path(tmp_path) / FIRST / "datapackage.json"
        report = validate(package)
        assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
        claims = package.parent / "claims.csv"
        claims.write_bytes(claims.read_bytes().replace(b"80 people", b"90 people"))
        assert not validate(package).valid

    def test_a_licensed_release_names_its_terms_in_the_package_and_the_readme(
        self, settings, reviewer, published, tmp_path
    ):
        settings.DATA_LICENSE = CC_BY
        said = io.StringIO()
        call_command("release", user=reviewer.username, output=str(tmp_path), stdout=said, stderr=said)
        package = Path(tmp_path) / FIRST / "datapackage.json"
        assert json.loads(package.read_bytes())["licenses"] == [CC_BY]
        report = validate(package)
        assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
        readme = (package.parent / "README.md").read_text()
        assert (
            "## Terms of reuse\n\nReleased under Creative Commons Attribution 4.0 International (CC-BY-4.0): "
            "https://creativecommons.org/licenses/by/4.0/\n" in readme
        )
        assert "licence" not in said.getvalue()
        # Rebuilt from the same data and settings, the same bytes.
        stored = {release_file.name: bytes(release_file.content) for release_file in ReleaseFile.objects.all()}
        built = build_release_files(name=FIRST, year=YEAR, previous=None, facts=release_facts())
        assert {file.name: b"".join(file) for file in built} == stored

    def test_a_release_without_a_licence_says_so_in_its_readme_and_as_it_is_made(
        self, settings, client, reviewer, published
    ):
        settings.DATA_LICENSE = None
        printed, warned = io.StringIO(), io.StringIO()
        call_command("release", user=reviewer.username, stdout=printed, stderr=warned)
        assert f"Released {FIRST}" in printed.getvalue()
        assert warned.getvalue().startswith(f"Warning: {FIRST} names no licence, so researchers cannot tell")
        assert "TRACKER_DATA_LICENSE" in warned.getvalue()
        files = files_of(client_for().get(f"{API}/releases/").json()["results"][0])
        assert "licenses" not in json.loads(files["datapackage.json"])
        readme = files["README.md"].decode()
        assert "## Terms of reuse\n\n**No licence.** This release names no terms of reuse" in readme
        # The admin's freeze says it too.
        client.force_login(reviewer)
        answer = client.post(reverse("admin:incidents_release_add"), follow=True)
        warnings = [str(message) for message in answer.context["messages"] if message.level_tag == "warning"]
        assert warnings == [
            f"incident-tracker-{YEAR}.2 names no licence, so researchers cannot tell whether they may "
            "reuse it: set TRACKER_DATA_LICENSE, TRACKER_DATA_LICENSE_TITLE and "
            "TRACKER_DATA_LICENSE_URL before the next release (README, Dataset releases)."
        ]
        # Shown as written, as the command line says it: the admin's capfirst wrote "Incident-tracker-…".
        assert f'<li class="warning">incident-tracker-{YEAR}.2 names no licence, so' in answer.text

    def test_no_draft_confidential_record_or_exact_sensitive_coordinate_is_released(self, reviewer, published):
        secret_source = make_source(title="SECRET-SOURCE informant", confidential=True)
        facility = make_place(
            name="Tumen detention centre",
            parent=published.places.get(),
            latitude="42.912345",
            longitude="129.512345",
            sensitive=True,
        )
        # Not sensitive itself, but inside the facility: its own coordinates would tell where that is.
        gate = make_place(name="Its gate", parent=facility, latitude="42.913579", longitude="129.513579")
        published.places.add(facility, gate)
        make_claim(
            incident=published, source=make_source(title="Own interview"), excerpt="SECRET-CLAIM", confidential=True
        )
        make_claim(incident=published, source=secret_source, excerpt="SECRET-CLAIM-OF-SECRET-SOURCE")
        relay = make_source(title="Relay of a secret", cites=secret_source)
        make_claim(incident=published, source=relay)
        draft = make_incident(title="SECRET-DRAFT", review_state="draft")
        confidential = make_incident(title="SECRET-CONFIDENTIAL", confidential=True)
        make_claim(incident=confidential, source=make_source(title="Public source"), excerpt="SECRET-EXCERPT")
        response = Response.objects.create(
            organization=make_organization(), kind="statement", date=published.date_start, source=secret_source
        )
        response.incidents.add(published, confidential)

        files = files_of(release(reviewer))
        everything = b"".join(files.values()).decode()
        assert "SECRET" not in everything
        assert draft.public_id not in everything and confidential.public_id not in everything
        assert "42.912345" not in everything and "129.512345" not in everything
        assert "42.913579" not in everything and "129.513579" not in everything
        assert str(secret_source.pk) not in {row["cites"] for row in rows(files["sources.csv"])}
        assert {row["source"] for row in rows(files["responses.csv"])} == {""}
        assert [row["incident"] for row in rows(files["response_incidents.csv"])] == [published.public_id] * 2
        # The sensitive place is released with its parent's coordinates, and counted origins stay anonymous.
        assert {
            (row["latitude"], row["longitude"])
            for row in rows(files["places.csv"])
            if row["name"] in (facility.name, gate.name)
        } == {("40.100000", "124.400000")}
        assert rows(files["incidents.csv"])[0]["independent_origins"] == "2"

    def test_a_response_about_no_released_incident_is_not_released(self, reviewer, published):
        # A response follows its incidents (ResponseQuerySet.visible_to): one about a confidential
        # incident or a draft alone, or about no incident yet, is as hidden from the release as from the API.
        confidential = make_incident(title="Confidential detention", confidential=True)
        draft = make_incident(title="Draft detention", review_state="draft")
        for about, description in (
            (confidential, "SECRET-ABOUT-CONFIDENTIAL"),
            (draft, "SECRET-ABOUT-DRAFT"),
            (None, "SECRET-ABOUT-NONE"),
        ):
            response = Response.objects.create(
                organization=make_organization(), kind="statement", date=published.date_start, description=description
            )
            if about is not None:
                response.incidents.add(about)

        files = files_of(release(reviewer))
        assert "SECRET" not in b"".join(files.values()).decode()
        assert len(rows(files["responses.csv"])) == published.responses.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_releases_made_at_once_take_numbers_one_after_the_other(monkeypatch):
    # The second waits for the first; it must then read the first's release, not take its number.
    make_incident(title="Published")
    reviewers = [make_user(roles.REVIEWER) for _ in range(2)]
    build = releases.build_release_files
    first_building = threading.Event()

    def slow_first_build(**kwargs):
        if threading.current_thread().name == "first":
            first_building.set()
            time.sleep(1.5)  # holding the lock while the second asks for it
        yield from build(**kwargs)

    monkeypatch.setattr(releases, "build_release_files", slow_first_build)
    failures = []

    def make_release(reviewer):
        try:
            releases.release_create(user=reviewer)
        except Exception as error:
            failures.append(error)
        finally:
            connection.close()

    first = threading.Thread(target=make_release, args=[reviewers[0]], name="first")
    first.start()
    first_building.wait(10)
    second = threading.Thread(target=make_release, args=[reviewers[1]], name="second")
    second.start()
    first.join(30)
    second.join(30)

    assert failures == []
    assert sorted(Release.objects.values_list("number", flat=True)) == [1, 2]


def test_release_refused_leaves_no_output_directory(tmp_path):
    viewer = make_user(roles.VIEWER)
    output = tmp_path / "releases"
    with pytest.raises(CommandError, match="--user: "):
        call_command("release", "--user", viewer.username, "--output", str(output))
    assert not output.exists()
    assert not Release.objects.exists()


def test_release_refuses_an_empty_output_directory_name():
    # Read as no --output, it released without writing the files anywhere.
    reviewer = make_user(roles.REVIEWER)
    with pytest.raises(CommandError, match="--output: give a path"):
        call_command("release", "--user", reviewer.username, "--output", "")
    assert not Release.objects.exists()


@pytest.mark.django_db
def test_an_anonymous_download_is_not_cut_off_by_one_requests_database_budget(settings, monkeypatch):
    # Its slices, each a statement, counted against the anonymous budget (3 s): a file whose slices
    # took longer together (some 600 MB) was never downloaded anonymously, nor resumed. Here slices
    # of 1 byte under a budget of 200 ms stand for a large file. The slot, and one download at a time
    # per client, bound what it reads, as they bound the CSV export's COPY.
    for number in range(30):
        incident = make_incident(title=f"Published repatriation {number} " + "words " * 20)
        make_claim(incident=incident, source=make_source(title=f"Public report {number}"), excerpt="80 people")
    release(make_user(roles.REVIEWER))
    settings.ANON_STATEMENT_TIMEOUT = 200
    monkeypatch.setattr(releases, "FILE_CHUNK_BYTES", 1)

    response = client_for().get(f"{API}/releases/{FIRST}/files/incidents.csv/")

    assert response.status_code == 200, response.content[:300]
    content = b"".join(response.streaming_content)
    assert hashlib.sha256(content).hexdigest() == ReleaseFile.objects.get(name="incidents.csv").sha256


def test_a_release_follows_one_holding_a_description_longer_than_csvs_own_field_limit():
    # The next release reads the previous incidents.csv back for CHANGES.csv, with csv's limit of
    # 131,072 characters a cell; descriptions take 200,000: every later release failed (found by
    # an attack review). The limit as a fresh process has it (an import may have raised it).
    csv.field_size_limit(131_072)
    reviewer = make_user(roles.REVIEWER)
    make_incident(title="A long testimony", description="word " * 30_000)
    release(reviewer)
    added = make_incident(title="Published since")

    changes = rows(files_of(release(reviewer))["CHANGES.csv"])

    assert changes == [{"public_id": added.public_id, "change": "added", "merged_into": ""}]


def test_release_output_whose_release_directory_is_a_file_is_refused_before_releasing(tmp_path):
    # Its directory was made after the release, which cannot be undone: a traceback, the release
    # made and no file written (found by an attack review).
    reviewer = make_user(roles.REVIEWER)
    make_incident(title="Published")
    (tmp_path / FIRST).write_text("not a directory")

    with pytest.raises(CommandError, match=f"^--output: {tmp_path / FIRST} is a file"):
        call_command("release", user=reviewer.username, output=str(tmp_path), stdout=io.StringIO())

    assert not Release.objects.exists()


class TestACarriageReturnInAText:
    """A text holding a carriage return alone ("\\r", as old Mac editors and some pasted reports
    write a line break) went into the CSV unquoted: every CSV reader read it as a line's end, and
    the next release, reading the previous one's incidents.csv for CHANGES.csv, failed."""

    @pytest.fixture
    def described(self, reviewer):
        incident = make_incident(title="Published repatriation")
        make_claim(incident=incident, source=make_source(title="Public report"))
        # Written by SQL: every door writes line breaks as LF (`normal_text`), and migration 0115
        # rewrote those stored before, but a CR written since by SQL is released all the same.
        Incident.objects.filter(pk=incident.pk).update(description="Seen at dawn.\rTaken away at noon.")
        incident.refresh_from_db()
        assert "\r" in incident.description
        return incident

    def test_the_next_release_is_still_made(self, reviewer, described):
        release(reviewer)
        described.title = "Published repatriation (corrected)"
        described.save()
        # The first release is immutable: if the second cannot read it, no release can ever be made again.
        listed = release(reviewer)
        assert listed["name"] == f"incident-tracker-{YEAR}.2"
        assert rows(files_of(listed)["CHANGES.csv"]) == [
            {"public_id": described.public_id, "change": "updated", "merged_into": ""}
        ]

    def test_the_released_csv_reads_back_as_one_row_holding_the_text(self, reviewer, described, tmp_path):
        call_command("release", user=reviewer.username, output=str(tmp_path), stdout=io.StringIO())
        package = Path(tmp_path) / FIRST / "datapackage.json"
        content = (package.parent / "incidents.csv").read_bytes()
        read = list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))
        assert [row["description"] for row in read] == ["Seen at dawn.\rTaken away at noon."]
        # Read as a reader that takes any line end for one (universal newlines): one row still.
        read = list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline=None)))
        assert [row["description"] for row in read] == ["Seen at dawn.\nTaken away at noon."]
        report = validate(package)
        assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])


@pytest.fixture
def released(reviewer):
    make_claim(incident=make_incident(title="Published repatriation"), source=make_source(title="Public report"))
    return release(reviewer)


class TestDownloadsAnswerTheMediaTypesTheyDeclare:
    @pytest.mark.parametrize(
        ("file_name", "accept"),
        [
            ("incidents.csv", "text/csv"),
            ("README.md", "text/markdown"),
            ("incidents.csv", "text/csv; charset=utf-8"),
        ],
    )
    def test_a_client_asking_for_the_files_own_media_type_gets_the_file(self, released, file_name, accept):
        # The schema declares 200 and 206 as text/csv, application/json and text/markdown: a client
        # (an OpenAPI-generated one, `curl -H "Accept: text/csv"`) asking for its type got 406.
        listed = {release_file["name"]: release_file for release_file in released["files"]}[file_name]
        answer = client_for().get(listed["url"], HTTP_ACCEPT=accept)
        assert answer.status_code == 200, answer.content
        content = b"".join(answer.streaming_content)
        assert hashlib.sha256(content).hexdigest() == listed["sha256"]

    def test_a_resumed_csv_download_asking_for_text_csv_gets_its_range(self, released):
        url = f"{API}/releases/{FIRST}/files/incidents.csv/"
        answer = client_for().get(url, HTTP_ACCEPT="text/csv", HTTP_RANGE="bytes=0-5")
        assert answer.status_code == 206, answer.content


class TestAHeadRequest:
    def test_a_head_reads_nothing_of_the_file(self, released, monkeypatch):
        # HEAD (`curl -I`, a link checker, a download manager before it resumes) asks for the
        # headers alone, all in the file's row. Answered as a GET, it read the whole file into a
        # spool file under an export slot (400 MB at a million incidents), to send none of it.
        monkeypatch.setattr(releases, "FILE_CHUNK_BYTES", 100)
        stored = ReleaseFile.objects.defer("content").get(release__name=FIRST, name="incidents.csv")
        with CaptureQueriesContext(connection) as queries:
            answer = client_for().head(f"{API}/releases/{FIRST}/files/incidents.csv/")
            assert answer.status_code == 200
            assert int(answer["Content-Length"]) == stored.size
            assert answer["ETag"] == f'"{stored.sha256}"'
            answer.close()
        assert [query["sql"] for query in queries if "substring(content" in query["sql"]] == []
