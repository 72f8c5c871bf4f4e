"""CSV import through `manage.py import_incidents` and the admin's import page: all rows or none."""

import csv
import gc
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import tracemalloc
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from unittest import mock

import dj_database_url
import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from incidents import roles
from incidents.models import (
    Claim,
    Incident,
    IncidentType,
    Involvement,
    Organization,
    PendingImport,
    Place,
    Source,
)
from incidents.services import incidents_bulk_create, incidents_bulk_validate
from tests.api_support import API, client_for, public_ids
from tests.database_support import database_url, this_test_database_address
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
    place_chain,
)
from tests.test_commands import search_words, search_words_an_edit_computes

HEADER = "title,type,date_start,date_end"


def confirm_form(preview, **extra) -> dict:
    """What the admin's import preview's "Import N rows" button sends: the key of the file it showed."""
    key = re.search(r'<input type="hidden" name="key" value="([0-9a-f]+)">', preview.text)
    assert key, preview.text
    return {"confirm": "1", "key": key[1], **extra}


def export(user, tmp_path, name="export.csv") -> bytes:
    output = tmp_path / name
    call_command("export_incidents", f"--user={user.username}", "-o", str(output))
    return output.read_bytes()


def run_import(user, tmp_path, content: bytes | str, *options) -> str:
    """Import `content` as `user`; returns what the command printed."""
    path = tmp_path / "import.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    out = io.StringIO()
    call_command("import_incidents", str(path), f"--user={user.username}", *options, stdout=out, stderr=out)
    return out.getvalue()


def imported_or_refused(user, path, content: bytes | str, *options) -> str:
    """Import `content`, written to `path`, as `user`; what the command printed, and the refusal's
    words if it refused the file."""
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    out = io.StringIO()
    try:
        call_command("import_incidents", str(path), f"--user={user.username}", *options, stdout=out, stderr=out)
    except CommandError as refused:
        return f"{out.getvalue()}refused: {refused}"
    return out.getvalue()


def import_errors(user, tmp_path, content: bytes | str, *options) -> str:
    """Import a file that must be refused; returns the listed errors, after checking nothing changed."""
    incidents_before = list(Incident.objects.values_list("pk", "version"))
    err = io.StringIO()
    path = tmp_path / "import.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(CommandError) as refused:
        call_command("import_incidents", str(path), f"--user={user.username}", *options, stderr=err)
    assert refused.value.returncode == 1
    assert "nothing was imported" in str(refused.value)
    assert list(Incident.objects.values_list("pk", "version")) == incidents_before
    return err.getvalue()


def rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def write_csv(records: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def in_review(incident) -> None:
    Incident.objects.filter(pk=incident.pk).update(review_state="in_review")
    incident.refresh_from_db()


@pytest.fixture
def reviewer():
    return make_user(roles.REVIEWER, confidential=True)


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


@pytest.fixture
def rich_incidents():
    """Incidents using every column: places, perpetrators and other roles, claims with figures."""
    china, north_korea = make_place(name="Tumen", country="CN"), make_place(name="Hoeryong", country="KP")
    police = make_organization(name="Ministry of Public Security", aliases=["MPS", "公安部"])
    unhcr = make_organization(name="UNHCR")
    first = make_incident(
        title="=Repatriation at Tumen",
        date_start=date(2023, 10, 2),
        date_end=date(2023, 10, 9),
        date_precision="range",
        people_count=500,
        people_count_min=400,
        people_count_max=600,
        count_qualifier="about",
        verification="corroborated",
        places=[china, north_korea],
    )
    Involvement.objects.create(incident=first, organization=police, role="perpetrator")
    Involvement.objects.create(incident=first, organization=unhcr, role="other")
    make_claim(incident=first, source=make_source(title="RFA report"), people_count=450, excerpt="about 450")
    make_claim(incident=first, source=make_source(title="HRW statement"), people_count_max=700)
    second = make_incident(
        title="강제북송 遣返", review_state="draft", people_count=None, count_qualifier="unknown", places=[china]
    )
    return first, second


class TestRoundTrip:
    def test_importing_an_unchanged_export_changes_nothing(self, reviewer, rich_incidents, tmp_path):
        exported = export(reviewer, tmp_path)

        output = run_import(reviewer, tmp_path, exported)

        assert "0 incidents were created; 0 updated; 2 unchanged." in output
        assert export(reviewer, tmp_path, "again.csv") == exported

    def test_a_day_over_several_days_goes_out_with_its_whole_range_and_comes_back_unchanged(self, reviewer, tmp_path):
        make_incident(date_start=date(2023, 10, 3), date_end=date(2023, 10, 9), date_precision="day")
        exported = export(reviewer, tmp_path)
        [row] = rows(exported)
        assert row["date_label"] == "3 October 2023 – 9 October 2023"

        output = run_import(reviewer, tmp_path, exported)

        # The label is made from the dates: the import reads the dates and leaves the label be.
        assert "0 incidents were created; 0 updated; 1 unchanged." in output
        assert export(reviewer, tmp_path, "again.csv") == exported

    def test_exported_rows_imported_into_an_empty_database_come_back_the_same(self, reviewer, rich_incidents, tmp_path):
        exported = rows(export(reviewer, tmp_path))
        Incident.objects.all().delete()
        # A new database has no such public_ids: the rows create incidents.
        run_import(reviewer, tmp_path, write_csv([{**row, "public_id": "", "version": ""} for row in exported]))

        imported = rows(export(reviewer, tmp_path, "again.csv"))
        # Claims come back as bare links to their sources: their figures are not in the file.
        recreated = {"public_id", "updated_at", "claim_min", "claim_max"}
        assert [{k: v for k, v in row.items() if k not in recreated} for row in imported] == [
            {k: v for k, v in row.items() if k not in recreated} for row in exported
        ]
        assert Incident.objects.get(title="=Repatriation at Tumen").places.count() == 2

    def test_edits_update_the_incident_keeping_what_the_file_does_not_show(self, analyst, rich_incidents, tmp_path):
        first, _ = rich_incidents
        in_review(first)  # a published one would change only through a Reviewer
        hidden = make_claim(incident=first, source=make_source(title="Informant", confidential=True))
        first.refresh_from_db()
        [row] = [row for row in rows(export(analyst, tmp_path)) if row["public_id"] == first.public_id]
        row.update(
            title="Repatriation at Tumen (revised)",
            people_count="550",
            places="Tumen",
            perpetrators="MPS; Border guards",
            sources="RFA report; New report",
        )
        make_organization(name="Border guards")
        make_source(title="New report")

        output = run_import(analyst, tmp_path, write_csv([row]))

        assert "0 incidents were created; 1 updated; 0 unchanged." in output
        first.refresh_from_db()
        assert (first.title, first.people_count, first.version) == ("Repatriation at Tumen (revised)", 550, 2)
        assert [place.name for place in first.places.all()] == ["Tumen"]
        assert sorted(first.involvements.values_list("organization__name", "role")) == [
            ("Border guards", "perpetrator"),
            ("Ministry of Public Security", "perpetrator"),
            ("UNHCR", "other"),
        ]
        claims = {claim.source.title: claim for claim in first.claims.select_related("source")}
        # RFA keeps its figures; HRW is dropped; the informant, whom the analyst never saw, stays.
        assert set(claims) == {"RFA report", "New report", "Informant"}
        assert (claims["RFA report"].people_count, claims["RFA report"].excerpt) == (450, "about 450")
        assert claims["Informant"].pk == hidden.pk

    def test_a_source_listed_beside_its_hidden_confidential_claim_gets_the_analysts_public_claim(
        self, analyst, tmp_path
    ):
        # A source may make one public and one confidential claim: the analyst's listing of Daily NK
        # was dropped, reported as "1 updated", exactly when an informant's claim of it was hidden.
        incident = make_incident(review_state="draft")
        daily_nk = make_source(title="Daily NK")
        hidden = make_claim(incident=incident, source=daily_nk, confidential=True, people_count=500)
        [row] = rows(export(analyst, tmp_path))

        output = run_import(analyst, tmp_path, write_csv([{**row, "sources": "Daily NK"}]))

        assert "0 incidents were created; 1 updated; 0 unchanged." in output
        claims = set(incident.claims.values_list("pk", "source", "confidential"))
        assert (hidden.pk, daily_nk.pk, True) in claims
        assert {(source, confidential) for _, source, confidential in claims} == {
            (daily_nk.pk, True),
            (daily_nk.pk, False),
        }

    def test_a_file_exported_without_confidential_access_removes_no_confidential_claim(self, reviewer, tmp_path):
        # The public's download lists no confidential source: imported by a Reviewer with Confidential
        # access, an update used to delete the informant's claim (and the confidential source's),
        # reported only as "1 updated".
        incident = make_incident(review_state="draft")
        rfa = make_claim(incident=incident, source=make_source(title="RFA"))
        hrw = make_claim(incident=incident, source=make_source(title="HRW"))
        informant = make_claim(incident=incident, source=make_source(title="Informant", confidential=True))
        testimony = make_claim(incident=incident, source=make_source(title="Testimony"), confidential=True)
        analyst = make_user(roles.ANALYST)
        [row] = rows(export(analyst, tmp_path))
        assert row["sources"] == f"HRW [#{hrw.source_id}]; RFA [#{rfa.source_id}]"
        notice = (
            f"line 2: {incident.public_id} keeps its confidential claims of Informant [#{informant.source_id}]; "
            f"Testimony [#{testimony.source_id}], which the row does not list: an import removes no confidential "
            "claim (remove them in the admin or the API)."
        )

        unchanged = run_import(reviewer, tmp_path, write_csv([row]))

        assert "0 incidents were created; 0 updated; 1 unchanged." in unchanged and notice in unchanged
        assert incident.claims.count() == 4

        output = run_import(reviewer, tmp_path, write_csv([{**row, "sources": f"RFA [#{rfa.source_id}]"}]))

        assert "0 incidents were created; 1 updated; 0 unchanged." in output and notice in output
        assert (
            f"line 2: {incident.public_id} removes its claim of HRW [#{hrw.source_id}], which the row no longer "
            "lists, with its figures and excerpts (the incident's history keeps it)." in output
        )
        assert set(incident.claims.values_list("pk", flat=True)) == {rfa.pk, informant.pk, testimony.pk}

    def test_a_source_left_out_loses_its_public_claim_beside_a_confidential_one_kept(self, reviewer, tmp_path):
        # A source cited twice on one incident, publicly and in confidence: the row leaves it out.
        # The public claim goes and the confidential one stays, whether or not another column of
        # the row changes too. The comparison counted the source as still listed (its confidential
        # claim keeps it), so the row alone was "unchanged" and the public claim stayed without a
        # word; the same row with a new title removed it.
        incident = make_incident(review_state="draft")
        rfa = make_claim(incident=incident, source=make_source(title="RFA"))
        public = make_claim(incident=incident, source=make_source(title="Witness"))
        confidential = make_claim(incident=incident, source=public.source, confidential=True)
        [row] = rows(export(reviewer, tmp_path))
        assert f"Witness [#{public.source_id}]" in row["sources"]

        output = run_import(reviewer, tmp_path, write_csv([{**row, "sources": f"RFA [#{rfa.source_id}]"}]))

        assert "0 incidents were created; 1 updated; 0 unchanged." in output
        assert f"keeps its confidential claim of Witness [#{public.source_id}]" in output
        assert f"removes its claim of Witness [#{public.source_id}]" in output
        assert set(incident.claims.values_list("pk", flat=True)) == {rfa.pk, confidential.pk}

    def test_the_admins_preview_lists_the_claims_an_import_removes_and_the_confidential_ones_it_keeps(
        self, client, reviewer, tmp_path
    ):
        incident = make_incident(review_state="draft")
        informant = make_claim(incident=incident, source=make_source(title="Informant", confidential=True))
        rfa = make_claim(incident=incident, source=make_source(title="RFA"), excerpt="about 500")
        row = {**rows(export(reviewer, tmp_path))[0], "sources": "", "title": "Renamed"}
        client.force_login(reviewer)

        preview = client.post("/admin/incidents/incident/import/", {"file": io.BytesIO(write_csv([row]).encode())})

        assert preview.status_code == 200
        assert (
            f"<li>line 2: {incident.public_id} keeps its confidential claim of Informant [#{informant.source_id}], "
            "which the row does not list" in preview.text
        )
        assert (
            f"<li>line 2: {incident.public_id} removes its claim of RFA [#{rfa.source_id}], which the row no longer "
            "lists, with its figures and excerpts" in preview.text
        )
        assert f"line 2: {incident.public_id} Renamed — title, sources</li>" in preview.text
        assert client.post("/admin/incidents/incident/import/", confirm_form(preview)).status_code == 302
        assert list(incident.claims.all()) == [informant]

    def test_history_names_the_importing_user(self, analyst, rich_incidents, tmp_path):
        first, _ = rich_incidents
        in_review(first)  # a published one would change only through a Reviewer
        [row] = [row for row in rows(export(analyst, tmp_path)) if row["public_id"] == first.public_id]
        row["title"] = "Renamed"
        run_import(analyst, tmp_path, write_csv([row]))
        event = apps.get_model("incidents", "IncidentEvent").objects.filter(pgh_obj=first).latest("pgh_id")
        assert (event.title, event.pgh_context.metadata["user"]) == ("Renamed", analyst.pk)
        assert event.pgh_context.metadata["import_file"].endswith("import.csv")

    def test_created_incidents_and_their_links_are_in_history_with_the_importing_user(
        self, analyst, rich_incidents, tmp_path
    ):
        run_import(
            analyst, tmp_path, f"{HEADER},places,sources\nNew,deportation,2024-01-01,2024-01-01,Tumen,RFA report\n"
        )
        created = Incident.objects.get(title="New")
        for event_model, link in (
            ("IncidentEvent", "pgh_obj"),
            ("IncidentPlaceEvent", "incident"),
            ("ClaimEvent", "incident"),
        ):
            event = apps.get_model("incidents", event_model).objects.get(**{link: created})
            assert (event.pgh_label, event.pgh_context.metadata["user"]) == ("insert", analyst.pk)
            assert event.pgh_created_at is not None

    def test_rows_written_after_the_bulk_insert_are_recorded_by_their_triggers(self, analyst, rich_incidents, tmp_path):
        # New incidents go in with the insert triggers off (their history is written in bulk);
        # the triggers are back on for the updates that follow in the same transaction.
        first, _ = rich_incidents
        in_review(first)  # a published one would change only through a Reviewer
        [row] = [row for row in rows(export(analyst, tmp_path)) if row["public_id"] == first.public_id]
        row["sources"] = f"{row['sources']}; New report"
        new_report = make_source(title="New report")
        new_row = {**row, "public_id": "", "version": "", "title": "Created alongside"}
        # What an analyst may give a new incident.
        new_row.update(review_state="draft", verification="alleged")
        run_import(analyst, tmp_path, write_csv([new_row, row]), "--allow-duplicates")

        added_claim = Claim.objects.get(incident=first, source=new_report)
        ClaimEvent = apps.get_model("incidents", "ClaimEvent")
        event = ClaimEvent.objects.get(pgh_obj=added_claim, pgh_label="insert")
        assert event.pgh_context.metadata["user"] == analyst.pk
        created = Incident.objects.get(title="Created alongside")
        assert ClaimEvent.objects.filter(incident=created, pgh_label="insert").count() == created.claims.count() == 3

    def test_history_of_a_bulk_import_holds_the_same_snapshot_as_a_trigger_would(
        self, analyst, rich_incidents, tmp_path
    ):
        # Imports write their insert events in bulk (services.record_events) instead of through
        # the row triggers; an incident created by hand shows what the triggers record.
        run_import(analyst, tmp_path, f"{HEADER}\nImported,deportation,2024-01-01,2024-01-31\n")
        imported = Incident.objects.get(title="Imported")
        by_hand = make_incident(title="By hand", date_start=date(2024, 1, 1), date_end=date(2024, 1, 31))
        IncidentEvent = apps.get_model("incidents", "IncidentEvent")
        snapshot = [field.attname for field in IncidentEvent._meta.concrete_fields if not field.name.startswith("pgh_")]
        for incident in (imported, by_hand):
            event = IncidentEvent.objects.get(pgh_obj=incident, pgh_label="insert")
            assert {name: getattr(event, name) for name in snapshot} == {
                name: getattr(incident, name) for name in snapshot
            }
        assert IncidentEvent.objects.get(pgh_obj=imported).public_id == imported.public_id
        assert IncidentEvent.objects.get(pgh_obj=imported).date_label == imported.date_label

    def test_imported_incidents_are_found_by_all_their_words_which_are_those_an_edit_computes(
        self, reviewer, rich_incidents, tmp_path
    ):
        # New incidents are written with the search words' insert triggers off and get their words
        # once, after their last table (services.incidents_bulk_create); an updated row's words are
        # kept by the triggers, back on for the rest of the import's transaction.
        first, _ = rich_incidents
        [row] = [row for row in rows(export(reviewer, tmp_path)) if row["public_id"] == first.public_id]
        make_source(title="Weekly dispatch")
        row["sources"] = f"{row['sources']}; Weekly dispatch"
        new_row = {**row, "public_id": "", "version": "", "title": "Created alongside"}
        run_import(reviewer, tmp_path, write_csv([new_row, row]), "--allow-duplicates")

        created = Incident.objects.get(title="Created alongside")
        # Its title, a place, a perpetrator's alias, a source of each claim.
        for q in ["alongside", "Hoeryong", "MPS", "RFA", "HRW statement", "dispatch"]:
            assert created.public_id in public_ids(client_for(reviewer).get(f"{API}/incidents/", {"q": q})), q
        assert first.public_id in public_ids(client_for(reviewer).get(f"{API}/incidents/", {"q": "dispatch"}))
        written = search_words()
        assert len(written) == Incident.objects.count() == 3
        assert search_words_an_edit_computes() == written

    def test_only_the_required_columns_create_an_incident(self, analyst, tmp_path):
        output = run_import(analyst, tmp_path, f"{HEADER}\nNew detention,arbitrary-detention,2024-01-01,2024-01-31\n")
        assert "1 incident was created" in output
        incident = Incident.objects.get(title="New detention")
        assert (incident.incident_type.slug, incident.review_state, incident.created_by) == (
            "arbitrary-detention",
            "draft",
            analyst,
        )

    def test_names_match_case_insensitively_and_by_alias(self, analyst, tmp_path):
        make_place(name="Shenyang", alternate_names=["沈阳"])
        make_organization(name="Ministry of State Security", aliases=["MSS"])
        make_source(title="Daily NK report")
        run_import(
            analyst,
            tmp_path,
            "title,type,date_start,date_end,places,perpetrators,sources\n"
            "Arrests,Arbitrary ARREST or detention,2024-01-01,2024-01-01,沈阳,mss,DAILY NK REPORT\n",
        )
        incident = Incident.objects.get(title="Arrests")
        assert [place.name for place in incident.places.all()] == ["Shenyang"]
        assert incident.involvements.get().organization.name == "Ministry of State Security"
        assert incident.claims.get().source.title == "Daily NK report"

    # As written in any Unicode form: decomposed (a macOS tool's), or with a zero-width space pasted after it.
    @pytest.mark.parametrize("form", [lambda name: name, lambda name: unicodedata.normalize("NFD", name) + "\u200b"])
    def test_an_acronym_as_written_names_its_organization_before_a_name_in_another_case(self, analyst, tmp_path, form):
        named_cafe = make_organization(name="CAFÉ")
        fraud_office = make_organization(name="Comité Anti-Fraude Européen", acronym="Café", kind="government")
        run_import(
            analyst,
            tmp_path,
            "title,type,date_start,date_end,perpetrators\n"
            f"Arrests,forced-repatriation,2023-01-01,2023-01-01,{form('Café')}\n"
            f"Detentions,forced-repatriation,2023-01-02,2023-01-02,{form('CAFÉ')}\n",
        )
        assert Incident.objects.get(title="Arrests").involvements.get().organization == fraud_office
        assert Incident.objects.get(title="Detentions").involvements.get().organization == named_cafe

    def test_names_in_full_width_letters_name_the_records_so_named(self, analyst, tmp_path):
        # As a Chinese spreadsheet writes them: --create-missing made each a second record.
        china = make_place(name="China", kind="country", country="CN")
        dandong = make_place(name="Dandong", parent=china, country="")
        mss = make_organization(name="MSS")
        full_width = str.maketrans({code: code + 0xFEE0 for code in range(0x21, 0x7F)})

        output = run_import(
            analyst,
            tmp_path,
            "title,type,date_start,date_end,places,perpetrators\n"
            f"Arrests,forced-repatriation,2023-01-01,2023-01-01,{'China'.translate(full_width)} > "
            f"{'dandong'.translate(full_width)},{'mss'.translate(full_width)}\n",
            "--create-missing",
        )

        assert "1 incident was created" in output and "was created (" not in output
        incident = Incident.objects.get(title="Arrests")
        assert list(incident.places.all()) == [dandong]
        assert incident.involvements.get().organization == mss
        assert Organization.objects.count() == 1

    def test_a_name_stored_in_full_width_letters_beside_its_plain_twin_is_named_as_written(self, analyst, tmp_path):
        # The database holds names alike but for their width apart (README: "The analysts' admin").
        plain = make_organization(name="MSS")
        wide = make_organization(name="\uff2d\uff33\uff33")

        run_import(
            analyst,
            tmp_path,
            "title,type,date_start,date_end,perpetrators\n"
            "Arrests,forced-repatriation,2023-01-01,2023-01-01,MSS\n"
            "Detentions,forced-repatriation,2023-01-02,2023-01-02,\uff2d\uff33\uff33\n",
        )

        assert Incident.objects.get(title="Arrests").involvements.get().organization == plain
        assert Incident.objects.get(title="Detentions").involvements.get().organization == wide


class TestASourceByItsIdAlone:
    """`[#12]` names a source by its id, as the title before it would be checked against: it was read
    as an empty item and left out, so a new row lost its claim without a word, and an update
    removed the very claim the row named."""

    HEADER = "public_id,version,title,type,date_start,date_end,sources,places"

    def test_a_new_rows_source_by_its_id_alone_is_cited(self, analyst, tmp_path):
        source = make_source(title="HRW report")

        run_import(
            analyst, tmp_path, f"{self.HEADER}\n,,Cited,forced-repatriation,2024-01-01,2024-01-01,[#{source.pk}],\n"
        )

        assert list(Claim.objects.filter(incident__title="Cited").values_list("source", flat=True)) == [source.pk]

    def test_an_updates_source_by_its_id_alone_keeps_its_claim(self, analyst, tmp_path):
        source = make_source(title="HRW report")
        incident = make_incident(
            title="Cited", review_state="draft", date_start=date(2024, 1, 1), date_end=date(2024, 1, 1)
        )
        claim = make_claim(incident=incident, source=source)
        row = f"{incident.public_id},{incident.version},Cited,forced-repatriation,2024-01-01,2024-01-01,[#{source.pk}],"

        output = run_import(analyst, tmp_path, f"{self.HEADER}\n{row}\n")

        assert list(incident.claims.values_list("pk", flat=True)) == [claim.pk], output
        assert "removes its claim" not in output

    @pytest.mark.parametrize(
        ("sources", "places", "expected"),
        [
            ("[confidential]", "", "column sources: An item names no source: '[confidential]'."),
            ("", " > ", "column places: A place's path has an empty name: '>'."),
        ],
    )
    def test_marks_or_separators_naming_nothing_are_refused(self, analyst, tmp_path, sources, places, expected):
        content = f"{self.HEADER}\n,,New,forced-repatriation,2024-01-01,2024-01-01,{sources},{places}\n"

        assert expected in import_errors(analyst, tmp_path, content)


class TestErrors:
    """Each kind of problem is reported with its line, column and reason, and nothing is written."""

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (
                "X,forced-repatriation,2023-02-30,2023-03-01",
                "line 2, column date_start: 2023-02-30 is not a day: February 2023 has 28 days.",
            ),
            ("X,forced-repatriation,2023-03-05,2023-03-01", "line 2, column date_end: The end date (2023-03-01) is"),
            ("X,no-such-type,2023-03-01,2023-03-01", "line 2, column type: Unknown type 'no-such-type'"),
            (
                "X,forced-repatriation,2023-03-01,2023-03-01,,,Atlantis",
                "line 2, column places: Unknown place 'Atlantis'",
            ),
            (
                "X,forced-repatriation,2023-03-01,2023-03-01,,,,Acme",
                "line 2, column perpetrators: Unknown organization",
            ),
            (
                "X,forced-repatriation,2023-03-01,2023-03-01,,,,,Rumour",
                "line 2, column sources: Unknown source 'Rumour'",
            ),
            (
                "X,forced-repatriation,2023-03-01,2023-03-01,90,50",
                "line 2, column people_count_min: The minimum (90) is above the maximum (50).",
            ),
            ("X,forced-repatriation,2023-03-01,2023-03-01,many,", "line 2, column people_count_min: 'many' is not a"),
            (
                "X,forced-repatriation,2023-03-01,2023-03-01,,,,,,sometime",
                "column date_precision: 'sometime' is not a date precision",
            ),
            ("X,forced-repatriation,2023-03-01", "line 2: This row has 3 cells; the header has 10."),
            (",forced-repatriation,2023-03-01,2023-03-01", "line 2, column title: This field cannot be blank."),
            # Trimmed, as the admin and the API trim it: spaces alone are blank.
            ("   ,forced-repatriation,2023-03-01,2023-03-01", "line 2, column title: This field cannot be blank."),
            (
                '"About 500\nreturned",forced-repatriation,2023-03-01,2023-03-01',
                "line 2, column title: A title is one line: remove the line break.",
            ),
        ],
    )
    def test_a_bad_value_is_reported_with_its_line_and_column(self, analyst, tmp_path, body, expected):
        header = "title,type,date_start,date_end,people_count_min,people_count_max,places,perpetrators,sources,"
        header += "date_precision"
        cells = body.split(",")
        if len(cells) > 3:
            # Blank cells up to date_precision, which must be a precision unless the case is about it.
            cells += [""] * (9 - len(cells))
            body = ",".join(cells if len(cells) == 10 else [*cells, "day"])
        make_incident(title="Untouched")
        assert expected in import_errors(analyst, tmp_path, f"{header}\n{body}\n")

    def test_a_row_breaking_a_field_rule_and_the_model_clean_reports_both(self, analyst, tmp_path):
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},date_precision\nX,forced-repatriation,2023-03-05,2023-03-01,sometime\n"
        )
        assert (
            "line 2, column date_precision: 'sometime' is not a date precision: write one of day, week, month, "
            "year, range, unknown." in errors
        )
        assert "line 2, column date_end: The end date (2023-03-01) is before the start date (2023-03-05)." in errors

    @pytest.mark.parametrize(
        ("precision", "expected"),
        [
            ("month", "2021-07-31, the month's last day, for a Month (“July 2021”)"),
            ("", "2021-07-01, the start date again, for a known day"),
        ],
    )
    def test_an_end_left_empty_is_asked_for_with_the_day_the_admin_names(self, analyst, tmp_path, precision, expected):
        # "In July 2021" typed with the start alone: the import said only "write the date as
        # YYYY-MM-DD", where the admin's form names the day to write.
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},date_precision\nX,forced-repatriation,2021-07-01,,{precision}\n"
        )
        assert f"line 2, column date_end: Give the last day of the range too: {expected}." in errors

    def test_an_end_left_empty_of_an_incident_is_asked_for_at_its_precision(self, analyst, tmp_path):
        incident = make_incident(date_start=date(2020, 1, 1), date_end=date(2020, 12, 31), date_precision="year")
        errors = import_errors(
            analyst,
            tmp_path,
            f"public_id,version,{HEADER}\n{incident.public_id},{incident.version},X,forced-repatriation,2020-01-01,\n",
        )
        assert "column date_end: Give the last day of the range too: 2020-12-31, for a Year (“2020”)." in errors

    def test_a_choice_that_is_none_names_the_values_it_may_take(self, analyst, tmp_path):
        # Django's "Value 'roughly' is not a valid choice." left the analyst guessing what is.
        errors = import_errors(
            analyst,
            tmp_path,
            f"{HEADER},count_qualifier,verification\nX,forced-repatriation,2023-03-01,2023-03-01,roughly,true\n",
        )
        assert (
            "line 2, column count_qualifier: 'roughly' is not a count qualifier: write one of exact, about, "
            "at_least, at_most, unknown." in errors
        )
        assert "line 2, column verification: 'true' is not a verification: write one of alleged," in errors

    def test_a_choice_written_as_the_admin_labels_it_is_that_choice(self, analyst, tmp_path):
        # A person typing the file writes what the admin's form shows ("At least", "Month").
        run_import(
            analyst,
            tmp_path,
            f"{HEADER},date_precision,count_qualifier\nX,forced-repatriation,2023-03-01,2023-03-31,Month,At least\n",
        )
        assert Incident.objects.values_list("date_precision", "count_qualifier").get() == ("month", "at_least")

    def test_every_bad_row_is_listed_and_the_good_ones_are_not_written(self, analyst, tmp_path):
        errors = import_errors(
            analyst,
            tmp_path,
            f"{HEADER}\n"
            "Good,forced-repatriation,2023-01-01,2023-01-01\n"
            "Bad date,forced-repatriation,01/02/2023,2023-01-01\n"
            "Good too,forced-repatriation,2023-01-01,2023-01-01\n"
            '"Spans\ntwo lines",nope,2023-01-01,2023-01-01\n',
        )
        path = tmp_path / "import.csv"
        assert errors.splitlines() == [
            f"{path}: line 3, column date_start: '01/02/2023' is not a date; write it as YYYY-MM-DD.",
            f"{path}: line 5, column type: Unknown type 'nope'; add it first, or import with "
            "--create-missing (in the admin: 'Create missing') to create it.",
            f"{path}: line 5, column title: A title is one line: remove the line break.",
        ]
        assert not Incident.objects.exists()

    def test_malformed_csv_names_the_line(self, analyst, tmp_path):
        errors = import_errors(analyst, tmp_path, f'{HEADER}\nA,forced-repatriation,2023-01-01,2023-01-01\n"B,x\n')
        assert "line 3: Malformed CSV: unexpected end of data." in errors

    def test_text_after_a_closing_quote_is_malformed(self, analyst, tmp_path):
        errors = import_errors(analyst, tmp_path, f'{HEADER}\n"A" word,forced-repatriation,2023-01-01,2023-01-01\n')
        assert "line 2: Malformed CSV: ',' expected after '\"'." in errors

    def test_other_encodings_are_refused_with_advice(self, analyst, tmp_path):
        latin1 = f"{HEADER}\nDétention,forced-repatriation,2023-01-01,2023-01-01\n".encode("latin-1")
        errors = import_errors(analyst, tmp_path, latin1)
        assert "line 2, column title: The file is not UTF-8 (byte 0xe9 cannot be read); save it as UTF-8" in errors

    def test_a_utf8_bom_is_fine(self, analyst, tmp_path):
        run_import(analyst, tmp_path, f"\ufeff{HEADER}\n납치,forced-repatriation,2023-01-01,2023-01-01\n".encode())
        assert Incident.objects.get().title == "납치"

    def test_header_problems(self, analyst, tmp_path):
        assert "line 1, column date_end: This required column is missing." in import_errors(
            analyst, tmp_path, "title,type,date_start\nA,forced-repatriation,2023-01-01\n"
        )
        assert "line 1, column titel: Unknown column; the columns are public_id, title," in import_errors(
            analyst, tmp_path, "titel,type,date_start,date_end\n"
        )
        assert "line 1: The file is empty" in import_errors(analyst, tmp_path, "")

    def test_an_oversized_file_is_refused_before_it_is_read(self, analyst, tmp_path, settings):
        settings.IMPORT_MAX_BYTES = 100
        content = f"{HEADER}\n" + "A,forced-repatriation,2023-01-01,2023-01-01\n" * 3
        assert "The file is larger than 100 bytes, the import limit (TRACKER_IMPORT_MAX_BYTES)." in import_errors(
            analyst, tmp_path, content
        )

    def test_a_header_repeating_a_column_is_refused_at_once(self, analyst, tmp_path):
        # 600 KB of header: checking it once took time quadratic in its length (280 s).
        bomb = ",".join(["title"] * 100_000) + "\nA\n"
        assert "line 1, column title: This column appears more than once; give each column once." in import_errors(
            analyst, tmp_path, bomb
        )

    def test_a_file_with_more_rows_than_the_limit_is_refused(self, analyst, tmp_path, settings):
        settings.IMPORT_MAX_ROWS = 2
        row = "A,forced-repatriation,2023-01-01,2023-01-01\n"
        assert (
            "line 4: The file has more than 2 rows, the import limit (TRACKER_IMPORT_MAX_ROWS); split it into "
            "several files." in import_errors(analyst, tmp_path, f"{HEADER}\n" + row * 3)
        )
        run_import(analyst, tmp_path, f"{HEADER}\n" + row * 2)
        assert Incident.objects.count() == 2

    def test_a_file_naming_more_places_perpetrators_and_sources_than_the_limit_is_refused(
        self, analyst, tmp_path, settings
    ):
        # Two rows at most: twenty names. Each unknown name was an error (and with --create-missing a
        # new record) held until the report: a 50 MB file of names held six million errors, 1.9 GB.
        settings.IMPORT_MAX_ROWS = 2
        china = make_place(name="China", kind="country", country="CN")
        header = f"{HEADER},places,perpetrators,sources"
        row = "A,forced-repatriation,2023-01-01,2023-01-01,{places},,"
        ten_places = ";".join(f"China > Place {number}" for number in range(10))
        refused = import_errors(
            analyst,
            tmp_path,
            "\n".join([header, row.format(places=ten_places), row.format(places=ten_places + ";Place 10"), ""]),
            "--create-missing",
        )
        assert (
            "line 3: The file names more than 20 places, perpetrators and sources, the import limit (10 a row of "
            "TRACKER_IMPORT_MAX_ROWS); split it into several files." in refused
        )
        assert not china.children.exists()
        run_import(analyst, tmp_path, f"{header}\n{row.format(places=ten_places)}\n", "--create-missing")
        assert china.children.count() == 10

    @pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
    def test_every_kind_of_line_end_is_read(self, analyst, tmp_path, newline):
        run_import(
            analyst,
            tmp_path,
            newline.join(
                [HEADER, "A,forced-repatriation,2023-01-01,2023-01-01", "B,forced-repatriation,2023-01-02,2023-01-02"]
            ),
        )
        assert sorted(Incident.objects.values_list("title", flat=True)) == ["A", "B"]
        # A quoted cell spanning two lines (refused: a title is one line) counts both.
        quoted = f'"Two{newline}lines",forced-repatriation,2023-01-01,2023-01-01'
        errors = import_errors(
            analyst, tmp_path, newline.join([HEADER, quoted, "C,forced-repatriation,01/02/2023,2023-01-02"])
        )
        assert "line 2, column title: A title is one line: remove the line break." in errors
        assert "line 4, column date_start: '01/02/2023' is not a date" in errors

    def test_a_stale_version_is_a_conflict(self, analyst, tmp_path):
        incident = make_incident(title="Old", review_state="draft")
        exported = rows(export(analyst, tmp_path))
        for description in ("Edited", "Edited again"):
            incident.description = description
            incident.save()
        errors = import_errors(analyst, tmp_path, write_csv([{**exported[0], "title": "Mine"}]))
        assert (
            f"line 2, column version: {incident.public_id} has changed since this file was exported "
            "(the file has version 1, the database version 3)" in errors
        )
        assert Incident.objects.get().title == "Old"

    def test_a_version_the_incident_never_had_is_named_as_such(self, analyst, tmp_path):
        incident = make_incident(title="Old", review_state="draft")
        exported = rows(export(analyst, tmp_path))
        errors = import_errors(analyst, tmp_path, write_csv([{**exported[0], "title": "Mine", "version": "10" * 15}]))
        assert (
            f"line 2, column version: {incident.public_id} never had version {'10' * 15}: it is at version 1" in errors
        )
        assert Incident.objects.get().title == "Old"

    def test_updates_need_a_version_and_an_incident_the_user_may_see(self, analyst, tmp_path):
        visible = make_incident(title="Visible")
        hidden = make_incident(title="Hidden", confidential=True)
        errors = import_errors(
            analyst,
            tmp_path,
            f"public_id,version,{HEADER}\n"
            f"{visible.public_id},,A,forced-repatriation,2023-01-01,2023-01-01\n"
            f"{hidden.public_id},1,B,forced-repatriation,2023-01-01,2023-01-01\n"
            "INC-999999,1,C,forced-repatriation,2023-01-01,2023-01-01\n"
            f"{visible.public_id},1,D,forced-repatriation,2023-01-01,2023-01-01\n",
        )
        assert f"line 2, column version: Needed to update {visible.public_id}" in errors
        assert f"line 3, column public_id: No incident {hidden.public_id} that you may see" in errors
        assert "line 4, column public_id: No incident INC-999999 that you may see" in errors
        assert f"line 5, column public_id: {visible.public_id} is also on line 2." in errors

    def test_ambiguous_names_are_errors(self, analyst, tmp_path):
        make_place(name="Namyang", parent=make_place(name="North Hamgyong"))
        make_place(name="Namyang", parent=make_place(name="Ryanggang"))
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},places\nA,forced-repatriation,2023-01-01,2023-01-01,Namyang\n"
        )
        assert "line 2, column places: 'Namyang' matches 2 places" in errors

    def test_ambiguous_names_holding_digits_int_cannot_read_are_listed(self, analyst, tmp_path):
        # The paths were sorted with int() of each run of "digits": "²" is one to isdigit(), not to
        # int(), and the import failed with a ValueError.
        name = "Block 1²2"
        make_place(name=name, parent=make_place(name="North Hamgyong"))
        make_place(name=name, parent=make_place(name="Ryanggang"))
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},places\nA,forced-repatriation,2023-01-01,2023-01-01,{name}\n"
        )
        assert f"line 2, column places: '{name}' matches 2 places" in errors

    def test_a_source_id_of_more_digits_than_int_reads_is_named(self, analyst, tmp_path):
        content = f"{HEADER},sources\nA,forced-repatriation,2023-01-01,2023-01-01,Report [#{'9' * 5000}]\n"
        errors = import_errors(analyst, tmp_path, content)
        assert "line 2, column sources: [#99999999999999999999…] is no source id: it has 5,000 digits." in errors

    def test_a_source_title_holding_a_long_run_of_spaces_is_read(self, analyst, tmp_path):
        # Each reading of the cell searched for the `[#id]` at its end from every space in turn:
        # quadratic, so 50,000 spaces (50 KB of a 50 MB limit) kept the check busy for minutes.
        title = f"Report{' ' * 50_000}of 3 May"
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},sources\nA,forced-repatriation,2023-01-01,2023-01-01,{title} [#12]\n"
        )
        assert f"line 2, column sources: No source #12 that you may see ({title} [#12])." in errors

    def test_a_hidden_source_is_as_unknown_as_a_missing_one(self, analyst, tmp_path):
        make_source(title="Informant", confidential=True)
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},sources\nA,forced-repatriation,2023-01-01,2023-01-01,Informant\n"
        )
        assert "line 2, column sources: Unknown source 'Informant'" in errors

    def test_the_workflow_permissions_apply(self, analyst, tmp_path):
        errors = import_errors(
            analyst,
            tmp_path,
            f"{HEADER},review_state,verification\n"
            "A,forced-repatriation,2023-01-01,2023-01-01,published,alleged\n"
            "B,forced-repatriation,2023-01-01,2023-01-01,in_review,verified\n",
        )
        assert "line 2, column review_state: You may not publish incidents" in errors
        assert "line 3, column verification: You may not change verification" in errors
        assert "line 3, column review_state" not in errors

    def test_a_viewer_may_not_import(self, tmp_path):
        viewer = make_user(roles.VIEWER)
        errors = import_errors(viewer, tmp_path, f"{HEADER}\nA,forced-repatriation,2023-01-01,2023-01-01\n")
        assert "You may not import incidents" in errors

    def test_command_problems_are_command_errors(self, analyst, tmp_path):
        with pytest.raises(CommandError, match="--user: no user is called 'nobody'"):
            call_command("import_incidents", str(tmp_path / "x.csv"), "--user=nobody")
        with pytest.raises(CommandError, match=r"Cannot read .*missing\.csv: No such file or directory\."):
            call_command("import_incidents", str(tmp_path / "missing.csv"), f"--user={analyst.username}")


