"""The confidential claims' words are kept only for the incidents that have some (migration 0041:
`IncidentSearchDocument.complete` is NULL elsewhere). Each reader still finds what their words say,
in every door and by every plan: a reader with the confidential permission every word of an
incident, whether it has confidential claim words or not; anyone else only the words anyone may
read, never a confidential claim's. And the kept words are NULL exactly when an incident has no
confidential claim word, after every kind of write."""

import csv
import importlib
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from incidents import roles, search
from incidents.exports import kept_rows
from incidents.models import Claim, Incident, IncidentSearchDocument
from incidents.public import selectors as public_selectors
from incidents.selectors import incidents_matching
from tests.api_support import API, client_for
from tests.database_support import migrate_incidents_back_to
from tests.factories import make_claim, make_incident, make_organization, make_source, make_user
from tests.test_import import HEADER, run_import
from tests.test_search import admin_found, api_found, words_read_to_collect_ids_only

READERS = ("anonymous", "analyst", "insider")


@pytest.fixture
def readers() -> dict:
    return {
        "anonymous": None,
        # Sees drafts, not confidential records.
        "analyst": make_user(roles.ANALYST),
        # Sees drafts, confidential incidents and confidential claims and sources.
        "insider": make_user(roles.REVIEWER, confidential=True),
    }


def make_bird_incidents() -> dict[str, Incident]:
    """Incidents whose words are named after birds, with and without confidential claim words, and
    a few generated demo incidents around them (whose words are no bird's)."""
    call_command("generate_demo_data", incidents=40, seed=3, stdout=io.StringIO())
    quiet_press = make_organization(name="Quiet Press", acronym="QPX", aliases=["Stillwater"])
    incidents = {
        "plain": make_incident(title="Kestrel arrested"),
        "public_claim": make_incident(title="Osprey detained"),
        "secret_claim": make_incident(title="Heron deported"),
        "secret_source": make_incident(title="Plover sent back"),
        # A confidential claim without a word: an empty excerpt, a source titled with a dash.
        "wordless_secret": make_incident(title="Curlew returned"),
        "hidden_incident": make_incident(title="Kestrel hidden", confidential=True),
        "draft": make_incident(title="Kestrel draft", review_state="draft"),
        # Its words split between what anyone may read and a confidential claim.
        "split": make_incident(title="Sparrow flight"),
    }
    make_claim(
        incident=incidents["public_claim"], source=make_source(title="Open letter"), excerpt="a kestrel was seen"
    )
    make_claim(incident=incidents["secret_claim"], source=make_source(title="Radio report"), excerpt="kestrel nest")
    make_claim(incident=incidents["secret_claim"], source=make_source(title="Field notes"),
               excerpt="nightjar whispered", confidential=True)  # fmt: skip
    dossier = make_source(title="Dossier nightjar", publisher=quiet_press, confidential=True)
    make_claim(incident=incidents["secret_source"], source=dossier)
    make_claim(incident=incidents["wordless_secret"], source=make_source(title="—"), excerpt="", confidential=True)
    make_claim(incident=incidents["draft"], source=make_source(title="Memo"), excerpt="nightjar", confidential=True)
    make_claim(incident=incidents["split"], source=make_source(title="Memo"), excerpt="wren song", confidential=True)
    return incidents


@pytest.fixture
def birds() -> dict[str, Incident]:
    return make_bird_incidents()


