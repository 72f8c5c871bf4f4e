"""Texts are written in Unicode's composed form (NFC), one-line ones without invisible characters at
their ends: a name typed on one keyboard and pasted decomposed from a macOS file or a PDF (Hangul as
its letters, an accent as a mark), or with a zero-width space, is the same name everywhere."""

import io
import unicodedata

import pytest
from django.core.management import call_command
from django.urls import reverse

from incidents import roles
from incidents.models import Incident, Organization, Place
from tests.api_support import API, client_for
from tests.factories import make_incident, make_organization, make_place, make_source, make_user
from tests.form_support import saved_unchanged

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


def _import(user, tmp_path, text: str, *options) -> str:
    path = tmp_path / "import.csv"
    path.write_bytes(text.encode())
    out = io.StringIO()
    call_command("import_incidents", str(path), f"--user={user.username}", *options, stdout=out, stderr=out)
    return out.getvalue()


def test_import_finds_a_place_named_in_decomposed_form(tmp_path):
    china = make_place(name="China", kind="country", country="CN")
    tumen = make_place(name="투먼", parent=china)
    text = unicodedata.normalize(
        "NFD", "title,type,date_start,date_end,places\nArrests,forced-repatriation,2024-01-01,2024-01-01,투먼\n"
    )

    _import(make_user(roles.ANALYST), tmp_path, text)

    assert [place.pk for place in Incident.objects.get(title="Arrests").places.all()] == [tumen.pk]


def test_import_with_create_missing_does_not_make_a_second_organization_of_a_decomposed_name(tmp_path):
    china = make_place(name="China", kind="country", country="CN")
    make_place(name="Tumen", parent=china)
    ngo = make_organization(name=NFC_NAME)
    text = (
        "title,type,date_start,date_end,places,perpetrators\n"
        f"Arrests,forced-repatriation,2024-01-01,2024-01-01,Tumen,{NFD_NAME}\n"
    )

    _import(make_user(roles.ANALYST), tmp_path, text, "--create-missing")

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
