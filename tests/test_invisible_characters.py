"""Characters a reader cannot see, in the names and texts analysts paste from PDFs, web pages and
chats: a name with a no-break space inside or a directional isolate around it is the name typed
plainly, and a word with a soft hyphen or a zero-width space inside is found by its letters. The
characters that carry meaning (a Persian word's zero-width non-joiner) are kept."""

import pytest
from django.db import connection, connections
from django.urls import reverse
from playwright.sync_api import sync_playwright

from incidents import roles, search
from incidents.models import Incident, IncidentType, Organization, Place
from tests.api_support import API, client_for, public_ids
from tests.browser_support import launch_chromium
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_incident, make_organization, make_place, make_user
from tests.test_import import imported_or_refused
from tests.test_text_normal_form_edges import migrate_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


# --- Two names that read the same ---------------------------------------------------------------


@pytest.mark.parametrize(
    "pasted",
    [
        # Copied from a chat (Telegram, Slack) or a word processor, which wrap a name in an isolate
        # or an embedding so that it reads right among text of the other direction.
        pytest.param("\u2068Daily NK\u2069", id="first-strong-isolate"),
        pytest.param("Daily NK\u2069", id="trailing-pop-directional-isolate"),
        pytest.param("\u202aDaily NK\u202c", id="left-to-right-embedding"),
        # From a web page or a PDF, which join two words with a no-break space.
        pytest.param("Daily\u00a0NK", id="no-break-space"),
        pytest.param("Daily\u202fNK", id="narrow-no-break-space"),
        pytest.param("Daily\u2009NK", id="thin-space"),
        # From a Korean chat, whose blank nicknames are made of the Hangul filler, a letter drawn as nothing.
        pytest.param("Daily NK\u3164", id="hangul-filler"),
    ],
)
def test_an_organization_name_pasted_with_invisible_differences_is_taken(analyst, pasted):
    make_organization(name="Daily NK")

    answer = client_for(analyst).post(f"{API}/organizations/", {"name": pasted, "kind": "media"}, format="json")

    assert answer.status_code == 400, (answer.status_code, answer.content[:300])
    assert list(answer.json()) == ["name"]
    assert Organization.objects.count() == 1


def test_the_admin_refuses_an_organization_named_as_another_but_for_a_no_break_space(client, analyst):
    make_organization(name="Daily NK")
    client.force_login(analyst)

    answer = client.post(reverse("admin:incidents_organization_add"), {"name": "Daily\u00a0NK", "kind": "media"})

    assert answer.status_code == 200, answer.status_code
    assert "“Daily NK” is already an organization's name" in answer.context["adminform"].form.errors["name"][0]
    assert Organization.objects.count() == 1


def test_a_place_added_with_a_no_break_space_is_found_by_the_import_as_typed(analyst, tmp_path):
    # The place was added through the API from a gazetteer's page ("Hyesan City", a no-break space);
    # a file typed by hand names it with a plain space. The import did not find it: with
    # --create-missing it made a second "Hyesan City" in North Korea, which the facets then showed twice.
    north_korea = make_place(name="North Korea", kind="country", country="KP")
    added = client_for(analyst).post(
        f"{API}/places/", {"name": "Hyesan\u00a0City", "kind": "city", "parent": north_korea.pk}, format="json"
    )
    assert added.status_code == 201, added.content
    content = (
        "title,type,date_start,date_end,places\n"
        "Arrests at Hyesan,forced-repatriation,2024-03-01,2024-03-01,North Korea > Hyesan City\n"
    )

    printed = imported_or_refused(analyst, tmp_path / "import.csv", content, "--create-missing")

    assert Place.objects.filter(parent=north_korea).count() == 1, printed
    assert [place.pk for place in Incident.objects.get(title="Arrests at Hyesan").places.all()] == [added.json()["id"]]


