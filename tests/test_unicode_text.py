"""Texts are written in Unicode's composed form (NFC), one-line ones without invisible characters at
their ends: a name typed on one keyboard and pasted decomposed from a macOS file or a PDF (Hangul as
its letters, an accent as a mark), or with a zero-width space, is the same name everywhere."""

import csv
import io
import unicodedata

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from incidents import roles
from incidents.models import Incident, Organization, Place, Source
from tests.api_support import API, client_for
from tests.factories import incident_type, make_incident, make_organization, make_place, make_source, make_user
from tests.form_support import saved_unchanged
from tests.test_import import confirm_form, import_errors, imported_or_refused

pytestmark = pytest.mark.django_db

NFC_NAME = "북한인권시민연합"
NFD_NAME = unicodedata.normalize("NFD", NFC_NAME)


@pytest.mark.parametrize(
    "lookalike",
    [
        pytest.param(NFD_NAME, id="nfd-hangul-jamo"),
        pytest.param(unicodedata.normalize("NFD", "Comité des Réfugiés"), id="nfd-combining-accents"),
        pytest.param(NFC_NAME + "\u200b", id="trailing-zero-width-space"),
        pytest.param("\ufeff" + NFC_NAME, id="leading-byte-order-mark"),
    ],
)
def test_an_organization_name_written_another_unicode_way_is_taken(lookalike):
    original = unicodedata.normalize("NFC", lookalike.replace("\u200b", "").replace("\ufeff", ""))
    make_organization(name=original)

    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/organizations/", {"name": lookalike, "kind": "ngo"}, format="json"
    )

    assert answer.status_code == 400, (answer.status_code, answer.content)
    assert list(answer.json()) == ["name"]
    assert Organization.objects.count() == 1


def test_a_name_is_stored_composed_and_without_invisible_ends():
    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/organizations/",
        {"name": f"\ufeff{NFD_NAME}\u200b", "kind": "ngo", "aliases": [f"{NFD_NAME} \u200b"]},
        format="json",
    )

    assert answer.status_code == 201, answer.content
    organization = Organization.objects.get()
    assert (organization.name, organization.aliases) == (NFC_NAME, [NFC_NAME])
    assert answer.json()["name"] == NFC_NAME


def test_a_place_name_in_decomposed_form_is_taken_in_its_parent():
    china = make_place(name="China", kind="country", country="CN")
    make_place(name="투먼", parent=china)

    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/places/",
        {"name": unicodedata.normalize("NFD", "투먼"), "kind": "city", "parent": china.pk},
        format="json",
    )

    assert answer.status_code == 400, (answer.status_code, answer.content[:300])
    assert Place.objects.filter(parent=china).count() == 1


def test_the_admin_stores_a_pasted_title_composed(client):
    client.force_login(make_user(roles.ANALYST))
    incident = make_incident(title="Draft title", review_state="draft")
    saved = saved_unchanged(
        client,
        reverse("admin:incidents_incident_change", args=[incident.pk]),
        title=unicodedata.normalize("NFD", "투먼 강제북송 사건"),
    )

    assert saved.status_code == 302, saved.status_code
    assert Incident.objects.get(pk=incident.pk).title == "투먼 강제북송 사건"


def test_import_finds_a_place_named_in_decomposed_form(tmp_path):
    china = make_place(name="China", kind="country", country="CN")
    tumen = make_place(name="투먼", parent=china)
    text = unicodedata.normalize(
        "NFD", "title,type,date_start,date_end,places\nArrests,forced-repatriation,2024-01-01,2024-01-01,투먼\n"
    )

    imported_or_refused(make_user(roles.ANALYST), tmp_path / "import.csv", text)

    assert [place.pk for place in Incident.objects.get(title="Arrests").places.all()] == [tumen.pk]


