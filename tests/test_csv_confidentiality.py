"""What is confidential travels with the CSV to those who may know it, and comes back in: an export by
a reader with Confidential access says which incidents are confidential (`confidential`) and marks
each confidential source in `sources` (`Testimony [#12] [confidential]`); the import sets both, as
the user's access allows, so that README's "Into another database" recipe keeps an informant hidden."""

import csv
import io
import re
from collections import Counter, defaultdict

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from incidents import roles
from incidents.models import Claim, Incident, Response, Source
from tests.factories import make_claim, make_incident, make_place, make_source, make_user
from tests.test_import import confirm_form, import_errors, run_import, write_csv

ADMIN_IMPORT_URL = "/admin/incidents/incident/import/"


def read_csv(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


def admin_export(client, user) -> bytes:
    client.force_login(user)
    response = client.get(reverse("admin:incidents_incident_changelist") + "export.csv")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def api_export(client, user) -> bytes:
    if user is not None:
        client.force_login(user)
    response = client.get("/api/v1/incidents.csv")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def command_export(client, user, tmp_path) -> bytes:
    output = tmp_path / "export.csv"
    call_command("export_incidents", *([f"--user={user.username}"] if user else []), "-o", str(output))
    return output.read_bytes()


def for_another_database(content: bytes) -> str:
    """README's "Into another database" recipe: public_id, version and every source's [#ID] emptied."""
    return write_csv(
        [
            {**row, "public_id": "", "version": "", "sources": re.sub(r" \[#\d+\]", "", row["sources"])}
            for row in read_csv(content)
        ]
    )


@pytest.fixture
def informant_case():
    """A confidential incident on the informant's testimony, beside a public one citing an open report."""
    china = make_place(name="China", kind="country", country="CN")
    informant = make_source(title="Testimony of an underground missionary in China", confidential=True)
    report = make_source(title="Open report")
    hidden = make_incident(places=[china], title="Women returned via Tumen", confidential=True, review_state="draft")
    make_claim(incident=hidden, source=informant, people_count=500, count_qualifier="about")
    public = make_incident(places=[china], title="Returned at Dandong")
    make_claim(incident=public, source=informant, people_count=20)
    make_claim(incident=public, source=report, people_count=30)
    return hidden, public, informant, report


def reviewer():
    return make_user(roles.REVIEWER, confidential=True, username="reviewer")


class TestExport:
    @pytest.mark.parametrize("door", ["admin", "api", "command"])
    def test_a_reader_with_access_is_told_what_is_confidential(self, client, tmp_path, informant_case, door):
        _, _, informant, report = informant_case
        user = reviewer()
        content = {
            "admin": lambda: admin_export(client, user),
            "api": lambda: api_export(client, user),
            "command": lambda: command_export(client, user, tmp_path),
        }[door]()
        by_title = {row["title"]: row for row in read_csv(content)}
        assert by_title["Women returned via Tumen"]["confidential"] == "true"
        assert by_title["Women returned via Tumen"]["sources"] == (
            f"Testimony of an underground missionary in China [#{informant.pk}] [confidential]"
        )
        assert by_title["Returned at Dandong"]["confidential"] == "false"
        assert by_title["Returned at Dandong"]["sources"] == (
            f"Open report [#{report.pk}]; "
            f"Testimony of an underground missionary in China [#{informant.pk}] [confidential]"
        )

    @pytest.mark.parametrize("door", ["api", "command"])
    @pytest.mark.parametrize("role", ["anonymous", roles.ANALYST])
    def test_a_reader_without_access_sees_false_and_no_mark(self, client, tmp_path, informant_case, door, role):
        _, _, _, report = informant_case
        user = None if role == "anonymous" else make_user(role)
        content = api_export(client, user) if door == "api" else command_export(client, user, tmp_path)
        [row] = read_csv(content)
        assert (row["title"], row["confidential"], row["sources"]) == (
            "Returned at Dandong",
            "false",
            f"Open report [#{report.pk}]",
        )
        assert "confidential]" not in content.decode()

    def test_the_mark_follows_the_source_when_it_is_made_confidential_or_public(self, client, informant_case):
        _, public, informant, report = informant_case
        user = reviewer()
        Source.objects.filter(pk=report.pk).update(confidential=True)
        Source.objects.filter(pk=informant.pk).update(confidential=False)
        row = next(row for row in read_csv(api_export(client, user)) if row["title"] == public.title)
        assert row["sources"] == (
            f"Open report [#{report.pk}] [confidential]; "
            f"Testimony of an underground missionary in China [#{informant.pk}]"
        )


class TestIntoAnotherDatabase:
    def forget(self, informant_case) -> None:
        """The other database has none of these records."""
        Incident.objects.all().delete()
        Source.objects.all().delete()

    def test_the_recipe_keeps_the_incident_and_the_informant_confidential(self, client, tmp_path, informant_case):
        user = reviewer()
        other = for_another_database(admin_export(client, user))
        self.forget(informant_case)

        report = run_import(user, tmp_path, other, "--create-missing", "--allow-duplicates")

        assert "Testimony of an underground missionary in China [confidential]" in report
        hidden = Incident.objects.get(title="Women returned via Tumen")
        assert hidden.confidential is True
        assert Incident.objects.get(title="Returned at Dandong").confidential is False
        informant = Source.objects.get(title="Testimony of an underground missionary in China")
        assert informant.confidential is True
        assert Source.objects.get(title="Open report").confidential is False
        assert hidden.claims.get().source == informant

    def test_the_admin_import_keeps_them_confidential_too(self, client, informant_case):
        user = reviewer()
        other = for_another_database(api_export(client, user))
        self.forget(informant_case)

        preview = client.post(
            ADMIN_IMPORT_URL, {"file": io.BytesIO(other.encode()), "create_missing": "on"}, format="multipart"
        )
        assert preview.status_code == 200, preview.text
        assert "Testimony of an underground missionary in China [confidential]" in preview.text
        assert client.post(ADMIN_IMPORT_URL, confirm_form(preview, duplicates="allow")).status_code == 302

        assert Incident.objects.get(title="Women returned via Tumen").confidential is True
        assert Source.objects.get(title="Testimony of an underground missionary in China").confidential is True

    def test_a_marked_source_is_never_cited_as_a_public_one_of_its_title(self, client, tmp_path, informant_case):
        user = reviewer()
        other = for_another_database(api_export(client, user))
        self.forget(informant_case)
        make_source(title="Testimony of an underground missionary in China")

        errors = import_errors(user, tmp_path, other, "--create-missing", "--allow-duplicates")

        assert (
            "column sources: Testimony of an underground missionary in China [confidential] is marked "
            "confidential, but Testimony of an underground missionary in China [#"
        ) in errors
        assert Source.objects.filter(confidential=True).count() == 0


def claims_by_incident() -> Counter:
    """Every incident as the CSV can carry it to another database, with its confidentiality and
    each claim's source title, the source's and the claim's own confidentiality; counted, since
    titles and dates repeat."""
    claims = defaultdict(list)
    for incident_id, title, source_confidential, claim_confidential in Claim.objects.values_list(
        "incident_id", "source__title", "source__confidential", "confidential"
    ):
        claims[incident_id].append((title, source_confidential, claim_confidential))
    return Counter(
        (title, start, end, confidential, tuple(sorted(claims[incident_id])))
        for incident_id, title, start, end, confidential in Incident.objects.values_list(
            "pk", "title", "date_start", "date_end", "confidential"
        )
    )


class TestConfidentialClaims:
    """A claim may be confidential while its source is public (an informant's figures on a public
    report's event): its item is marked `[confidential claim]` for readers with access, and the
    import makes it confidential again."""

    @pytest.fixture
    def claimed_in_confidence(self, informant_case):
        _, public, _, report = informant_case
        # The same public report, claimed once publicly and once in confidence by one incident.
        elsewhere = make_incident(title="Returned at Hunchun", places=list(public.places.all()))
        make_claim(incident=elsewhere, source=report, people_count=12)
        make_claim(incident=elsewhere, source=report, people_count=40, confidential=True)
        Claim.objects.filter(incident=public, source=report).update(confidential=True)
        return public, elsewhere, report

    @pytest.mark.parametrize("door", ["admin", "api", "command"])
    def test_a_reader_with_access_is_told_which_claims_are_confidential(
        self, client, tmp_path, claimed_in_confidence, door
    ):
        public, elsewhere, report = claimed_in_confidence
        user = reviewer()
        content = {
            "admin": lambda: admin_export(client, user),
            "api": lambda: api_export(client, user),
            "command": lambda: command_export(client, user, tmp_path),
        }[door]()
        by_title = {row["title"]: row for row in read_csv(content)}
        assert by_title[public.title]["sources"].startswith(f"Open report [#{report.pk}] [confidential claim]; ")
        assert by_title[elsewhere.title]["sources"] == (
            f"Open report [#{report.pk}]; Open report [#{report.pk}] [confidential claim]"
        )

    @pytest.mark.parametrize("role", ["anonymous", roles.ANALYST])
    def test_a_reader_without_access_never_sees_the_mark(self, client, claimed_in_confidence, role):
        _, elsewhere, report = claimed_in_confidence
        content = api_export(client, None if role == "anonymous" else make_user(role))
        assert "confidential" not in content.decode().split("\n", 1)[1]
        assert {row["title"]: row["sources"] for row in read_csv(content)}[elsewhere.title] == (
            f"Open report [#{report.pk}]"
        )

    @pytest.mark.parametrize("door", ["command", "admin"])
    def test_the_recipe_keeps_every_claim_confidential_that_was(self, client, tmp_path, claimed_in_confidence, door):
        user = reviewer()
        other = for_another_database(api_export(client, user))
        before = claims_by_incident()
        Incident.objects.all().delete()
        Source.objects.all().delete()

        if door == "command":
            run_import(user, tmp_path, other, "--create-missing", "--allow-duplicates")
        else:
            client.force_login(user)
            preview = client.post(
                ADMIN_IMPORT_URL, {"file": io.BytesIO(other.encode()), "create_missing": "on"}, format="multipart"
            )
            assert preview.status_code == 200, preview.text
            assert client.post(ADMIN_IMPORT_URL, confirm_form(preview, duplicates="allow")).status_code == 302

        # Claims' figures stay behind (README), their confidentiality does not.
        assert claims_by_incident() == before

    @pytest.mark.parametrize("door", ["command", "admin"])
    def test_a_dry_run_names_each_claim_it_would_make_confidential(self, client, tmp_path, claimed_in_confidence, door):
        public, elsewhere, report = claimed_in_confidence
        Claim.objects.filter(incident=public, source=report).update(confidential=False)
        user = reviewer()
        exported = {row["title"]: row for row in read_csv(api_export(client, user))}
        plain, marked = f"Open report [#{report.pk}]", f"Open report [#{report.pk}] [confidential claim]"
        content = write_csv(
            [
                # Claimed publicly already: a confidential claim of the same source is added beside it.
                {**exported[public.title], "sources": f"{plain}; {marked}"},
                # Claimed in confidence already: nothing is added.
                exported[elsewhere.title],
                {**exported[public.title], "public_id": "", "version": "", "sources": marked},
            ]
        )
        claims_before = claims_by_incident()

        if door == "command":
            told = run_import(user, tmp_path, content, "--dry-run", "--allow-duplicates")
        else:
            client.force_login(user)
            told = client.post(ADMIN_IMPORT_URL, {"file": io.BytesIO(content.encode())}, format="multipart").text

        assert claims_by_incident() == claims_before
        assert f"line 2: {public.public_id} gets a confidential claim of {plain}, which only readers" in told
        assert f"line 4: The new incident gets a confidential claim of {plain}, which only readers" in told
        assert told.count("which only readers with Confidential access will see") == 2

    @pytest.mark.parametrize("door", ["command", "admin"])
    def test_a_dry_run_names_a_source_it_creates_by_its_title_not_an_id_of_none(self, client, tmp_path, door):
        # The informant's row for another database (README, "Into another database"), its source's id
        # emptied: the report named the source --create-missing makes "… [#None]", an id no source has.
        content = write_csv(
            [
                {"title": "Women returned via Tumen", "type": "forced-repatriation"}
                | {"date_start": "2023-10-02", "date_end": "2023-10-09"}
                | {"sources": "Testimony of an underground missionary in China [confidential] [confidential claim]"}
            ]
        )

        if door == "command":
            told = run_import(reviewer(), tmp_path, content, "--create-missing", "--dry-run")
        else:
            client.force_login(reviewer())
            preview = client.post(
                ADMIN_IMPORT_URL, {"file": io.BytesIO(content.encode()), "create_missing": "on"}, format="multipart"
            )
            assert preview.status_code == 200
            told = preview.text

        # As the list of the records it creates names it.
        named = "Testimony of an underground missionary in China [confidential]"
        assert f"The new incident gets a confidential claim of {named}, which only readers" in told
        assert "[#None]" not in told
        assert not Source.objects.exists()

    def test_an_analyst_without_access_may_not_import_a_marked_claim(self, tmp_path, claimed_in_confidence):
        _, elsewhere, _ = claimed_in_confidence
        exported = read_csv(api_export(Client(), reviewer()))
        other = write_csv(
            [{**row, "public_id": "", "version": ""} for row in exported if row["title"] == elsewhere.title]
        )
        analyst = make_user(roles.ANALYST)

        errors = import_errors(analyst, tmp_path, other, "--allow-duplicates")

        assert "column sources: " in errors and "[confidential claim] marks a confidential claim: " in errors
        assert Claim.objects.filter(confidential=True).count() == 2

    def test_an_unchanged_export_imports_back_unchanged(self, tmp_path, claimed_in_confidence):
        user = reviewer()
        exported = command_export(None, user, tmp_path)
        versions = dict(Incident.objects.values_list("pk", "version"))

        output = run_import(user, tmp_path, exported)

        assert "0 incidents were created; 0 updated;" in output
        assert dict(Incident.objects.values_list("pk", "version")) == versions

    def test_the_round_trip_of_messy_generated_data_keeps_every_flag(self, tmp_path):
        # Demo incidents (repeated titles and names, incidents without sources, confidential ones),
        # with a public source's claim made confidential now and then.
        call_command("generate_demo_data", incidents=300, seed=3, stdout=io.StringIO())
        public_claims = Claim.objects.filter(confidential=False, source__confidential=False).order_by("pk")
        Claim.objects.filter(pk__in=list(public_claims.values_list("pk", flat=True)[::7])).update(confidential=True)
        Claim.objects.filter(
            pk__in=list(Claim.objects.filter(source__confidential=True).values_list("pk", flat=True)[::2])
        ).update(confidential=True)
        for index, title in enumerate(["Press release", "Press release", " ", "Report; part 2"]):
            incident = make_incident(title=f"Messy {index}")
            make_claim(
                incident=incident, source=make_source(title=title.strip() or "Untitled"), confidential=index % 2 == 0
            )
        user = reviewer()
        other = for_another_database(command_export(None, user, tmp_path))
        before = claims_by_incident()
        Incident.objects.all().delete()
        Response.objects.all().delete()
        Source.objects.update(cites=None)
        Source.objects.all().delete()

        run_import(user, tmp_path, other, "--create-missing", "--allow-duplicates")

        assert claims_by_incident() == before


class TestImport:
    def test_an_unchanged_export_by_a_reader_with_access_imports_back_unchanged(self, tmp_path, informant_case):
        user = reviewer()
        output = run_import(user, tmp_path, command_export(None, user, tmp_path))
        assert "2 unchanged" in output
        assert set(Incident.objects.values_list("version", flat=True)) == {1}

    def test_the_column_makes_an_incident_confidential_or_public_as_the_reviewer_asks(self, tmp_path, informant_case):
        hidden, public, _, _ = informant_case
        user = reviewer()
        rows = read_csv(command_export(None, user, tmp_path))
        for row in rows:
            row["confidential"] = {"true": "false", "false": "TRUE"}[row["confidential"]]

        run_import(user, tmp_path, write_csv(rows))

        hidden.refresh_from_db()
        public.refresh_from_db()
        assert (hidden.confidential, public.confidential) == (False, True)

    def test_an_analyst_without_access_may_not_mark_a_row_confidential(self, tmp_path):
        analyst = make_user(roles.ANALYST)
        incident = make_incident(title="Existing", review_state="draft")
        content = write_csv(
            [
                {"public_id": "", "version": "", "title": "New", "type": "deportation"}
                | {"date_start": "2024-01-01", "date_end": "2024-01-01", "confidential": "true"},
                {"public_id": incident.public_id, "version": "1", "title": "Existing", "type": "forced-repatriation"}
                | {"date_start": "2023-08-29", "date_end": "2023-08-29", "confidential": "true"},
            ]
        )

        errors = import_errors(analyst, tmp_path, content)

        refusal = "Only users with Confidential access may mark a record confidential"
        assert f"line 2, column confidential: {refusal}" in errors
        assert f"line 3, column confidential: {refusal}" in errors
        assert not Incident.objects.filter(confidential=True).exists()

    def test_an_analyst_without_access_may_not_create_a_marked_source(self, tmp_path):
        analyst = make_user(roles.ANALYST)
        content = write_csv(
            [
                {"title": "New", "type": "deportation", "date_start": "2024-01-01", "date_end": "2024-01-01"}
                | {"sources": "Informant [confidential]"}
            ]
        )

        errors = import_errors(analyst, tmp_path, content, "--create-missing")

        assert (
            "line 2, column sources: Informant [confidential] is marked confidential: Only users with "
            "Confidential access may mark a record confidential"
        ) in errors
        assert not Source.objects.exists()

    def test_a_value_other_than_true_or_false_is_named(self, tmp_path):
        content = (
            write_csv([{"title": "New", "type": "deportation", "date_start": "2024-01-01", "date_end": "2024-01-01"}])
            .replace("date_end\n", "date_end,confidential\n")
            .replace("2024-01-01\n", "2024-01-01,maybe\n")
        )
        errors = import_errors(reviewer(), tmp_path, content)
        assert "line 2, column confidential: 'maybe' is not true or false: write one of them." in errors

    def test_one_new_source_written_marked_and_unmarked_is_created_confidential(self, tmp_path):
        content = write_csv(
            [
                {"title": "First", "type": "deportation", "date_start": "2024-01-01", "date_end": "2024-01-01"}
                | {"sources": "Informant"},
                {"title": "Second", "type": "deportation", "date_start": "2024-02-01", "date_end": "2024-02-01"}
                | {"sources": "Informant [confidential]"},
            ]
        )
        run_import(reviewer(), tmp_path, content, "--create-missing")
        informant = Source.objects.get()
        assert informant.confidential is True
        assert Claim.objects.filter(source=informant).count() == 2