@pytest.mark.parametrize(
    "cell",
    [
        pytest.param("Hyesan\u00a0City", id="no-break-space"),
        pytest.param("Hyesan City\u00a0", id="trailing-no-break-space"),
        pytest.param("Hyesan City\u2069", id="pop-directional-isolate"),
        pytest.param("Hyesan City\u3164", id="hangul-filler"),
    ],
)
def test_an_imported_name_pasted_with_an_invisible_difference_finds_the_place_typed_plainly(analyst, tmp_path, cell):
    # A file filled in a spreadsheet from a web page or a chat: with --create-missing, the import
    # made a second "Hyesan City" in North Korea (and said so in a line nobody reads closely).
    north_korea = make_place(name="North Korea", kind="country", country="KP")
    hyesan = make_place(name="Hyesan City", kind="city", parent=north_korea)
    content = (
        "title,type,date_start,date_end,places\n"
        f"Arrests at Hyesan,forced-repatriation,2024-03-01,2024-03-01,North Korea > {cell}\n"
    )

    printed = imported_or_refused(analyst, tmp_path / "import.csv", content, "--create-missing")

    assert [place.pk for place in Incident.objects.get(title="Arrests at Hyesan").places.all()] == [hyesan.pk], printed
    assert Place.objects.filter(parent=north_korea).count() == 1


def test_the_end_of_an_override_opened_inside_a_title_is_kept(analyst):
    # Trimmed, the override would run on past the title wherever it sits in a line of other text.
    # (The override itself is written as the embedding of its direction, `normal_text`: its end too.)
    title = "Report \u202bby NK\u202c"

    answer = client_for(analyst).post(
        f"{API}/incidents/",
        {
            "title": title.replace("\u202b", "\u202e"),
            "incident_type": "forced-repatriation",
            "date_start": "2024-01-01",
            "date_end": "2024-01-01",
        },
        format="json",
    )

    assert answer.status_code == 201, answer.content
    assert answer.json()["title"] == title


def test_a_persian_name_keeps_its_zero_width_non_joiner(analyst):
    # ZWNJ parts "می‌خواهم" where its writer meant; without it, it is another spelling.
    name = "کانون\u200cهای حقوق بشر"

    answer = client_for(analyst).post(f"{API}/organizations/", {"name": name, "kind": "ngo"}, format="json")

    assert answer.status_code == 201, answer.content
    assert Organization.objects.get().name == name


# --- Search -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title",
    [
        pytest.param("Forced re\u00adpatriation at Tumen", id="soft-hyphen-from-a-pdf"),
        pytest.param("Forced repat\u200briation at Tumen", id="zero-width-space-from-a-page"),
        pytest.param("Forced repat\u2060riation at Tumen", id="word-joiner"),
        pytest.param("강제\u00ad북송 사건", id="soft-hyphen-in-korean"),
    ],
)
def test_a_word_with_an_invisible_character_inside_is_found(analyst, title):
    # The title reads "Forced repatriation" on every page; PostgreSQL's parser took the invisible
    # character for a break between two words, and a search of the word found nothing.
    incident = make_incident(title=title)
    word = "강제북송" if "북송" in title else "repatriation"

    found = client_for(analyst).get(f"{API}/incidents/", {"q": word})

    assert found.status_code == 200, found.content
    assert incident.public_id in public_ids(found)


def test_a_word_searched_as_copied_with_a_soft_hyphen_finds_it_written_plainly(analyst):
    incident = make_incident(title="Forced repatriation at Tumen")

    found = client_for(analyst).get(f"{API}/incidents/", {"q": "re\u00adpatriation"})

    assert incident.public_id in public_ids(found)


# --- Text of the other direction, in the public list --------------------------------------------


