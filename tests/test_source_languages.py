"""A source's language is an ISO 639 code at every door: the API and the admin read "EN" or
"ko-KR" as the code and refuse a name or anything else naming `language`; the database keeps out
what is not a code's shape; the admin offers and shows languages by name, the public pages in the
reader's language; the API, the releases and the history keep the code. The migration that made
the free field a code reads what it can and keeps the rest in the source's notes."""

import csv
import importlib
import io
import json
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from incidents import roles
from incidents.languages import language_code
from incidents.models import Source
from tests.api_support import API, client_for
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_claim, make_incident, make_source, make_user
from tests.test_source_lookalikes import source_form

ADD = reverse("admin:incidents_source_add")
LANGUAGES = reverse("admin:incidents_source_languages")
ACCEPTED = (
    "Give an ISO 639 language code: two letters where ISO 639-1 has them (en, ko, zh), "
    "else ISO 639-3's three (yue), or leave it blank if the language is not known."
)

# (what a writer sends, what is stored)
READ_AS_CODES = [
    ("ko", "ko"),
    ("EN", "en"),
    (" Ko ", "ko"),
    ("ko-KR", "ko"),
    ("zh_Hant_TW", "zh"),
    ("kor", "ko"),  # ISO 639-3's three letters for a language that has two
    ("chi", "zh"),  # ISO 639-2/B's
    ("iw", "he"),  # withdrawn from ISO 639-1
    ("yue", "yue"),  # no two-letter code
    ("lo", "lo"),  # which Django's own list lacks, as it lacks zh
    ("und", ""),  # undetermined: not known, as blank says
    ("", ""),
]

# (what a writer sends, the refusal)
REFUSED = [
    ("Klingon", f"“Klingon” is a language's name; its code is tlh. {ACCEPTED}"),
    ("Korean", f"“Korean” is a language's name; its code is ko. {ACCEPTED}"),
    ("english?", f"“english?” is not a language code. {ACCEPTED}"),
    ("xx", f"“xx” is not a language code. {ACCEPTED}"),
    ("ko-", f"“ko-” is not a language code. {ACCEPTED}"),
    ("en, ko", f"“en, ko” is not a language code. {ACCEPTED}"),
]


@pytest.fixture
def analyst():
    return make_user(roles.ANALYST)


class TestTheApi:
    @pytest.mark.parametrize(("sent", "stored"), READ_AS_CODES)
    def test_a_code_in_any_form_is_stored_and_answered_as_the_code(self, analyst, sent, stored):
        body = {"title": "Returns at Sinuiju", "kind": "news_article", "language": sent}

        answer = client_for(analyst).post(f"{API}/sources/", body, format="json")

        assert answer.status_code == 201, answer.json()
        assert answer.json()["language"] == stored
        assert Source.objects.get().language == stored

    @pytest.mark.parametrize(("sent", "refusal"), REFUSED)
    def test_anything_else_is_refused_naming_the_field_and_what_it_takes(self, analyst, sent, refusal):
        body = {"title": "Returns at Sinuiju", "kind": "news_article", "language": sent}

        answer = client_for(analyst).post(f"{API}/sources/", body, format="json")

        assert answer.status_code == 400
        assert answer.json() == {"language": [refusal]}
        assert not Source.objects.exists()

    def test_a_change_reads_the_code_too(self, analyst):
        source = make_source(language="ko")

        answer = client_for(analyst).patch(
            f"{API}/sources/{source.pk}/", {"language": "EN-GB", "version": source.version}, format="json"
        )

        assert answer.status_code == 200
        assert answer.json()["language"] == "en"

    def test_what_a_reader_gets_writes_back_unchanged(self, analyst):
        source = make_source(title="Daily NK", language="ko")
        client = client_for(analyst)
        read = client.get(f"{API}/sources/{source.pk}/", HTTP_ACCEPT_LANGUAGE="ko").json()
        body = {name: value for name, value in read.items() if name not in {"id", "created_at", "updated_at"}}

        answer = client.put(f"{API}/sources/{source.pk}/", body, format="json")

        assert read["language"] == "ko"
        assert answer.status_code == 200, answer.json()
        assert answer.json()["language"] == "ko"


