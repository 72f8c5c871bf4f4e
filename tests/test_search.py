"""The one search and the filters shared by every door: the admin's changelist (test client), the
API's list and statistics (APIClient) and the CSV export find the same incidents for the same words."""

import csv
import html
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from incidents import roles, search
from incidents.models import Incident, Involvement
from tests.api_support import API, client_for, public_ids
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
)

CHANGELIST = reverse("admin:incidents_incident_changelist")


@pytest.fixture
def insider():
    """Sees drafts and confidential records."""
    return make_user(roles.REVIEWER, confidential=True)


@pytest.fixture(params=["collected", "counted", "tested_in_order"])
def search_plan(request, monkeypatch):
    """Few matches are collected from the index, many are tested in the list's order, and several
    words' matches are counted to choose (see IncidentSearch.filter): every plan must find the same
    incidents. A bound of 0 makes every search's matches many, of 1 counts several words' matches."""
    bound = {"collected": 10**9, "counted": 1, "tested_in_order": 0}[request.param]
    monkeypatch.setattr(search, "COLLECT_BELOW", bound)


def admin_found(client, user, q: str) -> set[str]:
    client.force_login(user)
    response = client.get(CHANGELIST, {"q": q})
    assert response.status_code == 200
    return {incident.public_id for incident in response.context["cl"].result_list}


def api_found(user, q: str) -> set[str]:
    return public_ids(client_for(user).get(f"{API}/incidents/", {"q": q}))


def found_in_both_doors(client, user, q: str) -> set[str]:
    """The incidents the admin's search box and the API's `q` find for `user`, asserted the same."""
    in_admin, in_api = admin_found(client, user, q), api_found(user, q)
    assert in_admin == in_api, q
    return in_api


