"""Two imports, or an import and another write, at the same moment: nothing the import read before
its write is written back over the other, nor written twice."""

import threading

import pytest
from django.core.management import call_command
from django.db import connection

from incidents import importers, roles
from incidents.exports import csv_source_item
from incidents.models import Incident, Source
from tests.factories import incident_type, make_claim, make_incident, make_place, make_source, make_user
from tests.test_import import HEADER, imported_or_refused, rows, write_csv
from tests.test_import_versions_per_audience import public_export
from tests.test_versions_per_audience import claims_with, edit, edit_confidential_excerpt
from tests.test_write_conflicts import answered_while_held


def in_a_thread(work) -> None:
    """Run `work` to its commit in a thread of its own (its own connection), and wait for it."""
    failures = []

    def run():
        try:
            work()
        except Exception as error:  # reported by the test
            failures.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the colleague's write never finished"
    assert failures == [], failures


def before_the_write(monkeypatch, work) -> None:
    """Run `work` to its commit, in a thread of its own, after the import has checked its file and
    before it writes."""
    write = importers._write

    def work_then_write(plan, user, report, **options):
        in_a_thread(work)
        return write(plan, user, report, **options)

    monkeypatch.setattr(importers, "_write", work_then_write)


@pytest.mark.django_db(transaction=True)
def test_a_confidential_claim_edited_while_a_public_file_is_imported_is_not_written_back(monkeypatch, tmp_path):
    # A Reviewer with Confidential access imports the public's download with one more source. While
    # the import has read the incident's claims (planning, outside its transaction) and before it
    # writes, a colleague corrects the informant's confidential claim. That change does not move the
    # public's version, which the file is compared by, so the row is written: with the claims read
    # before the colleague's edit, which put the old excerpt back over the colleague's correction.
    keeper, colleague = make_user(roles.REVIEWER, confidential=True), make_user(roles.REVIEWER, confidential=True)
    incident = make_incident(title="Repatriation at Dandong", review_state="published")
    make_claim(incident=incident, source=make_source(title="Public report"), excerpt="80 people")
    make_claim(incident=incident, source=make_source(title="Informant notes"), excerpt="81", confidential=True)
    added = make_source(title="Second public report")
    [row] = rows(public_export(tmp_path))
    row["sources"] = f"{row['sources']}; {csv_source_item(added.title, added.pk)}"

    before_the_write(
        monkeypatch, lambda: edit_confidential_excerpt(colleague, incident, "81 people, 30 of them children")
    )
    output = imported_or_refused(keeper, tmp_path / "import.csv", write_csv([row]))

    confidential = list(incident.claims.filter(confidential=True).values_list("excerpt", flat=True))
    assert confidential == ["81 people, 30 of them children"], output
    assert "was changed by someone else while the file was being imported" in output
    # Imported again, the file is checked against the colleague's change, and keeps it.
    monkeypatch.undo()
    imported_or_refused(keeper, tmp_path / "import.csv", write_csv([row]))
    assert incident.claims.filter(source=added).exists()
    confidential = list(incident.claims.filter(confidential=True).values_list("excerpt", flat=True))
    assert confidential == ["81 people, 30 of them children"]


@pytest.mark.django_db(transaction=True)
def test_a_change_hidden_from_the_importer_made_meanwhile_neither_refuses_the_import_nor_is_undone(
    monkeypatch, tmp_path
):
    # An analyst without Confidential access writes none of the claims hidden from them: a
    # colleague's correction of one meanwhile is kept, and the import goes through, as refusing it
    # would tell the analyst that a hidden record had just changed.
    analyst, colleague = make_user(roles.ANALYST), make_user(roles.REVIEWER, confidential=True)
    incident = make_incident(title="Repatriation at Dandong", review_state="draft")
    make_claim(incident=incident, source=make_source(title="Public report"), excerpt="80 people")
    make_claim(incident=incident, source=make_source(title="Informant notes"), excerpt="81", confidential=True)
    added = make_source(title="Second public report")
    exported = tmp_path / "analyst.csv"
    call_command("export_incidents", "--user", analyst.username, "-o", str(exported))
    [row] = rows(exported.read_bytes())
    row["sources"] = f"{row['sources']}; {csv_source_item(added.title, added.pk)}"

    before_the_write(
        monkeypatch, lambda: edit_confidential_excerpt(colleague, incident, "81 people, 30 of them children")
    )
    output = imported_or_refused(analyst, tmp_path / "import.csv", write_csv([row]))

    assert "1 updated" in output, output
    assert incident.claims.filter(source=added).exists()
    confidential = list(incident.claims.filter(confidential=True).values_list("excerpt", flat=True))
    assert confidential == ["81 people, 30 of them children"]