class TestOptions:
    def test_dry_run_reports_and_writes_nothing(self, analyst, tmp_path):
        output = run_import(analyst, tmp_path, f"{HEADER}\nA,forced-repatriation,2023-01-01,2023-01-01\n", "--dry-run")
        assert "1 incident would be created; 0 updated; 0 unchanged." in output
        assert not Incident.objects.exists()

    def test_create_missing_creates_and_reports_each_new_record(self, analyst, tmp_path):
        make_place(name="China", kind="country", country="CN")
        output = run_import(
            analyst,
            tmp_path,
            "title,type,date_start,date_end,places,perpetrators,sources\n"
            "A,Abduction,2023-01-01,2023-01-01,China > Atlantis; china > atlantis,Acme,Rumour\n"
            "B,abduction,2023-06-01,2023-06-01,China > Atlantis,,Rumour\n",
            "--create-missing",
        )
        assert (
            "2 incidents were created; 0 updated; 0 unchanged; 1 incident type was created (Abduction); "
            "1 place was created (China > Atlantis); 1 organization was created (Acme); 1 source was created "
            "(Rumour)."
        ) in output
        assert IncidentType.objects.get(name="Abduction").slug == "abduction"
        assert Place.objects.filter(name__iexact="atlantis").count() == 1
        assert Organization.objects.filter(name="Acme").exists()
        assert Source.objects.filter(title="Rumour").count() == 1
        assert Claim.objects.filter(source__title="Rumour").count() == 2

    def test_create_missing_refuses_a_new_type_whose_slug_is_taken_naming_its_row(self, analyst, tmp_path, client):
        # A type's slug is made of its name and is unique: "Forced repatriation!" made the slug of
        # Forced repatriation, which the database refused once the import wrote, and the import said
        # someone else had added the type meanwhile, though importing again met the same.
        content = (
            f"{HEADER}\n"
            "A,Forced repatriation!,2023-01-01,2023-01-01\n"
            "B,Odd type?,2023-02-01,2023-02-01\n"
            "C,odd-type!,2023-03-01,2023-03-01\n"
            "D,???,2023-04-01,2023-04-01\n"
        )

        errors = import_errors(analyst, tmp_path, content, "--create-missing", "--allow-duplicates")

        assert (
            "line 2, column type: 'Forced repatriation!' cannot name a new type: its slug would be "
            "'forced-repatriation', which the type 'Forced repatriation' has. Write forced-repatriation for that "
            "type, or name the new one apart." in errors
        )
        assert (
            "line 4, column type: 'odd-type!' cannot name a new type: its slug would be 'odd-type', as would that "
            "of 'Odd type?', a new type this file names too. Write one name for both, or name them apart." in errors
        )
        assert "line 5, column type: '???' cannot name a new type: it has no letter or digit to make its slug of." in (
            errors
        )
        assert "line 3" not in errors and "someone else" not in errors
        assert not IncidentType.objects.filter(slug__in=["odd-type", ""]).exists()
        # The admin's import says the same, on the page of its preview.
        client.force_login(analyst)
        answer = client.post(
            "/admin/incidents/incident/import/", {"file": io.BytesIO(content.encode()), "create_missing": "on"}
        )
        assert answer.status_code == 400
        assert "its slug would be &#x27;forced-repatriation&#x27;, which the type" in answer.text

    def test_create_missing_makes_every_unknown_place_of_a_path_outermost_first(self, analyst, tmp_path):
        # Only China is known: an analyst's new town in a new province was refused before, "'China >
        # Jilin' does not name one place to create it in", though the file said where each lies.
        china = make_place(name="China", kind="country", country="CN")
        output = run_import(
            analyst,
            tmp_path,
            f"{HEADER},places\n"
            "A,forced-repatriation,2023-01-01,2023-01-01,China > Jilin > Tumen\n"
            "B,forced-repatriation,2023-05-01,2023-05-01,China > Jilin; China > jilin > Yanji\n",
            "--create-missing",
            "--allow-duplicates",
        )
        assert "3 places were created (China > Jilin, China > Jilin > Tumen, China > Jilin > Yanji)." in output
        jilin = Place.objects.get(name="Jilin")
        assert (jilin.parent, jilin.country) == (china, "CN")
        assert {(place.name, place.parent_id, place.country) for place in Place.objects.filter(parent=jilin)} == {
            ("Tumen", jilin.pk, "CN"),
            ("Yanji", jilin.pk, "CN"),
        }
        assert sorted(Incident.objects.values_list("title", "places__name")) == [
            ("A", "Tumen"),
            ("B", "Jilin"),
            ("B", "Yanji"),
        ]

    def test_a_skipped_row_makes_no_place_but_a_kept_rows_new_place_gets_its_new_parent(self, analyst, tmp_path):
        china = make_place(name="China", kind="country", country="CN")
        make_incident(title="Known", places=[china], date_start=date(2023, 1, 1), date_end=date(2023, 1, 1))
        output = run_import(
            analyst,
            tmp_path,
            f"{HEADER},places\n"
            "Again,forced-repatriation,2023-01-01,2023-01-01,China > Liaoning > Dandong\n"
            "New,forced-repatriation,1990-06-01,1990-06-01,China > Jilin > Tumen\n",
            "--create-missing",
            "--skip-duplicates",
        )
        assert "2 places were created (China > Jilin, China > Jilin > Tumen)." in output
        assert not Place.objects.filter(name__in=["Liaoning", "Dandong"]).exists()
        assert Place.objects.get(name="Tumen").parent == Place.objects.get(name="Jilin", parent=china)

    def test_a_path_whose_parent_matches_several_places_names_them(self, analyst, tmp_path):
        for country, code in (("China", "CN"), ("Vietnam", "VN")):
            make_place(name="Border", parent=make_place(name=country, kind="country", country=code))
        errors = import_errors(
            analyst,
            tmp_path,
            f"{HEADER},places\nA,forced-repatriation,2023-01-01,2023-01-01,Border > Gate 3\n",
            "--create-missing",
        )
        assert (
            "line 2, column places: Unknown place 'Border > Gate 3', and 'Border' matches 2 places to create it "
            "in; write the path of one of: China > Border, Vietnam > Border." in errors
        )

    def test_create_missing_makes_no_place_below_the_tenth_level(self, analyst, tmp_path):
        # Places nest at most 10 levels deep (TREE_LEVELS_MAX), as the admin and the API refuse.
        chain = place_chain(8, name="China", country="CN")
        path = " > ".join(place.name for place in chain)
        content = (
            f"{HEADER},places\n"
            f"A,forced-repatriation,2023-01-01,2023-01-01,{path} > Tumen > Gate 3\n"
            "B,forced-repatriation,2023-05-01,2023-05-01,Level 8 > Tumen > Gate 3 > Booth\n"
        )

        errors = import_errors(analyst, tmp_path, content, "--create-missing", "--allow-duplicates")

        too_deep = "Places nest at most 10 levels deep (country > province > city > district > village is five)"
        assert (
            f"line 3, column places: Unknown place 'Level 8 > Tumen > Gate 3 > Booth': {too_deep}: here 'Booth' "
            "would be at level 11. Choose a place higher up." in errors
        )
        assert "line 2" not in errors  # Gate 3 at the tenth level
        assert not Place.objects.filter(name__in=["Tumen", "Gate 3", "Booth"]).exists()

    def test_a_path_a_thousand_levels_deep_is_a_row_error_not_a_server_error(self, analyst, client):
        # Its new places were made by recursion, a level at a time: a RecursionError, a 500.
        path = " > ".join(["China", *(f"Deep {level}" for level in range(1, 1500))])
        content = f'{HEADER},places\nT,forced-repatriation,2023-01-01,2023-01-01,"{path}"\n'
        make_place(name="China", kind="country", country="CN")
        client.force_login(analyst)

        answer = client.post(
            "/admin/incidents/incident/import/", {"file": io.BytesIO(content.encode()), "create_missing": "on"}
        )

        assert answer.status_code == 400
        assert "would be at level 1500. Choose a place higher up." in answer.text
        assert Place.objects.count() == 1

    def test_create_missing_in_a_dry_run_creates_nothing(self, analyst, tmp_path):
        make_place(name="China", kind="country", country="CN")
        output = run_import(
            analyst,
            tmp_path,
            f"{HEADER},places\nA,forced-repatriation,2023-01-01,2023-01-01,China > Atlantis\n",
            "--create-missing",
            "--dry-run",
        )
        assert "1 place would be created (China > Atlantis)" in output
        assert not Place.objects.filter(name="Atlantis").exists()

    def test_create_missing_refuses_a_new_place_by_its_name_alone(self, analyst, tmp_path):
        # "Tumen" alone became a top-level place in no country, which the statistics count in no
        # country; the file cannot say where it is but by its path.
        make_place(name="China", kind="country", country="CN")
        content = f"{HEADER},places\nA,Abduction,2023-01-01,2023-01-01,China\nB,Abduction,2023-06-01,2023-06-01,Tumen\n"

        errors = import_errors(analyst, tmp_path, content, "--create-missing")

        assert (
            "line 3, column places: Unknown place 'Tumen', which is not a country's name: write its path under "
            "a known place (China > Jilin > Tumen)" in errors
        )
        assert not Incident.objects.exists()
        assert not IncidentType.objects.filter(name="Abduction").exists()
        assert list(Place.objects.values_list("name", flat=True)) == ["China"]

        run_import(analyst, tmp_path, content.replace(",Tumen", ",China > Jilin > Tumen"), "--create-missing")
        tumen = Place.objects.get(name="Tumen")
        assert (tumen.parent.name, tumen.parent.parent.name, tumen.country) == ("Jilin", "China", "CN")

    def test_create_missing_makes_a_countrys_name_a_country(self, analyst, tmp_path):
        output = run_import(
            analyst,
            tmp_path,
            f"{HEADER},places\nA,forced-repatriation,2023-01-01,2023-01-01,Mongolia > Ulaanbaatar; north korea\n",
            "--create-missing",
        )

        assert "3 places were created (Mongolia, Mongolia > Ulaanbaatar, north korea)." in output
        assert set(Place.objects.values_list("name", "kind", "country", "parent__name")) == {
            ("Mongolia", "country", "MN", None),
            ("Ulaanbaatar", "other", "MN", "Mongolia"),
            ("north korea", "country", "KP", None),
        }


