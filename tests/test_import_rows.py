"""How the CSV import reads an analyst's rows: blank cells as the admin's form reads empty fields,
every error of every row at once, and possible duplicates (the admin's rule) listed, then skipped or
allowed; through `manage.py import_incidents` and the admin's upload and preview pages."""

import io
from datetime import date

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.urls import reverse

from incidents import roles
from incidents.exports import COLUMNS
from incidents.models import Incident, Organization, Place
from tests.factories import make_incident, make_place, make_source, make_user, pasted_report
from tests.test_import import confirm_form, import_errors, run_import, write_csv

HEADER = "title,type,date_start,date_end"


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


def export_row(**cells) -> dict[str, str]:
    """A row with every column of the export, blank unless given."""
    return dict.fromkeys(COLUMNS, "") | cells


class TestBlankCells:
    def test_a_new_row_with_only_the_required_cells_of_the_export_s_columns_gets_the_defaults(self, analyst, tmp_path):
        content = write_csv(
            [export_row(title="Only four cells", type="deportation", date_start="2024-03-01", date_end="2024-03-01")]
        )

        output = run_import(analyst, tmp_path, content)

        assert "1 incident was created" in output
        incident = Incident.objects.get(title="Only four cells")
        assert (
            incident.date_precision,
            incident.count_qualifier,
            incident.verification,
            incident.review_state,
            incident.people_count,
            list(incident.places.all()),
        ) == ("day", "unknown", "alleged", "draft", None, [])

    def test_blank_choices_leave_an_existing_incident_s_values_and_blank_counts_clear_them(self, tmp_path):
        # A Reviewer: an Analyst's change to a published incident waits for review (README).
        reviewer = make_user(roles.REVIEWER)
        incident = make_incident(
            date_start=date(2023, 8, 1),
            date_end=date(2023, 8, 31),
            date_precision="month",
            count_qualifier="about",
            verification="verified",
            review_state="published",
            people_count=80,
            people_count_max=100,
        )
        content = write_csv(
            [
                export_row(
                    public_id=incident.public_id,
                    version="1",
                    title=incident.title,
                    type="forced-repatriation",
                    date_start="2023-08-01",
                    date_end="2023-08-31",
                    people_count="80",
                )
            ]
        )

        run_import(reviewer, tmp_path, content)

        incident.refresh_from_db()
        assert (incident.date_precision, incident.count_qualifier, incident.verification, incident.review_state) == (
            "month",
            "about",
            "verified",
            "published",
        )
        assert (incident.people_count, incident.people_count_max, incident.version) == (80, None, 2)


def test_every_error_of_every_row_is_reported_at_once(analyst, tmp_path):
    content = write_csv(
        [
            export_row(
                title="Everything wrong",
                type="deportation",
                date_start="2023-02-30",
                date_end="2023-03-01",
                people_count="ten",
                people_count_min="9",
                people_count_max="5",
                review_state="published",
                verification="verified",
                places="Nowhere",
            ),
            # A row of only empty cells is left out, as a blank line is (a spreadsheet writes them).
            export_row(count_qualifier="about"),
        ]
    )

    errors = import_errors(analyst, tmp_path, content)

    for expected in [
        "line 2, column date_start: 2023-02-30 is not a day: February 2023 has 28 days.",
        "line 2, column people_count: 'ten' is not a whole number of people.",
        "line 2, column people_count_min: The minimum (9) is above the maximum (5).",
        "line 2, column review_state: You may not publish incidents: your role lacks that permission.",
        "line 2, column verification: You may not change verification",
        "line 2, column places: Unknown place 'Nowhere'",
        "line 3, column title: This field cannot be blank.",
        "line 3, column type: This field cannot be blank.",
        "line 3, column date_start: This field cannot be blank",
        "line 3, column date_end: This field cannot be blank",
    ]:
        assert expected in errors
    # A cell that could not be read is reported once, not again by the model's rules.
    assert errors.count("column date_start") == 2