@pytest.mark.parametrize("invisible", ["\u200b", "\ufeff", "\u200e", "\u00ad"])
def test_an_imported_title_is_stored_without_invisible_characters_at_its_ends(tmp_path, invisible):
    # The import's new incidents are checked field by field (`services._FieldValues`), which skipped
    # the normal form that `full_clean()` gives every other door.
    content = f"title,type,date_start,date_end\nReport{invisible},forced-repatriation,2023-10-09,2023-10-09\n"

    imported_or_refused(make_user(roles.ANALYST), tmp_path / "import.csv", content)

    assert list(Incident.objects.values_list("title", flat=True)) == ["Report"]


def test_an_imported_title_as_stored_but_for_an_invisible_end_is_no_change(tmp_path):
    incident = make_incident(title="Report", review_state="draft")
    reviewer = make_user(roles.REVIEWER)
    exported = tmp_path / "exported.csv"
    call_command("export_incidents", f"--user={reviewer.username}", "-o", str(exported))
    content = exported.read_text().replace(",Report,", ",Report\u200b,")

    printed = imported_or_refused(reviewer, tmp_path / "import.csv", content)

    assert "0 updated; 1 unchanged" in printed
    assert Incident.objects.get(pk=incident.pk).version == incident.version


def test_an_import_refuses_a_title_of_invisible_characters_only(tmp_path):
    content = "title,type,date_start,date_end\n\u200b,forced-repatriation,2023-10-09,2023-10-09\n"

    printed = import_errors(make_user(roles.ANALYST), tmp_path, content)

    assert "title" in printed and "blank" in printed


def test_import_with_create_missing_does_not_make_a_second_organization_of_a_decomposed_name(tmp_path):
    china = make_place(name="China", kind="country", country="CN")
    make_place(name="Tumen", parent=china)
    ngo = make_organization(name=NFC_NAME)
    text = (
        "title,type,date_start,date_end,places,perpetrators\n"
        f"Arrests,forced-repatriation,2024-01-01,2024-01-01,Tumen,{NFD_NAME}\n"
    )

    imported_or_refused(make_user(roles.ANALYST), tmp_path / "import.csv", text, "--create-missing")

    assert Incident.objects.get(title="Arrests").involvements.get().organization_id == ngo.pk
    assert Organization.objects.count() == 1


@pytest.mark.parametrize(
    "retyped",
    [
        pytest.param(unicodedata.normalize("NFD", "중국, 탈북민 500명 강제북송"), id="nfd"),
        pytest.param("중국, 탈북민 500명 강제북송\u200b", id="zero-width-space"),
    ],
)
def test_a_source_retitled_in_another_unicode_form_is_a_lookalike(retyped):
    make_source(title="중국, 탈북민 500명 강제북송")

    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/sources/", {"title": retyped, "kind": "news_article"}, format="json"
    )

    assert answer.status_code == 409, (answer.status_code, answer.content[:300])
    assert answer.json()["code"] == "looks_like_another_source"