@pytest.mark.django_db(transaction=True)
def test_a_confidential_claim_added_while_a_public_file_is_imported_is_not_deleted(monkeypatch, tmp_path):
    # As above, but the colleague adds an informant's claim: the import's claims, read before it,
    # replace the incident's, and the informant's new claim is deleted without a word.
    keeper, colleague = make_user(roles.REVIEWER, confidential=True), make_user(roles.REVIEWER, confidential=True)
    incident = make_incident(title="Repatriation at Dandong", review_state="published")
    make_claim(incident=incident, source=make_source(title="Public report"), excerpt="80 people")
    informant = make_source(title="Informant notes")
    added = make_source(title="Second public report")
    [row] = rows(public_export(tmp_path))
    row["sources"] = f"{row['sources']}; {csv_source_item(added.title, added.pk)}"

    def colleague_adds():
        claims = claims_with(colleague, incident)
        claims.append({"source": informant.pk, "excerpt": "81 people", "confidential": True})
        edit(colleague, incident, {"claims": claims})

    before_the_write(monkeypatch, colleague_adds)
    output = imported_or_refused(keeper, tmp_path / "import.csv", write_csv([row]))

    assert list(incident.claims.filter(confidential=True).values_list("excerpt", flat=True)) == ["81 people"], output


@pytest.mark.django_db(transaction=True)
def test_the_same_new_file_imported_twice_at_once_stops_the_second_as_a_possible_duplicate(tmp_path):
    # Imported one after the other, the second import of a file of new incidents stops: each row
    # "may duplicate an incident" (the default, README "Possible duplicates"), nothing written.
    # Two colleagues importing the same file at the same moment (each from their own upload, or the
    # command run twice) each look for duplicates among what was committed before either wrote:
    # both pass, and every incident of the file is created twice. A reviewer renaming the incident
    # type holds it a moment, so both imports reach their write, and wait there, at once.
    analysts = [make_user(roles.ANALYST), make_user(roles.ANALYST)]
    make_place(name="Hyesan", country="KP")
    content = f"{HEADER},places\nArrests at the Hyesan market,forced-repatriation,2024-03-01,2024-03-01,Hyesan\n"
    incident_type("forced-repatriation")

    answers = answered_while_held(
        "UPDATE incidents_incidenttype SET name = name WHERE slug = 'forced-repatriation'",
        [],
        lambda: imported_or_refused(analysts[0], tmp_path / "first.csv", content),
        lambda: imported_or_refused(analysts[1], tmp_path / "second.csv", content),
    )

    # One after the other, the rule holds: a third import of the file is stopped, writing nothing.
    assert "may duplicate an incident" in imported_or_refused(analysts[0], tmp_path / "third.csv", content)
    assert Incident.objects.filter(title="Arrests at the Hyesan market").count() == 1, answers


@pytest.mark.django_db(transaction=True)
def test_a_new_source_two_imports_name_at_once_is_created_once(tmp_path):
    # `--create-missing` makes a source for a title no source has; a second import naming it finds
    # it. Two imports at once each find none, and each makes its own: two sources of one title, which a
    # file naming it by title alone no longer resolves (`_Sources`: a title only one has). Places
    # and organizations are guarded (unique names, `_NameTakenMeanwhile`), and a source added by
    # hand waits for any other of its title (`services.wait_for_sources_alike`); so does an import's.
    analysts = [make_user(roles.ANALYST), make_user(roles.ANALYST)]
    incident_type("forced-repatriation")
    content = (
        f"{HEADER},sources\n"
        "Arrests at the Hyesan market,forced-repatriation,2024-03-01,2024-03-01,Daily NK report of 3 March\n"
    )
    options = ["--create-missing", "--allow-duplicates"]

    answers = answered_while_held(
        "UPDATE incidents_incidenttype SET name = name WHERE slug = 'forced-repatriation'",
        [],
        lambda: imported_or_refused(analysts[0], tmp_path / "first.csv", content, *options),
        lambda: imported_or_refused(analysts[1], tmp_path / "second.csv", content, *options),
    )

    assert Source.objects.filter(title="Daily NK report of 3 March").count() == 1, answers