# Which of the bird incidents each search finds for each reader, read from the words above: the
# anonymous reader sees the published incidents that are not confidential, the analyst drafts too,
# the insider also the confidential incident and every claim's words.
ANYONE = {"plain", "public_claim", "secret_claim", "secret_source", "wordless_secret", "split"}
FOUND = {
    "kestrel": {
        "anonymous": {"plain", "public_claim", "secret_claim"},
        "analyst": {"plain", "public_claim", "secret_claim", "draft"},
        "insider": {"plain", "public_claim", "secret_claim", "draft", "hidden_incident"},
    },
    "nightjar": {"anonymous": set(), "analyst": set(), "insider": {"secret_claim", "secret_source", "draft"}},
    # A confidential source's publisher, by acronym and alias.
    "QPX": {"anonymous": set(), "analyst": set(), "insider": {"secret_source"}},
    "stillwater": {"anonymous": set(), "analyst": set(), "insider": {"secret_source"}},
    # Two words, one where anyone may read it, the other in a confidential claim.
    "sparrow wren": {"anonymous": set(), "analyst": set(), "insider": {"split"}},
    "deported nightjar": {"anonymous": set(), "analyst": set(), "insider": {"secret_claim"}},
    "sparrow": {reader: {"split"} for reader in READERS},
    "curlew": {reader: {"wordless_secret"} for reader in READERS},
    '"kestrel nest"': {reader: {"secret_claim"} for reader in READERS},
    '"nightjar whispered"': {"anonymous": set(), "analyst": set(), "insider": {"secret_claim"}},
    '"kestrel draft"': {"anonymous": set(), "analyst": {"draft"}, "insider": {"draft"}},
    "kestrel -nightjar": {
        "anonymous": {"plain", "public_claim", "secret_claim"},
        "analyst": {"plain", "public_claim", "secret_claim", "draft"},
        "insider": {"plain", "public_claim", "hidden_incident"},
    },
    # Only leaving words out: the words of incidents with no confidential claim word count too.
    "-nightjar": {
        "anonymous": ANYONE,
        "analyst": ANYONE | {"draft"},
        "insider": {"plain", "public_claim", "wordless_secret", "hidden_incident", "split"},
    },
    # A word only in an incident without confidential claim words: no incident's `complete` has it.
    "-curlew": {
        "anonymous": ANYONE - {"wordless_secret"},
        "analyst": ANYONE - {"wordless_secret"} | {"draft"},
        "insider": ANYONE - {"wordless_secret"} | {"draft", "hidden_incident"},
    },
    "-kestrel": {reader: {"secret_source", "wordless_secret", "split"} for reader in READERS},
    "-kestrel -wren": {
        "anonymous": {"secret_source", "wordless_secret", "split"},
        "analyst": {"secret_source", "wordless_secret", "split"},
        "insider": {"secret_source", "wordless_secret"},
    },
    "-zzzz": {"anonymous": ANYONE, "analyst": ANYONE | {"draft"}, "insider": ANYONE | {"draft", "hidden_incident"}},
    # A phrase left out: those with it collected, for each reader by their words (search.filter).
    '-"nightjar whispered"': {
        "anonymous": ANYONE,
        "analyst": ANYONE | {"draft"},
        "insider": ANYONE - {"secret_claim"} | {"draft", "hidden_incident"},
    },
}


def csv_found(user, q: str) -> set[str]:
    export = client_for(user).get(f"{API}/incidents.csv", {"q": q})
    assert export.status_code == 200
    return {row["public_id"] for row in csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))}


def stats_total(user, q: str) -> int:
    answer = client_for(user).get(f"{API}/incidents/stats/", {"group_by": "type", "q": q})
    assert answer.status_code == 200, answer.content
    return answer.json()["total"]["incidents"]