class TestTheAdmin:
    def test_a_code_in_any_form_is_saved_as_the_code(self, client, analyst):
        client.force_login(analyst)

        answer = client.post(ADD, source_form(language="ko-KR"))

        assert answer.status_code == 302
        assert Source.objects.get().language == "ko"

    @pytest.mark.parametrize(("sent", "refusal"), REFUSED[:3])
    def test_anything_else_is_an_error_on_the_field(self, client, analyst, sent, refusal):
        client.force_login(analyst)

        answer = client.post(ADD, source_form(language=sent))

        assert answer.status_code == 200
        assert answer.context["adminform"].form.errors["language"] == [refusal]
        assert not Source.objects.exists()

    def test_the_form_picks_a_language_by_name_from_the_autocomplete(self, client, analyst):
        source = make_source(language="ko")
        client.force_login(analyst)

        page = client.get(reverse("admin:incidents_source_change", args=[source.pk])).content.decode()
        korean = client.get(LANGUAGES, {"term": "kor"}).json()
        lao = client.get(LANGUAGES, {"term": "Lao"}).json()
        by_code = client.get(LANGUAGES, {"term": "zh"}).json()

        # The page holds the chosen language alone, by name, and asks the autocomplete for others.
        assert '<option value="ko" selected>Korean (ko)</option>' in page
        assert f'data-ajax--url="{LANGUAGES}"' in page and "admin-autocomplete" in page
        # Of the languages whose names start so, those of ISO 639-1 first.
        assert korean["results"][0] == {"id": "ko", "text": "Korean (ko)"}
        assert korean["pagination"] == {"more": True}
        assert lao["results"][0] == {"id": "lo", "text": "Lao (lo)"}
        assert by_code["results"][0] == {"id": "zh", "text": "Chinese (zh)"}

    def test_the_languages_are_for_those_who_may_write_a_source(self, client):
        client.force_login(make_user(roles.VIEWER))

        assert client.get(LANGUAGES, {"term": "kor"}).status_code == 403

    def test_the_list_shows_and_filters_the_languages_by_name(self, client, analyst):
        make_source(title="Daily NK", language="ko")
        make_source(title="Reuters", language="en")
        make_source(title="A leaflet", language="")
        client.force_login(analyst)

        page = client.get(reverse("admin:incidents_source_changelist")).content.decode()
        korean_only = client.get(reverse("admin:incidents_source_changelist"), {"language__exact": "ko"})

        assert '<td class="field-language_shown">Korean (ko)</td>' in page
        assert '<a href="?language__exact=ko">Korean (ko)</a>' in page
        assert '<a href="?language__exact=">Not known</a>' in page
        assert [source.title for source in korean_only.context["cl"].result_list] == ["Daily NK"]

    def test_the_history_names_the_language(self, client, analyst):
        source = make_source(title="Daily NK")
        client.force_login(analyst)
        client.post(
            reverse("admin:incidents_source_change", args=[source.pk]),
            source_form(title="Daily NK", language="ko", expected_version=source.version),
        )

        history = client.get(reverse("admin:incidents_source_history", args=[source.pk])).content.decode()

        assert "Korean (ko)" in history


def test_the_database_keeps_out_what_is_not_a_codes_shape():
    source = make_source(language="EN")  # the field reads it as the code, as every door does
    for stored in ("EN", "ko-KR", "English", "kore"):
        refused = pytest.raises(IntegrityError, match="source_language_code")
        with refused, transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE incidents_source SET language = %s WHERE id = %s", [stored, source.pk])

    assert Source.objects.get().language == "en"


