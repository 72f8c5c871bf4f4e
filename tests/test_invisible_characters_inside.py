"""Invisible characters inside one-line names and titles (`text_fields.normal_text`, migration
0123): a soft hyphen, zero-width space, word joiner or byte order mark inside a name draws nothing and
is left out, at every door and in what was stored; those that carry meaning (a Thai word break, a
Persian ZWNJ, an emoji's ZWJ) stay; a direction override is written as its embedding."""

import pytest
from django.urls import reverse

from incidents import roles
from incidents.models import Incident, Organization, Place, Source
from incidents.search import search_terms
from tests.api_support import API, client_for
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_organization, make_place, make_user
from tests.test_import import imported_or_refused
from tests.test_text_normal_form_edges import migrate_with


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "pasted"),
    [
        # A web page's break opportunity in a long word, a PDF's soft hyphen, a word joiner, a stray
        # byte order mark: each draws nothing inside the name.
        pytest.param("DailyNK", "Daily\u200bNK", id="zero-width-space"),
        pytest.param("DailyNK", "Daily\u00adNK", id="soft-hyphen"),
        pytest.param("Daily NK", "Daily\u2060 NK", id="word-joiner"),
        pytest.param("Daily NK", "Daily \ufeffNK", id="byte-order-mark"),
    ],
)
def test_an_organization_named_as_another_but_for_an_invisible_character_inside_is_refused_at_every_door(
    client, tmp_path, typed, pasted
):
    analyst = make_user(roles.ANALYST)
    make_organization(name=typed)

    by_api = client_for(analyst).post(f"{API}/organizations/", {"name": pasted, "kind": "media"}, format="json")
    client.force_login(analyst)
    by_admin = client.post(reverse("admin:incidents_organization_add"), {"name": pasted, "kind": "media"})
    content = (
        f"title,type,date_start,date_end,perpetrators\nArrests,forced-repatriation,2024-03-01,2024-03-01,{pasted}\n"
    )
    printed = imported_or_refused(analyst, tmp_path / "import.csv", content, "--create-missing")

    assert by_api.status_code == 400, by_api.content
    assert list(by_api.json()) == ["name"]
    assert by_admin.status_code == 200
    assert "already an organization's name" in by_admin.context["adminform"].form.errors["name"][0]
    # The import finds the organization typed plainly, and makes no second one.
    assert Organization.objects.count() == 1, printed
    assert [involvement.organization.name for involvement in Incident.objects.get().involvements.all()] == [typed]


@pytest.mark.django_db
def test_a_place_named_with_a_soft_hyphen_inside_is_the_place_of_its_letters():
    analyst = make_user(roles.ANALYST)
    north_korea = make_place(name="North Korea", kind="country", country="KP")
    make_place(name="Hyesan", kind="city", parent=north_korea)

    answer = client_for(analyst).post(
        f"{API}/places/", {"name": "Hye\u00adsan", "kind": "city", "parent": north_korea.pk}, format="json"
    )

    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["name"]
    assert Place.objects.filter(parent=north_korea).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name",
    [
        # Thai ("North Korean refugees") parted by a zero-width space, as Thai parts its words.
        pytest.param("ผู้ลี้ภัย\u200bเกาหลีเหนือ", id="thai-word-break"),
        # A Persian word parted by a zero-width non-joiner, an emoji joined by a zero-width joiner.
        pytest.param("کانون\u200cهای حقوق بشر", id="persian-non-joiner"),
        pytest.param("Families 👨\u200d👩\u200d👧", id="emoji-joiner"),
    ],
)
def test_the_invisible_characters_that_carry_meaning_stay_inside_a_name(name):
    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/organizations/", {"name": name, "kind": "ngo"}, format="json"
    )

    assert answer.status_code == 201, answer.content
    assert Organization.objects.get().name == name


OVERRIDDEN_TITLE = "Detention of \u202egnp.exe"
# The override as the embedding of its direction: the letters drawn in their own order.
EMBEDDED_TITLE = "Detention of \u202bgnp.exe"