class TestAdminImportPage:
    URL = "/admin/incidents/incident/import/"

    def upload(self, client, content: str, **extra):
        return client.post(self.URL, {"file": io.BytesIO(content.encode()), **extra}, format="multipart")

    def test_viewers_may_not_import(self, client):
        client.force_login(make_user(roles.VIEWER))
        assert client.get(self.URL).status_code == 403

    def test_upload_previews_then_confirm_writes(self, client, analyst):
        existing = make_incident(title="Existing", review_state="draft")
        client.force_login(analyst)
        assert client.get(self.URL).status_code == 200
        content = write_csv(
            [
                {
                    "public_id": existing.public_id,
                    "version": "1",
                    "title": "Existing, renamed",
                    "type": "forced-repatriation",
                    "date_start": "2023-08-29",
                    "date_end": "2023-08-29",
                },
                {"public_id": "", "version": "", "title": "Brand new", "type": "deportation"}
                | {"date_start": "2024-01-01", "date_end": "2024-01-01"},
            ]
        )

        preview = self.upload(client, content)

        assert preview.status_code == 200
        assert "line 3: Brand new" in preview.text
        assert f"line 2: {existing.public_id} Existing, renamed — title" in preview.text
        assert 'name="confirm"' in preview.text
        assert Incident.objects.count() == 1

        confirmed = client.post(self.URL, confirm_form(preview))

        assert confirmed.status_code == 302
        assert confirmed["Location"] == reverse("admin:incidents_incident_changelist")
        assert set(Incident.objects.values_list("title", flat=True)) == {"Existing, renamed", "Brand new"}

    def test_errors_are_listed_and_nothing_can_be_confirmed(self, client, analyst):
        client.force_login(analyst)
        response = self.upload(client, f"{HEADER}\nA,nope,2023-01-01,2023-01-01\nB,deportation,x,2023-01-01\n")
        assert response.status_code == 400
        assert "<td>2</td><td>type</td><td>Unknown type &#x27;nope&#x27;" in response.text
        assert "<td>3</td><td>date_start</td>" in response.text
        assert 'name="confirm"' not in response.text
        assert client.post(self.URL, {"confirm": "1"}).status_code == 302
        assert not Incident.objects.exists()

    def test_a_row_wider_than_the_header_refuses_the_file_before_its_cells_are_held(self, client, analyst):
        # 2 MB of two-letter cells on line 3: read in full, they took twenty times the row's size.
        wide = ",".join(["ab"] * 700_000)
        content = f"{HEADER}\nA,deportation,2023-01-01,2023-01-01\n{wide}\nB,nope,2023-01-01,2023-01-01\n"
        client.force_login(analyst)
        tracemalloc.start()
        try:
            response = self.upload(client, content)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 400
        refusal = "This row has more cells than the header&#x27;s 4; the file was read no further."
        assert f"<td>3</td><td></td><td>{refusal}" in response.text
        assert "nope" not in response.text  # the reading stopped at line 3
        assert 'name="confirm"' not in response.text
        assert not Incident.objects.exists()
        assert peak < 10 * len(content), f"{peak:,} bytes at the peak for a {len(content):,}-byte file"

    def test_confirm_validates_again(self, client, analyst):
        incident = make_incident(title="Before", review_state="draft")
        client.force_login(analyst)
        preview = self.upload(
            client,
            f"public_id,version,{HEADER}\n{incident.public_id},1,Mine,forced-repatriation,2023-08-29,2023-08-29\n",
        )
        # Someone saves the incident between preview and confirm.
        Incident.objects.filter(pk=incident.pk).update(title="Theirs", version=2)

        response = client.post(self.URL, confirm_form(preview))

        assert response.status_code == 400
        assert "has changed since this file was exported" in response.text
        assert Incident.objects.get().title == "Theirs"

    def test_the_previewed_file_waits_outside_the_session_one_per_account(self, client, analyst):
        # The whole file (up to 50 MB) was kept in the session, read and decoded on every request of
        # that browser, one per session. Now the session holds a key; the file, one per account.
        titles = secrets.token_urlsafe(400_000)
        content = f"{HEADER}\n" + "".join(
            f"{titles[n * 250 : (n + 1) * 250]},forced-repatriation,2023-01-01,2023-01-01\n" for n in range(2000)
        )
        first, second = Client(), Client()
        for browser in (first, second):
            browser.force_login(analyst)
        first_preview = self.upload(first, content)
        assert first_preview.status_code == 200
        session_row = Session.objects.get(pk=first.session.session_key)
        assert len(session_row.session_data) < 1000
        assert PendingImport.objects.get(user=analyst).content == content.encode()

        # Another session's upload replaces it: the first preview's button no longer imports anything.
        second_preview = self.upload(second, f"{HEADER}\nLater,deportation,2024-01-01,2024-01-01\n")
        assert second_preview.status_code == 200
        assert PendingImport.objects.filter(user=analyst).count() == 1
        stale = first.post(self.URL, confirm_form(first_preview), follow=True)
        assert "Nothing is waiting to be imported: upload the file again." in stale.text
        assert not Incident.objects.exists()

        assert second.post(self.URL, confirm_form(second_preview)).status_code == 302
        assert list(Incident.objects.values_list("title", flat=True)) == ["Later"]
        assert not PendingImport.objects.exists()

    def test_a_preview_confirms_the_file_it_showed_not_one_uploaded_since_in_another_tab(self, client, analyst):
        # Both tabs share the session: the session, which held the key, held the later tab's, and
        # tab A's button imported tab B's file. The button now sends the key of the file its page showed.
        client.force_login(analyst)
        tab_a = self.upload(client, f"{HEADER}\nFrom tab A,deportation,2024-01-01,2024-01-01\n")
        tab_b = self.upload(client, f"{HEADER}\nFrom tab B,deportation,2024-01-01,2024-01-01\n")
        assert "From tab A" in tab_a.text and "From tab B" in tab_b.text

        stale = client.post(self.URL, confirm_form(tab_a), follow=True)
        assert "Nothing is waiting to be imported: upload the file again." in stale.text
        assert "upload the file again" in client.post(self.URL, {"confirm": "1"}, follow=True).text  # no key
        assert not Incident.objects.exists()

        assert client.post(self.URL, confirm_form(tab_b)).status_code == 302
        assert list(Incident.objects.values_list("title", flat=True)) == ["From tab B"]

    @pytest.mark.parametrize("key", ["0123\x00", "x" * 40, "../" * 11])
    def test_a_key_the_preview_never_writes_is_told_to_upload_again(self, client, analyst, key):
        # A NUL reached PostgreSQL's text: a 500.
        client.force_login(analyst)
        self.upload(client, f"{HEADER}\nWaiting,deportation,2024-01-01,2024-01-01\n")

        refused = client.post(self.URL, {"confirm": "1", "key": key}, follow=True)

        assert "Nothing is waiting to be imported: upload the file again." in refused.text
        assert not Incident.objects.exists() and PendingImport.objects.exists()

    def test_signing_out_deletes_the_file_waiting_to_be_imported(self, client, analyst):
        # It stayed in the database for good: after signing out, after the session was gone.
        client.force_login(analyst)
        other = make_user(roles.ANALYST)
        other_browser = Client()
        other_browser.force_login(other)
        preview = self.upload(client, f"{HEADER}\nNamed informant,deportation,2024-01-01,2024-01-01\n")
        self.upload(other_browser, f"{HEADER}\nSomeone else's,deportation,2024-01-01,2024-01-01\n")

        client.post("/accounts/sign-out/")

        assert list(PendingImport.objects.values_list("user", flat=True)) == [other.pk]
        client.force_login(analyst)
        assert "upload the file again" in client.post(self.URL, confirm_form(preview), follow=True).text
        assert not Incident.objects.exists()

    def test_a_file_older_than_a_session_is_gone_and_deleted(self, client, analyst, settings):
        client.force_login(analyst)
        preview = self.upload(client, f"{HEADER}\nNamed informant,deportation,2024-01-01,2024-01-01\n")
        other = make_user(roles.ANALYST)
        other_browser = Client()
        other_browser.force_login(other)
        self.upload(other_browser, f"{HEADER}\nSomeone else's,deportation,2024-01-01,2024-01-01\n")
        PendingImport.objects.update(uploaded_at=timezone.now() - timedelta(seconds=settings.SESSION_COOKIE_AGE + 1))

        stale = client.post(self.URL, confirm_form(preview), follow=True)

        assert "Nothing is waiting to be imported: upload the file again." in stale.text
        assert not Incident.objects.exists()
        assert not PendingImport.objects.exists()  # this account's, and any other's as old

    def test_the_changelist_links_to_the_import_page(self, client, analyst):
        client.force_login(analyst)
        response = client.get(reverse("admin:incidents_incident_changelist"))
        assert f'href="{self.URL}"' in response.text