def analyze_search_words():
    """Fresh planner statistics on the words, from which a search chooses its plan."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE incidents_incidentsearchdocument")


@pytest.fixture(params=["collected", "counted", "tested_in_order"])
def search_plan(request, monkeypatch):
    """Every plan a search may take (see IncidentSearch.filter), and the statistics' kept totals
    less the few incidents a search leaves out, or counted from the incidents (SUBTRACT_BELOW)."""
    bound = {"collected": 10**9, "counted": 1, "tested_in_order": 0}[request.param]
    monkeypatch.setattr(search, "COLLECT_BELOW", bound)
    return request.param


class TestEveryReaderFindsWhatTheirWordsSay:
    def test_in_the_api_the_admin_the_csv_export_and_the_statistics(self, client, readers, birds, search_plan):
        analyze_search_words()
        by_public_id = {incident.public_id: name for name, incident in birds.items()}
        for q, found_by in FOUND.items():
            for reader, user in readers.items():
                expected = found_by[reader]
                # The demo incidents share none of these words; leaving words out keeps them all.
                in_api = api_found(user, q)
                birds_found = {by_public_id[public_id] for public_id in in_api if public_id in by_public_id}
                assert birds_found == expected, (q, reader)
                demo_found = in_api - set(by_public_id)
                assert bool(demo_found) == q.startswith("-"), (q, reader)
                assert csv_found(user, q) == in_api, (q, reader)
                assert stats_total(user, q) == len(in_api), (q, reader)
                if user is not None:
                    assert admin_found(client, user, q) == in_api, (q, reader)

    def test_an_incidents_id_finds_it_for_every_reader(self, readers, birds):
        split = birds["split"].public_id
        for user in readers.values():
            assert api_found(user, split) == {split}
            assert api_found(user, f"{split} wren") == ({split} if user == readers["insider"] else set())

    def test_the_export_reads_the_kept_rows_of_a_confidential_readers_search(self, readers, birds, monkeypatch):
        # The search, whichever words it reads, is said of the kept rows' ids (exports.kept_rows),
        # not by selecting the incidents first.
        monkeypatch.setattr(search, "COLLECT_BELOW", 0)
        for user in readers.values():
            for q in ("kestrel -nightjar", "sparrow wren"):
                for part in kept_rows(incidents_matching(user=user, filters=QueryDict(f"q={q}"))):
                    assert 'FROM "incidents_incident"' not in str(part.query), q


def has_confidential_word(incident: Incident) -> bool:
    """Whether a claim of `incident` that only readers with the confidential permission may see has a
    word (a letter or digit) in its excerpt, its source's title or its publisher's names."""
    hidden = Claim.objects.filter(incident=incident).select_related("source__publisher")
    for claim in hidden:
        if not (claim.confidential or claim.source.confidential):
            continue
        publisher = claim.source.publisher
        texts = [claim.excerpt, claim.source.title]
        if publisher is not None:
            texts += [publisher.name, publisher.acronym, *publisher.aliases]
        if any(character.isalnum() for text in texts for character in text or ""):
            return True
    return False


def assert_complete_words_kept_exactly_where_confidential():
    """Every incident's `complete` words are kept (not NULL) exactly when it has a confidential
    claim word, and then hold more than its `disclosed` words."""
    documents = {document.incident_id: document for document in IncidentSearchDocument.objects.all()}
    incidents = list(Incident.objects.all())
    assert len(documents) == len(incidents)
    for incident in incidents:
        document = documents[incident.pk]
        assert (document.complete is not None) == has_confidential_word(incident), incident.title
        if document.complete is not None:
            assert document.complete != document.disclosed, incident.title


def kept(birds: dict[str, Incident]) -> set[str]:
    """The bird incidents whose `complete` words are kept."""
    ids = IncidentSearchDocument.objects.filter(complete__isnull=False).values_list("incident_id", flat=True)
    return {name for name, incident in birds.items() if incident.pk in set(ids)}


def test_leaving_out_a_word_of_hidden_records_answers_as_leaving_out_an_absent_one(client, readers, monkeypatch):
    # Whether the words a search leaves out are in any incident decided between the kept totals
    # ("N incidents match") and a sample ("At least N", facets with "+"): asked of every incident,
    # it told anyone whether a name is in a draft, a confidential incident or a confidential
    # claim's excerpt, though the incidents listed were the same.
    monkeypatch.setattr(public_selectors, "FACET_SAMPLE", 2)
    public = [make_incident(title="Arrests in Hyesan") for _ in range(4)]
    make_claim(incident=public[0], source=make_source(), confidential=True, excerpt="Told by Pyonsu")
    make_incident(title="Arrest of Chongmu", review_state="draft")
    make_incident(title="Arrest of Kwangmyong", confidential=True)

    def answers(path: str, q: str) -> tuple:
        page = client.get(path, {"q": q}).context
        return (page["page"].complete, page["page"].total) if "page" in page else page["complete"]

    hidden = ["-pyonsu", "-chongmu", "-kwangmyong", '-"by pyonsu"', '-"of chongmu"']
    for path in ["/", "/map/"]:
        absent = answers(path, "-zzzqx")
        for word in hidden:
            assert answers(path, word) == absent, (path, word)
    assert answers("/", "-zzzqx") == (True, 4)
    # A word anyone may read leaves out the incidents it is in: here all of them.
    assert answers("/", "-hyesan") == (True, 0)
    stats = f"{API}/incidents/stats/"
    for reader in READERS:
        everything = client_for(readers[reader]).get(stats, {"group_by": "type"}).json()
        for word in hidden:
            leaving_out = client_for(readers[reader]).get(stats, {"group_by": "type", "q": word}).json()
            hidden_from_them = {
                "anonymous": set(hidden),
                "analyst": {"-pyonsu", "-kwangmyong", '-"by pyonsu"'},
                "insider": set(),
            }[reader]
            assert (leaving_out == everything) == (word in hidden_from_them), (reader, word)


def test_a_search_is_planned_by_the_incidents_the_reader_may_see(settings, monkeypatch):
    # Words PostgreSQL can only guess the matches of (a phrase, several words) are counted to choose
    # between collecting the matches and testing incidents in the list's order: counted among
    # every incident, drafts and confidential incidents chose the plan of a reader who may not see
    # them, and its time told of their words.
    settings.ANON_STATEMENT_TIMEOUT = 0
    monkeypatch.setattr(search, "COLLECT_BELOW", 3)
    seen = make_incident(title="Kestrel flight")
    for number in range(4):
        make_incident(title=f"Kestrel flight draft {number}", review_state="draft")
        make_incident(title=f"Kestrel flight hidden {number}", confidential=True)
    analyze_search_words()

    for q in ['"kestrel flight"', "kestrel flight"]:
        with CaptureQueriesContext(connection) as queries:
            assert api_found(None, q) == {seen.public_id}
        assert words_read_to_collect_ids_only(queries), q


class TestCompleteWordsKeptOnlyWhereConfidential:
    def test_the_bird_incidents_and_the_demo_data(self, birds):
        assert kept(birds) == {"secret_claim", "secret_source", "draft", "split"}
        assert_complete_words_kept_exactly_where_confidential()
        # The demo data has incidents with confidential claim words, and more without.
        demo = IncidentSearchDocument.objects.exclude(incident__in=[incident.pk for incident in birds.values()])
        assert 0 < demo.filter(complete__isnull=False).count() < demo.filter(complete__isnull=True).count()

    def test_edits_that_add_remove_and_reveal_confidential_claims_and_sources(self, readers, birds):
        insider, anonymous = readers["insider"], readers["anonymous"]
        added = make_claim(
            incident=birds["plain"], source=make_source(title="Ledger"), excerpt="magpie", confidential=True
        )
        assert "plain" in kept(birds)
        assert api_found(insider, "kestrel magpie") == {birds["plain"].public_id}
        added.delete()
        assert "plain" not in kept(birds)
        assert api_found(insider, "kestrel magpie") == set()

        Claim.objects.filter(incident=birds["split"]).update(confidential=False)
        assert "split" not in kept(birds)
        assert api_found(anonymous, "sparrow wren") == api_found(insider, "sparrow wren") == {birds["split"].public_id}

        dossier = Claim.objects.get(incident=birds["secret_source"]).source
        dossier.confidential = False
        dossier.save()
        assert "secret_source" not in kept(birds)
        assert api_found(anonymous, "plover nightjar") == {birds["secret_source"].public_id}

        open_letter = Claim.objects.get(incident=birds["public_claim"]).source
        open_letter.confidential = True
        open_letter.save()
        assert "public_claim" in kept(birds)
        assert api_found(anonymous, "osprey kestrel") == set()
        assert api_found(insider, "osprey kestrel") == {birds["public_claim"].public_id}

        # The wordless confidential claim's source gets a title: a word to keep.
        wordless = Claim.objects.get(incident=birds["wordless_secret"]).source
        wordless.title = "Logbook"
        wordless.save()
        assert "wordless_secret" in kept(birds)
        assert api_found(insider, "curlew logbook") == {birds["wordless_secret"].public_id}
        assert api_found(anonymous, "curlew logbook") == set()

        Claim.objects.filter(incident=birds["secret_claim"], confidential=True).delete()
        assert kept(birds) == {"draft", "public_claim", "wordless_secret"}
        assert_complete_words_kept_exactly_where_confidential()

    def test_a_bulk_import(self, readers, tmp_path):
        make_source(title="Informant", confidential=True)
        make_source(title="Open letter")
        output = run_import(
            readers["insider"],
            tmp_path,
            f"{HEADER},sources\n"
            "Lapwing at the river,forced-repatriation,2023-01-01,2023-01-01,Informant\n"
            "Lapwing at the bridge,forced-repatriation,2023-01-02,2023-01-02,Open letter\n"
            "Lapwing at the gate,forced-repatriation,2023-01-03,2023-01-03,\n",
        )
        assert "3 incidents were created" in output
        assert_complete_words_kept_exactly_where_confidential()
        kept_titles = IncidentSearchDocument.objects.filter(complete__isnull=False).values_list(
            "incident__title", flat=True
        )
        assert list(kept_titles) == ["Lapwing at the river"]
        river = Incident.objects.get(title="Lapwing at the river").public_id
        assert api_found(readers["insider"], "lapwing informant") == {river}
        assert api_found(readers["analyst"], "lapwing informant") == set()
        assert len(api_found(readers["insider"], "lapwing")) == 3


def test_the_sample_data_keeps_complete_words_only_where_confidential():
    call_command("loaddata", "sample", verbosity=0)

    assert_complete_words_kept_exactly_where_confidential()
    assert IncidentSearchDocument.objects.filter(complete__isnull=False).exists()


# The migration that empties the copies, and the one before it.
KEPT_ONLY_WHERE_CONFIDENTIAL = "0041_search_complete_words_only_where_confidential"
BEFORE_IT = importlib.import_module(f"incidents.migrations.{KEPT_ONLY_WHERE_CONFIDENTIAL}").Migration.dependencies[0][1]


@pytest.mark.django_db(transaction=True)
def test_the_migration_empties_the_complete_words_of_incidents_without_confidential_ones():
    # Migration 0041 converts the words stored before it: every incident had its `complete`
    # words then, a copy of `disclosed` for most. The records are made first, with today's models
    # (the schema before 0041 lacks columns added since, such as the records' versions), and the
    # migrations back to before it store their words as it found them.
    birds = make_bird_incidents()
    migrate_incidents_back_to(BEFORE_IT)
    try:
        assert not IncidentSearchDocument.objects.filter(complete__isnull=True).exists()
    finally:
        call_command("migrate", "incidents", verbosity=0)

    assert kept(birds) == {"secret_claim", "secret_source", "draft", "split"}
    assert_complete_words_kept_exactly_where_confidential()
