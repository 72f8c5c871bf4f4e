"""An export saved again by Excel or LibreOffice imports as it was, or is refused naming the line,
the column and what to do: never misread. Through `manage.py import_incidents` and the admin's
import page, which read files alike (`importers.csv_file_text`, `importers._read_rows`)."""

import csv
import io
import tracemalloc
from datetime import date

import pytest

from incidents.importers import _MAX_HEADER_CELLS as MAX_HEADER_CELLS
from incidents.models import Incident
from tests.factories import make_incident, make_place
from tests.test_import import confirm_form, export, import_errors, run_import


@pytest.fixture
def exported(reviewer, tmp_path) -> list[list[str]]:
    """An export's rows, as a spreadsheet opens them: non-Latin-1 text, places, a count."""
    make_incident(
        title="Hoeryong – “about 40” returned",
        date_start=date(2023, 8, 29),
        date_end=date(2023, 8, 29),
        people_count=40,
        places=[make_place(name="Hoeryong", country="KP")],
    )
    make_incident(title="강제북송 遣返", date_start=date(2023, 7, 1), date_end=date(2023, 7, 9), date_precision="range")
    return list(csv.reader(io.StringIO(export(reviewer, tmp_path).decode())))


def saved(rows: list[list[str]], *, delimiter=",", line_end="\r\n") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=line_end).writerows(rows)
    return out.getvalue()


def with_cells(rows: list[list[str]], column: str, text: str) -> list[list[str]]:
    """The rows with `column` of the first incident's row holding `text`, as a spreadsheet shows it."""
    position = rows[0].index(column)
    return [rows[0], [*rows[1][:position], text, *rows[1][position + 1 :]], *rows[2:]]


def midnight(rows: list[list[str]]) -> list[list[str]]:
    dates = [rows[0].index("date_start"), rows[0].index("date_end")]
    return [rows[0]] + [[f"{cell} 00:00:00" if i in dates else cell for i, cell in enumerate(row)] for row in rows[1:]]


SAVED_AS = {
    "Excel, CSV UTF-8 (BOM, CRLF)": lambda rows: ("\ufeff" + saved(rows)).encode(),
    "LibreOffice (UTF-8, LF)": lambda rows: saved(rows, line_end="\n").encode(),
    "Excel, Unicode Text (UTF-16, tabs)": lambda rows: saved(rows, delimiter="\t").encode("utf-16"),
    "Excel in Germany (;, BOM)": lambda rows: ("\ufeff" + saved(rows, delimiter=";")).encode(),
    "LibreOffice in France (;)": lambda rows: saved(rows, delimiter=";").encode(),
    "dates with a midnight time": lambda rows: saved(midnight(rows)).encode(),
    "header in other case and spacing": lambda rows: saved(
        [[" Public ID ", "Title", *(name.upper() for name in rows[0][2:])], *rows[1:]]
    ).encode(),
    "empty columns after the last": lambda rows: saved([[*row, "", ""] for row in rows]).encode(),
    "empty rows at the end": lambda rows: saved(rows + [[""] * len(rows[0])] * 3).encode(),
}


@pytest.mark.parametrize("save", SAVED_AS.values(), ids=SAVED_AS.keys())
def test_an_export_saved_by_a_spreadsheet_imports_back_unchanged(reviewer, exported, tmp_path, save):
    # Unchanged: every cell was read as the export wrote it (a misread date or title would update).
    assert "0 incidents were created; 0 updated; 2 unchanged." in run_import(reviewer, tmp_path, save(exported))


def test_an_edited_row_in_a_semicolon_file_updates_the_incident(reviewer, exported, tmp_path):
    edited = with_cells(exported, "title", "Hoeryong – “about 45” returned")

    run_import(reviewer, tmp_path, saved(edited, delimiter=";").encode())

    assert Incident.objects.filter(title="Hoeryong – “about 45” returned").exists()


def test_a_windows_1252_file_is_refused_rather_than_misread(reviewer, exported, tmp_path):
    errors = import_errors(reviewer, tmp_path, saved(exported).encode("cp1252", errors="replace"))

    assert (
        "line 2, column title: The file is not UTF-8 (byte 0x96 cannot be read); save it as UTF-8 (in Excel: "
        "'CSV UTF-8')"
    ) in errors


