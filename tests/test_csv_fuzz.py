"""The CSV round trip fuzzed: seeded random incidents whose every name and text is as messy as the
world writes it (separators, quotes, line breaks, control characters, formulas, right-to-left and
combining marks, emoji, Korean and Chinese, names repeated under different parents), exported and
imported back through `manage.py export_incidents` and `import_incidents` changing nothing, whoever
exports, and through the admin's preview and import; a damaged cell or file refused naming its line
(and column), never a crash, with nothing written. Seeded, so a failure repeats; bounded, so it stays
a few seconds of CI."""

import calendar
import csv
import io
import random
import re
from datetime import date, timedelta

import pytest
from django.core.management import CommandError, call_command

from incidents import roles
from incidents.models import Claim, Incident, IncidentType, Involvement
from incidents.text_fields import normal_text
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.test_csv_round_trip import history_row_count
from tests.test_import import confirm_form, import_errors, run_import

SEED = 20261203
INCIDENTS = 40

# Pieces of messy text: what the cell's CSV quoting, the list cells' own quoting (";", ">", "[", '"'),
# the formula guard (= + - @) and the importer's trimming each have to survive. Titles and names are
# one line (incidents.text_fields): no line break or control character, which every door refuses.
FRAGMENTS = [
    "Tumen",
    "Camp; Block 3",
    'The "No. 5"',
    "North > South",
    "[#12]",
    "[annex]",
    "a, b",
    "'quoted'",
    "''",
    "עברית",
    "مرحبا",
    "\u202eevil\u202c",
    "e\u0301\u0308",
    "🙂👨‍👩‍👧",
    "함경북도",
    "吉林市",
    "  padded  ",
    "\u00a0nbsp\u00a0",
    "\u3000全角\u3000",
]
FORMULA_STARTS = ["=", "+", "-", "@", "'=", "''+", " =", ""]


def messy_text(rng: random.Random, *, max_length: int) -> str:
    """A non-blank text: a few fragments, maybe behind a formula's first character, in the normal
    form every door stores (`normal_text`: "e\u0301\u0308" composed, a no-break space a plain one),
    which an import writes too."""
    text = rng.choice(FORMULA_STARTS) + "".join(rng.choices(FRAGMENTS, k=rng.randint(1, 3)))
    text = normal_text(text[:max_length], one_line=True)
    return text if text.strip() else "x"


def messy_name(rng: random.Random, taken: set[str]) -> str:
    """A name not yet in `taken` (case-insensitively, as the import matches names)."""
    while True:
        name = messy_text(rng, max_length=80)
        if name.strip() and name.casefold() not in taken:
            taken.add(name.casefold())
            return name


