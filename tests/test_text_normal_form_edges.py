"""Texts in normal form at their edges: names an import makes checked as they are saved, migration
0112 over data it must leave as it is, web addresses kept as sent."""

import io
import unicodedata

import pytest
from django.core.management import call_command
from django.urls import reverse

from incidents import roles
from incidents.models import Organization, Place, Source
from tests.api_support import API, client_for
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_organization, make_place, make_user
from tests.form_support import saved_unchanged
from tests.test_import import imported_or_refused

pytestmark = pytest.mark.django_db

BEFORE_0112 = "0111_word_counts_of_every_script"
HEADER = "title,type,date_start,date_end,places"


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def import_file(tmp_path, content: str, *options) -> str:
    return imported_or_refused(make_user(roles.ANALYST), tmp_path / "import.csv", content, *options)


def read(client, url):
    answer = client.get(url)
    assert answer.status_code == 200, answer.content
    return answer.json(), {"HTTP_IF_MATCH": answer.headers["ETag"]}


def migrate_with(*records):
    """Run migration 0112 over `records` made at 0111; on a failure, put the database back at the
    latest migration (the rows deleted) and raise it as the test's failure."""
    try:
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())
    except Exception as error:
        for record in records:
            type(record).objects.filter(pk=record.pk).delete()
        call_command("migrate", "incidents", verbosity=0, stdout=io.StringIO())
        raise AssertionError(f"Migration 0112 failed: {type(error).__name__}: {error}") from error


# --- The import's --create-missing saves the name normalized after checking it as written ------


@pytest.mark.parametrize(
    ("column", "cell", "model"),
    [
        pytest.param("perpetrators", "\u200b", Organization, id="organization-of-a-zero-width-space"),
        pytest.param("perpetrators", "\ufeff", Organization, id="organization-of-a-byte-order-mark"),
        pytest.param("places", "Tumen > \u200b", Place, id="place-of-a-zero-width-space"),
    ],
)
def test_create_missing_makes_no_record_of_a_blank_name(tmp_path, column, cell, model):
    # The cell is checked as written (a name, one line), then saved unchecked in normal form: the
    # invisible character trimmed, a record with an empty name, which every door refuses.
    make_place(name="Tumen", kind="country", country="CN")
    header = f"{HEADER},perpetrators" if column == "perpetrators" else HEADER
    places = "Tumen" if column == "perpetrators" else cell
    row = f"A,forced-repatriation,2024-01-01,2024-01-01,{places}" + (f",{cell}" if column == "perpetrators" else "")

    output = import_file(tmp_path, f"{header}\n{row}\n", "--create-missing")

    assert not model.objects.filter(name="").exists(), (output, list(model.objects.values_list("name")))


def test_create_missing_a_name_longer_once_composed_is_a_row_error_not_a_crash(tmp_path):
    # 200 characters, checked against the 255 a name may have; composed (U+0958 is a composition
    # exclusion: its normal form is two characters) it has 400, saved unchecked: a DataError out of
    # the command, instead of the row error the import gives every other name it cannot take.
    make_place(name="Tumen", kind="country", country="CN")
    name = "\u0958" * 200
    content = f"{HEADER},perpetrators\nA,forced-repatriation,2024-01-01,2024-01-01,Tumen,{name}\n"

    output = import_file(tmp_path, content, "--create-missing")

    assert "line 2, column perpetrators" in output, output
    assert not Organization.objects.exists()


# --- Migration 0112 -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("model", [Organization, Place])
def test_migration_0112_runs_over_two_names_that_become_one(model):
    # Neither is in normal form, so neither is "already borne by another record": the one UPDATE
    # writes both to "Comité A", which the unique name refuses, and the migration stops (a deploy
    # blocked). The docstring promises such a name is left as it is.
    migrate_incidents_back_to(BEFORE_0112)
    if model is Organization:
        records = [
            Organization.objects.create(name=nfd("Comité A"), kind="ngo"),
            Organization.objects.create(name="Comité A\u200b", kind="ngo"),
        ]
    else:
        china = Place.objects.create(name="China", kind="country", country="CN")
        records = [
            Place.objects.create(name=nfd("투먼"), kind="city", parent=china),
            Place.objects.create(name="\u200b투먼", kind="city", parent=china),
            china,
        ]

    migrate_with(*records)

    assert model.objects.filter(pk__in=[record.pk for record in records]).count() == len(records)


