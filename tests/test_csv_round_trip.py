"""The CSV round trip: what `export_incidents` writes, `import_incidents` reads back to the very same
records, whatever the names (repeated under different parents, repeated titles, names holding the
cell's own separators, quotes or formulas); and how the import finds places, organizations and
sources by the other names an analyst may type."""

import csv
import io
from datetime import date

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection

from incidents import roles
from incidents.exports import csv_list_item
from incidents.merges import incident_merge
from incidents.models import DuplicatePair, Incident, IncidentType, Involvement, Place, Source
from tests.api_support import API, client_for
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.test_import import import_errors, run_import

HEADER = "title,type,date_start,date_end"
AWKWARD_NAMES = [
    "Camp; Block 3",
    'The "No. 5" camp',
    "North > South road",
    "=HYPERLINK(1)",
    " padded ",
    "[annex]",
    "Plain name",
    "'quoted'",
]


def export(user, tmp_path, name="export.csv") -> bytes:
    output = tmp_path / name
    call_command("export_incidents", f"--user={user.username}", "-o", str(output))
    return output.read_bytes()


def history_row_count() -> int:
    """Every history event of every tracked model, and the contexts naming who wrote them."""
    tracked = [model for model in apps.get_models() if model.__name__.endswith("Event")]
    return sum(model.objects.count() for model in [*tracked, apps.get_model("pghistory", "Context")])


def cells(content: bytes, column: str) -> list[str]:
    return [row[column] for row in csv.DictReader(io.StringIO(content.decode()))]


@pytest.fixture
def messy_incidents():
    """Names as the world writes them: Jilin the city in Jilin the province, Lao Cai in Lao Cai
    (the demo data's own), titles that repeat, and names holding "; ", quotes, ">" and formulas."""
    call_command("generate_demo_data", incidents=300, seed=3, stdout=io.StringIO())
    china = Place.objects.get(name="China", parent=None)
    jilin_province = Place.objects.get(name="Jilin", parent=china)
    jilin_city = make_place(name="Jilin", parent=jilin_province, alternate_names=["吉林市"])
    lao_cai_city = Place.objects.get(name="Lao Cai", parent__name="Lao Cai")
    awkward_places = [
        make_place(name=name, parent=jilin_city if index % 2 else None) for index, name in enumerate(AWKWARD_NAMES)
    ]
    press_releases = [make_source(title="Press release") for _ in range(2)]
    awkward_sources = [make_source(title=name) for name in AWKWARD_NAMES]
    awkward_organizations = [make_organization(name=f"{name} office") for name in AWKWARD_NAMES]
    for index, name in enumerate(AWKWARD_NAMES):
        incident = make_incident(
            title=name,
            date_start=date(2024, 1, 1 + index),
            date_end=date(2024, 1, 1 + index),
            places=[awkward_places[index], jilin_city, jilin_province, lao_cai_city],
        )
        make_claim(incident=incident, source=press_releases[index % 2])
        make_claim(incident=incident, source=awkward_sources[index], confidential=index == 3)
        Involvement.objects.create(incident=incident, organization=awkward_organizations[index], role="perpetrator")
    return jilin_city


@pytest.mark.parametrize(
    "user",
    [
        pytest.param(lambda: make_user(is_superuser=True, is_staff=True), id="superuser"),
        pytest.param(lambda: make_user(roles.ANALYST), id="analyst"),
    ],
)
def test_importing_an_unchanged_export_of_messy_demo_data_changes_nothing(user, messy_incidents, tmp_path):
    importer = user()
    exported = export(importer, tmp_path)
    versions = dict(Incident.objects.values_list("pk", "version"))
    history = history_row_count()

    output = run_import(importer, tmp_path, exported)

    unchanged = Incident.objects.visible_to(importer).count()
    assert f"0 incidents were created; 0 updated; {unchanged} unchanged." in output
    assert dict(Incident.objects.values_list("pk", "version")) == versions
    assert history_row_count() == history
    assert export(importer, tmp_path, "again.csv") == exported


