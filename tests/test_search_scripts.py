"""Searching in the languages the incidents are recorded in: English, Korean, Chinese, Japanese and
Russian sources. Each search goes through the admin's search box, the API's `q` and the public list,
which must find the same incidents."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from incidents import search
from tests.api_support import API, client_for, public_ids
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source

CHANGELIST = reverse("admin:incidents_incident_changelist")


@pytest.fixture(params=["collected", "counted", "tested_in_order"])
def search_plan(request, monkeypatch):
    """Every plan of IncidentSearch.filter must find the same incidents (tests/test_search.py)."""
    monkeypatch.setattr(
        search, "COLLECT_BELOW", {"collected": 10**9, "counted": 1, "tested_in_order": 0}[request.param]
    )


def found(client, user, q: str) -> set[str]:
    """The incidents the admin's search box, the API's `q` and the public list find, asserted the same."""
    client.force_login(user)
    response = client.get(CHANGELIST, {"q": q})
    assert response.status_code == 200
    in_admin = {incident.public_id for incident in response.context["cl"].result_list}
    in_api = public_ids(client_for(user).get(f"{API}/incidents/", {"q": q}))
    public = Client().get("/", {"q": q})
    assert public.status_code == 200
    on_public_list = set(re.findall(r'href="/incidents/(INC-\d+)/"', public.text))
    assert in_admin == in_api == on_public_list, q
    return in_api


class TestChineseAndJapaneseWithoutSpaces:
    @pytest.mark.parametrize("q", ["延吉", "延吉市", "脱北者", "公安", "抓捕"])
    def test_a_word_inside_a_chinese_sentence_finds_it(self, client, reviewer, search_plan, q):
        # An excerpt of a Chinese report, written without spaces as Chinese is.
        incident = make_incident(title="Arrests in Yanji")
        make_claim(incident=incident, excerpt="中国公安在延吉市抓捕了脱北者")
        make_incident(title="Elsewhere", description="上海")

        assert found(client, reviewer, q) == {incident.public_id}

    def test_a_city_is_found_inside_its_official_name(self, client, reviewer):
        # Chinese names a city with its rank (延吉市, 延吉 City); a reader types the city, 延吉.
        incident = make_incident(title="Sent back", places=[make_place(name="Yanji", alternate_names=["延吉市"])])

        assert found(client, reviewer, "延吉") == {incident.public_id}

    @pytest.mark.parametrize("q", ["脱北者", "逮捕", "延吉"])
    def test_a_word_inside_a_japanese_sentence_finds_it(self, client, reviewer, q):
        incident = make_incident(title="Report from Japan")
        make_claim(incident=incident, excerpt="中国当局は延吉市で脱北者を逮捕した")

        assert found(client, reviewer, q) == {incident.public_id}

    def test_a_phrase_of_chinese_words_keeps_them_in_order(self, client, reviewer):
        # Characters in the sentence, but not next to each other in that order, are not the phrase.
        incident = make_incident(title="Arrests", description="中国公安在延吉市抓捕了脱北者")
        # Both pairs of 脱北者 (脱北, 北者), apart.
        make_incident(title="Other", description="脱北，是北者")

        assert found(client, reviewer, "脱北者") == {incident.public_id}


class TestKoreanCompoundsAndSpacing:
    def test_the_second_noun_of_a_compound_finds_it(self, client, reviewer, search_plan):
        # 강제북송 is 강제 (forced) + 북송 (repatriation to the North); a journalist types 북송.
        incident = make_incident(title="Hyesan", description="탈북민들이 강제북송되었다")

        assert found(client, reviewer, "북송") == {incident.public_id}

    def test_a_compound_typed_with_a_space_finds_it_written_as_one_word(self, client, reviewer):
        incident = make_incident(title="Hyesan", description="탈북민들이 강제북송되었다")

        assert found(client, reviewer, "강제 북송") == {incident.public_id}


class TestLatinSpellings:
    @pytest.mark.parametrize("q", ["Sinuiju", "Sinŭiju", "SINUIJU"])
    def test_a_romanized_name_is_found_with_or_without_its_diacritics(self, client, reviewer, q):
        with_breve = make_incident(title="Crossing at Sinŭiju")
        without = make_incident(title="Crossing at Sinuiju")

        assert found(client, reviewer, q) == {with_breve.public_id, without.public_id}

    def test_the_tumen_is_found_with_or_without_its_umlaut(self, client, reviewer):
        incident = make_incident(title="Crossing the Tümen in winter")

        assert found(client, reviewer, "Tumen") == {incident.public_id}

    @pytest.mark.parametrize("q", ["Kim Jong-un", "Kim Jong Un", "Kim Jong-Un", '"Kim Jong-un"'])
    def test_a_name_is_found_however_it_is_hyphenated(self, client, reviewer, q):
        hyphen = make_incident(title="Order of Kim Jong-un")
        spaced = make_incident(title="Order of Kim Jong Un")

        assert found(client, reviewer, q) == {hyphen.public_id, spaced.public_id}

    @pytest.mark.parametrize("q", ["Chongjin", "Chŏngjin", "Ch'ongjin", "Ch’ŏngjin"])
    def test_a_mccune_reischauer_name_is_found_without_its_apostrophe(self, client, reviewer, q):
        # McCune-Reischauer marks an aspirated consonant with an apostrophe (Ch'ŏngjin, P'yŏngyang,
        # Manp'o); news and most reports write the same city without it.
        apostrophe = make_incident(title="Sent back to Ch'ŏngjin")
        plain = make_incident(title="Sent back to Chongjin")

        assert found(client, reviewer, q) == {apostrophe.public_id, plain.public_id}

    def test_an_english_apostrophe_still_parts_the_word(self, client, reviewer):
        incident = make_incident(title="Korea's border guards")

        assert found(client, reviewer, "Korea") == {incident.public_id}


class TestCompatibilityForms:
    def test_a_full_width_acronym_finds_the_organization(self, client, reviewer):
        # Typed on a Chinese or Japanese keyboard's full-width mode.
        hrw = make_organization(name="Human Rights Watch", acronym="HRW")
        incident = make_incident(title="Report")
        make_claim(incident=incident, source=make_source(title="Report", publisher=hrw))

        assert found(client, reviewer, "ＨＲＷ") == {incident.public_id}

    def test_a_full_width_word_in_an_excerpt_is_found_by_its_plain_form(self, client, reviewer):
        incident = make_incident(title="Report")
        make_claim(incident=incident, excerpt="据ＨＲＷ报告")

        assert found(client, reviewer, "HRW") == {incident.public_id}

    def test_a_half_width_katakana_word_finds_its_full_width_form(self, client, reviewer):
        incident = make_incident(title="Report", description="ダンドン 丹東")

        assert found(client, reviewer, "ﾀﾞﾝﾄﾞﾝ") == {incident.public_id}


class TestCyrillic:
    def test_a_russian_word_written_with_ye_finds_it_written_with_yo(self, client, reviewer):
        # Russian print mostly writes the letter yo as ye; a reader types either.
        incident = make_incident(
            title="Лесозаготовки", description="Северокорейские рабочие на лесозаготовках, ещё 30 человек"
        )

        assert found(client, reviewer, "еще") == {incident.public_id}
        assert found(client, reviewer, "Лесозаготовки") == {incident.public_id}


@pytest.mark.parametrize(
    "text",
    [
        "中国公安在延吉市抓捕了脱北者。据ＨＲＷ报告",
        "ﾀﾞﾝﾄﾞﾝ キム・ジョンウン 々 𠀀𠀁𠀂",
        "탈북민들이 강제북송되었다 북",
        "Sinŭiju Kim Jong-un ① Ch'ŏngjin P’yŏngyang Korea's don't",
    ],
)
def test_a_search_reads_its_words_as_the_incidents_words_are_made(text):
    # The query's text (search.searched_text) and the incidents' (migration 0118's
    # incident_search_text) are made alike, or a word stops finding itself.
    with connection.cursor() as cursor:
        cursor.execute("SELECT incident_search_text(%s)", [text])
        assert cursor.fetchone()[0] == search.searched_text(text)