def test_checking_a_file_costs_the_same_queries_whatever_its_length(
    analyst, rich_incidents, tmp_path, django_assert_num_queries
):
    first, second = rich_incidents
    content = write_csv(
        [
            {"public_id": incident.public_id, "version": "1", "title": incident.title, "type": "forced-repatriation"}
            | {"date_start": "2023-08-29", "date_end": "2023-08-29", "places": "Tumen", "sources": "RFA report"}
            for incident in (first, second)
        ]
        + [
            {"public_id": "", "version": "", "title": f"New {n}", "type": "deportation", "date_start": "2024-01-01"}
            | {"date_end": "2024-01-01", "places": "Hoeryong", "sources": "HRW statement"}
            for n in range(50)
        ]
    )
    path = tmp_path / "import.csv"
    path.write_text(content)
    # The user (1) and their permissions (2: user's and groups'); one query each for types, places,
    # organizations and the sources the file names (4); every name compared, lowercased by the
    # database (1: importers._Lowercase); the file's titles as sources' titles are
    # compared (1) and the sources whose titles compare equal (1: services.sources_titled_alike);
    # the incidents it updates (1) with their places (1), involvements and their organizations (2),
    # claims and their sources (2), and the claims the user may see (1); the incidents the new rows
    # may duplicate (1: none here, so none to load). None per row.
    with django_assert_num_queries(18):
        call_command("import_incidents", str(path), f"--user={analyst.username}", "--dry-run", stdout=io.StringIO())