def test_every_row_of_many_alike_is_checked_in_full(analyst, tmp_path):
    # The new rows' fields are checked once per value they share (a type, dates, a title repeated):
    # each row holding a value that breaks a field's rule is named, with the rules across fields
    # (the model's clean()) checked on every row, beside the field's own.
    def row(**cells):
        return export_row(type="deportation", date_start="2023-03-01", date_end="2023-03-01", **cells)

    long_title, too_many = "T" * 501, "3000000000"
    content = write_csv(
        [
            row(title="Fine"),
            row(title=long_title),
            row(title="Many", people_count=too_many, people_count_max="5"),
            row(title=long_title, people_count=too_many),
            row(title="Fine too", date_precision="month"),
            row(title="Fine again", date_precision="month"),
        ]
    )

    errors = [error.split(": ", 1)[1] for error in import_errors(analyst, tmp_path, content).splitlines()]

    too_long = "column title: Ensure this value has at most 300 characters (it has 501)."
    above_limit = "column people_count: Ensure this value is less than or equal to 2147483647."
    month = (
        "column date_precision: A Month is whole months, from a month's first day to a month's last: "
        "2023-03-01 to 2023-03-01 is not. Give 2023-03-01 to 2023-03-31, or choose Range for part of a month."
    )
    assert errors == [
        f"line 3, {too_long}",
        f"line 4, {above_limit}",
        "line 4, column people_count: The best estimate (3000000000) is above the maximum (5).",
        f"line 5, {too_long}",
        f"line 5, {above_limit}",
        f"line 6, {month}",
        f"line 7, {month}",
    ]


@pytest.mark.parametrize("number", ["²", pytest.param("9" * 5000, id="5000-digits")])
def test_a_count_or_version_in_other_digits_is_named_as_not_a_number(analyst, tmp_path, number):
    # "²" is a digit to str.isdigit() but not to int(), nor is a number of 5,000 digits.
    incident = make_incident()
    content = write_csv(
        [
            export_row(
                title="New", type="deportation", date_start="2024-03-01", date_end="2024-03-01", people_count=number
            ),
            export_row(
                public_id=incident.public_id,
                version=number,
                title=incident.title,
                type="forced-repatriation",
                date_start="2023-08-29",
                date_end="2023-08-29",
            ),
        ]
    )

    errors = import_errors(analyst, tmp_path, content)

    assert f"line 2, column people_count: {number!r} is not a whole number of people." in errors
    assert f"line 3, column version: {number!r} is not a version number." in errors


def test_a_long_text_pasted_into_a_searched_cell_is_named_and_nothing_imported(analyst, tmp_path):
    # The import writes no description or excerpt; the texts it reads that the search reads are
    # refused far below what overflows the search's words (a tsvector of 1 MB): the title by its
    # length, sources and places as names no record has, even a cell beyond csv's own bound (131,072
    # characters), which the reader once refused as malformed CSV, naming no column.
    make_source(title="Daily NK")
    cells = {"title": "Forty returned", "type": "deportation", "date_start": "2024-03-01"}
    cells |= {"date_end": "2024-03-01", "sources": "Daily NK"}
    for column in ("title", "sources", "places"):
        errors = import_errors(
            analyst, tmp_path, write_csv([cells | {column: pasted_report(100_000)}]), "--allow-duplicates"
        )

        assert f"line 2, column {column}: " in errors

    errors = import_errors(analyst, tmp_path, write_csv([cells | {"title": pasted_report(960_000)}]))
    assert "line 2, column title: Ensure this value has at most 300 characters (it has 960000)." in errors


def test_a_cell_holding_a_nul_is_named_rather_than_crashing_the_import(analyst, tmp_path):
    # PostgreSQL's text cannot hold a NUL: the import's first query naming it failed.
    make_source(title="Daily NK")
    for column, cell in [("title", "Forty\x00 returned"), ("sources", "Daily\x00 NK")]:
        cells = {"title": "Forty returned", "type": "deportation", "date_start": "2024-03-01"}
        cells |= {"date_end": "2024-03-01", "sources": "Daily NK", column: cell}

        errors = import_errors(analyst, tmp_path, write_csv([cells]), "--allow-duplicates")

        assert f"line 2, column {column}: This cell holds a NUL character" in errors