@pytest.mark.django_db(transaction=True)
def test_migration_0112_runs_over_a_text_longer_once_composed():
    # NFC lengthens some characters (composition exclusions: U+FB2C is three characters composed):
    # an acronym of 20 stored fits its 32, composed it has 60, and the UPDATE fails with a DataError.
    migrate_incidents_back_to(BEFORE_0112)
    organization = Organization.objects.create(name="Hebrew NGO", acronym="\ufb2c" * 20, kind="ngo")

    migrate_with(organization)

    assert len(Organization.objects.get(pk=organization.pk).acronym) <= 32


@pytest.mark.django_db(transaction=True)
def test_migration_0112_leaves_no_record_that_cannot_be_written_back_as_read():
    # A name or an alias of only an invisible character is written blank, which every door refuses:
    # a PUT of the organization as read answers 400 ("This field may not be blank."), where it was
    # a write of nothing changed before the migration.
    migrate_incidents_back_to(BEFORE_0112)
    with_alias = Organization.objects.create(name="Org Z", aliases=["\u200b", "OZ"], kind="ngo")
    with_name = Organization.objects.create(name="\ufeff", kind="ngo")

    migrate_with(with_alias, with_name)

    client = client_for(make_user(roles.ANALYST))
    answers = {}
    for organization in (with_alias, with_name):
        url = f"{API}/organizations/{organization.pk}/"
        body, if_match = read(client, url)
        answer = client.put(url, body, format="json", **if_match)
        answers[organization.name] = (answer.status_code, answer.content[:200])
    assert {status for status, _ in answers.values()} == {200}, answers


# --- A web address is no prose ------------------------------------------------------------------


def test_a_source_address_is_stored_as_sent():
    # An address is an identifier, compared byte by byte by the server it names: composed, the
    # path of a file served from a decomposed name (a macOS volume, the page's own links) is another
    # address, and the source's link is changed without a word.
    address = "https://example.org/files/" + nfd("투먼보고서") + ".pdf"

    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/sources/", {"title": "Report", "kind": "ngo_report", "url": address}, format="json"
    )

    assert answer.status_code == 201, answer.content
    assert Source.objects.get().url == address


# --- A record left in its stored form by migration 0112 cannot be saved unchanged -----------------


@pytest.fixture
def twins():
    """What migration 0112 leaves (and documents leaving): a name whose normal form another record
    bears, kept decomposed beside its composed twin."""
    make_organization(name="Comité A")
    china = make_place(name="China", kind="country", country="CN")
    make_place(name="투먼", parent=china)
    return {
        "organization": make_organization(name=nfd("Comité A"), description="Border unit"),
        "place": make_place(name=nfd("투먼"), parent=china),
    }


@pytest.mark.parametrize(("record", "path"), [("organization", "organizations"), ("place", "places")])
def test_a_record_left_decomposed_is_written_back_as_read(twins, record, path):
    # The body as read, sent back: README "a write that changes nothing ... is answered as a save of
    # the record as it is, 200 with the same ETag", and a text in another Unicode form sent back
    # "counts as unchanged and stays as stored". The serializer's own check (ModelRulesMixin.validate)
    # runs full_clean on a copy, which writes the name composed, then finds it taken by the twin: 400.
    client = client_for(make_user(roles.ANALYST))
    url = f"{API}/{path}/{twins[record].pk}/"
    body, if_match = read(client, url)

    answer = client.put(url, body, format="json", **if_match)

    assert answer.status_code == 200, answer.content
    assert answer.headers["ETag"] == if_match["HTTP_IF_MATCH"]


@pytest.mark.parametrize(("record", "page"), [("organization", "organization"), ("place", "place")])
def test_a_record_left_decomposed_is_saved_unchanged_in_the_admin(client, twins, record, page):
    # A Save with nothing changed: the ModelForm's validation (full_clean) writes the name composed
    # and refuses it as taken by the twin, before record_save could keep it as stored.
    client.force_login(make_user(roles.ANALYST))
    version = type(twins[record]).objects.get(pk=twins[record].pk).version

    saved = saved_unchanged(client, reverse(f"admin:incidents_{page}_change", args=[twins[record].pk]))

    assert saved.status_code == 302, saved.content.decode()[:2000]
    assert type(twins[record]).objects.get(pk=twins[record].pk).version == version
