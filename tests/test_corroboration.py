"""Corroboration counted from independent origins: sources relaying one origin count once, in the
API's detail and list, its `min_origins` filter and the admin; hidden sources are counted, never named."""

import importlib
import random
import re

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from incidents import roles
from incidents.models import Incident, IncidentExportRow, Source
from tests.api_support import API, client_for, incident_url, public_ids, results
from tests.factories import make_claim, make_incident, make_source, make_user


@pytest.fixture
def relayed():
    """An incident reported by UCA News, RFA and HRW, all three relaying one defector's testimony."""
    testimony = make_source(title="Defector's testimony", kind="testimony")
    incident = make_incident(title="Relayed three times", verification="alleged")
    for outlet in ("UCA News", "RFA", "HRW"):
        make_claim(incident=incident, source=make_source(title=outlet, cites=testimony))
    return incident


@pytest.fixture
def messy_chains():
    """Incidents, drafts among them, whose claims' sources relay each other in chains with
    confidential sources at their start or middle, with confidential claims, repeated and missing
    sources; and a reader of each audience (the public, staff, Confidential access)."""
    generator = random.Random(20)
    sources = []
    for number in range(14):
        cites = generator.choice([None, None, *sources]) if sources else None
        sources.append(
            make_source(title="Outlet" if number % 3 else "Same title", cites=cites, confidential=number % 4 == 1)
        )
    for number in range(24):
        incident = make_incident(title=f"Messy {number}", review_state=generator.choice(["published", "draft"]))
        for _ in range(generator.randint(0, 4)):
            make_claim(incident=incident, source=generator.choice(sources), confidential=generator.random() < 0.2)
    return [None, make_user(roles.ANALYST), make_user(roles.VIEWER, confidential=True)]


def page_client(reader) -> Client:
    """The public pages' client for `reader` (None: the public), signed in by session."""
    client = Client()
    if reader is not None:
        client.force_login(reader)
    return client


def corroboration(reader, incident) -> dict:
    response = client_for(reader).get(incident_url(incident))
    assert response.status_code == 200, response.content
    return response.json()["corroboration"]


def test_sources_relaying_one_origin_count_once(relayed):
    assert corroboration(None, relayed) == {
        "independent_origins": 1,
        "sources": 3,
        "suggested_verification": "alleged",
    }


def test_a_second_origin_suggests_corroborated_but_leaves_the_verification_alone(relayed):
    make_claim(incident=relayed, source=make_source(title="Satellite imagery analysis", kind="academic"))
    body = client_for().get(incident_url(relayed)).json()
    assert body["corroboration"]["independent_origins"] == 2
    assert body["corroboration"]["suggested_verification"] == "corroborated"
    assert body["verification"] == "alleged"
    assert Incident.objects.get(pk=relayed.pk).verification == "alleged"


def test_an_incident_without_claims_has_no_origin():
    bare = make_incident()
    assert corroboration(None, bare) == {
        "independent_origins": 0,
        "sources": 0,
        "suggested_verification": "alleged",
    }


def test_a_reader_follows_a_chain_only_through_sources_they_may_see():
    # Daily NK relays a confidential informant. To readers who may not see the informant, Daily NK
    # is the origin, as the API shows it citing nothing: the count is what it would be if the
    # informant did not exist, so it cannot tell them that it does.
    informant = make_source(title="Informant in Hyesan", confidential=True)
    incident = make_incident()
    make_claim(incident=incident, source=make_source(title="Daily NK", cites=informant))
    make_claim(incident=incident, source=make_source(title="Open NK", cites=informant))
    response = client_for().get(incident_url(incident))
    assert response.json()["corroboration"] == {
        "independent_origins": 2,
        "sources": 2,
        "suggested_verification": "corroborated",
    }
    assert "Hyesan" not in response.content.decode()
    citing_nothing = make_incident()
    make_claim(incident=citing_nothing, source=make_source())
    make_claim(incident=citing_nothing, source=make_source())
    assert corroboration(None, citing_nothing) == response.json()["corroboration"]
    # Those who may see the informant see one origin relayed twice.
    assert corroboration(make_user(roles.VIEWER, confidential=True), incident)["independent_origins"] == 1