class TestDuplicates:
    @pytest.fixture
    def tumen(self):
        return make_place(name="Tumen", country="CN")

    def new_rows(self, *titles: str, date_start: str = "2024-05-01", date_end: str | None = None) -> str:
        return f"{HEADER},places\n" + "".join(
            f"{title},forced-repatriation,{date_start},{date_end or date_start},Tumen\n" for title in titles
        )

    def test_importing_the_same_new_rows_twice_stops_and_lists_them(self, analyst, tumen, tmp_path):
        run_import(analyst, tmp_path, self.new_rows("Forty returned"))
        first = Incident.objects.get()

        dry_run = run_import(analyst, tmp_path, self.new_rows("Forty returned"), "--dry-run")
        errors = import_errors(analyst, tmp_path, self.new_rows("Forty returned"))

        listed = f"line 2: 'Forty returned' may duplicate {first.public_id} Forty returned (1 May 2024)"
        assert listed in dry_run
        assert "1 new row may duplicate an incident or an earlier row" in dry_run
        assert listed in errors
        assert "Import again skipping them (--skip-duplicates) or creating them all the same" in errors
        assert Incident.objects.count() == 1

    def test_an_import_stopped_for_duplicates_counts_no_error(self, analyst, tumen, tmp_path):
        run_import(analyst, tmp_path, self.new_rows("Forty returned"))

        with pytest.raises(CommandError, match=r"^1 possible duplicate in \S+import\.csv; nothing was imported\.$"):
            run_import(analyst, tmp_path, self.new_rows("Forty returned"))

    def test_duplicates_may_be_skipped_or_allowed(self, analyst, tumen, tmp_path):
        make_incident(title="Known", date_start=date(2024, 5, 3), date_end=date(2024, 5, 3), places=[tumen])
        # Line 2 may repeat the known incident, line 4 line 3; line 5 is far from all of them in time.
        content = self.new_rows("Repeat") + "".join(
            f"{title},forced-repatriation,{day},{day},Tumen\n"
            for title, day in [("Fresh", "2024-07-01"), ("Fresh again", "2024-07-02"), ("Much later", "2024-09-01")]
        )

        skipped = run_import(analyst, tmp_path, content, "--skip-duplicates")

        assert "2 incidents were created; 0 updated; 0 unchanged; 2 possible duplicates skipped." in skipped
        assert "line 4: 'Fresh again' skipped, may duplicate line 3" in skipped
        assert set(Incident.objects.values_list("title", flat=True)) == {"Known", "Fresh", "Much later"}

        allowed = run_import(analyst, tmp_path, self.new_rows("Repeat"), "--allow-duplicates")

        assert "1 incident was created" in allowed
        assert Incident.objects.filter(title="Repeat").exists()

    def test_a_dry_run_skipping_duplicates_reports_what_that_import_would_write(self, analyst, tumen, tmp_path):
        make_incident(title="Known", date_start=date(2024, 5, 1), date_end=date(2024, 5, 1), places=[tumen])
        content = self.new_rows("Repeat") + "Fresh,forced-repatriation,2024-09-01,2024-09-01,Tumen\n"

        dry_run = run_import(analyst, tmp_path, content, "--skip-duplicates", "--dry-run")

        # Before, the dry run counted the duplicate among the incidents it would create.
        assert "1 incident would be created; 0 updated; 0 unchanged; 1 possible duplicate would be skipped." in dry_run
        assert "line 2: 'Repeat' would be skipped, may duplicate" in dry_run
        assert Incident.objects.count() == 1

    def test_a_skipped_duplicate_creates_none_of_the_names_only_it_used(self, analyst, tumen, tmp_path):
        make_incident(title="Known", date_start=date(2024, 5, 1), date_end=date(2024, 5, 1), places=[tumen])
        content = (
            f"{HEADER},places,perpetrators\n"
            "Repeat,forced-repatriation,2024-05-01,2024-05-01,Tumen; Tumen > Newplace,Newcomer Bureau\n"
            "Fresh,forced-repatriation,2024-09-01,2024-09-01,Tumen,\n"
        )

        output = run_import(analyst, tmp_path, content, "--skip-duplicates", "--create-missing")

        assert "1 incident was created; 0 updated; 0 unchanged; 1 possible duplicate skipped." in output
        assert "Newplace" not in output and "Newcomer Bureau" not in output
        assert not Place.objects.filter(name="Newplace").exists()
        assert not Organization.objects.filter(name="Newcomer Bureau").exists()

    # The last day a date can have only ends a range: a start after today is refused.
    @pytest.mark.parametrize(("start", "end"), [("0001-01-01", "0001-01-01"), ("2024-05-01", "9999-12-31")])
    def test_rows_on_the_first_or_last_day_a_date_can_have_are_compared_like_any_other(
        self, analyst, tumen, tmp_path, start, end
    ):
        known = make_incident(date_start=date.fromisoformat(start), date_end=date.fromisoformat(end), places=[tumen])

        rows = self.new_rows("Same day", "Same day again", date_start=start, date_end=end)
        output = run_import(analyst, tmp_path, rows, "--dry-run")

        assert f"line 2: 'Same day' may duplicate {known.public_id}" in output
        assert "line 3: 'Same day again' may duplicate" in output

    @pytest.mark.parametrize(
        ("changes", "duplicate"),
        [
            ({}, True),
            ({"date_start": "2024-05-08", "date_end": "2024-05-09"}, True),  # within the window
            ({"date_start": "2024-05-12", "date_end": "2024-05-12"}, False),  # beyond it
            ({"type": "deportation"}, False),
            ({"places": "Yanji"}, True),  # same country
            ({"places": "Sinuiju"}, False),
            ({"places": ""}, False),
        ],
    )
    def test_the_import_and_the_admin_apply_the_same_rule(self, analyst, tumen, tmp_path, changes, duplicate):
        make_place(name="Yanji", country="CN")
        make_place(name="Sinuiju", country="KP")
        known = make_incident(date_start=date(2024, 5, 1), date_end=date(2024, 5, 1), places=[tumen])
        cells = {"title": "New", "type": "forced-repatriation", "date_start": "2024-05-01"}
        cells |= {"date_end": "2024-05-01", "places": "Tumen"} | changes

        output = run_import(analyst, tmp_path, write_csv([cells]), "--dry-run")

        assert (known.public_id in output) is duplicate
        # What the admin warns of once the same incident is saved.
        run_import(analyst, tmp_path, write_csv([cells]), "--allow-duplicates")
        new = Incident.objects.get(title="New")
        admin_rule = Incident.objects.visible_to(analyst).possible_duplicates_of(
            new, window_days=settings.DUPLICATE_WINDOW_DAYS
        )
        assert list(admin_rule) == ([known] if duplicate else [])

    @pytest.mark.parametrize(
        ("changes", "duplicate"),
        [
            ({}, True),
            ({"date_start": "2024-04-20", "date_end": "2024-04-24"}, True),  # before, within the window
            ({"date_start": "2024-05-08", "date_end": "2024-05-09"}, True),
            ({"date_start": "2024-05-12", "date_end": "2024-05-12"}, False),
            ({"date_start": "2023-01-01", "date_end": "2025-12-31"}, True),  # a range around it
            ({"type": "deportation"}, False),
            ({"places": "Yanji"}, True),
            ({"places": "Sinuiju"}, False),
        ],
    )
    def test_rows_of_one_file_are_compared_by_the_same_rule(self, analyst, tumen, tmp_path, changes, duplicate):
        make_place(name="Yanji", country="CN")
        make_place(name="Sinuiju", country="KP")
        first = {"title": "First", "type": "forced-repatriation", "date_start": "2024-05-01"}
        first |= {"date_end": "2024-05-01", "places": "Tumen"}
        second = first | {"title": "Second"} | changes

        output = run_import(analyst, tmp_path, write_csv([first, second]), "--dry-run")

        assert ("line 3: 'Second' may duplicate line 2" in output) is duplicate
        assert "'First' may duplicate" not in output

    def test_incidents_the_user_may_not_see_are_not_revealed(self, analyst, tumen, tmp_path):
        make_incident(title="Secret", date_start=date(2024, 5, 1), date_end=date(2024, 5, 1), places=[tumen])
        Incident.objects.filter(title="Secret").update(confidential=True)
        output = run_import(analyst, tmp_path, self.new_rows("New"), "--dry-run")
        assert "duplicate" not in output