def test_each_new_incident_is_checked_once_whether_or_not_it_is_written(analyst, tmp_path):
    # The import's report and its write share one check (services.incidents_bulk_validate).
    content = f"{HEADER}\n" + "".join(f"New {n},deportation,2024-01-01,2024-01-01\n" for n in range(3))
    with mock.patch.object(Incident, "clean", autospec=True, side_effect=Incident.clean) as clean:
        run_import(analyst, tmp_path, content, "--dry-run")
        assert clean.call_count == 3
        run_import(analyst, tmp_path, content)
        assert clean.call_count == 6
    assert Incident.objects.count() == 3


def test_an_import_turns_the_cycle_collector_back_on(analyst, tmp_path):
    # Paused while a file is checked and written (importers._cycle_collection_paused), whatever happens.
    run_import(analyst, tmp_path, f"{HEADER}\nNew,deportation,2024-01-01,2024-01-01\n")
    assert gc.isenabled()
    import_errors(analyst, tmp_path, f"{HEADER}\nNew,deportation,someday,2024-01-01\n")
    assert gc.isenabled()


class TestBulkCreate:
    """services.incidents_bulk_validate and incidents_bulk_create, which write an import's new incidents."""

    def test_every_invalid_incident_and_child_is_reported_and_nothing_is_written(self, analyst):
        source, other_source = make_source(title="RFA report"), make_source(title="HRW statement")
        day = date(2024, 1, 1)
        good = {"title": "Good", "incident_type": incident_type(), "date_start": day, "date_end": day}
        # The same bad claim on two incidents is checked once but reported for each.
        bad_claim = {"source": source, "people_count_min": 90, "people_count_max": 50}
        before = database_contents()
        with pytest.raises(ValidationError) as refused:
            incidents_bulk_create(
                user=analyst,
                incidents=[
                    {"data": good, "claims": [{"source": other_source}]},
                    {"data": {**good, "date_end": date(2023, 12, 31)}},
                    {"data": good, "claims": [bad_claim]},
                    {"data": {**good, "date_precision": "sometime"}, "claims": [bad_claim]},
                ],
            )
        assert refused.value.message_dict == {
            "incidents[1].date_end": ["The end date (2023-12-31) is before the start date (2024-01-01)."],
            "incidents[2].people_count_min": ["The minimum (90) is above the maximum (50)."],
            "incidents[3].date_precision": ["Value 'sometime' is not a valid choice."],
            "incidents[3].people_count_min": ["The minimum (90) is above the maximum (50)."],
        }
        assert database_contents() == before

    def test_it_writes_incidents_with_their_children_and_history(self, analyst):
        place, source, police = make_place(name="Tumen"), make_source(title="RFA report"), make_organization()
        day = date(2024, 1, 1)
        [created] = incidents_bulk_create(
            user=analyst,
            incidents=[
                {
                    "data": {"title": "New", "incident_type": incident_type(), "date_start": day, "date_end": day},
                    "places": [place],
                    "claims": [{"source": source, "people_count": 12, "excerpt": "twelve people"}],
                    "involvements": [{"organization": police, "role": "perpetrator"}],
                }
            ],
        )
        stored = Incident.objects.get(pk=created.pk)
        assert (stored.title, stored.created_by, stored.version) == ("New", analyst, 1)
        assert list(stored.places.all()) == [place]
        assert list(stored.claims.values_list("source", "people_count", "excerpt")) == [
            (source.pk, 12, "twelve people")
        ]
        assert list(stored.involvements.values_list("organization", "role")) == [(police.pk, "perpetrator")]
        ClaimEvent = apps.get_model("incidents", "ClaimEvent")
        assert ClaimEvent.objects.get(incident=stored).pgh_context.metadata["user"] == analyst.pk

    def test_what_was_validated_may_name_records_saved_just_before_the_write(self, analyst):
        # As an import does with the names it creates: it checks every row before saving any.
        atlantis, day = Place(name="Atlantis"), date(2024, 1, 1)
        validated = incidents_bulk_validate(
            user=analyst,
            incidents=[
                {
                    "data": {"title": "New", "incident_type": incident_type(), "date_start": day, "date_end": day},
                    "places": [atlantis],
                }
            ],
        )
        atlantis.save()
        [created] = incidents_bulk_create(user=analyst, incidents=validated)
        assert list(Incident.objects.get(pk=created.pk).places.all()) == [atlantis]