def test_a_chain_through_a_hidden_source_ends_before_it():
    # The article relays a confidential intermediary who relays the public report the second claim
    # cites directly: one origin for those who may see the intermediary; for others the article
    # cites nothing, so it is an origin of its own.
    report = make_source(title="UN report")
    intermediary = make_source(title="Intermediary", confidential=True, cites=report)
    incident = make_incident()
    make_claim(incident=incident, source=make_source(title="Article", cites=intermediary))
    make_claim(incident=incident, source=report)
    insider = make_user(roles.VIEWER, confidential=True)
    assert corroboration(insider, incident)["independent_origins"] == 1
    assert corroboration(None, incident)["independent_origins"] == 2


def test_sources_relaying_each_other_in_a_loop_are_one_origin():
    # A loop is refused only where its writer sees it whole (test_model_rules_at_doors.py): one
    # through a confidential source stands, and so may one that two writers closed at once. Every
    # source on it, and every source relaying one of them, has one origin however the chain is
    # entered; the kept counts (min_origins) agree with the counts made at read time.
    report = make_source(title="UN report")
    intermediary = make_source(title="Intermediary", cites=report, confidential=True)
    article = make_source(title="Article", cites=intermediary)
    Source.objects.filter(pk=report.pk).update(cites=article)
    relay = make_source(title="Relay of the article", cites=article)
    incident = make_incident()
    for source in (report, article, relay, intermediary):
        make_claim(incident=incident, source=source)
    insider = make_user(roles.VIEWER, confidential=True)

    assert corroboration(insider, incident)["independent_origins"] == 1
    # Readers who may not see the intermediary follow no chain through it: the report relays the
    # article, which to them cites nothing.
    assert corroboration(None, incident)["independent_origins"] == 1
    for reader in (None, insider):
        assert public_ids(client_for(reader).get(f"{API}/incidents/?min_origins=1")) == {incident.public_id}
        assert public_ids(client_for(reader).get(f"{API}/incidents/?min_origins=2")) == set()


def test_a_loop_of_public_sources_is_one_origin_for_everyone():
    first, second, third = make_source(), make_source(), make_source()
    Source.objects.filter(pk=first.pk).update(cites=second)
    Source.objects.filter(pk=second.pk).update(cites=third)
    Source.objects.filter(pk=third.pk).update(cites=first)
    for entered_by in (first, second, third):
        incident = make_incident()
        make_claim(incident=incident, source=entered_by)
        make_claim(incident=incident, source=make_source(cites=entered_by))
    for number, source in enumerate((first, second, third)):
        # Claims entering the loop at two different sources: still one origin.
        incident = make_incident()
        make_claim(incident=incident, source=source)
        make_claim(incident=incident, source=(second, third, first)[number])
    for incident in Incident.objects.all():
        assert corroboration(None, incident)["independent_origins"] == 1
    assert public_ids(client_for().get(f"{API}/incidents/?min_origins=2")) == set()


def test_the_migration_counts_again_the_incidents_of_loops_made_before_it():
    first, second = make_source(), make_source()
    Source.objects.filter(pk=first.pk).update(cites=second)
    Source.objects.filter(pk=second.pk).update(cites=first)
    on_the_loop, elsewhere = make_incident(), make_incident()
    make_claim(incident=on_the_loop, source=make_source(cites=first))
    make_claim(incident=on_the_loop, source=second)
    make_claim(incident=elsewhere, source=make_source())
    # The counts as the function before the migration could leave them, and a bystander's too.
    IncidentExportRow.objects.update(disclosed_origins=2, complete_origins=2)
    migration = importlib.import_module("incidents.migrations.0051_source_origin_of_a_loop")

    with connection.cursor() as cursor:
        cursor.execute(migration.REFRESH_LOOPS)

    assert public_ids(client_for().get(f"{API}/incidents/?min_origins=2")) == {elsewhere.public_id}