@pytest.mark.parametrize(
    "exporter",
    [
        pytest.param(lambda: None, id="the public"),
        pytest.param(lambda: make_user(roles.ANALYST), id="analyst"),
    ],
)
def test_an_unchanged_export_of_a_narrower_view_imports_as_a_wider_one_changing_nothing(
    exporter, messy_incidents, tmp_path
):
    # A file exported by a reader without Confidential access (the public, an analyst) lists none of
    # the confidential sources: imported by a superuser, who sees them all, it changes nothing.
    exporting = exporter()
    output_path = tmp_path / "narrow.csv"
    call_command("export_incidents", *([f"--user={exporting.username}"] if exporting else []), "-o", str(output_path))
    superuser = make_user(is_superuser=True, is_staff=True)
    before = export(superuser, tmp_path, "before.csv")
    versions = dict(Incident.objects.values_list("pk", "version"))
    history = history_row_count()

    output = run_import(superuser, tmp_path, output_path.read_bytes())

    rows_in_file = len(cells(output_path.read_bytes(), "public_id"))
    assert f"0 incidents were created; 0 updated; {rows_in_file} unchanged." in output
    assert "keeps its confidential claim" in output
    assert dict(Incident.objects.values_list("pk", "version")) == versions
    assert history_row_count() == history
    assert export(superuser, tmp_path, "after.csv") == before


class TestLongCells:
    """csv's own limit, 131,072 characters a cell, refused an export's own file as "Malformed CSV",
    naming the line but not the column."""

    def test_an_incident_citing_hundreds_of_long_titles_imports_back_unchanged(self, analyst, tmp_path):
        incident = make_incident(title="Cited at length", review_state="draft")
        sources = Source.objects.bulk_create(
            Source(title=f"{number:03d} " + "report " * 70, kind="ngo_report") for number in range(300)
        )
        for source in sources:
            make_claim(incident=incident, source=source)
        exported = export(analyst, tmp_path)
        # Its one row, nearly all of it the sources cell (csv.reader, as the test would read it, refuses it).
        assert len(exported.decode().splitlines()[1]) > 140_000

        output = run_import(analyst, tmp_path, exported)

        assert "0 incidents were created; 0 updated; 1 unchanged." in output

    def test_a_cell_longer_than_its_column_holds_is_refused_naming_the_row_the_column_and_the_limit(
        self, analyst, tmp_path
    ):
        errors = import_errors(
            analyst,
            tmp_path,
            f"{HEADER}\nFirst,deportation,2024-01-01,2024-01-01\n{'x' * 200_001},deportation,2024-01-01,2024-01-01\n",
        )

        assert "line 3, column title: Ensure this value has at most 300 characters (it has 200001)." in errors


def test_names_edged_with_white_space_postgresql_does_not_quote_import_back_unchanged(tmp_path):
    # A no-break space (pasted from a web page) or a narrow one at a name's edge is
    # not white space to the export's quoting (PostgreSQL's `\s`), so the name is written bare; the
    # import must not trim it, or it reads another name ("Tumen") or none.
    analyst = make_user(roles.ANALYST)
    china = make_place(name="China", kind="country")
    tumen = make_place(name="Tumen", parent=china)
    edged = ["Tumen\u00a0", "\u202fTumen"]
    incident = make_incident(places=[tumen, *(make_place(name=name, parent=china) for name in edged)])
    for name in edged:
        make_claim(incident=incident, source=make_source(title=f"Report {name}"))
        Involvement.objects.create(incident=incident, organization=make_organization(name=name), role="perpetrator")
    exported = export(analyst, tmp_path)
    history = history_row_count()

    output = run_import(analyst, tmp_path, exported)

    assert "0 incidents were created; 0 updated; 1 unchanged." in output
    assert history_row_count() == history


