"""A release as one zip file, to cite and deposit: its files in a folder named for it, at the paths
its datapackage.json names, the same bytes at every download, listed with its size and sha256, and
downloaded as a release's files are (HEAD, ETag, ranges, export slots)."""

import hashlib
import io
import math
import stat
import zipfile
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from frictionless import Package, formats, validate

from incidents import releases
from incidents.models import Release, ReleaseFile, ReleaseZip
from tests.api_support import API, client_for
from tests.factories import make_claim, make_incident, make_source
from tests.test_csv import slot_taken_elsewhere
from tests.test_releases import FIRST, files_of, release


@pytest.fixture
def released(reviewer):
    make_claim(incident=make_incident(title="Published repatriation"), source=make_source(title="Public report"))
    return release(reviewer)


def zip_of(listed: dict) -> bytes:
    answer = client_for().get(listed["zip"]["url"])
    assert answer.status_code == 200, answer.content
    return b"".join(answer.streaming_content)


class TestTheWholeReleaseAsOneZip:
    def test_it_is_listed_with_its_size_and_sha256_and_holds_every_file_in_a_folder_named_for_it(self, released):
        # Downloaded file by file, each came as `incident-tracker-2026.1-incidents.csv` where
        # datapackage.json names `incidents.csv`, and there was no one file to cite or deposit.
        listed = released["zip"]
        assert listed["name"] == f"{FIRST}.zip"
        assert listed["media_type"] == "application/zip"
        assert listed["url"] == f"http://testserver{API}/releases/{FIRST}/zip/"
        answer = client_for().get(listed["url"])
        assert answer["Content-Type"] == "application/zip"
        assert answer["Content-Disposition"] == f'attachment; filename="{FIRST}.zip"'
        assert answer["ETag"] == f'"{listed["sha256"]}"'
        content = b"".join(answer.streaming_content)
        assert (len(content), hashlib.sha256(content).hexdigest()) == (listed["size"], listed["sha256"])
        archive = zipfile.ZipFile(io.BytesIO(content))
        assert archive.testzip() is None
        files = files_of(released)
        assert archive.namelist() == [f"{FIRST}/", *(f"{FIRST}/{name}" for name in sorted(files))]
        for name, stored in files.items():
            assert archive.read(f"{FIRST}/{name}") == stored, name

    def test_the_folder_it_unzips_into_validates_as_it_is(self, released, tmp_path):
        zipfile.ZipFile(io.BytesIO(zip_of(released))).extractall(tmp_path)
        report = validate(tmp_path / FIRST / "datapackage.json")
        assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])
        # Unix readers get files they may read and a folder they may enter, not executables.
        assert stat.S_IMODE((tmp_path / FIRST).stat().st_mode) & 0o755 == 0o755

    def test_the_zip_itself_validates_as_a_package_in_the_releases_folder(self, released, tmp_path):
        # frictionless reads a zipped package (here in the release's folder) in Python; its command
        # line finds one only at the zip's root, and validates the folder once unzipped.
        path = tmp_path / f"{FIRST}.zip"
        path.write_bytes(zip_of(released))
        package = Package(str(path), control=formats.ZipControl(innerpath=f"{FIRST}/datapackage.json"))
        assert len(package.resources) == len([file for file in released["files"] if file["name"].endswith(".csv")])
        report = package.validate()
        assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])

    def test_every_download_is_the_same_bytes_as_the_listed_checksum_says(self, released, settings):
        first = zip_of(released)
        # Whatever language or time zone the server answers in.
        settings.TIME_ZONE = "Asia/Seoul"
        assert client_for().get(released["zip"]["url"], HTTP_ACCEPT_LANGUAGE="ko").status_code == 200
        assert zip_of(released) == first
        entries = zipfile.ZipFile(io.BytesIO(first)).infolist()
        created = Release.objects.get().created_at.astimezone(UTC)
        for entry in entries:
            # Stamped with the release's creation (UTC), as made on Unix, stored as it is.
            assert entry.date_time == (*created.timetuple()[:5], created.second // 2 * 2), entry.filename
            assert (entry.create_system, entry.compress_type) == (3, zipfile.ZIP_STORED), entry.filename
            assert entry.external_attr >> 16 == (0o40755 if entry.is_dir() else 0o100644), entry.filename

    def test_the_same_files_give_the_same_bytes_with_this_python(self):
        # The sha256 stored for each release is the zip's as `zipfile` writes it today: a Python
        # whose `zipfile` writes other bytes for the same files would serve zips no longer matching
        # their listed checksums, and must be caught here before it is deployed.
        files = [
            ("datapackage.json", 2, lambda: [b"{}"]),
            ("CHANGES.csv", 0, list),
            ("incidents.csv", 11, lambda: [b"public_id\n", b"1"]),
        ]
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        made = b"".join(releases.zip_chunks("incident-tracker-2026.1", moment, files))
        assert hashlib.sha256(made).hexdigest() == "6ee82c13c3dc011b40ebe88ae324f5df7123bdfc5418a568d0b64a787fcdbd39"
        assert zipfile.ZipFile(io.BytesIO(made)).namelist() == [
            "incident-tracker-2026.1/",
            "incident-tracker-2026.1/CHANGES.csv",
            "incident-tracker-2026.1/datapackage.json",
            "incident-tracker-2026.1/incidents.csv",
        ]


class TestDownloadingTheZip:
    def test_it_streams_each_file_a_slice_per_statement(self, released, monkeypatch):
        # A million incidents' release is some 550 MB: the zip is written as it is read, never held.
        monkeypatch.setattr(releases, "FILE_CHUNK_BYTES", 100)
        sizes = ReleaseFile.objects.values_list("size", flat=True)
        with CaptureQueriesContext(connection) as queries:
            assert len(zip_of(released)) == released["zip"]["size"]
        slices = [query for query in queries if "substring(content" in query["sql"]]
        assert len(slices) == sum(math.ceil(size / 100) for size in sizes)
        assert not [query for query in queries if "content" in query["sql"] and "substring" not in query["sql"]]

    def test_head_range_and_a_held_copy_are_answered_as_for_a_file(self, released, monkeypatch):
        whole = zip_of(released)
        size, etag = len(whole), f'"{released["zip"]["sha256"]}"'
        url = released["zip"]["url"]
        monkeypatch.setattr(releases, "FILE_CHUNK_BYTES", 7)
        with CaptureQueriesContext(connection) as queries:
            head = client_for().head(url)
            assert (head.status_code, int(head["Content-Length"]), head["ETag"]) == (200, size, etag)
            assert head["Accept-Ranges"] == "bytes"
        assert not [query for query in queries if "content" in query["sql"]]
        for asked, start, end in [("bytes=0-29", 0, 30), ("bytes=100-", 100, size), ("bytes=-25", size - 25, size)]:
            answer = client_for().get(url, HTTP_RANGE=asked)
            assert answer.status_code == 206, asked
            assert b"".join(answer.streaming_content) == whole[start:end], asked
            assert answer["Content-Range"] == f"bytes {start}-{end - 1}/{size}", asked
        # Resumed where a broken download stopped, the parts make the listed zip.
        resumed = b"".join(client_for().get(url, HTTP_RANGE="bytes=0-999").streaming_content)
        resumed += b"".join(client_for().get(url, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE=etag).streaming_content)
        assert hashlib.sha256(resumed).hexdigest() == released["zip"]["sha256"]
        assert client_for().get(url, HTTP_RANGE=f"bytes={size}-").status_code == 416
        held = client_for().get(url, HTTP_IF_NONE_MATCH=etag)
        assert (held.status_code, held.content) == (304, b"")
        assert client_for().get(url, HTTP_ACCEPT="application/zip").status_code == 200

    def test_it_waits_for_an_export_slot_as_a_file_does(self, released, settings):
        # Read from the database under one of the exports' slots, as a release file is.
        settings.EXPORTS_AT_ONCE = 1
        with slot_taken_elsewhere():
            busy = client_for().get(released["zip"]["url"])
            assert (busy.status_code, busy["Retry-After"]) == (503, "15")
            assert busy.json()["detail"].startswith("Too many downloads are running at once (at most 1).")
            # A HEAD reads nothing, so waits for nothing.
            assert client_for().head(released["zip"]["url"]).status_code == 200
        assert client_for().get(released["zip"]["url"]).status_code == 200

    def test_an_unknown_release_has_no_zip(self, released):
        assert client_for().get(f"{API}/releases/incident-tracker-1999.1/zip/").status_code == 404

    def test_the_schema_declares_the_zip_download(self):
        paths = client_for().get(f"{API}/schema/?format=json").json()["paths"]
        download = paths["/api/v1/releases/{name}/zip/"]["get"]
        assert set(download["responses"]["200"]["content"]) == {"application/zip"}
        assert {"304", "412", "416", "429", "503"} <= set(download["responses"])
        assert {"Range", "If-Range", "If-None-Match", "If-Match"} <= {p["name"] for p in download["parameters"]}
        assert {} in download["security"]
        listed = paths["/api/v1/releases/"]["get"]["responses"]["200"]["content"]["application/json"]
        assert listed["schema"]["$ref"].endswith("PaginatedReleaseList")


class TestMakingTheZip:
    def test_the_command_writes_the_zip_beside_the_folder(self, reviewer, released, tmp_path):
        call_command("release", user=reviewer.username, output=str(tmp_path), stdout=io.StringIO())
        second = Release.objects.first()
        written = Path(tmp_path) / f"{second.name}.zip"
        assert hashlib.sha256(written.read_bytes()).hexdigest() == second.zip.sha256
        listed = client_for().get(f"{API}/releases/{second.name}/").json()
        assert listed["zip"]["sha256"] == second.zip.sha256
        assert zip_of(listed) == written.read_bytes()

    def test_the_admin_links_the_zip(self, client, reviewer, released):
        client.force_login(reviewer)
        page = client.get(reverse("admin:incidents_release_change", args=[Release.objects.get().pk])).content.decode()
        assert f'<a href="/api/v1/releases/{FIRST}/zip/">{FIRST}.zip</a>' in page
        assert released["zip"]["sha256"] in page

    def test_the_zips_figures_never_change(self, released):
        with pytest.raises(IntegrityError, match="Releases are immutable"), transaction.atomic():
            ReleaseZip.objects.update(sha256="0" * 64)
        with pytest.raises(IntegrityError, match="Releases are immutable"), transaction.atomic():
            ReleaseZip.objects.all().delete()

    def test_migration_0116_gives_each_release_made_before_it_its_zip(self, reviewer, released):
        made = Release.objects.get().zip
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE incidents_releasezip DISABLE TRIGGER release_zip_immutable")
            cursor.execute("DELETE FROM incidents_releasezip")
            cursor.execute("ALTER TABLE incidents_releasezip ENABLE TRIGGER release_zip_immutable")
        migration = import_module("incidents.migrations.0116_release_zip")
        migration.zips_of_earlier_releases(apps, connection.schema_editor())
        filled = ReleaseZip.objects.get()
        assert (filled.size, filled.sha256) == (made.size, made.sha256)