class TestWhatReadersGet:
    def test_the_public_page_names_a_sources_language_in_the_readers_language(self):
        incident = make_incident()
        make_claim(incident=incident, source=make_source(title="Daily NK", language="ko"))

        english = Client().get(f"/incidents/{incident.public_id}/").content.decode()
        korean = Client().get(f"/ko/incidents/{incident.public_id}/").content.decode()

        assert '<p class="meta">in Korean</p>' in english
        assert '<p class="meta">언어: 한국어</p>' in korean

    def test_a_release_keeps_the_code_and_its_codebook_says_so(self):
        make_claim(incident=make_incident(), source=make_source(title="Daily NK", language="ko"))
        call_command("release", user=make_user(roles.REVIEWER).username, stdout=io.StringIO())
        [listed] = client_for().get(f"{API}/releases/").json()["results"]
        files = {item["name"]: item["url"] for item in listed["files"]}

        def download(name: str) -> str:
            return b"".join(client_for().get(files[name]).streaming_content).decode()

        assert [row["language"] for row in csv.DictReader(io.StringIO(download("sources.csv")))] == ["ko"]
        assert "ISO 639 language code" in download("codebook.md")


def test_the_sample_data_writes_codes():
    # The demo's sources meet every model rule too (tests/test_commands.py, full_clean on each).
    sample = json.loads((Path(settings.BASE_DIR) / "fixtures" / "sample.json").read_text())
    languages = {record["fields"]["language"] for record in sample if record["model"] == "incidents.source"}

    assert languages and all(language_code(language) == language for language in languages)


# The migration that made the language a code, and the one before it.
LANGUAGE_CODES = importlib.import_module("incidents.migrations.0073_source_language_codes")
BEFORE_THE_CODES = LANGUAGE_CODES.Migration.dependencies[0][1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_reads_what_it_can_as_codes_and_keeps_the_rest_in_the_notes(capsys):
    recorded = {
        "English": "en",
        "EN": "en",
        "ko-KR": "ko",
        "Korean": "ko",
        "한국어": "ko",
        "Chinese (Trad.)": "zh",
        "zh": "zh",
        "Korean/English": "",
        "english?": "",
    }
    sources = {written: make_source(title=f"Source in {written}", notes="") for written in recorded}
    Source.objects.filter(pk=sources["english?"].pk).update(notes="Seen in a leaflet.")
    migrate_incidents_back_to(BEFORE_THE_CODES)
    try:
        with connection.cursor() as cursor:
            for written, source in sources.items():
                # As a write before the codes stored it: the field would read "EN" as en today.
                cursor.execute("UPDATE incidents_source SET language = %s WHERE id = %s", [written, source.pk])
    finally:
        call_command("migrate", "incidents", verbosity=0)

    after = {source.title.removeprefix("Source in "): source for source in Source.objects.all()}
    assert {written: source.language for written, source in after.items()} == recorded
    # Nothing is lost: what names no language is in the notes, after what they held.
    assert after["Korean/English"].notes == "Language, as recorded before it was a code: Korean/English"
    assert after["english?"].notes == "Seen in a leaflet.\n\nLanguage, as recorded before it was a code: english?"
    assert all(after[written].notes == "" for written, code in recorded.items() if code)
    # Each change is a new version, recorded in the source's history; a code already is left alone.
    assert {written: source.version for written, source in after.items()} == {
        written: 1 if written == "zh" else 2 for written in recorded
    }
    events = apps.get_model("incidents", "SourceEvent").objects.filter(pgh_obj=sources["Korean"])
    assert list(events.order_by("pgh_id").values_list("language", flat=True))[-2:] == ["Korean", "ko"]
    # And it says so, counting each kind.
    said = capsys.readouterr().out
    assert (
        "6 sources recorded their language otherwise than as its code (“Chinese (Trad.)” as zh: 1, “EN” as en: 1, "
        "“English” as en: 1, “Korean” as ko: 1, “ko-KR” as ko: 1, “한국어” as ko: 1)"
    ) in said
    assert "2 sources recorded a language that names none (“Korean/English”: 1, “english?”: 1)" in said
