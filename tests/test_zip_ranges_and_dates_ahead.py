"""The release zip byte by byte, the command's refusals before it releases, and records saved with a
start typed ahead before the rule refusing a day begun nowhere (`models.validate_day_begun`)."""

import hashlib
import io
import zipfile
from datetime import date, timedelta

import pytest
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.utils import timezone

from incidents import releases
from incidents.models import Claim, DuplicatePair, Incident, Release, Source
from incidents.releases import next_release_name
from tests.api_support import API, client_for, incident_url
from tests.factories import make_claim, make_incident, make_source
from tests.test_releases import release


def _whole(url, **headers) -> tuple[int, bytes, dict]:
    for cache in caches.all():
        cache.clear()  # the anonymous rate: these are many requests
    answer = client_for().get(url, **headers)
    body = b"".join(answer.streaming_content) if answer.streaming else answer.content
    return answer.status_code, body, answer


@pytest.fixture
def unicode_release(reviewer):
    make_claim(
        incident=make_incident(title="탈북민 강제송환 " + "가" * 200, description="설명 " * 3000),
        source=make_source(title="연합뉴스 “보도”"),
    )
    return release(reviewer)


class TestZipRanges:
    def test_every_boundary_range_is_the_listed_zips_bytes(self, unicode_release, monkeypatch):
        monkeypatch.setattr(releases, "FILE_CHUNK_BYTES", 997)
        url, listed = unicode_release["zip"]["url"], unicode_release["zip"]
        status, whole, _ = _whole(url)
        assert (status, len(whole), hashlib.sha256(whole).hexdigest()) == (200, listed["size"], listed["sha256"])
        archive = zipfile.ZipFile(io.BytesIO(whole))
        size = len(whole)
        # Every entry's local header, its first and last data byte, its data descriptor, the central directory.
        points = {0, 1, size - 1, size - 2}
        for entry in archive.infolist():
            data = entry.header_offset + 30 + len(entry.filename.encode())
            points |= {entry.header_offset, entry.header_offset + 5, data - 1, data, data + entry.file_size - 1}
            points |= {data + entry.file_size, data + entry.file_size + 7, data + entry.file_size + 15}
        points |= {archive.start_dir, archive.start_dir + 1}
        points = sorted(point for point in points if 0 <= point < size)
        for start in points:
            for end in (start, start + 1, start + 998, size - 1):
                if end < start or end >= size:
                    continue
                status, part, answer = _whole(url, HTTP_RANGE=f"bytes={start}-{end}")
                assert status == 206, (start, end)
                assert part == whole[start : end + 1], (start, end)
                assert answer["Content-Length"] == str(end + 1 - start)
        for suffix in (1, 2, 22, size - 1, size, size + 10):
            status, part, _ = _whole(url, HTTP_RANGE=f"bytes=-{suffix}")
            assert (status, part) == (206, whole[-suffix:]), suffix
        status, part, answer = _whole(url, HTTP_RANGE=f"bytes={size}-{size + 5}")
        assert status == 416 and answer["Content-Range"] == f"bytes */{size}"
        status, part, _ = _whole(url, HTTP_RANGE="bytes=5-9", HTTP_IF_RANGE='"' + "0" * 64 + '"')
        assert (status, part) == (200, whole)
        head = client_for().head(url, HTTP_RANGE="bytes=10-19")
        assert (head.status_code, head["Content-Range"], head["Content-Length"]) == (206, f"bytes 10-19/{size}", "10")

    def test_a_release_of_no_incidents_zips_and_tests(self, reviewer):
        listed = release(reviewer)
        assert listed["incidents"] == 0
        status, whole, _ = _whole(listed["zip"]["url"])
        assert status == 200 and hashlib.sha256(whole).hexdigest() == listed["zip"]["sha256"]
        assert zipfile.ZipFile(io.BytesIO(whole)).testzip() is None
        assert Release.objects.get().zip.size == len(whole)


# --- Dates begun nowhere, on records written before the rule (73b60fc, 511130f) ---------------------


def _years_ahead(years: int = 30) -> date:
    return timezone.now().date() + timedelta(days=365 * years)


class TestLegacyFutureDates:
    def test_an_incident_citing_a_source_dated_ahead_is_edited_and_published(self, reviewer):
        source = make_source(title="Daily NK")
        incident = make_incident(title="Returned from Tumen", review_state="in_review")
        make_claim(incident=incident, source=source)
        Source.objects.filter(pk=source.pk).update(published_on=_years_ahead())
        client = client_for(reviewer)
        read = client.get(incident_url(incident))
        body = {**read.json(), "title": "Returned from Tumen, 40 people"}
        answer = client.put(incident_url(incident), body, format="json", HTTP_IF_MATCH=read["ETag"])
        assert answer.status_code == 200, answer.json()
        published = client.patch(
            incident_url(incident), {"review_state": "published"}, format="json", HTTP_IF_MATCH=answer["ETag"]
        )
        assert published.status_code == 200, published.json()

    def test_a_merge_of_a_duplicate_whose_start_was_typed_ahead_is_refused_naming_it(self, reviewer):
        this_year = timezone.now().date().replace(month=1, day=1)
        survivor = make_incident(
            title="Returned in 2026", date_start=this_year, date_end=date(this_year.year + 40, 12, 31),
            date_precision="unknown",
        )  # fmt: skip
        merged = make_incident(title="Returned", date_start=this_year, date_end=this_year)
        ahead = _years_ahead()
        Incident.objects.filter(pk=merged.pk).update(date_start=ahead, date_end=ahead)
        pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
        answer = client_for(reviewer).post(f"{API}/duplicates/{pair.pk}/merge/", {"note": "same"}, format="json")
        # Refused, as a merge in a state that stops it, naming the incident whose year to correct:
        # it was refused naming `date_start`, which the merge's request has not.
        assert answer.status_code == 409, answer.json()
        assert answer.json()["detail"].startswith(f"{merged.public_id} starts on {ahead:%Y-%m-%d}")

    def test_an_edit_of_an_incident_whose_claim_was_dated_ahead_names_the_claim_to_correct(self, reviewer):
        # A claim is the incident's own row, sent back with it: its year typed ahead is refused
        # naming that row, to correct in the same form, as any other rule the row breaks. (A
        # source's date, a record of its own, blocks nothing: the test above.)
        incident = make_incident(title="Returned from Tumen")
        claim = make_claim(incident=incident, source=make_source(title="Daily NK"))
        Claim.objects.filter(pk=claim.pk).update(date_start=_years_ahead(), date_precision="day")
        client = client_for(reviewer)
        read = client.get(incident_url(incident))
        body = {**read.json(), "title": "Returned from Tumen, 40 people"}
        answer = client.put(incident_url(incident), body, format="json", HTTP_IF_MATCH=read["ETag"])
        assert answer.status_code == 400
        assert "has not begun anywhere yet" in answer.json()["claims[0].date_start"][0]
        assert Incident.objects.get(pk=incident.pk).title == "Returned from Tumen"


class TestTheCommandsZip:
    def test_a_folder_where_the_zip_goes_is_refused_before_anything_is_released(self, reviewer, tmp_path):
        name, _, _ = next_release_name()
        (tmp_path / f"{name}.zip").mkdir()
        with pytest.raises(CommandError, match=f"{name}.zip is a directory"):
            call_command("release", user=reviewer.username, output=str(tmp_path), stdout=io.StringIO())
        # Nothing released, as for a file where the release's folder goes: the release cannot be undone.
        assert not Release.objects.exists()