HEADER = "title,type,date_start,date_end,places\n"


def new_row(title: str, places: str = "") -> str:
    return f"{title},forced-repatriation,2023-08-29,2023-08-29,{places}\n"


def test_a_byte_that_is_not_utf_8_is_named_by_its_record_s_line_and_column(reviewer, tmp_path):
    # The quoted title spans two lines, so the third record starts on line 4.
    content = (HEADER + '"Returned,\nin two lines",forced-repatriation,2023-08-29,2023-08-29,\n').encode()
    content += new_row("Third", "Sinuiju \x96 Dandong").encode("latin-1")

    errors = import_errors(reviewer, tmp_path, content)

    assert "line 4, column places: The file is not UTF-8 (byte 0x96 cannot be read)" in errors


def test_a_broken_utf_16_file_is_refused_naming_line_and_column(reviewer, tmp_path):
    text = (HEADER + new_row("Fine") + new_row("Broken", "PLACES")).replace(",", "\t")
    # A high surrogate followed by a letter: half of a character outside the Basic Multilingual Plane.
    content = text.encode("utf-16").replace("PLACES".encode("utf-16-le"), b"\x00\xd8A\x00")

    errors = import_errors(reviewer, tmp_path, content)

    assert "line 3, column places: The file is not valid UTF-16; save it as UTF-8" in errors


# What the file holds, as bytes, and the word the error quotes.
MISREAD = {
    # A right quote read as Windows-1252, saved as UTF-8: the file after a spreadsheet opened it wrongly.
    "UTF-8 misread as Windows-1252, saved as UTF-8": ("Onsong; Returnees donâ€™t".encode(), "donâ€™t"),
    "French misread so": ("Onsong; RÃ©fugiÃ©s".encode(), "RÃ©fugiÃ©s"),
    "Korean misread so": ("Onsong; ë¶í•œ".encode(), "ë¶í•œ"),
    # Windows-1252 bytes that happen to be valid UTF-8 read as the same misread text.
    "Windows-1252 whose bytes are UTF-8": ("Onsong; donÃ¢â‚¬â„¢t".encode("cp1252"), "donâ€™t"),
}


@pytest.mark.parametrize(("places", "quoted"), MISREAD.values(), ids=MISREAD.keys())
def test_misread_text_is_refused_naming_line_and_column(reviewer, tmp_path, places, quoted):
    content = (HEADER + new_row("Fine")).encode() + new_row("Misread", "PLACES").encode().replace(b"PLACES", places)

    errors = import_errors(reviewer, tmp_path, content)

    assert f"line 3, column places: The text looks mis-encoded: {quoted!r} is how UTF-8 text reads" in errors
    assert "save it as UTF-8 (in Excel: 'CSV UTF-8')." in errors


def test_misread_text_in_a_big_file_s_last_row_is_refused(reviewer, tmp_path):
    # Each cell outside ASCII is searched once (the same places recur row after row): the last
    # row's misread name, beside a name every row before it holds, is still found.
    rows = "".join(new_row(f"Returned {number}", "Hoeryŏng; 회령") for number in range(3000))
    content = HEADER + rows + new_row("Last", "Hoeryŏng; ë¶í•œ") + new_row("After")

    errors = import_errors(reviewer, tmp_path, content.encode())

    assert "line 3002, column places: The text looks mis-encoded: 'ë¶í•œ' is how UTF-8 text reads" in errors


def test_misread_text_is_refused_in_a_column_whose_earlier_cells_read_well(reviewer, tmp_path):
    # What is searched once is a cell's text, not a column: a column read well so far is searched
    # again for each text it holds.
    content = HEADER + new_row("Hoeryŏng", "Hoeryŏng") + new_row("RÃ©fugiÃ©s", "Hoeryŏng")

    errors = import_errors(reviewer, tmp_path, content.encode())

    assert "line 3, column title: The text looks mis-encoded: 'RÃ©fugiÃ©s'" in errors