class TestOneMeaning:
    @pytest.mark.parametrize("q", ["Human Rights Watch", "HRW", '"Human Rights Watch"', "hrw"])
    def test_an_organization_found_by_name_or_acronym_finds_the_samples_incidents(self, client, reviewer, q):
        call_command("loaddata", "sample", verbosity=0)
        hrw_reports = Incident.objects.filter(claims__source__publisher__acronym="HRW", claims__confidential=False)
        expected = {incident.public_id for incident in hrw_reports.filter(claims__source__confidential=False)}
        assert expected

        assert found_in_both_doors(client, reviewer, q) == expected

    @pytest.mark.parametrize("q", ["북한", "Chosŏn", "DPRK"])
    def test_a_places_alternate_name_finds_its_incidents(self, client, reviewer, q):
        call_command("loaddata", "sample", verbosity=0)
        at_north_korea = Incident.objects.filter(places__name="North Korea")
        assert at_north_korea.exists()

        assert {incident.public_id for incident in at_north_korea} <= found_in_both_doors(client, reviewer, q)

    def test_involved_organizations_are_found_by_name_acronym_and_alias(self, client, reviewer, search_plan):
        government = make_organization(name="Ministry of State Security", acronym="MSS", aliases=["Bowibu"])
        involved = make_incident(title="Arrested")
        Involvement.objects.create(incident=involved, organization=government, role="perpetrator")
        make_incident(title="Arrested elsewhere")

        for q in ["state security", "MSS", "bowibu", "Arrested Bowibu"]:
            assert found_in_both_doors(client, reviewer, q) == {involved.public_id}, q

    def test_every_word_must_match_somewhere_in_the_incident(self, client, reviewer, search_plan):
        publisher = make_organization(name="Daily NK")
        sent_back = make_incident(title="Sent back", places=[make_place(name="Hyesan")], description="Women")
        make_claim(incident=sent_back, source=make_source(title="Weekly dispatch", publisher=publisher))
        make_incident(title="Sent back from Tumen")

        assert found_in_both_doors(client, reviewer, "sent hyesan women dispatch daily") == {sent_back.public_id}
        assert found_in_both_doors(client, reviewer, "sent") == {sent_back.public_id, *api_found(reviewer, "tumen")}
        # Whole words, so a word inside another does not match.
        assert found_in_both_doors(client, reviewer, "Hyes") == set()

    def test_phrases_ids_and_excluded_words(self, client, reviewer, search_plan):
        north = make_incident(title="Caught in North Korea")
        korea_north = make_incident(title="Korea, north of the river")

        assert found_in_both_doors(client, reviewer, '"north korea"') == {north.public_id}
        assert found_in_both_doors(client, reviewer, "north korea") == {north.public_id, korea_north.public_id}
        assert found_in_both_doors(client, reviewer, "korea -river") == {north.public_id}
        assert found_in_both_doors(client, reviewer, north.public_id) == {north.public_id}

    def test_a_word_ending_in_a_star_finds_the_words_that_start_so(self, client, reviewer, search_plan):
        plural = make_incident(title="Repatriations from Tumen")
        singular = make_incident(title="A repatriation", description="Detained first")
        make_incident(title="Repeated arrests")

        assert found_in_both_doors(client, reviewer, "repatriation") == {singular.public_id}
        assert found_in_both_doors(client, reviewer, "repatriat*") == {plural.public_id, singular.public_id}
        assert found_in_both_doors(client, reviewer, "REPATRIAT* tumen") == {plural.public_id}
        assert found_in_both_doors(client, reviewer, "repatriat* -detain*") == {plural.public_id}
        assert plural.public_id in found_in_both_doors(client, reviewer, plural.public_id[:-1] + "*")
        # Within a phrase a star is a character like another: no word has it.
        assert found_in_both_doors(client, reviewer, '"a repatriat*"') == set()
        # The CSV (said of its kept rows) and the statistics read the same words.
        for q in ("repatriat*", "repatriat* -detain*"):
            export = client_for(reviewer).get(f"{API}/incidents.csv", {"q": q})
            exported = {
                row["public_id"] for row in csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))
            }
            assert exported == api_found(reviewer, q), q
            stats = client_for(reviewer).get(f"{API}/incidents/stats/", {"group_by": "type", "q": q}).json()
            assert stats["total"]["incidents"] == len(exported), q

    def test_a_korean_word_finds_the_words_it_starts_with_its_particles_and_endings(
        self, client, reviewer, search_plan
    ):
        # Korean writes particles and endings onto the word: 강제북송 ("forced repatriation") is
        # 강제북송을, 강제북송되었다 in a sentence. A single syllable is a word of its own.
        sentence = make_incident(title="Hyesan", description="탈북민들이 강제북송되었다")
        other = make_incident(title="북 Tumen")

        assert found_in_both_doors(client, reviewer, "강제북송") == {sentence.public_id}
        assert found_in_both_doors(client, reviewer, "탈북민 강제북송") == {sentence.public_id}
        assert found_in_both_doors(client, reviewer, "북") == {other.public_id}
        assert found_in_both_doors(client, reviewer, "-탈북") == {other.public_id}

    def test_searches_only_excluding_words_keep_every_other_incident(self, client, reviewer, search_plan):
        dandong = make_incident(title="Seen in Dandong")
        other = make_incident(title="Seen elsewhere")

        assert found_in_both_doors(client, reviewer, "-zzzz") == {dandong.public_id, other.public_id}
        assert found_in_both_doors(client, reviewer, "-dandong") == {other.public_id}
        assert found_in_both_doors(client, reviewer, "-dandong -elsewhere") == set()


class TestConfidentialWords:
    def test_a_claim_the_reader_may_not_see_never_makes_an_incident_match(self, client, reviewer, insider):
        whistleblowers = make_organization(name="Whistleblowers League", acronym="WBL")
        incident = make_incident(title="Sent back")
        make_claim(incident=incident, source=make_source(title="Codeword memo", confidential=True))
        make_claim(incident=incident, source=make_source(title="Open letter", publisher=whistleblowers),
                   excerpt="whispered", confidential=True)  # fmt: skip

        for q in ["codeword", "whispered", "WBL", "Whistleblowers", "sent codeword", "codew*", "whisp*"]:
            assert found_in_both_doors(client, reviewer, q) == set(), q
            assert found_in_both_doors(client, insider, q) == {incident.public_id}, q

    def test_a_source_made_confidential_stops_matching_at_once(self, client, reviewer):
        source = make_source(title="Refugee testimony")
        make_claim(incident=make_incident(), source=source)
        assert len(found_in_both_doors(client, reviewer, "testimony")) == 1

        source.confidential = True
        source.save()

        assert found_in_both_doors(client, reviewer, "testimony") == set()