@pytest.mark.parametrize(
    ("stored", "typed"),
    [
        pytest.param("투먼 강제북송 사건", unicodedata.normalize("NFD", "강제북송"), id="typed-decomposed"),
        pytest.param(unicodedata.normalize("NFD", "투먼 강제북송 사건"), "강제북송", id="written-decomposed"),
    ],
)
def test_search_finds_a_korean_word_whichever_form_it_was_written_in(stored, typed):
    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/incidents/",
        {
            "title": stored,
            "incident_type": "forced-repatriation",
            "date_start": "2024-01-01",
            "date_end": "2024-01-01",
        },
        format="json",
    )
    assert answer.status_code == 201, answer.content

    found = client_for(make_user(roles.ANALYST)).get(f"{API}/incidents/", {"q": typed})

    assert found.status_code == 200, found.content
    assert answer.json()["public_id"] in {row["public_id"] for row in found.json()["results"]}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "spellings",
    [
        ("Cafe\u0301 Hyesan report", "Caf\u00e9 Hyesan report"),  # decomposed (a macOS file) and composed
        ("Daily NK report\u200b", "Daily NK report"),  # a zero-width space at the end
    ],
    ids=["decomposed accent", "zero-width end"],
)
def test_one_new_source_spelt_two_ways_in_a_file_is_not_refused_as_added_by_someone_else(tmp_path, spellings):
    # One analyst, no one else writing. The file names one new article twice, once as a macOS tool
    # saved it (decomposed, or with a zero-width space at its end) and once as typed. The planner
    # keys a missing source by `comparable_titles` of the raw title (`_Sources.missing_key`), which
    # is not the normal form the record is saved in (`_new_record`: normal_text), so it plans two
    # sources; the write saves the first (in normal form), then the re-check 4b29ef3 added
    # (`_write`: wait_for_sources_alike + sources_titled_alike) finds the import's own first source
    # and undoes the import: "The source … was added by someone else while the file was being
    # imported … Import the file again". Nobody else wrote anything, and importing again fails the
    # same way for ever.
    analyst = make_user(roles.ANALYST)
    incident_type("forced-repatriation")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["title", "type", "date_start", "date_end", "sources"])
    writer.writerow(["Arrests at Hyesan", "forced-repatriation", "2024-03-01", "2024-03-01", spellings[0]])
    writer.writerow(["Arrests at Musan", "forced-repatriation", "2022-05-01", "2022-05-01", spellings[1]])
    content = out.getvalue()

    first = imported_or_refused(analyst, tmp_path / "import.csv", content, "--create-missing", "--allow-duplicates")
    again = imported_or_refused(analyst, tmp_path / "import.csv", content, "--create-missing", "--allow-duplicates")

    assert "added by someone else" not in first, first
    assert "refused" not in first, first
    assert "added by someone else" not in again, again
    assert Source.objects.count() == 1, list(Source.objects.values_list("title", flat=True))


@pytest.mark.django_db(transaction=True)
def test_in_the_admins_import_one_new_source_spelt_two_ways_imports_on_confirmation():
    # The same file in the admin: the preview lists one new source and no error, the confirmation
    # answers 409 "added by someone else … Import the file again", shows the preview again, and
    # confirming that answers 409 again: the analyst can never import it.
    client = Client()
    client.force_login(make_user(roles.ANALYST))
    import_url = "/admin/incidents/incident/import/"
    slug = incident_type().slug
    content = (
        "title,type,date_start,date_end,sources\n"
        f"Arrests at Hyesan,{slug},2024-03-01,2024-03-01,Cafe\u0301 Hyesan report\n"
        f"Arrests at Musan,{slug},2022-05-01,2022-05-01,Caf\u00e9 Hyesan report\n"
    )
    preview = client.post(
        import_url, {"file": io.BytesIO(content.encode()), "create_missing": "on", "duplicates": "allow"}
    )
    assert preview.status_code == 200, preview

    answers = []
    page = preview
    for _ in range(2):
        page = client.post(import_url, confirm_form(page, duplicates="allow"))
        answers.append(page.status_code)
        if page.status_code != 409:
            break

    assert answers[-1] == 302, (answers, "added by someone else" in page.text)
    assert Source.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_source_that_existed_before_the_import_is_not_said_added_by_someone_else_meanwhile(tmp_path):
    # The source, titled with a curly apostrophe, exists before the file is checked; the file names
    # it decomposed with a straight one. Its likeness was judged on the title as written, so a new
    # source was planned, then the write's check (in normal form) found the old one and undid the
    # import as if it had been added meanwhile, at every attempt. It is named as a lookalike.
    analyst = make_user(roles.ANALYST)
    incident_type("forced-repatriation")
    Source.objects.create(title="Daily NK\u2019s Caf\u00e9 report", kind="news_article")
    content = (
        "title,type,date_start,date_end,sources\n"
        "Arrests at Hyesan,forced-repatriation,2024-03-01,2024-03-01,Daily NK's Cafe\u0301 report\n"
    )

    first = imported_or_refused(analyst, tmp_path / "import.csv", content, "--create-missing", "--allow-duplicates")

    assert "added by someone else" not in first, first
    assert "looks like" in first, first
    assert Source.objects.count() == 1