def generate_world(rng: random.Random) -> None:
    """Places named alike in two countries, organizations and sources with messy names (titles
    repeating), and incidents using them with every kind of date, count and claim."""
    countries = [make_place(name="China", kind="country", country="CN"), make_place(name="Vietnam", country="VN")]
    places = list(countries)
    for country in countries:
        taken: set[str] = set()
        provinces = [
            make_place(name=name, parent=country, country=country.country)
            for name in [*(messy_name(rng, taken) for _ in range(3)), "Jilin"]
        ]
        for province in provinces:
            # The same name as its province's: Jilin in Jilin.
            places.append(province)
            places.append(make_place(name=province.name, parent=province, country=country.country))
            other_name = messy_name(rng, {province.name.casefold()})
            places.append(make_place(name=other_name, parent=province, country=country.country))
    organization_names: set[str] = set()
    organizations = [make_organization(name=messy_name(rng, organization_names)) for _ in range(6)]
    # Names unique to the database, which tells them apart lowercased (PostgreSQL's lower()), and
    # so to the import, which matches them so: alike to Python's casefold() ("ß" is "ss").
    for name in ("UNHCR", "Straße Police", "STRASSE POLICE"):
        organizations.append(make_organization(name=name))
    for parent in rng.sample(places, 2):
        places += [make_place(name=name, parent=parent, country=parent.country) for name in ("Straße 1", "STRASSE 1")]
    titles = [messy_text(rng, max_length=200) for _ in range(4)]
    # Ten sources, four titles: titles repeat.
    sources = [make_source(title=rng.choice(titles), confidential=rng.random() < 0.25) for _ in range(10)]
    types = [
        *IncidentType.objects.all(),
        # Slugs alike but for case; names, unique whatever their case, apart.
        *(
            IncidentType.objects.create(slug=slug, name=name)
            for slug, name in (("Raid", "Raid"), ("RAID", "Night raid"))
        ),
    ]
    for _ in range(INCIDENTS):
        start = date(2020, 1, 1) + timedelta(days=rng.randrange(1500))
        precision = rng.choice(["day", "range", "month", "year", "unknown"])
        end = start if precision == "day" else start + timedelta(days=rng.randrange(1, 400))
        # Whole months and years, as those precisions are (the database's rule).
        if precision == "month":
            start, end = start.replace(day=1), end.replace(day=calendar.monthrange(end.year, end.month)[1])
        elif precision == "year":
            start, end = start.replace(month=1, day=1), end.replace(month=12, day=31)
        # min <= best <= max, each maybe unknown.
        low, best, high = sorted(rng.randrange(0, 100) for _ in range(3))
        low, best, high = (rng.choice([None, count]) for count in (low, best, high))
        incident = make_incident(
            # Trimmed, as every door stores a title.
            title=messy_text(rng, max_length=300).strip(),
            description=messy_text(rng, max_length=1000),
            incident_type=rng.choice(types),
            date_start=start,
            date_end=end,
            date_precision=precision,
            people_count=best,
            people_count_min=low,
            people_count_max=high,
            count_qualifier=rng.choice(
                [
                    "about",
                    "at_least",
                    "at_most",
                    "unknown",
                    *(["exact"] if best is not None and {low, high} <= {None, best} else []),
                ]
            ),
            verification=rng.choice(["alleged", "corroborated", "verified"]),
            review_state=rng.choice(["draft", "in_review", "published"]),
            confidential=rng.random() < 0.1,
            places=rng.sample(places, rng.randrange(0, 4)),
        )
        for organization in rng.sample(organizations, rng.randrange(0, 3)):
            Involvement.objects.create(
                incident=incident, organization=organization, role=rng.choice(["perpetrator", "perpetrator", "other"])
            )
        for source in rng.sample(sources, rng.randrange(0, 4)):
            # A source's public claim, its confidential one, or both (two claims of one source).
            for confidential in rng.choice([[False], [True], [False, True]]):
                make_claim(
                    incident=incident,
                    source=source,
                    confidential=confidential,
                    people_count=rng.choice([None, rng.randrange(0, 100)]),
                    excerpt=messy_text(rng, max_length=500),
                )


def export(user, tmp_path, name) -> bytes:
    output = tmp_path / name
    call_command("export_incidents", *([f"--user={user.username}"] if user else []), "-o", str(output))
    return output.read_bytes()


def quoted_csv(records: list[dict[str, str]]) -> str:
    """The rows as a file with every cell quoted: Python's csv writer leaves a lone carriage return
    unquoted, which any reader, the import's too, takes for a line end."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def claims() -> list[tuple]:
    return sorted(
        Claim.objects.values_list("pk", "incident_id", "source_id", "confidential", "people_count", "excerpt")
    )


@pytest.fixture
def world():
    generate_world(random.Random(SEED))


@pytest.mark.parametrize(
    ("exporter", "importer"),
    [
        pytest.param(None, roles.REVIEWER, id="the public's file, a reviewer with confidential access"),
        pytest.param(roles.ANALYST, roles.ANALYST, id="an analyst's own file"),
        pytest.param(roles.ANALYST, roles.REVIEWER, id="an analyst's file, a reviewer with confidential access"),
        pytest.param(roles.REVIEWER, roles.REVIEWER, id="a reviewer's own file, with confidential access"),
    ],
)
def test_messy_incidents_exported_and_imported_back_change_nothing(exporter, importer, world, tmp_path):
    # A file of a narrower view (no confidential claim, source or incident) imported by a reader
    # of a wider one loses nothing hidden from it.
    users = {roles.ANALYST: make_user(roles.ANALYST), roles.REVIEWER: make_user(roles.REVIEWER, confidential=True)}
    exporting, importer = users.get(exporter), users[importer]
    exported = export(exporting, tmp_path, "export.csv")
    before = export(importer, tmp_path, "before.csv")
    versions = dict(Incident.objects.values_list("pk", "version"))
    claims_before, history = claims(), history_row_count()

    output = run_import(importer, tmp_path, exported)

    rows_in_file = len(list(csv.DictReader(io.StringIO(exported.decode()))))
    assert f"0 incidents were created; 0 updated; {rows_in_file} unchanged." in output
    assert dict(Incident.objects.values_list("pk", "version")) == versions
    assert claims() == claims_before
    assert history_row_count() == history
    assert export(importer, tmp_path, "after.csv") == before


def test_every_door_exports_the_messy_file_the_round_trip_imports(client, world, tmp_path):
    # The round trip above imports the command's file; the API's and the admin's are those bytes.
    reviewer = make_user(roles.REVIEWER, confidential=True)
    exported = export(reviewer, tmp_path, "export.csv")
    client.force_login(reviewer)
    for url in ("/api/v1/incidents.csv", "/api/v1/incidents/?format=csv", "/admin/incidents/incident/export.csv"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content) == exported, url


def test_messy_rows_of_an_export_create_incidents_whose_export_reads_the_same(world, tmp_path):
    # The export's rows without public_id and version are new incidents: exported in turn, their
    # cells are the very cells they were created from; each lists its sources once, with a bare
    # claim each, where the original listed a source once per claim (public and confidential).
    reviewer = make_user(roles.REVIEWER, confidential=True)
    exported = list(csv.DictReader(io.StringIO(export(reviewer, tmp_path, "export.csv").decode())))
    new_rows = [row | {"public_id": "", "version": "", "review_state": "draft"} for row in exported]

    run_import(reviewer, tmp_path, quoted_csv(new_rows), "--allow-duplicates")

    again = list(csv.DictReader(io.StringIO(export(reviewer, tmp_path, "again.csv").decode())))
    exported_ids = {row["public_id"] for row in exported}
    created = [row for row in again if row["public_id"] not in exported_ids]
    assert sorted(map(compared_cells, created)) == sorted(map(compared_cells, exported))


def compared_cells(row: dict[str, str]) -> tuple:
    """The row's cells an import sets, its sources as their ids (each once)."""
    columns = ("title", "type", "date_start", "date_end", "date_precision", "date_label", "countries", "places")
    columns += ("people_count", "people_count_min", "people_count_max", "count_qualifier", "perpetrators")
    source_ids = sorted(set(re.findall(r"\[#(\d+)\](?=; |$)", row["sources"])))
    return (*(row[column] for column in columns), source_ids)