class TestWordsFollowTheirRecords:
    """The words are kept by the database: any change, by any door, is searchable in the same transaction."""

    def test_renamed_places_organizations_and_sources(self, client, reviewer):
        place, publisher = make_place(name="Old town"), make_organization(name="Old Press")
        involved = make_organization(name="Old Ministry")
        incident = make_incident(places=[place])
        Involvement.objects.create(incident=incident, organization=involved, role="perpetrator")
        make_claim(incident=incident, source=(source := make_source(title="Old article", publisher=publisher)))

        place.name, place.alternate_names = "Newtown", ["Xincheng"]
        place.save()
        publisher.name, involved.name, involved.aliases = "Fresh Press", "Home Ministry", ["Renamed ministry"]
        publisher.save()
        involved.save()
        source.title = "Later article"
        source.save()

        assert found_in_both_doors(client, reviewer, "old") == set()
        for q in ["Newtown", "Xincheng", "Fresh Press", "Renamed ministry", "Later article"]:
            assert found_in_both_doors(client, reviewer, q) == {incident.public_id}, q

    def test_edited_incidents_and_removed_links(self, client, reviewer):
        incident = make_incident(title="First title", places=[make_place(name="Tumen")])
        claim = make_claim(incident=incident, excerpt="spoken words")

        Incident.objects.filter(pk=incident.pk).update(title="Second title")
        incident.places.clear()
        claim.delete()

        assert found_in_both_doors(client, reviewer, "second") == {incident.public_id}
        for q in ["first", "Tumen", "spoken"]:
            assert found_in_both_doors(client, reviewer, q) == set(), q

    def test_a_deleted_incident_takes_its_words_with_it(self, reviewer):
        incident = make_incident(title="Mistaken entry")
        incident.delete()

        assert api_found(reviewer, "mistaken") == set()