def test_a_download_from_the_public_pages_imports_back_unchanged(client, tmp_path):
    # An analyst signed in downloads the browse page's CSV (the export's columns and `page_url`).
    analyst = make_user(roles.ANALYST)
    incident = make_incident(title="Tumen", places=[make_place(name="Tumen", country="CN")])
    make_claim(incident=incident, source=make_source(title="Press release"))
    client.force_login(analyst)
    response = client.get("/incidents.csv")
    downloaded = b"".join(response.streaming_content)
    assert cells(downloaded, "page_url") == [f"http://testserver/incidents/{incident.public_id}/"]
    history = history_row_count()

    output = run_import(analyst, tmp_path, downloaded)

    assert "0 incidents were created; 0 updated; 1 unchanged." in output
    assert history_row_count() == history


def test_an_incremental_export_with_a_merged_incident_imports_back_and_its_merged_row_cannot_change(tmp_path):
    analyst = make_user(roles.ANALYST)
    survivor, merged = (
        make_incident(title=title, date_start=date(2024, 1, 1), date_end=date(2024, 1, 1))
        for title in ("Survivor", "Merged")
    )
    make_claim(incident=merged, source=make_source(title="Press release"))
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    incident_merge(user=make_user(roles.REVIEWER), pair=pair, survivor=survivor.public_id)
    output = tmp_path / "sync.csv"
    call_command(
        "export_incidents", f"--user={analyst.username}", "--updated-since=2000-01-01T00:00:00Z", "-o", str(output)
    )
    exported = output.read_bytes()
    assert cells(exported, "merged_into") == [survivor.public_id, ""]  # newest first
    history = history_row_count()

    assert "0 incidents were created; 0 updated; 2 unchanged." in run_import(analyst, tmp_path, exported)
    assert history_row_count() == history

    edited = exported.decode().replace(",Merged,", ",Merged and renamed,")
    errors = import_errors(analyst, tmp_path, edited)
    assert (
        f"line 2, column public_id: {merged.public_id} was merged into {survivor.public_id} and cannot be changed; "
        f"change {survivor.public_id} instead." in errors
    )


def test_the_export_writes_a_place_as_its_path_and_a_source_with_its_id(tmp_path):
    china = make_place(name="China", kind="country")
    jilin_city = make_place(name="Jilin", parent=make_place(name="Jilin", parent=china))
    camp = make_place(name='The "No. 5" camp', parent=jilin_city)
    incident = make_incident(places=[camp, jilin_city])
    press_releases = [make_source(title="Press release") for _ in range(2)]
    for source in press_releases:
        make_claim(incident=incident, source=source)
    smith_and_jones = make_organization(name="Smith; Jones")
    Involvement.objects.create(incident=incident, organization=smith_and_jones, role="perpetrator")
    formula = make_incident(places=[make_place(name="=HYPERLINK(1)")])

    exported = export(make_user(roles.REVIEWER), tmp_path)

    rows = {row["public_id"]: row for row in csv.DictReader(io.StringIO(exported.decode()))}
    assert rows[incident.public_id]["places"] == 'China > Jilin > Jilin; China > Jilin > Jilin > "The ""No. 5"" camp"'
    assert rows[incident.public_id]["sources"] == "; ".join(
        sorted(f"Press release [#{source.pk}]" for source in press_releases)
    )
    assert rows[incident.public_id]["perpetrators"] == '"Smith; Jones"'
    # A formula-like first item is neutralised for spreadsheets, as any cell.
    assert rows[formula.public_id]["places"] == "'=HYPERLINK(1)"


def test_python_and_sql_quote_list_items_alike():
    with connection.cursor() as cursor:
        for name in AWKWARD_NAMES:
            cursor.execute("SELECT csv_list_item(%s)", [name])
            assert cursor.fetchone()[0] == csv_list_item(name), name


