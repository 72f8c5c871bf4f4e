"""An exported file says whose version its `version` column holds (`version_audience`), and an import
compares its rows with that audience's version: a Reviewer with Confidential access imports the file
an Analyst (or the public) exported and edited, though a confidential claim changed since, which moves
only the Reviewer's own version. A change those readers could see, or the incident leaving their
sight, still refuses the row as stale; nothing hidden is lost; a file of a wider audience than the
importer's is refused, naming the column."""

import io

import pytest
from django.core.management import call_command

from incidents import roles
from incidents.models import Incident
from incidents.querysets import version_seen_by
from tests.api_support import API, client_for
from tests.factories import make_claim, make_incident, make_source, make_user
from tests.test_import import confirm_form, export, import_errors, rows, run_import, write_csv
from tests.test_versions_per_audience import edit, edit_confidential_excerpt


@pytest.fixture
def incident():
    """A draft with a public claim and an informant's confidential one."""
    incident = make_incident(title="Repatriation at Dandong", review_state="draft")
    make_claim(incident=incident, source=make_source(title="Public report"), excerpt="80 people")
    make_claim(incident=incident, source=make_source(title="Informant notes"), excerpt="81", confidential=True)
    return incident


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


def public_export(tmp_path) -> bytes:
    """The public's file: `export_incidents` without `--user`."""
    output = tmp_path / "public.csv"
    call_command("export_incidents", "-o", str(output))
    return output.read_bytes()


def published(incident) -> Incident:
    Incident.objects.filter(pk=incident.pk).update(review_state="published")
    incident.refresh_from_db()
    return incident


def confidential_excerpts(incident) -> list[str]:
    return list(incident.claims.filter(confidential=True).values_list("excerpt", flat=True))


class TestTheFileSaysWhoseVersionItHolds:
    @pytest.mark.parametrize(
        ("reader", "audience"),
        [(None, "public"), (roles.ANALYST, "staff"), ("keeper", "confidential")],
    )
    def test_each_reader_s_file_names_the_audience_of_its_versions(self, reader, audience, incident):
        published(incident)
        user = make_user(roles.REVIEWER, confidential=True) if reader == "keeper" else reader and make_user(reader)
        answer = client_for(user).get(f"{API}/incidents.csv")
        assert answer.status_code == 200
        [row] = rows(b"".join(answer.streaming_content))
        assert (row["version"], row["version_audience"]) == (str(version_seen_by(incident, user)), audience)


class TestAKeeperImportsANarrowerAudiencesFile:
    def test_an_analysts_export_imports_after_a_confidential_claim_changed(self, keeper, analyst, incident, tmp_path):
        [row] = rows(export(analyst, tmp_path))
        edit_confidential_excerpt(keeper, incident)
        assert (row["version_audience"], incident.claims.count()) == ("staff", 2)

        output = run_import(keeper, tmp_path, write_csv([{**row, "title": "Repatriation at Dandong (revised)"}]))

        assert "0 incidents were created; 1 updated; 0 unchanged." in output, output
        incident.refresh_from_db()
        assert incident.title == "Repatriation at Dandong (revised)"
        assert confidential_excerpts(incident) == ["81 people, 30 of them children"]

    def test_the_publics_download_imports_after_a_confidential_claim_changed(self, keeper, incident, tmp_path):
        published(incident)
        [row] = rows(public_export(tmp_path))
        edit_confidential_excerpt(keeper, incident)

        output = run_import(keeper, tmp_path, write_csv([{**row, "people_count": "90"}]))

        assert "0 incidents were created; 1 updated; 0 unchanged." in output, output
        incident.refresh_from_db()
        assert incident.people_count == 90
        assert confidential_excerpts(incident) == ["81 people, 30 of them children"]

    def test_the_admins_import_compares_by_the_files_audience_too(self, client, keeper, analyst, incident, tmp_path):
        [row] = rows(export(analyst, tmp_path))
        edit_confidential_excerpt(keeper, incident)
        client.force_login(keeper)
        file = io.BytesIO(write_csv([{**row, "title": "Renamed"}]).encode())

        preview = client.post("/admin/incidents/incident/import/", {"file": file})

        assert preview.status_code == 200 and "has changed since this file was exported" not in preview.text
        done = client.post("/admin/incidents/incident/import/", confirm_form(preview))
        assert done.status_code == 302, done.content
        assert Incident.objects.get(pk=incident.pk).title == "Renamed"

    def test_a_change_the_files_readers_could_see_still_refuses_it(self, keeper, analyst, incident, tmp_path):
        [row] = rows(export(analyst, tmp_path))
        edit(keeper, incident, {"people_count": 85})

        errors = import_errors(keeper, tmp_path, write_csv([{**row, "title": "Renamed"}]))

        assert f"line 2, column version: {incident.public_id} has changed since this file was exported" in errors

    def test_an_incident_made_confidential_since_the_analysts_export_is_not_made_public_again(
        self, keeper, analyst, incident, tmp_path
    ):
        # The Analyst's file says `false` of every incident it holds: compared by a version the
        # change did not move, the row would have made it public again.
        [row] = rows(export(analyst, tmp_path))
        edit(keeper, incident, {"confidential": True})

        errors = import_errors(keeper, tmp_path, write_csv([{**row, "title": "Renamed"}]))

        assert f"line 2, column version: {incident.public_id} has changed since this file was exported" in errors
        incident.refresh_from_db()
        assert (incident.confidential, incident.title) == (True, "Repatriation at Dandong")

    def test_an_incident_taken_back_to_a_draft_since_the_publics_download_is_not_published_again(
        self, keeper, incident, tmp_path
    ):
        published(incident)
        [row] = rows(public_export(tmp_path))
        edit(keeper, incident, {"review_state": "draft"})

        errors = import_errors(keeper, tmp_path, write_csv([{**row, "title": "Renamed"}]))

        assert f"line 2, column version: {incident.public_id} has changed since this file was exported" in errors
        assert Incident.objects.get(pk=incident.pk).review_state == "draft"

    def test_a_file_that_names_no_audience_is_compared_with_the_importers_own_version(
        self, keeper, analyst, incident, tmp_path
    ):
        # A file exported before the column, or written by hand.
        [row] = rows(export(analyst, tmp_path))
        del row["version_audience"]
        edit_confidential_excerpt(keeper, incident)

        errors = import_errors(keeper, tmp_path, write_csv([{**row, "title": "Renamed"}]))

        assert f"line 2, column version: {incident.public_id} has changed since this file was exported" in errors


class TestAFileOfAWiderAudience:
    def test_an_analyst_importing_a_keepers_file_is_refused_naming_the_column(
        self, keeper, analyst, incident, tmp_path
    ):
        # Compared with the keeper's version, the row would tell the Analyst whether a confidential
        # claim changed since the keeper's export.
        [row] = rows(export(keeper, tmp_path))
        assert row["version_audience"] == "confidential"

        errors = import_errors(analyst, tmp_path, write_csv([{**row, "title": "Renamed"}]))

        assert (
            "line 2, column version_audience: This file was exported for readers who see more than you "
            "(confidential): export the incidents yourself and reapply your changes." in errors
        ), errors

    def test_an_audience_the_export_never_writes_is_refused_naming_the_column(self, keeper, incident, tmp_path):
        [row] = rows(export(keeper, tmp_path))

        errors = import_errors(keeper, tmp_path, write_csv([{**row, "version_audience": "everyone"}]))

        assert (
            "line 2, column version_audience: 'everyone' is not whose version this is: confidential, staff, "
            "public, as exported." in errors
        ), errors