REAL_TEXT = [
    "강제북송 — 함경북도 회령시에서 40명이 송환되었다",
    "Réfugiés nord-coréens rapatriés de force à l’été ; « déportés » près de Dandong",
    "Zwangsrückführung: Flüchtlinge über die Grenze gebracht – Straße, größer, Äußerung",
    "Người tị nạn Bắc Triều Tiên bị bắt ở Lào Cai, Việt Nam",
    "遣返脱北者，中国吉林省延边朝鲜族自治州图们市",
    "Депортация северокорейцев из России",
    "SÃO TOMÉ, Ñandú ¿Qué? Þór Ægir, İstanbul, Łódź, naïve café © 2023 ½ °C £5 €10",
]


def test_real_text_in_any_language_is_not_taken_for_misread(reviewer, tmp_path):
    content = HEADER + "".join(new_row(f'"{title}"') for title in REAL_TEXT)

    run_import(reviewer, tmp_path, content.encode())

    assert sorted(Incident.objects.values_list("title", flat=True)) == sorted(REAL_TEXT)


# Quoted cells holding more delimiters than the header has columns: the rows are read by one
# csv.reader, each handed to it while its lines hold fewer; such a row is read on its own, as
# written, and the rows after it by the same reader as before (`importers._Records.rest`).
MANY_DELIMITERS = [
    '"Returned, then, again, and, again, and, again"',
    '"Returned\nover, two, lines, with, more, commas"',
    '"Returned ""here"", there, and, there; and, there"',
]


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_rows_whose_quoted_cells_hold_more_delimiters_than_there_are_columns_are_read_as_written(
    reviewer, tmp_path, line_end
):
    def content(titles):
        return HEADER + "".join([new_row("First"), *(new_row(title) for title in titles), "\n", new_row("Last")])

    errors = import_errors(
        reviewer,
        tmp_path,
        (content(MANY_DELIMITERS) + new_row("Bad date").replace("2023-08-29", "x", 1)).replace("\n", line_end),
    )
    # The quoted line end in the second title, a blank line: the bad row starts on line 9. A title
    # is one line (migration 0089): the one spanning lines 4 and 5 is refused where it starts.
    assert "line 9, column date_start: 'x' is not a date" in errors
    assert "line 4, column title: A title is one line: remove the line break." in errors
    one_line = [title for title in MANY_DELIMITERS if "\n" not in title]
    run_import(reviewer, tmp_path, content(one_line).replace("\n", line_end))
    titles = ["First", *(next(csv.reader([title]))[0] for title in one_line), "Last"]
    assert sorted(Incident.objects.values_list("title", flat=True)) == sorted(titles)


WIDE = "This row has more cells than the header's 5; the file was read no further."
REFUSED_LAST_ROWS = {
    "a cell more": ("Wide,forced-repatriation,2023-08-29,2023-08-29,,extra\n", WIDE),
    "a cell more beside quoted commas": (
        '"Wide, quoted",forced-repatriation,2023-08-29,2023-08-29,"Onsong, Musan",extra\n',
        WIDE,
    ),
    "a quote left open": (
        '"Unclosed,forced-repatriation,2023-08-29,2023-08-29,\n',
        "Malformed CSV: unexpected end of data.",
    ),
    "text after a closing quote": (
        '"Closed" then,forced-repatriation,2023-08-29,2023-08-29,\n',
        "Malformed CSV: ',' expected after '\"'.",
    ),
}


@pytest.mark.parametrize(("last", "refusal"), REFUSED_LAST_ROWS.values(), ids=REFUSED_LAST_ROWS.keys())
def test_a_row_refused_after_many_rows_is_named_by_its_line(reviewer, tmp_path, last, refusal):
    rows = "".join(new_row(f'"Returned, {number}"') for number in range(2000))
    two_lines = '"Two\nlines",forced-repatriation,2023-08-29,2023-08-29,\n'

    errors = import_errors(reviewer, tmp_path, HEADER + rows + two_lines + last)

    assert f"line 2004: {refusal}" in errors


@pytest.mark.parametrize("shown", ["29/08/2023", "8/29/2023", "2023-08-29 13:30:00"])
def test_a_date_as_a_spreadsheet_shows_it_is_refused_naming_line_and_column(reviewer, exported, tmp_path, shown):
    errors = import_errors(reviewer, tmp_path, saved(with_cells(exported, "date_start", shown)))

    assert f"line 2, column date_start: '{shown}' is not a date; write it as YYYY-MM-DD." in errors