@pytest.fixture
def reader(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(15_000)
        yield page
        browser.close()
        connections.close_all()


# The left edge, in CSS px, of the first character of `text` inside the element: where a reader's
# eye finds it.
CHARACTER_LEFT = """([element, text]) => {
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(text);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + 1);
    return range.getBoundingClientRect().left;
  }
  return null;
}"""


def character_left(page, selector: str, text: str) -> float:
    left = page.evaluate(CHARACTER_LEFT, [page.locator(selector).element_handle(), text])
    assert left is not None, f"{text!r} is not in {selector}"
    return left


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_places_named_in_arabic_script_read_in_their_order(reader, live_server):
    # Ürümqi and Kashgar in Uyghur, an incident's two places in that order. Joined by ", " in an
    # English (or Korean) page, the two right-to-left names and the comma between them made one
    # right-to-left run: the list read "Kashgar, Ürümqi", its second place first.
    urumqi = make_place(name="ئۈرۈمچى", country="CN")
    kashgar = make_place(name="قەشقەر", country="CN")
    make_incident(title="Detentions in Xinjiang", places=[urumqi, kashgar])

    reader.goto(f"{live_server.url}/")
    where = "table.incidents tbody td:nth-child(3)"

    assert character_left(reader, where, urumqi.name) < character_left(reader, where, kashgar.name)


# --- Names stored before -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migration_0112_runs_over_two_incident_type_names_that_become_one():
    # An incident type's name is unique whatever its case, as an organization's; migration 0112
    # left a name whose normal form another record bears as it was only for organizations and
    # places, so "Arrest" followed by a zero-width space, beside "Arrest", was written as a second
    # "Arrest": the unique name refused it and the migration stopped, blocking the deploy.
    migrate_incidents_back_to("0111_word_counts_of_every_script")
    types = [
        IncidentType.objects.create(slug="arrest-a", name="Arrest"),
        IncidentType.objects.create(slug="arrest-b", name="Arrest\u200b"),
    ]

    migrate_with(*types)

    assert sorted(IncidentType.objects.filter(pk__in=[kind.pk for kind in types]).values_list("name", flat=True)) == [
        "Arrest",
        "Arrest\u200b",
    ]


@pytest.mark.django_db(transaction=True)
def test_names_stored_with_a_no_break_space_or_an_isolate_are_written_plainly_unless_taken():
    migrate_incidents_back_to("0119_search_words_without_invisible_breaks")
    china = Place.objects.create(name="China", kind="country", country="CN")
    pasted = [
        Organization.objects.create(name="Daily\u00a0NK", kind="media"),
        Place.objects.create(name="\u2068Hyesan\u2069", kind="city", parent=china),
        # The end of an override opened inside: kept, or the override runs on past the name.
        Organization.objects.create(name="Report \u202eby NK\u202c\u00a0", kind="media"),
    ]
    # Two records whose names become one: which is meant is an analyst's decision.
    twins = [
        Organization.objects.create(name="Open\u00a0North Korea", kind="ngo"),
        Organization.objects.create(name="Open North Korea", kind="ngo"),
    ]

    migrate_with(*pasted, *twins, china)

    assert [type(record).objects.get(pk=record.pk).name for record in pasted] == [
        "Daily NK",
        "Hyesan",
        # The override written as its embedding by migration 0123.
        "Report \u202bby NK\u202c",
    ]
    assert [Organization.objects.get(pk=twin.pk).name for twin in twins] == [
        "Open\u00a0North Korea",
        "Open North Korea",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("title", "word"),
    [
        # A Thai news report ("North Korean refugees arrested"): Thai writes no space between words,
        # and the zero-width space is what marks them (Unicode's own use of it).
        pytest.param("ผู้ลี้ภัย\u200bเกาหลีเหนือ\u200bถูกจับ", "เกาหลีเหนือ", id="thai"),
        # Khmer, the same ("North Korean refugees"), on the route through Cambodia.
        pytest.param("ជនភៀសខ្លួន\u200bកូរ៉េខាងជើង", "កូរ៉េខាងជើង", id="khmer"),
    ],
)
def test_a_word_of_a_script_parted_by_zero_width_spaces_is_found(title, word):
    incident = make_incident(title=title)

    found = client_for(make_user(roles.ANALYST)).get(f"{API}/incidents/", {"q": word})

    assert found.status_code == 200, found.content
    assert incident.public_id in public_ids(found)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        "re\u00adpatri\u200bation \u2060Tumen\ufeff 강제\u00ad북송",
        "ผู้ลี้ภัย\u200bเกาหลีเหนือ\u200bถูกจับ Kim\u200b ជន\u200b\u200bភៀស",
        "\u200bເກົາຫຼີ\u00ad\u200b",
    ],
)
def test_a_search_reads_invisible_characters_as_the_incidents_words_are_made(text):
    with connection.cursor() as cursor:
        cursor.execute("SELECT incident_search_text(%s)", [text])
        assert cursor.fetchone()[0] == search.searched_text(text)