def relays_of(origin: Source, count: int) -> list[Source]:
    """A chain of `count` sources, each relaying the one before, the first relaying `origin`."""
    chain = [origin]
    for number in range(count):
        chain.append(make_source(title=f"Relay {number + 1}", cites=chain[-1]))
    return chain[1:]


def test_a_chain_of_any_length_comes_down_to_one_origin(client):
    # The walk stopped after 64 steps: the 65th relay's origin was the first relay, and an incident
    # citing the report and that relay counted 2 independent origins, where the public page's
    # citation chain of the relay ends at the report.
    report = make_source(title="UN report")
    relays = relays_of(report, 70)
    incident = make_incident()
    for source in (report, relays[64], relays[-1]):
        make_claim(incident=incident, source=source)

    for reader in (None, make_user(roles.VIEWER, confidential=True)):
        assert corroboration(reader, incident)["independent_origins"] == 1
        assert public_ids(client_for(reader).get(f"{API}/incidents/?min_origins=1")) == {incident.public_id}
        assert public_ids(client_for(reader).get(f"{API}/incidents/?min_origins=2")) == set()
    page = client.get(reverse("public:incident", args=[incident.public_id])).content.decode()
    assert "1 independent origin, 3 sources" in page


def test_the_migration_counts_again_the_incidents_citing_chains_longer_than_64_steps():
    report = make_source(title="UN report")
    relays = relays_of(report, 65)
    long_chain, short_chain = make_incident(), make_incident()
    for source in (report, relays[-1]):
        make_claim(incident=long_chain, source=source)
    for source in (report, relays[63]):
        make_claim(incident=short_chain, source=source)
    # The counts as the walk of 64 steps left them, a bystander's too.
    IncidentExportRow.objects.update(disclosed_origins=2, complete_origins=2)
    migration = importlib.import_module("incidents.migrations.0069_source_origin_whole_chain")

    with connection.cursor() as cursor:
        cursor.execute(migration.REFRESH_LONG_CHAINS)

    assert public_ids(client_for().get(f"{API}/incidents/?min_origins=2")) == {short_chain.public_id}


def test_confidential_claims_count_only_for_readers_who_may_see_them(relayed):
    make_claim(incident=relayed, source=make_source(title="Own interview"), confidential=True)
    assert corroboration(None, relayed)["independent_origins"] == 1
    assert corroboration(make_user(roles.VIEWER, confidential=True), relayed)["independent_origins"] == 2


def test_the_list_shows_what_the_detail_shows(relayed):
    make_claim(incident=relayed, source=make_source(title="Informant", confidential=True))
    make_claim(incident=relayed, source=make_source(cites=make_source(confidential=True)))
    for reader in (None, make_user(roles.VIEWER), make_user(roles.VIEWER, confidential=True)):
        listed = {row["public_id"]: row for row in results(client_for(reader).get(f"{API}/incidents/"))}
        assert listed[relayed.public_id]["corroboration"] == corroboration(reader, relayed)


