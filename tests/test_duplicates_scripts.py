"""The duplicates' scores read the words of every script: Korean and Chinese reports too."""

import io
import re
import unicodedata

import hypothesis
import pytest
from django.core.management import call_command
from hypothesis import strategies

from incidents.duplicates import comparable_text
from incidents.models import DuplicatePair
from tests.factories import make_incident, make_place

pytestmark = pytest.mark.django_db


def scores() -> dict[frozenset, float]:
    call_command("find_duplicates", threshold=0, stdout=io.StringIO())
    return {frozenset((pair.incident_a_id, pair.incident_b_id)): pair.score for pair in DuplicatePair.objects.all()}


@pytest.mark.parametrize(
    ("title", "description", "other_title", "other_description"),
    [
        pytest.param(
            "중국 공안, 투먼에서 탈북민 50명 강제북송",
            "온성 맞은편 투먼 수용소에 갇혀 있던 탈북민 50명이 새벽에 북송되었다.",
            "연길 교회 선교사 체포 사건",
            "한국인 선교사가 연길 시내 가정교회 예배 중 체포되어 구금되었다.",
            id="korean",
        ),
        pytest.param(
            "中国公安在图们遣返五十名脱北者",
            "关押在图们收容所的五十名脱北者凌晨被遣返朝鲜。",
            "延吉教会传教士被捕",
            "一名韩国传教士在延吉市内家庭教会礼拜时被拘留。",
            id="chinese",
        ),
    ],
)
def test_two_reports_in_the_same_words_score_above_two_unrelated_ones(
    title, description, other_title, other_description
):
    # Folded to ASCII, Korean and Chinese text compared as empty: the same score for a word-for-word
    # second report as for an unrelated incident of the same day, place and count.
    china = make_place(name="China", kind="country", country="CN")
    tumen = make_place(name="Tumen", kind="city", parent=china)
    yanji = make_place(name="Yanji", kind="city", parent=china)
    same_a = make_incident(title=title, description=description, places=[tumen], people_count=50)
    # Pasted from another page: the same words, decomposed (as macOS and some PDFs give them).
    same_b = make_incident(
        title=unicodedata.normalize("NFD", title),
        description=unicodedata.normalize("NFD", description),
        places=[tumen],
        people_count=50,
    )
    other_a = make_incident(title=title, description=description, places=[yanji], people_count=50)
    other_b = make_incident(title=other_title, description=other_description, places=[yanji], people_count=50)

    scored = scores()

    assert scored[frozenset((same_a.pk, same_b.pk))] > scored[frozenset((other_a.pk, other_b.pk))]


def ascii_folded(text: str) -> str:
    """What the score compared before every script counted: accents and everything but ASCII gone."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return " ".join(word for word in re.split(r"[^a-z0-9]+", folded) if word and not word.isdigit())


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(strategies.text(alphabet=strategies.characters(codec="ascii")))
def test_ascii_text_compares_as_it_did(text):
    # The weights were fitted on such text (bench/fit_duplicate_weights.py): its words are the same.
    assert comparable_text(text) == ascii_folded(text)


def test_accents_and_full_width_letters_fold_to_their_ascii_words():
    assert comparable_text("Sinŭiju's 48 ＵＮＨＣＲ") == "sinuiju s unhcr"