class TestPlaces:
    @pytest.fixture
    def lao_cai(self):
        vietnam = make_place(name="Vietnam", kind="country", country="VN")
        province = make_place(name="Lao Cai", parent=vietnam, country="VN")
        city = make_place(name="Lao Cai", parent=province, country="VN", alternate_names=["Lào Cai city"])
        return province, city

    @pytest.mark.parametrize(
        "written", ["Vietnam > Lao Cai > Lao Cai", "Lao Cai > Lao Cai", "lao cai > LAO CAI", "Lào Cai city"]
    )
    def test_a_full_or_shorter_path_or_an_alternate_name_finds_the_place(self, analyst, lao_cai, tmp_path, written):
        _, city = lao_cai
        run_import(analyst, tmp_path, f"{HEADER},places\nA,deportation,2024-01-01,2024-01-01,{written}\n")
        assert list(Incident.objects.get(title="A").places.all()) == [city]

    def test_the_full_path_of_the_province_is_not_taken_for_the_city(self, analyst, lao_cai, tmp_path):
        province, _ = lao_cai
        run_import(analyst, tmp_path, f"{HEADER},places\nA,deportation,2024-01-01,2024-01-01,Vietnam > Lao Cai\n")
        assert list(Incident.objects.get(title="A").places.all()) == [province]

    def test_an_ambiguous_name_lists_the_paths_to_write(self, analyst, lao_cai, tmp_path):
        errors = import_errors(analyst, tmp_path, f"{HEADER},places\nA,deportation,2024-01-01,2024-01-01,Lao Cai\n")
        assert (
            "line 2, column places: 'Lao Cai' matches 2 places; write one of: "
            "Vietnam > Lao Cai, Vietnam > Lao Cai > Lao Cai." in errors
        )

    def test_a_malformed_cell_is_an_error_for_its_column(self, analyst, lao_cai, tmp_path):
        errors = import_errors(
            analyst, tmp_path, f'{HEADER},places\nA,deportation,2024-01-01,2024-01-01,"""Lao Cai"" x"\n'
        )
        assert 'line 2, column places: Unexpected text after the closing quote of "Lao Cai".' in errors

    def test_create_missing_creates_a_place_inside_the_path_it_names(self, analyst, lao_cai, tmp_path):
        _, city = lao_cai
        output = run_import(
            analyst,
            tmp_path,
            f"{HEADER},places\nA,deportation,2024-01-01,2024-01-01,Lao Cai > Lao Cai > Coc Leu\n",
            "--create-missing",
        )
        assert "1 place was created (Vietnam > Lao Cai > Lao Cai > Coc Leu)" in output
        assert Place.objects.get(name="Coc Leu").parent == city