DAMAGES = {
    "date_start": ["2024-02-30", "yesterday", " "],
    "date_end": ["2024-13-01", "01/02/2024"],
    "people_count": ["-1", "many", "1.5", "１２"],
    "people_count_min": ["x"],
    "type": ["no such type\u202e"],
    "places": ['"unclosed', "Nowhere > 🙂", 'A "x" > B'],
    "perpetrators": ["Nobody; 🙂"],
    "sources": ["Unknown [#999999999]", '"half'],
    "date_precision": ["weekly"],
    "count_qualifier": ["roughly"],
    "verification": ["=1+1"],
    "title": [""],
    "version": ["v2"],
}


def first_line_of(records: list[dict[str, str]], index: int) -> int:
    """The line `quoted_csv(records)`'s row `index` starts on: line breaks in the cells before it
    count, as the import counts them (a line end is \\r\\n, \\r or \\n)."""
    header_length = len(quoted_csv(records[:1]).split("\r\n")[0]) + 2
    rows_from_index = len(quoted_csv(records[index:])) - header_length
    before = quoted_csv(records)[:-rows_from_index]
    return 1 + before.count("\n") + before.count("\r") - before.count("\r\n")


def test_a_damaged_cell_of_a_messy_export_is_refused_naming_its_line_and_column(world, tmp_path):
    rng = random.Random(SEED)
    reviewer = make_user(roles.REVIEWER, confidential=True)
    exported = list(csv.DictReader(io.StringIO(export(reviewer, tmp_path, "export.csv").decode())))
    history = history_row_count()
    for _ in range(12):
        damaged = [dict(row) for row in exported]
        index = rng.randrange(len(damaged))
        column = rng.choice(sorted(DAMAGES))
        damaged[index][column] = rng.choice(DAMAGES[column])

        errors = import_errors(reviewer, tmp_path, quoted_csv(damaged))

        line = first_line_of(damaged, index)
        assert f"line {line}, column {column}: " in errors, (column, damaged[index][column], errors)
    assert history_row_count() == history