class TestBounds:
    @pytest.mark.parametrize("q", [" ".join(f"word{number}" for number in range(9)), "x" * 201, " ".join("abcdefghij")])
    def test_the_api_refuses_a_search_past_its_bounds_naming_q(self, q):
        answer = client_for().get(f"{API}/incidents/", {"q": q})

        assert answer.status_code == 400
        assert list(answer.json()) == ["q"]
        assert "Search at most" in answer.json()["q"][0]

    @pytest.mark.parametrize("q", ["a*", "-a*", "sent b*", "'a*"])
    def test_a_star_after_fewer_than_two_letters_is_refused_naming_q(self, q):
        answer = client_for().get(f"{API}/incidents/", {"q": q})

        assert answer.status_code == 400
        assert list(answer.json()) == ["q"]
        assert "at least 2 letters or digits before *" in answer.json()["q"][0]

    @pytest.mark.parametrize("raw_query", ["q=!!!", "q=-", "q=%22%22", "q=%ED%A0%80", "q=%FF%FE"])
    def test_a_search_with_no_word_is_refused_naming_q_not_answered_with_everything(self, client, reviewer, raw_query):
        # Punctuation alone, an empty phrase, or bytes that are no UTF-8 (Django decodes them as
        # U+FFFD) have no word to find: every incident was answered, 200, as if no search was asked.
        make_incident(title="Alpha")
        answer = client_for().get(f"{API}/incidents/?{raw_query}")
        assert answer.status_code == 400, answer.content
        assert list(answer.json()) == ["q"]
        assert answer.json()["q"][0].startswith("Search for at least one word")
        page = client.get(f"/?{raw_query}")
        assert page.status_code == 400 and "Search for at least one word" in html.unescape(page.content.decode())
        client.force_login(reviewer)
        response = client.get(f"{CHANGELIST}?{raw_query}")
        assert list(response.context["cl"].result_list) == []
        assert "This search cannot be run: Search for at least one word" in html.unescape(response.content.decode())

    def test_other_admins_search_a_starred_word_as_any_other(self, client, reviewer):
        report = make_source(title="Human Rights Watch report on Dandong")
        client.force_login(reviewer)

        response = client.get(reverse("admin:incidents_source_changelist"), {"q": "dand*"})

        assert list(response.context["cl"].result_list) == [report]

    def test_a_user_manager_finds_accounts_by_a_fragment_of_their_email_punctuation_alone_too(self, client):
        # A search of punctuation alone has no word for the incidents' full-text search to find, and
        # was refused in every box: the users' list, searched by `ILIKE`, finds every address with `@`.
        administrator = make_user(roles.REVIEWER, username="administrator", is_superuser=True)
        alice = make_user(roles.ANALYST, username="alice", email="alice@example.org")
        bob = make_user(roles.ANALYST, username="bob", email="bob@example.org")
        make_user(roles.ANALYST, username="carol", email="")
        client.force_login(administrator)
        users = reverse("admin:auth_user_changelist")

        for typed, found in [("@example.org", [alice, bob]), ("@", [alice, bob]), ("-", [])]:
            response = client.get(users, {"q": typed})
            assert response.status_code == 200
            assert sorted(response.context["cl"].result_list, key=lambda user: user.username) == found, typed
            assert "This search cannot be run" not in response.content.decode()
        # The incidents' full-text search still refuses it, having no word to find.
        response = client.get(CHANGELIST, {"q": "@"})
        assert list(response.context["cl"].result_list) == []
        assert "This search cannot be run: Search for at least one word" in html.unescape(response.content.decode())

    def test_repeated_words_count_once(self):
        make_incident(title="Alpha")
        answer = client_for().get(f"{API}/incidents/", {"q": " ".join(["alpha", "ALPHA"] * 10)})
        assert answer.status_code == 200
        assert len(answer.json()["results"]) == 1

    def test_the_admin_explains_a_refused_search(self, client, reviewer):
        make_incident(title="a b c d e f g h i")
        client.force_login(reviewer)

        response = client.get(CHANGELIST, {"q": "a b c d e f g h i"})

        assert response.status_code == 200
        assert list(response.context["cl"].result_list) == []
        message = 'Search at most 8 words or "phrases" at a time (this search has 9).'
        assert message in html.unescape(response.content.decode())

    @pytest.mark.parametrize(
        "changelist",
        [
            "admin:incidents_source_changelist",
            "admin:incidents_response_changelist",
            "admin:incidents_incidentrevision_changelist",
            "admin:incidents_confidentialaccess_changelist",
            "admin:accounts_apitoken_changelist",
            "admin:auth_user_changelist",
        ],
    )
    def test_every_admin_search_box_refuses_forty_one_letter_words(self, client, changelist):
        # Django's own search would AND 40 groups of ILIKE '%x%', one per word, over every search field.
        make_source(title="abc")
        client.force_login(make_user(roles.REVIEWER, confidential=True, is_superuser=True))

        response = client.get(reverse(changelist), {"q": " ".join("abcdefghijklmnopqrstuvwxyzabcdefghijklmn")})

        assert response.status_code == 200
        assert list(response.context["cl"].result_list) == []
        message = 'This search cannot be run: Search at most 8 words or "phrases" at a time (this search has 26).'
        assert message in html.unescape(response.content.decode())

    @pytest.mark.parametrize("changelist", ["admin:incidents_incident_changelist", "admin:incidents_source_changelist"])
    def test_a_search_holding_a_nul_lists_no_row_and_says_why(self, client, reviewer, changelist):
        # Django's search form dropped the search with a message, and the list showed every row.
        make_incident(title="Caught near the border")
        make_source(title="Caught near the border")
        client.force_login(reviewer)

        response = client.get(reverse(changelist), {"q": "border\x00"})

        assert response.status_code == 200
        assert list(response.context["cl"].result_list) == []
        assert "This search cannot be run: Null characters are not allowed." in response.content.decode()

    def test_other_admins_search_within_the_bounds_as_django_does(self, client, reviewer):
        report = make_source(title="Human Rights Watch report on Dandong")
        make_source(title="Human Rights Watch press release")
        client.force_login(reviewer)
        sources = reverse("admin:incidents_source_changelist")

        for q in ["rights dandong", "RIGHTS dandong " + "Dandong " * 20, '"watch report"', "rep dand"]:
            response = client.get(sources, {"q": q})
            assert list(response.context["cl"].result_list) == [report], q
            assert "cannot be run" not in response.content.decode()

    def test_the_autocomplete_offers_nothing_past_the_bounds_and_leaves_no_message(self, client, reviewer):
        make_source(title="a b c d e f g h i")
        client.force_login(reviewer)

        response = client.get(
            reverse("admin:autocomplete"),
            {"app_label": "incidents", "model_name": "claim", "field_name": "source", "term": "a b c d e f g h i"},
        )

        assert response.status_code == 200
        assert response.json() == {"results": [], "pagination": {"more": False}}
        assert "cannot be run" not in client.get(reverse("admin:index")).content.decode()

    def test_statistics_of_a_search_that_excludes_an_absent_word_are_the_totals(self, reviewer):
        make_incident(title="Seen in Dandong", places=[make_place(country="CN")])
        make_incident(title="Seen elsewhere", places=[make_place(country="RU")])
        stats = f"{API}/incidents/stats/"

        for group_by in ["perpetrator", "country", "type"]:
            everything = client_for().get(stats, {"group_by": group_by}).json()
            assert client_for().get(stats, {"group_by": group_by, "q": "-zzzz"}).json() == everything
        without_dandong = client_for().get(stats, {"group_by": "country", "q": "-dandong"}).json()
        assert [row["group"] for row in without_dandong["results"]] == ["RU"]