def database_contents() -> dict[str, list]:
    """Every row an import writes: incidents, their places, claims and involvements, their history
    events and the history context that names the importer."""
    tables = {
        "incidents": Incident,
        "places": Incident.places.through,
        "claims": Claim,
        "involvements": Involvement,
        "events": apps.get_model("incidents", "IncidentEvent"),
        "place events": apps.get_model("incidents", "IncidentPlaceEvent"),
        "claim events": apps.get_model("incidents", "ClaimEvent"),
        "involvement events": apps.get_model("incidents", "InvolvementEvent"),
        "contexts": apps.get_model("pghistory", "Context"),
    }
    return {name: sorted(map(str, model.objects.values_list())) for name, model in tables.items()}


@pytest.mark.django_db(transaction=True)
def test_interrupting_an_import_while_it_writes_leaves_the_database_as_it_was(analyst, rich_incidents, tmp_path):
    # A real `manage.py import_incidents` in its own process, stopped with Ctrl-C (SIGINT) while it
    # writes: another session holds the claims table, so the import waits there, after writing its
    # incidents and their places in its transaction.
    content = f"{HEADER},places,perpetrators,sources\n" + "".join(
        f"Interrupted {n},deportation,2024-01-01,2024-01-02,Tumen; Hoeryong,MPS,RFA report\n" for n in range(200)
    )
    path = tmp_path / "import.csv"
    path.write_text(content)
    before = database_contents()
    address = this_test_database_address()
    environment = {**os.environ, "DATABASE_URL": database_url(**address), "PYTHONFAULTHANDLER": "1"}
    with psycopg.connect(**address) as locker, psycopg.connect(**address, autocommit=True) as observer:
        # EXCLUSIVE blocks writing the claims, not reading them: the import waits where it writes them.
        locker.execute("LOCK TABLE incidents_claim IN EXCLUSIVE MODE")
        with interruptible_children():
            importer = subprocess.Popen(
                [
                    sys.executable,
                    str(settings.BASE_DIR / "manage.py"),
                    "import_incidents",
                    str(path),
                    f"--user={analyst}",
                    # Two hundred alike rows: possible duplicates of each other, created all the same.
                    "--allow-duplicates",
                ],
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        try:
            backend = wait_until_waiting_for_the_claims(observer, importer)
            # It has written incidents and places: it holds the lock that writing into a table takes.
            written = observer.execute(
                "SELECT array_agg(relation::regclass::text ORDER BY relation::regclass::text) FROM pg_locks "
                "WHERE pid = %s AND granted AND mode = 'RowExclusiveLock' "
                "AND relation IN ('incidents_incident'::regclass, 'incidents_incidentplace'::regclass)",
                [backend],
            ).fetchone()[0]
            assert written == ["incidents_incident", "incidents_incidentplace"]
            importer.send_signal(signal.SIGINT)
            # It ends while the claims are still locked: it does not go on writing once they are free.
            # Its output is read meanwhile: a process blocked writing to a full pipe never ends.
            try:
                _, stderr = importer.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                # Where it hangs: faulthandler (PYTHONFAULTHANDLER below) prints every thread's stack on SIGABRT.
                importer.send_signal(signal.SIGABRT)
                _, stderr = importer.communicate(timeout=30)
                raise AssertionError(f"The import did not end on SIGINT:\n{stderr.decode()}") from None
        finally:
            locker.rollback()
            if importer.poll() is None:
                importer.kill()
                importer.communicate()
    assert importer.returncode != 0
    assert "KeyboardInterrupt" in stderr.decode(), stderr.decode()
    assert database_contents() == before


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (
            {"host": "/srv/app/.data/postgres", "port": None, "user": "postgres", "password": None},
            "postgres://postgres@%2Fsrv%2Fapp%2F.data%2Fpostgres/test_tracker",
        ),
        (
            {"host": "127.0.0.1", "port": "5432", "user": "postgres", "password": "p@ss"},
            "postgres://postgres:p%40ss@127.0.0.1:5432/test_tracker",
        ),
    ],
)
def test_the_subprocess_database_url_reads_back_as_the_same_database(address, url):
    assert database_url(**address, dbname="test_tracker") == url
    parsed = dj_database_url.parse(url)
    assert (parsed["HOST"], parsed["NAME"], parsed["PASSWORD"] or None) == (
        address["host"],
        "test_tracker",
        address["password"],
    )