@pytest.mark.django_db
def test_a_title_with_a_direction_override_inside_reads_as_written_at_every_door(client, tmp_path):
    # "Detention of \u202egnp.exe" read "Detention of exe.png" on every page, list and export.
    analyst = make_user(roles.ANALYST)
    by_api = client_for(analyst).post(
        f"{API}/incidents/",
        {
            "title": OVERRIDDEN_TITLE,
            "incident_type": "forced-repatriation",
            "date_start": "2024-01-01",
            "date_end": "2024-01-01",
        },
        format="json",
    )
    content = f"title,type,date_start,date_end\n{OVERRIDDEN_TITLE} (import),forced-repatriation,2024-03-01,2024-03-01\n"
    printed = imported_or_refused(analyst, tmp_path / "import.csv", content)
    client.force_login(analyst)
    by_admin = client.post(
        reverse("admin:incidents_source_add"), {"title": OVERRIDDEN_TITLE, "kind": "testimony", "language": ""}
    )

    assert by_api.status_code == 201, by_api.content
    assert by_api.json()["title"] == EMBEDDED_TITLE
    assert Incident.objects.filter(title=f"{EMBEDDED_TITLE} (import)").exists(), printed
    assert by_admin.status_code == 302, by_admin.context["adminform"].form.errors
    assert Source.objects.get().title == EMBEDDED_TITLE
    assert not Incident.objects.filter(title__contains="\u202e").exists()


@pytest.mark.django_db
def test_an_organization_named_with_an_override_is_the_one_named_with_its_embedding():
    make_organization(name="Report \u202bby NK\u202c")

    answer = client_for(make_user(roles.ANALYST)).post(
        f"{API}/organizations/", {"name": "Report \u202eby NK\u202c", "kind": "media"}, format="json"
    )

    assert answer.status_code == 400, answer.content
    assert list(answer.json()) == ["name"]


@pytest.mark.django_db(transaction=True)
def test_names_stored_with_invisible_characters_or_overrides_inside_are_written_as_doors_write_them():
    migrate_incidents_back_to("0122_people_sorted_as_counted")
    north_korea = Place.objects.create(name="North Korea", kind="country", country="KP")
    stored = [
        Organization.objects.create(name="Free\u200bNK", kind="media"),
        Place.objects.create(name="Hye\u00adsan", kind="city", parent=north_korea),
        Organization.objects.create(name="Report \u202eby NK\u202c", kind="media", aliases=["Daily\u2060NK"]),
        # Thai words parted as Thai parts them: kept.
        Organization.objects.create(name="ผู้ลี้ภัย\u200bเกาหลีเหนือ", kind="ngo"),
    ]
    # Two records whose names become one: which is meant is an analyst's decision.
    twins = [
        Organization.objects.create(name="Open\u00adNK", kind="ngo"),
        Organization.objects.create(name="OpenNK", kind="ngo"),
    ]

    migrate_with(*stored, *twins, north_korea)

    assert [type(record).objects.get(pk=record.pk).name for record in stored] == [
        "FreeNK",
        "Hyesan",
        "Report \u202bby NK\u202c",
        "ผู้ลี้ภัย\u200bเกาหลีเหนือ",
    ]
    assert Organization.objects.get(pk=stored[2].pk).aliases == ["DailyNK"]
    assert [Organization.objects.get(pk=twin.pk).name for twin in twins] == ["Open\u00adNK", "OpenNK"]


def test_a_search_word_of_cjk_letters_with_a_soft_hyphen_inside_is_counted_as_that_word_is():
    # 脱北者 ("defector") pasted from a PDF that broke it with a soft hyphen is the word 脱北者 to
    # the search, whose statistics take it for far rarer than it is: its matches must be counted.
    [pasted] = search_terms("脱\u00ad北者")
    [typed] = search_terms("脱北者")

    assert typed.underestimated
    assert pasted.underestimated