def analyze_search_words():
    """PostgreSQL's statistics on the words, which a search that only leaves words out is judged by
    (autovacuum would take them later)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE incidents_incidentsearchdocument")


class TestLeavingOutCommonWords:
    """A search that only leaves words out tests incidents in the list's order: served while enough
    incidents lack the words (a page fills quickly), refused naming `q` when nearly every incident
    has them (finding the few without would read every incident's words)."""

    @pytest.fixture
    def border_incidents(self):
        # Eight of ten incidents mention the border: 20% lack the word.
        near = [make_incident(title=f"Arrested at the border, case {number}") for number in range(8)]
        far = [make_incident(title="Arrested in Shenyang"), make_incident(title="Arrested in Yanji")]
        analyze_search_words()
        return near, far

    def test_leaving_out_a_common_word_finds_the_incidents_without_it(self, client, reviewer, border_incidents):
        _, far = border_incidents
        assert found_in_both_doors(client, reviewer, "-border") == {incident.public_id for incident in far}
        stats = client_for().get(f"{API}/incidents/stats/", {"group_by": "perpetrator", "q": "-border"})
        assert stats.json()["total"]["incidents"] == 2

    def test_leaving_out_a_word_of_every_incident_is_served_where_incidents_are_few(
        self, border_incidents, monkeypatch
    ):
        # Reading every incident's words is cheap below REFUSED_ABOVE_INCIDENTS: no refusal there.
        monkeypatch.setattr(search, "MIN_SHARE_LEFT", 0.15)
        answer = client_for().get(f"{API}/incidents/", {"q": "-inc"})
        assert answer.status_code == 200
        assert answer.json()["results"] == []

    def test_leaving_out_a_word_of_every_incident_is_refused_naming_q(
        self, client, reviewer, border_incidents, monkeypatch
    ):
        # PostgreSQL expects one row at least, 10% of ten incidents: the bound is raised above it.
        monkeypatch.setattr(search, "MIN_SHARE_LEFT", 0.15)
        monkeypatch.setattr(search, "REFUSED_ABOVE_INCIDENTS", 0)
        refusal = 'Nearly every incident has "inc": a search that only leaves out words so common'
        for path, parameters in [
            (f"{API}/incidents/", {"q": "-inc"}),
            (f"{API}/incidents/stats/", {"group_by": "perpetrator", "q": "-inc"}),
        ]:
            answer = client_for().get(path, parameters)
            assert answer.status_code == 400, path
            assert list(answer.json()) == ["q"]
            assert answer.json()["q"][0].startswith(refusal)
        browse = client.get("/", {"q": "-inc"})
        assert browse.status_code == 400
        assert refusal in html.unescape(browse.content.decode())
        client.force_login(reviewer)
        changelist = client.get(CHANGELIST, {"q": "-inc"})
        assert list(changelist.context["cl"].result_list) == []
        assert refusal in html.unescape(changelist.content.decode())
        # A word to find makes it an ordinary search.
        assert api_found(reviewer, "shenyang -inc") == set()


def words_read_to_collect_ids_only(queries) -> bool:
    """Whether the statements a request sent read incidents' words (`@@`) only to collect the ids
    of the few that match, never while walking incidents in a list's order (the planner's EXPLAINs
    aside)."""
    statements = [query["sql"] for query in queries if not query["sql"].startswith("EXPLAIN")]
    reading_words = [sql for sql in statements if "@@" in sql]
    collecting = 'SELECT "incidents_incidentsearchdocument"."incident_id" AS "incident_id" FROM'
    return bool(reading_words) and all(sql.startswith(collecting) for sql in reading_words)


class TestPhrasesOfCommonWords:
    """PostgreSQL's statistics take a phrase for its words anywhere: every incident has "by" and
    "in", so `"by in"` looks common however few incidents have it. Its matches are counted, up to
    the bound, instead: few are collected from the index, many are tested in the list's order, and
    leaving it out is refused only when nearly every incident really has it."""

    @pytest.fixture
    def by_and_in(self, monkeypatch, settings):
        # The statements as sent, without the anonymous bound's `SET LOCAL` before each.
        settings.ANON_STATEMENT_TIMEOUT = 0
        arrests = [make_incident(title=f"Arrested in Shenyang by police, case {number}") for number in range(9)]
        passed = make_incident(title="Passed by in the night")
        analyze_search_words()
        # Ten incidents stand for a large database: the statistics expect ten with the phrase.
        monkeypatch.setattr(search, "COLLECT_BELOW", 5)
        return arrests, passed

    def test_a_phrase_few_incidents_have_is_collected_from_the_index(self, client, by_and_in):
        arrests, passed = by_and_in
        for ordering in ["-date_start", "date_start", "-people_count", "people_count", "-updated_at"]:
            with CaptureQueriesContext(connection) as queries:
                answer = client_for().get(f"{API}/incidents/", {"q": '"by in"', "ordering": ordering})
            assert public_ids(answer) == {passed.public_id}, ordering
            assert words_read_to_collect_ids_only(queries), ordering
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/", {"q": '"by in"'}).content.decode()
        assert passed.public_id in page
        assert not any(arrest.public_id in page for arrest in arrests)
        assert words_read_to_collect_ids_only(queries)

    def test_a_phrase_many_incidents_have_is_tested_in_the_lists_order(self, client, by_and_in):
        arrests, _ = by_and_in
        with CaptureQueriesContext(connection) as queries:
            answer = client_for().get(f"{API}/incidents/", {"q": '"arrested in"', "ordering": "-people_count"})
        assert public_ids(answer) == {arrest.public_id for arrest in arrests}
        assert not words_read_to_collect_ids_only(queries)

    def test_leaving_out_a_phrase_few_incidents_have_is_served(self, client, by_and_in, monkeypatch):
        arrests, passed = by_and_in
        # The statistics expect none left (every incident has both words): the bound on what is left
        # applies, as at scale.
        monkeypatch.setattr(search, "MIN_SHARE_LEFT", 0.15)
        monkeypatch.setattr(search, "REFUSED_ABOVE_INCIDENTS", 0)
        everyone_but_passed = {arrest.public_id for arrest in arrests}

        assert public_ids(client_for().get(f"{API}/incidents/", {"q": '-"by in"'})) == everyone_but_passed
        stats = client_for().get(f"{API}/incidents/stats/", {"group_by": "type", "q": '-"by in"'})
        assert stats.json()["total"]["incidents"] == 9
        page = client.get("/", {"q": '-"by in"'})
        assert page.status_code == 200
        assert passed.public_id not in page.content.decode()
        assert all(arrest.public_id in page.content.decode() for arrest in arrests)
        # One incident in ten lacks "arrested in": fewer than 15% are left, as counted.
        refused = client_for().get(f"{API}/incidents/", {"q": '-"arrested in"'})
        assert refused.status_code == 400
        assert refused.json()["q"][0].startswith('Nearly every incident has "arrested in"')


class TestFilters:
    def test_country_codes_are_accepted_in_any_case(self, client, reviewer):
        in_china = make_incident(places=[make_place(country="CN")])
        make_incident(places=[make_place(country="RU")])

        for code in ["cn", "CN", "Cn"]:
            assert public_ids(client_for().get(f"{API}/incidents/", {"country": code})) == {in_china.public_id}
        client.force_login(reviewer)
        response = client.get(CHANGELIST, {"country": "cn"})
        assert list(response.context["cl"].result_list) == [in_china]

    def test_dates_in_the_wrong_order_are_refused_naming_both(self, client, reviewer):
        answer = client_for().get(f"{API}/incidents/", {"date_from": "2024-01-01", "date_to": "2023-01-01"})

        assert answer.status_code == 400
        assert sorted(answer.json()) == ["date_from", "date_to"]
        assert "date_from (2024-01-01) is after date_to (2023-01-01)" in answer.json()["date_to"][0]
        client.force_login(reviewer)
        page = client.get(CHANGELIST, {"date_from": "2024-01-01", "date_to": "2023-01-01"})
        assert page.status_code == 400
        assert "date_from (2024-01-01) is after date_to (2023-01-01)" in page.content.decode()

    def test_a_type_includes_its_sub_types_in_every_door(self, client, reviewer):
        execution = make_incident(title="Execution", incident_type=incident_type("execution"))
        extrajudicial = make_incident(title="Extrajudicial", incident_type=incident_type("extrajudicial-execution"))
        make_incident(title="Torture", incident_type=incident_type("torture"))
        expected = {execution.public_id, extrajudicial.public_id}

        assert public_ids(client_for().get(f"{API}/incidents/", {"type": "execution"})) == expected
        client.force_login(reviewer)
        in_admin = client.get(CHANGELIST, {"type": "execution"}).context["cl"].result_list
        assert {incident.public_id for incident in in_admin} == expected
        export = client_for().get(f"{API}/incidents.csv?type=execution")
        rows = csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))
        assert {row["title"] for row in rows} == {"Execution", "Extrajudicial"}
        stats = client_for().get(f"{API}/incidents/stats/", {"group_by": "type", "type": "execution"}).json()
        assert stats["total"]["incidents"] == 2
        only_sub_type = client_for().get(f"{API}/incidents/", {"type": "extrajudicial-execution"})
        assert public_ids(only_sub_type) == {extrajudicial.public_id}

    def test_the_admin_type_filter_lists_sub_types_under_their_parent(self, client, reviewer):
        client.force_login(reviewer)
        page = client.get(CHANGELIST).content.decode()

        assert (
            page.index("?type=execution")
            < page.index("?type=extrajudicial-execution")
            < page.index("?type=forced-labour")
        )


def test_the_sample_words_are_kept_for_every_incident():
    call_command("loaddata", "sample", verbosity=0)

    assert Incident.objects.exists()
    assert not Incident.objects.filter(search_document__isnull=True).exists()