def test_the_admins_import_of_a_messy_analysts_export_changes_only_the_edited_row(client, world, tmp_path):
    # The admin's upload keeps the file (PendingImport) between preview and import: the same text
    # must come back, right-to-left text and marks included.
    reviewer = make_user(roles.REVIEWER, confidential=True)
    exported = list(csv.DictReader(io.StringIO(export(make_user(roles.ANALYST), tmp_path, "export.csv").decode())))
    edited = exported[len(exported) // 2]
    edited["title"] = "''= עברית\u202e 🙂"
    versions, claims_before, history = (
        dict(Incident.objects.values_list("public_id", "version")),
        claims(),
        history_row_count(),
    )
    client.force_login(reviewer)

    preview = client.post("/admin/incidents/incident/import/", {"file": io.BytesIO(quoted_csv(exported).encode())})
    assert 'name="confirm"' in preview.text, preview.text
    imported = client.post("/admin/incidents/incident/import/", confirm_form(preview), follow=True)

    assert "0 incidents were created; 1 updated;" in imported.text
    # The export's apostrophe before a formula-like title is removed: one of the two. The override
    # inside is written as the embedding of its direction (`normal_text`).
    assert Incident.objects.get(public_id=edited["public_id"]).title == "'= עברית\u202b 🙂"
    versions[edited["public_id"]] += 1
    assert dict(Incident.objects.values_list("public_id", "version")) == versions
    assert claims() == claims_before
    assert history_row_count() > history


# Values at the edge of what a column holds: each must be imported or refused at its line and column,
# never crash the import.
EDGES = {
    "title": ["x" * 301, "\u200b", "\x7f", "'"],
    "date_start": ["0001-01-01", "9999-12-31", "2024-1-1", "+2024-01-01", "２０２４-01-01"],
    "date_end": ["9999-12-31", "0001-01-01"],
    "people_count": ["99999999999", "2147483648", "0", "+5", "1_000", "١٢", "1e3"],
    "people_count_max": ["2147483647"],
    "places": ["; ;", ">", "a >> b", '""', "[#1]"],
    "perpetrators": [";", '""'],
    "sources": ["[#1]", " [#1] ", "x [#99999999999999999999]", "[#-1]"],
    "type": ["\u00a0", "DEPORTATION"],
    "version": ["99999999999999999999", "-1", "１"],
    "public_id": ["INC-999999999999999999999", "inc-000001"],
}


def test_values_at_the_edge_are_imported_or_refused_at_their_line_and_column(world, tmp_path):
    rng = random.Random(SEED)
    reviewer = make_user(roles.REVIEWER, confidential=True)
    exported = list(csv.DictReader(io.StringIO(export(reviewer, tmp_path, "export.csv").decode())))
    for column, values in EDGES.items():
        for value in values:
            edged = [dict(row) for row in exported]
            index = rng.randrange(len(edged))
            edged[index][column] = value
            path = tmp_path / "edge.csv"
            path.write_text(quoted_csv(edged))
            out = io.StringIO()
            try:
                call_command(
                    "import_incidents", str(path), f"--user={reviewer.username}", "--dry-run", stdout=out, stderr=out
                )
            except CommandError:
                line = first_line_of(edged, index)
                # The column, or the one it contradicts (an end date before a start date moved later).
                assert f"line {line}, column " in out.getvalue(), (column, value, out.getvalue())


def damaged_bytes(rng: random.Random, content: bytes) -> bytes:
    """The file with one of the accidents files meet: cut short, a byte lost or changed, a quote
    or a NUL or a stray line break put in, a Latin-1 byte, a BOM in the middle."""
    at = rng.randrange(len(content))
    accident = rng.choice(["cut", "lose", "change", "insert"])
    if accident == "cut":
        return content[:at]
    if accident == "lose":
        return content[:at] + content[at + 1 :]
    if accident == "change":
        return content[:at] + bytes([rng.randrange(256)]) + content[at + 1 :]
    return content[:at] + rng.choice([b'"', b"\x00", b"\r", b"\n", b",", b"\xe9", b"\xef\xbb\xbf"]) + content[at:]


def test_a_damaged_file_is_refused_whole_or_read_at_every_door(client, world, tmp_path):
    rng = random.Random(SEED)
    reviewer = make_user(roles.REVIEWER, confidential=True)
    exported = export(reviewer, tmp_path, "export.csv")
    client.force_login(reviewer)
    for _ in range(15):
        content = damaged_bytes(rng, exported)
        path = tmp_path / "damaged.csv"
        path.write_bytes(content)
        out, versions = io.StringIO(), dict(Incident.objects.values_list("pk", "version"))
        try:
            call_command("import_incidents", str(path), f"--user={reviewer.username}", stdout=out, stderr=out)
        except CommandError as refused:
            # Refused whole, naming where (a damage that still reads is an edit, imported).
            assert "nothing was imported" in str(refused)
            assert "line " in out.getvalue(), out.getvalue()
            assert dict(Incident.objects.values_list("pk", "version")) == versions
        preview = client.post("/admin/incidents/incident/import/", {"file": io.BytesIO(content)})
        assert preview.status_code in (200, 400), (content, preview.status_code)