@contextmanager
def interruptible_children() -> Iterator[None]:
    """Children started in the block receive SIGINT as Ctrl-C, whatever this process was started
    with. A shell starts a background job (`pytest … &`, no job control) with SIGINT ignored, and an
    ignored signal stays ignored across exec: the importer would never see the test's SIGINT and
    wait on the locked table for good (what made this test fail in background runs only)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def wait_until_waiting_for_the_claims(observer, importer, timeout: float = 60) -> int:
    """The id of the import's database session once it waits to COPY into the locked claims table;
    looks every 50 ms for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert importer.poll() is None, importer.communicate()
        waiting = observer.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE 'COPY \"incidents_claim\"%%'"
        ).fetchone()
        if waiting:
            return waiting[0]
        time.sleep(0.05)
    raise AssertionError(f"The import did not reach the claims within {timeout} s.")


def test_a_title_is_trimmed_as_the_admin_and_the_api_trim_it(analyst, tmp_path):
    run_import(analyst, tmp_path, f"{HEADER}\n  80 returned\u00a0,forced-repatriation,2023-08-29,2023-08-29\n")

    assert Incident.objects.get().title == "80 returned"


def test_a_title_kept_with_spaces_around_it_imports_back_unchanged(analyst, tmp_path):
    # Stored before the doors trimmed: the export writes it as held, and the file changes nothing.
    incident = make_incident(title="  80 returned  ")

    output = run_import(analyst, tmp_path, export(analyst, tmp_path))

    assert "0 incidents were created; 0 updated; 1 unchanged." in output
    assert Incident.objects.values_list("title", "version").get() == ("  80 returned  ", incident.version)


def test_a_missing_name_with_a_control_character_is_not_created(analyst, tmp_path):
    errors = import_errors(
        analyst,
        tmp_path,
        f"{HEADER},perpetrators\nA,deportation,2024-01-01,2024-01-01,Acme\tOffice\n",
        "--create-missing",
    )

    assert (
        "line 2, column perpetrators: 'Acme\\tOffice' cannot name a new organization: A name is one line of text: "
        "remove the control character U+0009." in errors
    )
    assert not Organization.objects.exists()