@pytest.mark.parametrize("shown", ["1,200", "1.200", "1 200"])
def test_a_count_with_thousands_separators_is_refused_showing_its_digits(reviewer, exported, tmp_path, shown):
    # "1.200" is 1200 in Germany and 1.2 in England: either reading would misread the other's files.
    errors = import_errors(reviewer, tmp_path, saved(with_cells(exported, "people_count", shown), delimiter=";"))

    assert f"line 2, column people_count: '{shown}' is not a whole number of people. Write it without " in errors
    assert "separators: 1200." in errors


def test_a_value_in_an_unnamed_column_is_refused(reviewer, exported, tmp_path):
    rows = [[*exported[0], ""], [*exported[1], "note"], *([*row, ""] for row in exported[2:])]

    errors = import_errors(reviewer, tmp_path, saved(rows))

    assert (
        f"line 2: This row has more cells than the header's {len(exported[0])}; the file was read no further." in errors
    )


def test_a_header_with_more_empty_columns_than_columns_is_refused(reviewer, exported, tmp_path):
    # Read as far as the header may go, not further: each cell read costs memory (README, Limits).
    errors = import_errors(reviewer, tmp_path, saved([[*row, *[""] * 100] for row in exported]))

    assert (
        f"line 1: The header has more than {MAX_HEADER_CELLS} cells; delete the empty columns after the last." in errors
    )


class TestAdminImportPage:
    URL = "/admin/incidents/incident/import/"

    @pytest.mark.parametrize(
        "save",
        [SAVED_AS["Excel, Unicode Text (UTF-16, tabs)"], SAVED_AS["Excel in Germany (;, BOM)"]],
        ids=["UTF-16, tabs", "semicolons"],
    )
    def test_a_spreadsheet_s_file_previews_then_imports(self, client, reviewer, exported, save):
        edited = with_cells(exported, "title", "Hoeryong – “about 45” returned")
        client.force_login(reviewer)

        preview = client.post(self.URL, {"file": io.BytesIO(save(edited))}, format="multipart")

        assert preview.status_code == 200
        assert "Hoeryong – “about 45” returned — title" in preview.text
        assert client.post(self.URL, confirm_form(preview)).status_code == 302
        assert Incident.objects.filter(title="Hoeryong – “about 45” returned").exists()

    def test_a_windows_1252_file_is_refused_with_advice(self, client, reviewer, exported):
        client.force_login(reviewer)

        response = client.post(
            self.URL, {"file": io.BytesIO(saved(exported).encode("cp1252", errors="replace"))}, format="multipart"
        )

        assert response.status_code == 400
        assert "The file is not UTF-8 (byte 0x96 cannot be read)" in response.text
        assert 'name="confirm"' not in response.text

    def test_a_row_wider_than_the_header_over_many_lines_is_refused_before_its_cells_are_held(self, client, reviewer):
        # Each of its lines holds one delimiter, all of them 200,000 (a quoted line end in each
        # cell): csv.reader is handed its lines only while they hold fewer than the header's columns.
        wide = ",".join(['"ab\ncd"'] * 200_000)
        content = (HEADER + new_row("First") + wide + "\n" + new_row("Nope", "Nowhere")).encode()
        client.force_login(reviewer)
        # What a first upload loads once (translations, templates), before the memory is traced.
        client.post(self.URL, {"file": io.BytesIO(HEADER.encode())}, format="multipart")
        tracemalloc.start()
        try:
            response = client.post(self.URL, {"file": io.BytesIO(content)}, format="multipart")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

        assert response.status_code == 400
        refusal = "This row has more cells than the header&#x27;s 5; the file was read no further."
        assert f"<td>3</td><td></td><td>{refusal}" in response.text
        assert "Nowhere" not in response.text  # the reading stopped at line 3
        assert peak < 10 * len(content), f"{peak:,} bytes at the peak for a {len(content):,}-byte file"

    def test_misread_text_is_refused_with_advice(self, client, reviewer, exported):
        client.force_login(reviewer)
        misread = with_cells(exported, "title", "Hoeryong returnees donâ€™t")

        response = client.post(self.URL, {"file": io.BytesIO(saved(misread).encode())}, format="multipart")

        assert response.status_code == 400
        assert "The text looks mis-encoded: &#x27;donâ€™t&#x27;" in response.text
        assert 'name="confirm"' not in response.text