class TestOrganizations:
    def test_an_acronym_or_an_alias_finds_the_organization(self, analyst, tmp_path):
        china = make_organization(name="People's Republic of China", acronym="PRC", aliases=["China (government)"])
        run_import(
            analyst,
            tmp_path,
            f"{HEADER},perpetrators\nA,deportation,2024-01-01,2024-01-01,PRC\n"
            f"B,deportation,2025-01-01,2025-01-01,china (GOVERNMENT)\n",
        )
        assert [involvement.organization for involvement in Involvement.objects.order_by("incident__title")] == [
            china,
            china,
        ]

    def test_a_name_wins_over_another_organization_s_acronym(self, analyst, tmp_path):
        hrw = make_organization(name="HRW")
        make_organization(name="Human Rights Watch", acronym="HRW")
        run_import(analyst, tmp_path, f"{HEADER},perpetrators\nA,deportation,2024-01-01,2024-01-01,HRW\n")
        assert Involvement.objects.get().organization == hrw

    def test_names_alike_but_for_case_import_back_each_as_itself(self, analyst, tmp_path):
        # Unique to the database, which compares names lowercased ("ß" stays "ß"), one name to the
        # import's case-folded matching ("ß" is "ss").
        organizations = [make_organization(name=name) for name in ("Straße Police", "STRASSE POLICE")]
        for organization in organizations:
            incident = make_incident(title=organization.name, review_state="draft")
            Involvement.objects.create(incident=incident, organization=organization, role="perpetrator")
        exported = export(analyst, tmp_path)
        history = history_row_count()

        output = run_import(analyst, tmp_path, exported)

        assert "0 incidents were created; 0 updated; 2 unchanged." in output
        assert history_row_count() == history

    def test_a_name_is_matched_by_the_database_s_case_rule(self, analyst, tmp_path):
        # Two names to the database, which lowercases "STRASSE" to "strasse" and keeps "ß": the
        # import's case-folding ("ß" is "ss") called "strasse police" ambiguous between them.
        straße, strasse = (make_organization(name=name) for name in ("Straße Police", "STRASSE POLICE"))
        IncidentType.objects.create(slug="strasse-sperre", name="STRASSENSPERRE")
        IncidentType.objects.create(slug="strassen-sperre", name="Straßensperre")

        run_import(
            analyst,
            tmp_path,
            f"{HEADER},perpetrators\n"
            "Lower,strassensperre,2024-01-01,2024-01-01,strasse police\n"
            "Eszett,STRAßENSPERRE,2024-01-01,2024-01-01,straße police\n",
        )

        assert {
            (incident.title, incident.incident_type.name, incident.involvements.get().organization)
            for incident in Incident.objects.filter(title__in=["Lower", "Eszett"])
        } == {("Lower", "STRASSENSPERRE", strasse), ("Eszett", "Straßensperre", straße)}

    def test_a_shared_acronym_lists_the_names_to_write(self, analyst, tmp_path):
        make_organization(name="Ministry of State Security", acronym="MSS")
        make_organization(name="Mongolian Scout Society", acronym="MSS")
        errors = import_errors(analyst, tmp_path, f"{HEADER},perpetrators\nA,deportation,2024-01-01,2024-01-01,MSS\n")
        assert (
            "'MSS' matches 2 organizations; write one of: Ministry of State Security, Mongolian Scout Society."
            in errors
        )


class TestTypes:
    def test_an_exported_slug_that_is_another_type_s_name_finds_its_own_type(self, analyst, tmp_path):
        # Analysts named a new type "Detention" (slug "detention-custody"); the slug "detention" was taken.
        detention = IncidentType.objects.create(slug="detention", name="Detention (short term)")
        IncidentType.objects.create(slug="detention-custody", name="Detention")
        incident = make_incident(incident_type=detention, review_state="draft")
        exported = export(analyst, tmp_path)
        assert cells(exported, "type") == ["detention"]

        output = run_import(analyst, tmp_path, exported)

        assert "0 incidents were created; 0 updated; 1 unchanged." in output
        assert Incident.objects.get(pk=incident.pk).incident_type == detention

    def test_slugs_alike_but_for_case_import_back_each_as_itself(self, analyst, tmp_path):
        for number, slug in enumerate(("Detention-X", "detention-x")):
            kind = IncidentType.objects.create(
                slug=slug, name=f"Detention {number}"
            )  # names differ whatever their case
            make_incident(incident_type=kind, review_state="draft")
        exported = export(analyst, tmp_path)
        assert sorted(cells(exported, "type")) == ["Detention-X", "detention-x"]

        output = run_import(analyst, tmp_path, exported)

        assert "0 incidents were created; 0 updated; 2 unchanged." in output