class TestAdminImportPages:
    URL = "/admin/incidents/incident/import/"

    def upload(self, client, content: str, name="incidents.csv"):
        file = io.BytesIO(content.encode())
        file.name = name
        return client.post(self.URL, {"file": file}, format="multipart")

    def test_the_preview_is_clearly_not_the_upload_page(self, client, analyst):
        client.force_login(analyst)
        upload_page = client.get(self.URL)
        assert 'type="file"' in upload_page.text

        preview = self.upload(
            client, f"{HEADER}\nA,deportation,2024-01-01,2024-01-01\nB,torture,2024-02-01,2024-02-01\n"
        )

        assert preview.status_code == 200
        assert "<title>Preview: import incidents.csv" in preview.text
        assert "2 incidents to create, 0 to update, 0 unchanged" in " ".join(preview.text.split())
        assert 'value="Import 2 rows"' in preview.text
        assert 'type="file"' not in preview.text
        assert not Incident.objects.exists()

        imported = client.post(self.URL, confirm_form(preview, confirm="Import 2 rows"))

        assert imported.status_code == 302
        assert Incident.objects.count() == 2

    def test_possible_duplicates_are_listed_and_must_be_skipped_or_allowed(self, client, analyst):
        tumen = make_place(name="Tumen", country="CN")
        known = make_incident(date_start=date(2024, 5, 1), date_end=date(2024, 5, 1), places=[tumen])
        client.force_login(analyst)
        content = f"{HEADER},places\nRepeat,forced-repatriation,2024-05-02,2024-05-02,Tumen\n"
        content += "Other,torture,2024-05-02,2024-05-02,Tumen\n"

        preview = self.upload(client, content)

        assert "Possible duplicates (1)" in preview.text
        assert reverse("admin:incidents_incident_change", args=[known.pk]) in preview.text
        assert 'name="duplicates" value="skip"' in preview.text
        undecided = client.post(self.URL, confirm_form(preview, confirm="Import 2 rows"))
        assert undecided.status_code == 400
        assert "Choose what to do with the possible duplicates." in undecided.text
        assert Incident.objects.count() == 1

        skipped = client.post(self.URL, confirm_form(undecided, confirm="Import 2 rows", duplicates="skip"))

        assert skipped.status_code == 302
        assert set(Incident.objects.values_list("title", flat=True)) == {known.title, "Other"}

    def test_a_file_with_errors_shows_them_above_the_file_chooser(self, client, analyst):
        client.force_login(analyst)
        response = self.upload(client, f"{HEADER}\nA,nope,2023-01-01,2023-01-01\n", name="bad.csv")
        assert response.status_code == 400
        assert "<title>bad.csv cannot be imported" in response.text
        assert 'type="file"' in response.text
        assert 'name="confirm"' not in response.text


def test_the_command_refuses_both_duplicate_options(analyst, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(f"{HEADER}\n")
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command(
            "import_incidents", str(path), f"--user={analyst.username}", "--skip-duplicates", "--allow-duplicates"
        )