class TestMinOriginsFilter:
    def test_it_keeps_incidents_with_at_least_that_many_origins(self, relayed):
        corroborated = make_incident(title="Two origins")
        make_claim(incident=corroborated, source=make_source())
        make_claim(incident=corroborated, source=make_source())
        assert public_ids(client_for().get(f"{API}/incidents/?min_origins=2")) == {corroborated.public_id}
        assert public_ids(client_for().get(f"{API}/incidents/?min_origins=1")) == {
            corroborated.public_id,
            relayed.public_id,
        }

    def test_it_counts_only_what_the_reader_may_see(self, relayed):
        make_claim(incident=relayed, source=make_source(), confidential=True)
        assert public_ids(client_for().get(f"{API}/incidents/?min_origins=2")) == set()
        insider = make_user(roles.VIEWER, confidential=True)
        assert public_ids(client_for(insider).get(f"{API}/incidents/?min_origins=2")) == {relayed.public_id}

    @pytest.mark.parametrize("value", ["-1", "two", "1.5"])
    def test_a_bad_value_is_a_400_naming_the_parameter(self, relayed, value):
        response = client_for().get(f"{API}/incidents/?min_origins={value}")
        assert response.status_code == 400
        assert "min_origins" in response.json()

    def test_on_messy_chains_it_keeps_what_each_reader_counts_from_the_claims(self, messy_chains):
        # The filter reads the counts the kept export rows keep per audience (migration 0043); they
        # must select what counting each reader's claims gives.
        for reader in messy_chains:
            counted = Incident.objects.visible_to(reader).with_independent_origins(reader)
            for at_least in range(4):
                expected = set(counted.filter(independent_origins__gte=at_least).values_list("public_id", flat=True))
                listed = public_ids(client_for(reader).get(f"{API}/incidents/?min_origins={at_least}&page_size=200"))
                assert listed == expected, (reader, at_least)
            assert any(counted.filter(independent_origins__gte=2)), "the data holds corroborated incidents"

    def test_the_list_query_count_stays_one_with_the_filter(self, relayed, django_assert_num_queries):
        for _ in range(5):
            make_claim(incident=make_incident(), source=make_source())
        # The page's one query: the filter is an EXISTS on the kept export row within it.
        with django_assert_num_queries(1):
            assert client_for().get(f"{API}/incidents/?min_origins=1&page_size=3").status_code == 200


def test_the_admin_change_page_shows_the_origins_and_suggestion_beside_the_verification(client, relayed):
    make_claim(incident=relayed, source=make_source(title="Satellite imagery analysis"))
    make_claim(incident=relayed, source=make_source(cites=make_source(title="Hidden informant", confidential=True)))
    client.force_login(make_user(roles.ANALYST))
    page = client.get(reverse("admin:incidents_incident_change", args=[relayed.pk])).content.decode()
    assert "3 independent origins, 5 sources: suggests Corroborated; a Reviewer decides." in page
    assert "Hidden informant" not in page


def test_statistics_and_the_csv_export_take_the_filter_too(relayed):
    corroborated = make_incident(title="Two origins", people_count=7)
    make_claim(incident=corroborated, source=make_source())
    make_claim(incident=corroborated, source=make_source())
    stats = client_for().get(f"{API}/incidents/stats/?group_by=year&min_origins=2").json()
    assert (stats["total"]["incidents"], stats["total"]["people_count"]) == (1, 7)
    exported = client_for().get(f"{API}/incidents.csv?min_origins=2")
    assert exported.status_code == 200
    body = b"".join(exported.streaming_content).decode()
    assert corroborated.public_id in body and relayed.public_id not in body


def test_the_public_pages_say_for_each_reader_the_corroboration_the_api_gives_them(messy_chains):
    # The pages read the counts kept per audience (`with_kept_corroboration`); the API counts each
    # reader's claims. One list page holds every incident a reader may see here, each row saying it.
    row = re.compile(
        r'<span class="meta">(INC-\d+) · .*?<span class="meta">([^<]*independent origins?[^<]*)</span>', re.S
    )
    for reader in messy_chains:
        expected = {
            incident["public_id"]: incident["corroboration"]
            for incident in results(client_for(reader).get(f"{API}/incidents/?page_size=200"))
        }
        shown = dict(row.findall(page_client(reader).get("/").content.decode()))
        assert shown.keys() == expected.keys(), reader
        for public_id, figures in expected.items():
            origins, sources = figures["independent_origins"], figures["sources"]
            origins_said = f"{origins} independent origin{'' if origins == 1 else 's'}"
            assert shown[public_id] == f"{origins_said}, {sources} source{'' if sources == 1 else 's'}", public_id
        assert any(figures["independent_origins"] >= 2 for figures in expected.values()), "corroborated ones too"