class TestSources:
    def test_a_title_and_id_find_that_source(self, analyst, tmp_path):
        press_releases = [make_source(title="Press release") for _ in range(2)]
        run_import(
            analyst,
            tmp_path,
            f"{HEADER},sources\nA,deportation,2024-01-01,2024-01-01,press RELEASE [#{press_releases[1].pk}]\n",
        )
        assert Incident.objects.get(title="A").claims.get().source == press_releases[1]

    @pytest.mark.parametrize("written", ["İzmir report", "İZMIR REPORT"])
    def test_a_title_alone_finds_its_source_however_python_and_postgresql_lowercase_it(
        self, analyst, tmp_path, written
    ):
        # Python lowercases "İ" to "i" and a combining dot, PostgreSQL to "i": looked up by Python's
        # lowercase, the title was unknown even as written, and --create-missing made it twice.
        izmir = make_source(title="İzmir report")
        run_import(
            analyst, tmp_path, f"{HEADER},sources\nA,deportation,2024-01-01,2024-01-01,{written}\n", "--create-missing"
        )
        assert Incident.objects.get(title="A").claims.get().source == izmir

    def test_a_repeated_title_lists_the_titles_with_ids_to_write(self, analyst, tmp_path):
        # Ids of one digit and two: sorted as text, [#10] came before [#9] (it failed so under
        # pytest-xdist, when a worker's sources had reached ids 99 and 100).
        first, second = (make_source(id=source_id, title="Press release") for source_id in (9, 10))
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},sources\nA,deportation,2024-01-01,2024-01-01,Press release\n"
        )
        assert (
            f"'Press release' matches 2 sources; write one of: Press release [#{first.pk}], "
            f"Press release [#{second.pk}]." in errors
        )

    def test_an_id_whose_title_differs_is_refused_naming_both(self, analyst, tmp_path):
        report = make_source(title="RFA report")
        errors = import_errors(
            analyst, tmp_path, f"{HEADER},sources\nA,deportation,2024-01-01,2024-01-01,HRW report [#{report.pk}]\n"
        )
        assert (
            f"HRW report [#{report.pk}]: source #{report.pk} is titled 'RFA report', not 'HRW report'; "
            f"write RFA report [#{report.pk}], or the right id." in errors
        )

    def test_a_hidden_source_id_is_as_unknown_as_a_missing_one(self, analyst, tmp_path):
        hidden = make_source(title="Informant", confidential=True)
        missing_id = hidden.pk + 1000
        errors = import_errors(
            analyst,
            tmp_path,
            f"{HEADER},sources\nA,deportation,2024-01-01,2024-01-01,Informant [#{hidden.pk}]\n"
            f"B,deportation,2025-01-01,2025-01-01,Informant [#{missing_id}]\n",
        )
        assert f"line 2, column sources: No source #{hidden.pk} that you may see (Informant [#{hidden.pk}])." in errors
        assert f"line 3, column sources: No source #{missing_id} that you may see" in errors
        assert "titled" not in errors


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


@pytest.mark.django_db
def test_the_claims_span_holds_a_claims_minimum_alone_and_its_maximum_alone(settings, tmp_path):
    # `claim_min`/`claim_max` (CSV) and `claim_people_min`/`claim_people_max` (API): "the span of
    # figures those claims report" (README, Export). A claim "at least 3000" (a minimum alone)
    # counted for the low end only and one "at most 5" for the high end only, so the span of "10",
    # "at least 3000" and "at most 5" read 10 to 10: under a figure one source reports, over
    # another's (migration 0100).
    incident = make_incident(title="Counted three ways")
    make_claim(incident=incident, source=make_source(title="Exact"), people_count=10)
    make_claim(
        incident=incident,
        source=make_source(title="At least"),
        people_count=None,
        people_count_min=3000,
        count_qualifier="at_least",
    )
    make_claim(
        incident=incident,
        source=make_source(title="At most"),
        people_count=None,
        people_count_max=5,
        count_qualifier="at_most",
    )

    body = client_for(None).get(f"{API}/incidents/{incident.public_id}/").json()
    exported = export(make_user(roles.ANALYST), tmp_path)

    assert (body["claim_people_min"], body["claim_people_max"]) == (5, 3000)
    assert (cells(exported, "claim_min"), cells(exported, "claim_max")) == (["5"], ["3000"])
