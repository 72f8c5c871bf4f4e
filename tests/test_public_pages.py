"""The public pages (`/`, `/incidents/INC-…/`, `/statistics/`, the downloads) as readers see them.

The visibility matrix writes its expectations out rather than deriving them from `visible_to`:
- the public incident, its public claim and public sources: everyone;
- the draft: staff (a viewer, and a viewer with confidential access);
- the confidential incident, the confidential claim and claims of confidential sources, and what
  a confidential source cites: only a reader with confidential access;
- the sensitive village's exact coordinates: staff only; everyone else sees its parent's.
"""

import csv
import html
import io
import json
import re
import shutil
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from random import Random

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from incidents import roles
from incidents.models import Incident, IncidentType, Involvement, Response, Source, VictimGroup
from incidents.public import selectors
from tests.api_support import client_for as api_client_for
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
    type_chain,
)
from tracker.settings import catalog_languages

READERS = ["anonymous", "staff", "confidential"]
SEES_DRAFT = {"staff", "confidential"}
SEES_CONFIDENTIAL = {"confidential"}
SEES_EXACT_PLACE = {"staff", "confidential"}

# Markers that appear in a page or a file only if something hidden leaked into it.
DRAFT = "Draftmarker incident"
CONFIDENTIAL = "Confidentialmarker incident"
HIDDEN_CLAIM_SOURCE = "Hiddenclaim source"
CONFIDENTIAL_SOURCE = "Confidentialmarker source"
CITED_THROUGH_CONFIDENTIAL = "Beyondmarker source"
EXACT_LATITUDE = "42.123"
PUBLIC_LATITUDE = "41.500"


def client_for(reader: str) -> Client:
    client = Client()
    if reader == "staff":
        client.force_login(make_user(roles.VIEWER))
    elif reader == "confidential":
        client.force_login(make_user(roles.VIEWER, confidential=True))
    return client


@pytest.fixture
def record():
    """A published incident at a sensitive village, with a public claim whose source cites a
    confidential source (which cites a public one), a confidential claim and a claim from a
    confidential source; a draft and a confidential incident in North Korea, by another perpetrator."""
    city = make_place(name="Border city", latitude=Decimal("41.5"), longitude=Decimal("128.5"))
    village = make_place(
        name="Village", parent=city, sensitive=True, latitude=Decimal("42.123456"), longitude=Decimal("129.654321")
    )
    public = make_incident(title="Publicmarker incident", places=[village], people_count=500, count_qualifier="about")
    beyond = make_source(title=CITED_THROUGH_CONFIDENTIAL)
    testimony = make_source(title=CONFIDENTIAL_SOURCE, confidential=True, cites=beyond)
    report = make_source(title="Public report", cites=testimony)
    relay = make_source(title="Public relay", cites=report)
    make_claim(incident=public, source=relay, people_count=500, excerpt="about 500 were sent back")
    make_claim(incident=public, source=report, people_count=300)
    make_claim(incident=public, source=make_source(title=HIDDEN_CLAIM_SOURCE), confidential=True, people_count=9000)
    make_claim(incident=public, source=testimony, people_count=8000)
    response = Response.objects.create(
        organization=make_organization(name="Ministry"), kind="statement", date=date(2023, 10, 16), source=testimony
    )
    response.incidents.set([public])

    pyongyang = make_place(name="Pyongyang", country="KP", latitude=Decimal("39.0"), longitude=Decimal("125.7"))
    secret_police = make_organization(name="Secretpolice")
    for title, overrides in (
        (DRAFT, {"review_state": "draft"}),
        (CONFIDENTIAL, {"confidential": True}),
    ):
        hidden = make_incident(
            title=title,
            places=[pyongyang],
            incident_type=incident_type("arbitrary-detention"),
            date_start=date(2019, 5, 1),
            date_end=date(2019, 5, 1),
            **overrides,
        )
        Involvement.objects.create(incident=hidden, organization=secret_police, role="perpetrator")
    return public


def every_public_page(client: Client, public_id: str) -> str:
    """Every page and download a reader can reach, as one text."""
    addresses = [
        "/",
        "/?country=KP",
        "/?q=marker",
        "/?type=arbitrary-detention",
        # Facets counted from a sample of the matches (a filter the kept totals cannot answer).
        "/?min_people=0",
        "/ko/",
        "/map/",
        "/embed/map/",
        "/embed/statistics/?group_by=country",
        f"/incidents/{public_id}/",
        f"/ko/incidents/{public_id}/",
        f"/incidents/{public_id}.csv",
        "/incidents.csv",
        "/incidents.geojson",
        "/map/incidents.geojson",
        *(f"/statistics/?group_by={grouping}" for grouping in ["year", "country", "type", "perpetrator"]),
    ]
    return "\n".join(_body(client.get(address)) for address in addresses)


def _body(response) -> str:
    assert response.status_code == 200, response
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


@pytest.mark.parametrize("reader", READERS)
def test_no_page_facet_or_download_reveals_what_the_reader_may_not_see(reader, record):
    text = every_public_page(client_for(reader), record.public_id)

    assert "Publicmarker incident" in text
    # The charts' numbers are in the pages too, so each assertion below covers them.
    assert 'id="chart-data"' in text
    assert (DRAFT in text) == (reader in SEES_DRAFT)
    assert (CONFIDENTIAL in text) == (reader in SEES_CONFIDENTIAL)
    for hidden in (HIDDEN_CLAIM_SOURCE, CONFIDENTIAL_SOURCE, CITED_THROUGH_CONFIDENTIAL, "9000", "9,000", "8,000"):
        assert (hidden in text) == (reader in SEES_CONFIDENTIAL), hidden
    # North Korea and the perpetrator appear only through the hidden incidents, facets included.
    assert ("North Korea" in text) == (reader in SEES_DRAFT)
    assert ("Secretpolice" in text) == (reader in SEES_DRAFT)
    # Pyongyang has only hidden incidents: the place facet never lists it.
    assert ("Pyongyang" in text) == (reader in SEES_DRAFT)
    assert (EXACT_LATITUDE in text) == (reader in SEES_EXACT_PLACE)
    assert (PUBLIC_LATITUDE in text) == (reader not in SEES_EXACT_PLACE)


@pytest.mark.parametrize("reader", READERS)
def test_hidden_incidents_answer_404_like_missing_ones(reader, record):
    client = client_for(reader)
    for title, sees in ((DRAFT, SEES_DRAFT), (CONFIDENTIAL, SEES_CONFIDENTIAL)):
        public_id = Incident.objects.get(title=title).public_id
        for address in (f"/incidents/{public_id}/", f"/incidents/{public_id}.csv"):
            assert client.get(address).status_code == (200 if reader in sees else 404), (address, reader)
    assert client.get("/incidents/INC-999999/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("address", "language", "heading", "browse"),
    [
        ("/incidents/INC-999999/", "en", "Page not found", '/">Browse the published incidents'),
        ("/ko/incidents/INC-999999/", "ko", "페이지를 찾을 수 없습니다", '/ko/">공개된 사건 둘러보기'),
        ("/ko/no-such-page/", "ko", "페이지를 찾을 수 없습니다", '/ko/">공개된 사건 둘러보기'),
    ],
)
def test_an_address_not_found_answers_in_the_language_of_its_path_with_a_way_back(address, language, heading, browse):
    # A shared link to an incident no longer published gave Django's bare English "Not Found", in
    # Korean too, with no way back to the site.
    answer = Client().get(address)
    page = answer.content.decode()
    assert answer.status_code == 404
    assert f'<html lang="{language}">' in page and f"<h1>{heading}</h1>" in page
    assert f'<a href="{browse}</a>' in page
    assert "Content-Security-Policy" in answer.headers


@pytest.mark.django_db
def test_a_server_error_says_so_in_both_languages_with_a_way_back(monkeypatch):
    # Django's bare English "Server Error (500)" before, in Korean pages too.
    def fails(**kwargs):
        raise RuntimeError("a fault")

    monkeypatch.setattr(selectors, "browse_incidents", fails)
    answer = Client(raise_request_exception=False).get("/ko/")
    page = answer.content.decode()
    assert answer.status_code == 500
    assert "<h1>Server error</h1>" in page and "<h2>서버 오류</h2>" in page
    assert '<a href="/ko/">공개된 사건 둘러보기</a>' in page and "a fault" not in page


@pytest.mark.parametrize(
    "address", ["/incidents/%00/", "/incidents/INC-%00/", "/ko/incidents/%00/", "/incidents/%00.csv"]
)
def test_an_address_that_is_no_public_id_answers_404(address):
    # A NUL, which PostgreSQL's text cannot hold, reached the lookup: a 500 for anyone.
    assert Client(raise_request_exception=False).get(address).status_code == 404


def test_the_citation_chain_ends_before_a_source_that_is_not_public_as_if_nothing_were_cited(record):
    # "…, citing a source that is not public" told every reader an informant stood behind the report,
    # which the API (`cites`: null) and the count of independent origins keep to themselves.
    page = Client().get(f"/incidents/{record.public_id}/").content.decode()
    assert '<p class="chain">Public relay, citing Public report</p>' in page
    assert "not public" not in page
    Source.objects.filter(title="Public report").update(cites=None)
    assert Client().get(f"/incidents/{record.public_id}/").content.decode() == page
    Source.objects.filter(title="Public report").update(cites=Source.objects.get(title=CONFIDENTIAL_SOURCE))
    confidential_page = client_for("confidential").get(f"/incidents/{record.public_id}/").content.decode()
    assert f"citing {CONFIDENTIAL_SOURCE}, citing {CITED_THROUGH_CONFIDENTIAL}" in confidential_page


def test_a_long_citation_chain_is_followed_a_source_at_a_time_by_its_key():
    # An incident with several claims had PostgreSQL plan each step of their chains as a scan of
    # every source (a hash join): a chain of 3,000 relays outlasted an anonymous reader's statement
    # bound and the page answered 503, and at a million incidents each step of every page's chain
    # read the 100,000 sources.
    relays = Source.objects.bulk_create(
        Source(title="Original report" if number == 0 else f"Relay {number}", kind="news_article")
        for number in range(3000)
    )
    for number, relay in enumerate(relays[1:], start=1):
        relay.cites = relays[number - 1]
    Source.objects.bulk_update(relays, ["cites"], batch_size=1000)
    incident = make_incident()
    for source in (relays[-1], make_source(title="Own investigation"), make_source(title="Another outlet")):
        make_claim(incident=incident, source=source)
    response = Client().get(f"/incidents/{incident.public_id}/")
    assert response.status_code == 200
    assert "Relay 2999, citing Relay 2998, citing Relay 2997" in response.content.decode()
    assert "citing Relay 1, citing Original report</p>" in response.content.decode()


# The record's public claims (a relay of the report, the report) come down, for a reader who may
# not see the confidential testimony the report cites, to the report: one origin. A reader with
# confidential access also sees the confidential claim and the testimony's, and follows the chains
# on to what the testimony cites: two origins of four sources.
@pytest.mark.parametrize(
    ("reader", "shown"),
    [
        ("anonymous", "1 independent origin, 2 sources"),
        ("staff", "1 independent origin, 2 sources"),
        ("confidential", "2 independent origins, 4 sources"),
    ],
)
def test_the_pages_show_the_corroboration_the_reader_may_know_beside_the_verification(record, reader, shown):
    client = client_for(reader)
    detail = client.get(f"/incidents/{record.public_id}/").content.decode()
    listed = client.get("/?q=Publicmarker").content.decode()

    assert f"<dt>Corroboration</dt><dd>{shown}" in detail
    assert f'Alleged<span class="meta">{shown}</span>' in listed
    # The same figures the API gives that reader.
    figures = client.get(f"/api/v1/incidents/{record.public_id}/").json()["corroboration"]
    assert shown.startswith(f"{figures['independent_origins']} independent origin")
    assert shown.endswith(f"{figures['sources']} sources")


def test_the_korean_page_says_the_corroboration_in_korean(record):
    page = Client().get(f"/ko/incidents/{record.public_id}/").content.decode()
    assert "<dt>교차 확인</dt><dd>독립된 원출처 1곳, 출처 2곳" in page


@pytest.mark.django_db
def test_the_korean_pages_name_the_seeded_incident_types_in_korean_and_others_as_entered():
    # "Forced repatriation" stood in English on every Korean page: each incident's type, the first
    # facet and the statistics by type, beside countries, roles and verification in Korean.
    repatriation = make_incident(title="Sent back from Tumen")
    refoulement = IncidentType.objects.create(slug="refoulement-at-sea", name="Refoulement at sea")
    make_incident(title="Pushed back at sea", incident_type=refoulement)
    korean = Client().get("/ko/").content.decode()
    assert "강제 송환" in korean and "Forced repatriation" not in korean
    assert "Refoulement at sea" in korean  # a type analysts added: as they wrote it
    page = Client().get(f"/ko/incidents/{repatriation.public_id}/").content.decode()
    assert f'<p class="meta">{repatriation.public_id} · 강제 송환</p>' in page
    statistics = Client().get("/ko/statistics/", {"group_by": "type"}).content.decode()
    assert "강제 송환" in statistics and "Forced repatriation" not in statistics
    # English pages, and the API whatever the reader's language, keep the names as stored.
    assert "Forced repatriation" in Client().get("/").content.decode()
    labels = Client().get("/api/v1/incidents/stats/", {"group_by": "type"}, HTTP_ACCEPT_LANGUAGE="ko").json()
    assert {row["label"] for row in labels["results"]} == {"Forced repatriation", "Refoulement at sea"}


def test_the_incident_page_shows_each_claim_the_count_range_and_a_citation_line(record):
    page = Client().get(f"/incidents/{record.public_id}/").content.decode()
    assert "<dd>about 500</dd>" in page
    assert "<dt>Sources say</dt><dd>300–500: 1 source says 300, 1 says 500</dd>" in page
    assert "about 500 were sent back" in page
    # With the page's address: an id and a date alone did not tell a reader of the citation where to look.
    permalink = f"http://testserver/incidents/{record.public_id}/"
    assert f"Incident Tracker, {record.public_id}, version {record.version}, {permalink}, retrieved" in page
    korean = Client().get(f"/ko/incidents/{record.public_id}/").content.decode()
    assert f"사건 기록부, {record.public_id}, 버전 {record.version}, http://testserver/ko/incidents/" in korean
    assert f'href="/api/v1/incidents/{record.public_id}/"' in page


@pytest.mark.django_db
def test_the_citations_version_is_the_one_its_reader_is_told():
    # It printed the version every change moves: an informant's claim added to a published
    # incident raised it for anonymous readers, whom the API, the CSV and "Last updated" tell nothing.
    incident = make_incident()
    make_claim(incident=incident)
    cited = re.compile(r"Incident Tracker, INC-\d+, version (\d+),")

    def citations() -> dict[str, str]:
        return {
            reader: cited.findall(client_for(reader).get(f"/incidents/{incident.public_id}/").content.decode())[0]
            for reader in ("anonymous", "staff", "confidential")
        }

    before = citations()
    keeper = api_client_for(make_user(roles.REVIEWER, confidential=True))
    shown = keeper.get(f"/api/v1/incidents/{incident.public_id}/").json()
    claims = [{"id": claim["id"]} for claim in shown["claims"]]
    claims.append({"source": make_source(confidential=True).pk, "people_count": 12, "confidential": True})
    written = keeper.patch(
        f"/api/v1/incidents/{incident.public_id}/", {"version": shown["version"], "claims": claims}, format="json"
    )
    assert written.status_code == 200, written.content
    incident.refresh_from_db()

    assert citations() == {**before, "confidential": str(incident.version)} != before
    assert client_for("anonymous").get(f"/api/v1/incidents/{incident.public_id}/").json()["version"] == int(
        before["anonymous"]
    )


@pytest.mark.django_db
def test_sources_say_gives_the_qualifiers_of_only_the_claims_the_reader_may_see():
    # "sources report 500" where both sources said "about 500": the bare span read an estimate as
    # an exact count. A confidential "at least 37" shows, and widens the span, only for a reader
    # with Confidential access, on the incident's page and in the list.
    incident = make_incident(people_count=500, count_qualifier="about")
    make_claim(incident=incident, people_count=500, count_qualifier="about")
    make_claim(incident=incident, people_count=500, count_qualifier="about")
    make_claim(incident=incident, people_count=37, count_qualifier="at_least", confidential=True)
    make_claim(incident=incident, people_count=None, count_qualifier="unknown")
    address = f"/incidents/{incident.public_id}/"

    for reader in ("anonymous", "staff"):
        page = client_for(reader).get(address).content.decode()
        assert "<dt>Sources say</dt><dd>about 500, according to all 2 sources that give a figure</dd>" in page
        assert "at least 37" not in page and "37–500" not in page
        browse = client_for(reader).get("/").content.decode()
        assert '<span class="meta">sources: about 500</span>' in browse and "37–500" not in browse

    confidential = client_for("confidential")
    page = confidential.get(address).content.decode()
    assert "<dt>Sources say</dt><dd>37–500: 2 sources say about 500, 1 says at least 37</dd>" in page
    assert '<span class="meta">sources: 37–500</span>' in confidential.get("/").content.decode()

    korean = confidential.get(f"/ko{address}").content.decode()
    assert "<dt>출처별 보고</dt><dd>37–500 (출처 2곳은 약 500명, 1곳은 최소 37명)</dd>" in korean
    korean = Client().get(f"/ko{address}").content.decode()
    assert "<dt>출처별 보고</dt><dd>수치를 제시한 출처 2곳의 보고: 약 500명</dd>" in korean


@pytest.mark.django_db
def test_an_incident_whose_sources_give_no_figure_says_nothing_of_them():
    incident = make_incident()
    make_claim(incident=incident, people_count=None, count_qualifier="unknown")
    page = Client().get(f"/incidents/{incident.public_id}/").content.decode()
    assert "Sources say" not in page and "sources:" not in Client().get("/").content.decode()


def test_the_incident_page_names_each_victim_groups_sex_age_group_and_nationality():
    # "500 · Mixed · Unknown · North Korea" left the reader to guess which was the sex and which
    # the age group.
    incident = make_incident()
    VictimGroup.objects.create(
        incident=incident, count=500, sex="mixed", age_group="unknown", nationality="KP", description="mostly women"
    )
    VictimGroup.objects.create(incident=incident, sex="female", age_group="child")

    page = Client().get(f"/incidents/{incident.public_id}/").content.decode()

    assert "People: 500 · Sex: Mixed · Age group: Unknown · Nationality: North Korea — mostly women" in page
    assert "<li>Sex: Female · Age group: Children</li>" in page


def test_facets_count_the_matching_incidents_and_link_to_permalinks(record):
    staff = client_for("staff")
    page = staff.get("/").content.decode()
    assert "2 incidents match" in page
    # The country facet links to the list filtered by it; that list counts it alone.
    assert 'href="?country=KP"' in page
    filtered = staff.get("/?country=KP&type=arbitrary-detention").content.decode()
    assert "1 incident matches" in filtered and DRAFT in filtered and "Publicmarker" not in filtered


def _facet(page_context, name: str) -> dict:
    return next(facet for facet in page_context["facets"] if facet["name"] == name)


def test_the_place_facet_walks_down_from_countries_each_place_counting_the_places_inside_it():
    china = make_place(name="China", kind="country", parent=None)
    jilin = make_place(name="Jilin", kind="province", parent=china)
    yanji, tumen = make_place(name="Yanji", parent=jilin), make_place(name="Tumen", parent=jilin)
    make_incident(places=[yanji])
    make_incident(places=[yanji, tumen])  # once in Jilin, once in each city
    make_incident(places=[jilin])
    make_incident(places=[make_place(name="Ulaanbaatar", country="MN")])
    client = Client()

    def places(address):
        facet = _facet(client.get(address).context, "place")
        return [step["label"] for step in facet["path"]], [(v["label"], v["incidents"]) for v in facet["values"]]

    assert places("/") == ([], [("China", 3), ("Ulaanbaatar", 1)])
    assert places(f"/?place={china.pk}") == (["China"], [("Jilin", 3)])
    assert places(f"/?place={jilin.pk}") == (["China", "Jilin"], [("Tumen", 1), ("Yanji", 2)])
    page = client.get(f"/?place={jilin.pk}").content.decode()
    # What a count promises, choosing it gives; each step of the path chooses that place.
    assert "3 incidents match" in page
    assert f'href="?place={yanji.pk}"' in page and f'href="?place={china.pk}"' in page
    assert "2 incidents match" in client.get(f"/?place={yanji.pk}").content.decode()
    # The same facet on the map page, and from the incidents themselves when the totals cannot answer.
    assert places(f"/map/?place={jilin.pk}") == (["China", "Jilin"], [("Tumen", 1), ("Yanji", 2)])
    assert places(f"/?place={jilin.pk}&min_people=0") == (["China", "Jilin"], [("Tumen", 1), ("Yanji", 2)])


def test_the_perpetrator_facet_lists_what_it_counts():
    # It counts an organization's incidents as perpetrator; its link listed every incident the
    # organization was involved in, in any role, or published a source about (`organization`).
    state = make_organization(name="Ministry of State Security")
    perpetrated, received = make_incident(title="Perpetrated"), make_incident(title="Received")
    Involvement.objects.create(incident=perpetrated, organization=state, role="perpetrator")
    Involvement.objects.create(incident=received, organization=state, role="receiving_state")
    client = Client()

    facet = _facet(client.get("/").context, "perpetrator")
    assert [(value["label"], value["incidents"]) for value in facet["values"]] == [(state.name, 1)]
    assert f'href="?perpetrator={state.pk}"' in client.get("/").content.decode()
    chosen = client.get(f"/?perpetrator={state.pk}").content.decode()
    assert "1 incident matches" in chosen and "Perpetrated" in chosen and "Received" not in chosen
    # The same filter through the API and its CSV, and the statistics it links from.
    listed = client.get(f"/api/v1/incidents/?perpetrator={state.pk}").json()["results"]
    assert [incident["public_id"] for incident in listed] == [perpetrated.public_id]
    exported = list(csv.DictReader(io.StringIO(_body(client.get(f"/incidents.csv?perpetrator={state.pk}")))))
    assert [row["public_id"] for row in exported] == [perpetrated.public_id]
    assert client.get(f"/statistics/?perpetrator={state.pk}&group_by=type").status_code == 200


@pytest.mark.parametrize(
    ("filters", "kept"),
    [
        ("", ""),  # the facets' own totals
        # Dates of whole months: the statistics' totals. Choosing a year replaces the dates.
        ("date_from=2018-03-01&date_to=2022-05-31", ""),
        ("min_people=0", "&min_people=0"),  # a filter no totals answer: a sample of the matches
    ],
)
def test_the_year_facet_counts_each_incident_in_every_year_it_overlaps(filters, kept):
    # Reported "between 2019 and 2021": choosing 2020 shows it (dates overlap), so 2020 counts it.
    make_incident(date_start=date(2019, 11, 1), date_end=date(2021, 2, 28), date_precision="range")
    make_incident(date_start=date(2020, 6, 1), date_end=date(2020, 6, 1))
    make_incident(date_start=date(2021, 3, 1), date_end=date(2021, 3, 31), date_precision="month")
    client = Client()
    response = client.get(f"/?{filters}")
    facet = _facet(response.context, "year")
    years = {value["label"]: value["incidents"] for value in facet["values"] if value["select"]}
    # The years that hold an incident dated within them, as the statistics by year group them; the
    # one over three years counts in each of them, and once more among those over more than one.
    assert years == {"2020": 2, "2021": 2}
    assert [(value["label"], value["incidents"]) for value in facet["values"] if not value["select"]] == [
        ("Over more than one year", 1)
    ]
    # What each count promises, choosing the year gives; the matches are counted once each.
    assert "3 incidents match" in response.content.decode()
    for year, count in years.items():
        chosen = client.get(f"/?date_from={year}-01-01&date_to={year}-12-31{kept}")
        assert len(chosen.context["page"].incidents) == count


@pytest.mark.parametrize(
    "filters",
    ["", "date_from=2018-03-01&date_to=2022-05-31", "min_people=0", "q=repatriated"],
    ids=["facet totals", "statistics totals", "sample", "search"],
)
@pytest.mark.parametrize("page", ["/", "/ko/", "/map/"])
def test_an_unknown_date_over_every_year_adds_one_line_to_the_year_facet_not_a_link_a_year(filters, page):
    # Dated "unknown" between 0001 and 9999 (which the form accepts), one incident put 9,999 year
    # links on the browse page: 1.2 MB and 2.5 s for every visitor of /, /ko/ and /map/.
    make_incident(
        title="Repatriated, date unknown",
        date_start=date(1, 1, 1),
        date_end=date(9999, 12, 31),
        date_precision="unknown",
    )
    for year in (2019, 2020, 2020):
        make_incident(title="Repatriated", date_start=date(year, 5, 1), date_end=date(year, 5, 1))
    response = Client().get(f"{page}?{filters}")

    assert response.status_code == 200
    content = response.content.decode()
    year_links = re.findall(r'href="\?[^"]*date_from=(\d{4})-01-01&amp;date_to=\1-12-31', content)
    assert sorted(set(year_links)) == ["2019", "2020"]
    assert len(content) < 200_000
    facet = _facet(response.context, "year")
    assert [(value["incidents"], bool(value["select"])) for value in facet["values"]] == [
        (2, True),
        (3, True),
        (1, False),
    ]


def test_the_year_facet_lists_at_most_the_latest_hundred_years():
    # Bounded whatever the dates recorded: an incident in each of 150 years lists the latest 100.
    for year in range(1850, 2000):
        make_incident(date_start=date(year, 1, 1), date_end=date(year, 1, 1))

    facet = _facet(Client().get("/").context, "year")

    assert [value["label"] for value in facet["values"]] == [str(year) for year in range(1900, 2000)]


@pytest.fixture
def messy_incidents():
    """Generated incidents a facet could miscount: places of one name in two countries and places
    inside places, incidents in two countries, with several perpetrators (of one acronym, or named like a
    place), over several years, of a type and of its sub-type, of every verification."""
    generated = Random(2026)
    china = make_place(name="China", kind="country", country="CN")
    jilin = make_place(name="Jilin", kind="province", country="CN", parent=china)
    korea = make_place(name="North Korea", kind="country", country="KP")
    places = [
        make_place(name="Border town", country="CN", parent=jilin),
        make_place(name="Yanji", country="CN", parent=jilin),
        make_place(name="Border town", country="KP", parent=korea),
        make_place(name="Sinuiju", country="KP", parent=korea),
        make_place(name="Vladivostok", country="RU"),
    ]
    organizations = [
        make_organization(name="Ministry of State Security", acronym="MSS"),
        make_organization(name="Ministry of Social Services", acronym="MSS"),
        make_organization(name="Border town", kind="government"),
        make_organization(name="Police"),
    ]
    types = ["execution", "extrajudicial-execution", "forced-repatriation", "arbitrary-detention"]
    for _ in range(40):
        start = date(generated.randint(2018, 2022), generated.randint(1, 12), generated.randint(1, 28))
        incident = make_incident(
            places=generated.sample(places, generated.randint(1, 2)),
            incident_type=incident_type(generated.choice(types)),
            verification=generated.choice(["alleged", "corroborated", "verified", "disputed"]),
            date_start=start,
            date_end=start + timedelta(days=generated.choice([0, 30, 400, 800])),
        )
        for organization in generated.sample(organizations, generated.randint(0, 3)):
            Involvement.objects.create(incident=incident, organization=organization, role="perpetrator")
    return {"china": china, "jilin": jilin, "korea": korea, "organizations": organizations}


# A facet's value: its link and the count beside it.
_FACET_VALUE = re.compile(r'<a href="(\?[^"]*)">[^<]*</a>\s*<span class="count">([\d,]+)(\+?)</span>')


@pytest.mark.parametrize(
    "chosen",
    [
        "country=KP",
        "country=CN&type=execution",
        "type=execution",
        "type=extrajudicial-execution",
        "place={jilin}",
        "place={china}&type=forced-repatriation",
        "perpetrator={perpetrator}",
        "verification=verified",
        "verification=verified&verification=alleged",
        "date_from=2020-01-01&date_to=2020-12-31",
        "date_from=2019-06-15",
        # Filters that only the incidents answer (a sample of the matches, here all of them).
        "country=KP&min_people=0",
        "country=CN&place={korea}",
        "perpetrator={perpetrator}&verification=verified&date_from=2021-01-01&date_to=2021-12-31",
    ],
)
def test_each_facet_count_is_what_its_link_lists_with_a_value_of_its_own_chosen(messy_incidents, chosen, monkeypatch):
    # A link replaces the facet's chosen value: its count leaves that choice out, as every
    # multi-select facet does. Counting "CN" within the chosen "KP" promised 294 and listed 926.
    monkeypatch.setattr(selectors, "BROWSE_PAGE_SIZE", 1000)  # every match on one page
    client = Client()
    address = "/?" + chosen.format(
        jilin=messy_incidents["jilin"].pk,
        china=messy_incidents["china"].pk,
        korea=messy_incidents["korea"].pk,
        perpetrator=messy_incidents["organizations"][0].pk,
    )

    def listed(address: str) -> int:
        page = client.get(address).context["page"]
        assert page.complete and page.total == len(page.incidents), address
        return page.total

    assert listed(address)
    page = client.get(address).content.decode()
    values = _FACET_VALUE.findall(page)
    assert len(values) >= 10, page
    for link, count, at_least in values:
        assert not at_least
        assert listed("/" + html.unescape(link)) == int(count.replace(",", "")), (address, link)


def test_past_the_sample_the_counts_say_at_least_and_the_page_says_why(monkeypatch):
    monkeypatch.setattr(selectors, "FACET_SAMPLE", 2)
    for _ in range(3):
        make_incident(places=[make_place(country="KR")])
    client = Client()
    # A filter the kept totals cannot answer: the newest two matches are counted.
    sampled = client.get("/?min_people=1")
    assert "At least 2 incidents match" in sampled.content.decode()
    assert "counted among the newest 2" in sampled.content.decode()
    assert _facet(sampled.context, "country")["values"][0]["incidents"] == 2
    assert not _facet(sampled.context, "country")["complete"]
    assert "2+" in sampled.content.decode()
    # The kept totals count all of them, whatever the sample's size.
    exact = client.get("/?date_from=2023-01-01").content.decode()
    assert "3 incidents match" in exact and "counted among" not in exact


def test_a_type_counts_its_sub_types_incidents_and_lists_them_beneath_it():
    make_incident(incident_type=incident_type("extrajudicial-execution"))
    make_incident(incident_type=incident_type("execution"))
    facets = {facet["name"]: facet for facet in Client().get("/").context["facets"]}
    assert [(value["label"], value["depth"], value["incidents"]) for value in facets["type"]["values"]] == [
        ("Execution", 0, 2),
        ("Extrajudicial execution", 1, 1),
    ]


def test_a_chain_of_types_deeper_than_pythons_recursion_limit_leaves_the_pages_up():
    # Stored before types nested at most 10 levels: the facet ordered the types by a recursion a
    # level, and the home page and the map answered every visitor 500 (RecursionError).
    chain = type_chain(1100)
    make_incident(incident_type=chain[-1])
    client = Client()
    home, map_page = client.get("/"), client.get("/map/")
    assert (home.status_code, map_page.status_code) == (200, 200)
    values = {facet["name"]: facet for facet in home.context["facets"]}["type"]["values"]
    assert [(value["label"], value["depth"], value["incidents"]) for value in (values[0], values[-1])] == [
        ("Level 1", 0, 1),
        ("Level 1100", 1099, 1),
    ]


def test_cursor_pages_walk_every_incident_once_newest_first(monkeypatch):
    monkeypatch.setattr(selectors, "BROWSE_PAGE_SIZE", 3)
    for day in (1, 2, 3, 3, 4, 5, 6):
        make_incident(title=f"Day {day}", date_start=date(2024, 1, day), date_end=date(2024, 1, day))
    client, seen, address = Client(), [], "/"
    while address:
        page = client.get(address).context["page"]
        assert len(page.incidents) <= 3
        seen += [incident.title for incident in page.incidents]
        address = f"/?cursor={page.next_cursor}" if page.next_cursor else None
    assert seen == [f"Day {day}" for day in (6, 5, 4, 3, 3, 2, 1)]


def test_browse_query_count_does_not_grow_with_the_page(django_assert_num_queries):
    # 1 page (type joined, claim range subqueried) + 1 places prefetch + the six facets' counts
    # from the totals kept for them within the country: type and verification together, year,
    # place (after 1 for the places it groups by) and perpetrator, one each, then the country
    # facet over every country, one (each batch after bringing the totals up to date inside the
    # test's transaction: 2) + 1 for the tree of types.
    make_incident(places=[make_place(country="CN")])
    with django_assert_num_queries(11):
        assert Client().get("/?country=CN").status_code == 200
    place = make_place(country="CN")
    for _ in range(10):
        make_incident(places=[place, make_place(country="CN")])
    with django_assert_num_queries(11):
        assert Client().get("/?country=CN").status_code == 200
    # Over a sample: the page, its places, then for the facets within the country the sample's
    # ids, the totals brought up to date and every facet at once, and the same three for the
    # country facet's own sample; the tree of types.
    with django_assert_num_queries(9):
        assert Client().get("/?country=CN&min_people=0").status_code == 200
    # Within a place: the same, + 1 for the place, + 1 for the places inside it (the filter's one
    # recursive query, whatever their depth) and + 1 for the path to it.
    make_incident(places=[make_place(country="CN", parent=place)])
    with django_assert_num_queries(13):
        assert Client().get(f"/?place={place.pk}").status_code == 200


def test_filters_no_incident_meets_skip_the_walk_for_the_page(django_assert_num_queries):
    # The facets, counted to the last from the kept totals, found none: neither the page's walk of
    # the newest incidents nor the facets' sample, which for such filters read every candidate, is
    # made; nor any other walk: the country facet, counted without the country, comes from the
    # perpetrator's totals by country (migration 0056).
    government = make_organization(name="Government of China")
    for _ in range(3):
        incident = make_incident(places=[make_place(country="CN")])
        incident.involvements.create(organization=government, role="perpetrator")
    nowhere = {"perpetrator": government.pk, "country": "MM"}
    with CaptureQueriesContext(connection) as queries:
        page = Client().get("/", nowhere)
    assert page.status_code == 200 and page.context["page"].incidents == []
    assert page.context["page"].total == 0 and page.context["page"].complete
    walks = [query["sql"] for query in queries if 'ORDER BY "incidents_incident"."date_start" DESC' in query["sql"]]
    assert walks == []
    # Where some match, the page lists them.
    assert len(Client().get("/", {"perpetrator": government.pk, "country": "CN"}).context["page"].incidents) == 3


def test_incident_page_query_count_does_not_grow_with_its_claims(record, django_assert_num_queries):
    few = make_incident(places=[make_place()])
    make_claim(incident=few)
    # The incident, then places, claims (sources joined), involvements, victim groups, responses
    # and the sources the claims' sources cite.
    with django_assert_num_queries(7):
        Client().get(f"/incidents/{few.public_id}/")
    with django_assert_num_queries(7):
        client_for("anonymous").get(f"/incidents/{record.public_id}/")


@pytest.mark.parametrize(
    "address, label",
    [
        ("/?date_from=29/08/2023", "Dates (incidents that overlap them) › From"),
        ("/?date_from=2021-13-45", "Dates (incidents that overlap them) › From"),
        ("/map/?max_people=x", "People (best estimate) › At most"),
        ("/?min_origins=x", "Corroboration"),
        ("/?cursor=junk", "Next page"),
        ("/?cursor=2023-02-30_1", "Next page"),
        ("/?cursor=2023-01-01_99999999999999999999", "Next page"),
        ("/statistics/?group_by=week", "Group by"),
        ("/embed/statistics/?country=XX", "Country"),
        # No control of the pages sets it: named as the address writes it.
        ("/?source=x", "<code>source</code>"),
    ],
)
def test_a_bad_parameter_gets_a_400_page_naming_it_as_the_page_labels_it(address, label):
    response = Client().get(address)
    assert response.status_code == 400
    errors = response.content.decode().split('<ul class="errors">')[1].split("</ul>")[0]
    assert f"<li>{label}:" in html.unescape(errors)


def test_a_bad_parameter_is_named_by_its_label_in_the_readers_language_and_by_its_name_at_the_api():
    korean = Client().get("/ko/", {"date_from": "2021-13-45", "min_origins": "x"})
    api = Client().get("/api/v1/incidents/", {"date_from": "2021-13-45", "min_origins": "x"})

    errors = html.unescape(korean.text.split('<ul class="errors">')[1].split("</ul>")[0])
    assert "<li>기간 (이 기간과 겹치는 사건) › 시작:" in errors and "<li>교차 확인:" in errors
    assert "date_from" not in errors and "min_origins" not in errors
    assert api.status_code == 400 and set(api.json()) == {"date_from", "min_origins"}


def test_dates_the_wrong_way_round_are_said_once_by_their_labels_and_by_their_names_at_the_api():
    # The page said "date_from (2024-01-01) is after date_to (2023-01-01)" twice, under each date,
    # in the names of parameters the visitor never typed.
    dates = {"date_from": "2024-01-01", "date_to": "2023-01-01"}
    for address in ("/", "/statistics/"):
        page = Client().get(address, dates)

        assert page.status_code == 400
        errors = html.unescape(page.text.split('<ul class="errors">')[1].split("</ul>")[0])
        assert errors.count("<li>") == 1
        assert (
            "<li>Dates (incidents that overlap them): From (2024-01-01) is after To (2023-01-01): "
            "no date range overlaps that." in errors
        )
        assert "date_from" not in errors and "date_to" not in errors
    api = Client().get("/api/v1/incidents/", dates)
    assert api.status_code == 400
    assert api.json()["date_from"] == [
        "date_from (2024-01-01) is after date_to (2023-01-01): no date range overlaps that."
    ]


def test_the_statistics_pages_answer_dates_up_to_the_last_day_a_date_can_have(record):
    for address in ("/statistics/", "/embed/statistics/"):
        assert Client().get(address, {"date_to": "9999-12-31"}).status_code == 200


def test_the_statistics_by_country_of_a_count_no_incident_can_have_is_empty(record):
    answer = Client().get("/statistics/", {"group_by": "country", "min_people": "99999999999"})
    assert answer.status_code == 200


def test_a_refused_search_or_bad_parameter_is_explained_in_the_readers_language():
    too_many_words = {"q": " ".join("abcdefghi")}
    english, korean = Client().get("/", too_many_words), Client().get("/ko/", too_many_words)
    assert english.status_code == korean.status_code == 400
    assert 'Search at most 8 words or "phrases" at a time (this search has 9).' in html.unescape(english.text)
    assert '한 번에 최대 8개의 단어 또는 "구절"까지 검색할 수 있습니다(이 검색에는 9개가 있습니다).' in html.unescape(
        korean.text
    )
    assert "“다음 페이지” 링크를 그대로 사용하십시오." in Client().get("/ko/?cursor=junk").text
    reversed_dates = Client().get("/ko/statistics/", {"date_from": "2024-01-01", "date_to": "2023-01-01"}).text
    errors = html.unescape(reversed_dates.split('<ul class="errors">')[1].split("</ul>")[0])
    # Once, under the dates' Korean legend, naming them by their labels, not their parameters.
    assert errors.count("<li>") == 1 and "<li>기간 (이 기간과 겹치는 사건):" in errors
    assert "2024-01-01" in errors and "2023-01-01" in errors and "date_from" not in errors


def test_the_search_box_says_how_it_reads_words_and_finds_by_their_start_in_either_language():
    plural = make_incident(title="Repatriations from Tumen")
    korean = make_incident(title="Hyesan", description="탈북민들이 강제북송되었다")

    english, in_korean = Client().get("/", {"q": "repatriat*"}), Client().get("/ko/", {"q": "강제북송"})

    assert "End a word with * to find the words that start so (repatriat*)" in html.unescape(english.text)
    assert "낱말 끝에 *를 붙이면 그렇게 시작하는 낱말을 찾습니다(repatriat*)." in html.unescape(in_korean.text)
    assert plural.title in english.text and korean.title not in english.text
    assert f"/ko/incidents/{korean.public_id}/" in in_korean.text
    assert f"/ko/incidents/{plural.public_id}/" not in in_korean.text


def test_korean_pages_name_north_korea_as_its_korean_readers_do():
    # django-countries' Korean names it by its official name, 조선민주주의인민공화국.
    make_incident(title="Sent back", places=[make_place(name="Hyesan", country="KP")])

    korean, english = Client().get("/ko/").text, Client().get("/").text

    assert "북한" in korean and "조선민주주의인민공화국" not in korean
    assert "North Korea" in english


def test_downloads_hold_exactly_the_filtered_incidents_with_their_page_urls(record):
    make_incident(title="Elsewhere", places=[make_place(country="RU")])
    client = Client()
    rows = list(csv.DictReader(io.StringIO(_body(client.get("/incidents.csv?country=CN")))))
    assert [row["title"] for row in rows] == ["Publicmarker incident"]
    assert rows[0]["page_url"] == f"http://testserver/incidents/{record.public_id}/"

    collection = json.loads(_body(client.get("/ko/incidents.geojson?country=CN")))
    (feature,) = collection["features"]
    assert feature["properties"]["url"] == f"http://testserver/ko/incidents/{record.public_id}/"
    assert feature["geometry"] == {"type": "Point", "coordinates": [128.5, 41.5]}


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["", "/ko"])
def test_the_pages_offer_a_csv_that_excel_reads_korean_from(prefix):
    # Excel opens a UTF-8 file without a byte order mark in the Windows code page: a Korean
    # reader's download showed "íƒˆë¶ë¯¼" for 탈북민, and the pages offered no other file.
    incident = make_incident(title="탈북민 40명 강제북송", places=[make_place(name="투먼", country="CN")])
    client = Client()
    browse = client.get(f"{prefix}/", {"country": "CN"}).content.decode()
    links = re.findall(r'href="([^"]*incidents\.csv[^"]*)"', html.unescape(browse))
    assert links == [f"{prefix}/incidents.csv?country=CN", f"{prefix}/incidents.csv?country=CN&bom=1"]
    page = client.get(f"{prefix}/incidents/{incident.public_id}/").content.decode()
    single = f"{prefix}/incidents/{incident.public_id}.csv"
    assert re.findall(r'href="([^"]*\.csv[^"]*)"', page) == [single, f"{single}?bom=1"]
    for plain in (links[0], single):
        assert _bytes(client.get(plain)).startswith(b"public_id,")
    for address in (links[1], f"{single}?bom=1"):
        content = _bytes(client.get(address))
        assert content.startswith(b"\xef\xbb\xbfpublic_id,")
        (row,) = csv.DictReader(io.StringIO(content.decode("utf-8-sig")))
        assert row["title"] == "탈북민 40명 강제북송" and row["places"] == "투먼"


def test_the_pages_read_bom_as_the_api_does():
    # `bom=true` sent no mark, and `bom=perhaps` none either, where the API answers 400.
    incident = make_incident(title="탈북민 40명 강제북송")
    client = Client()
    for address in ("/incidents.csv", f"/incidents/{incident.public_id}.csv"):
        assert _bytes(client.get(address, {"bom": "true"})).startswith(b"\xef\xbb\xbfpublic_id,"), address
        assert _bytes(client.get(address, {"bom": "false"})).startswith(b"public_id,"), address
        refused = client.get(address, {"bom": "perhaps"})
        assert refused.status_code == 400, address
        # Named as the link that sets it, as every parameter a control sets is.
        assert "CSV for Excel: Must be a valid boolean." in refused.content.decode(), address


def _bytes(response) -> bytes:
    assert response.status_code == 200, response
    return b"".join(response.streaming_content)


@pytest.mark.parametrize(("incidents", "truncated", "statements"), [(7, True, 3), (5, False, 3), (3, False, 2)])
def test_the_geojson_download_reads_its_newest_incidents_a_few_a_statement(
    incidents, truncated, statements, monkeypatch, django_assert_num_queries
):
    # 1,000 of 5,000 a statement at scale, so that each stays within the anonymous bound.
    monkeypatch.setattr(selectors, "FEATURE_LIMIT", 5)
    monkeypatch.setattr(selectors, "FEATURES_A_STATEMENT", 2)
    made = [
        make_incident(date_start=date(2024, 1, 1 + number % 2), date_end=date(2024, 1, 2))
        for number in range(incidents)
    ]
    newest = sorted(made, key=lambda incident: (incident.date_start, incident.pk), reverse=True)[:5]
    # Up to 6 incidents (5 and one more, to know whether more matched), two a statement, until a
    # statement reads fewer than it asked for.
    with django_assert_num_queries(statements):
        collection = json.loads(_body(Client().get("/incidents.geojson")))
    assert [feature["id"] for feature in collection["features"]] == [incident.public_id for incident in newest]
    assert collection["truncated"] is truncated


@pytest.mark.parametrize("reader", READERS)
def test_the_map_draws_the_downloads_incidents_from_only_what_it_shows(reader, record):
    client = client_for(reader)
    download = json.loads(_body(client.get("/ko/incidents.geojson")))
    drawn = json.loads(_body(client.get("/ko/map/incidents.geojson")))
    assert [feature["id"] for feature in drawn["features"]] == [feature["id"] for feature in download["features"]]
    for shown, whole in zip(drawn["features"], download["features"], strict=True):
        assert shown["geometry"] == whole["geometry"]
        # The popup's dates are the page's, in Korean here (see the test of every door's dates).
        assert shown["properties"] == {
            "title": whole["properties"]["title"],
            "dates": shown["properties"]["dates"],
            "url": whole["properties"]["url"],
        }, "only what the map's popups show"
    assert drawn["truncated"] is False
    assert 'data-features="/ko/map/incidents.geojson?country=CN"' in _body(client.get("/ko/map/?country=CN"))


def test_the_charts_draw_the_tables_own_numbers_in_the_readers_language(record):
    make_incident(people_count=None, people_count_min=None, people_count_max=None, places=[])
    response = client_for("staff").get("/ko/statistics/?group_by=country")
    table, chart = response.context["table"]["results"], response.context["chart"]
    assert chart["labels"] == [row["label"] for row in table[:-1]] + ["기록 없음"]
    assert chart["incidents"] == [row["incidents"] for row in table]
    assert chart["people"] == [row["people_count"] for row in table]
    assert chart["low"] == [row["people_count_min"] for row in table]
    assert chart["high"] == [row["people_count_max"] for row in table]
    assert chart["low"][-1] is None  # an unknown figure stays unknown, not 0
    assert chart["without_figure"] == [row["incidents_without_figure"] for row in table]
    assert chart["without_figure"][-1] == 1  # which the tooltips say beside the incidents and people
    assert not chart["timeline"] and chart["text"]["incidents"] == "사건"
    assert chart["text"]["without_figure"] == "수치 없음"
    # Embedded as JSON data, which no browser runs as a script.
    assert '<script id="chart-data" type="application/json">' in response.content.decode()


@pytest.mark.django_db
def test_the_statistics_by_year_count_an_incident_over_two_years_apart_and_say_so():
    # Filtered on 2023, the table counted an incident of 2022-2023 under 2022 and not under 2023,
    # where the list's year facet counted it in both: "2023: 19" on one page, "2023 (20)" on the
    # other, with nothing saying why.
    make_incident(date_start=date(2022, 1, 1), date_end=date(2023, 12, 31), date_precision="year")
    make_incident(date_start=date(2023, 5, 2), date_end=date(2023, 5, 2))
    dates = {"date_from": "2023-01-01", "date_to": "2023-12-31"}
    client = Client()
    page = client.get("/statistics/", {"group_by": "year", **dates}).content.decode()
    assert re.findall(r'<th scope="row">([^<]+)</th>\s*<td class="number">(\d+)</td>', page) == [
        ("2023", "1"),
        ("Over more than one year", "1"),
        ("All (each incident once)", "2"),
    ]
    assert "Each incident counts once: in the year its dates lie in" in page
    embedded = client.get("/ko/embed/statistics/", {"group_by": "year"}).content.decode()
    assert '<th scope="row">두 해 이상에 걸침</th>' in embedded and "여러 해에 걸치면" in embedded
    chart = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', embedded).group(1))
    assert chart["labels"][-1] == "두 해 이상에 걸침"
    assert chart["periods"] == len(chart["labels"]) - 1  # the line of people stops at the last year
    assert "in the month its dates lie in" in client.get("/statistics/", {"group_by": "month"}).content.decode()
    assert "lie in" not in client.get("/statistics/", {"group_by": "country"}).content.decode()
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()
    (group_by,) = [
        parameter
        for parameter in schema["paths"]["/api/v1/incidents/stats/"]["get"]["parameters"]
        if parameter["name"] == "group_by"
    ]
    assert "in the year or month its whole date range lies in" in group_by["description"]


@pytest.mark.parametrize(
    "group_by, labels",
    [
        ("year", ["2021", "2022", "2023"]),
        ("month", ["2021-11", "2021-12", "2022-01", "2022-02"]),
    ],
)
def test_a_timeline_chart_draws_the_periods_without_incidents_as_none(group_by, labels):
    # People drawn as a line through 2021 and 2023 read 2022 halfway between them, hundreds of
    # people that year, where no incident was recorded.
    make_incident(date_start=date(2021, 11, 20), date_end=date(2021, 11, 20), people_count=50)
    later = date(2022, 2, 3) if group_by == "month" else date(2023, 9, 18)
    make_incident(date_start=later, date_end=later, people_count=40)

    page = Client().get("/statistics/", {"group_by": group_by})

    chart = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page.text)[1])
    assert chart["labels"] == labels
    assert chart["incidents"] == [1, *[0] * (len(labels) - 2), 1]
    assert chart["people"] == [50, *[0] * (len(labels) - 2), 40]
    assert [row["label"] for row in page.context["table"]["results"]] == [labels[0], labels[-1]]


@pytest.mark.parametrize("filters", ["", "min_people=0"], ids=["from kept totals", "from the incidents"])
def test_a_year_before_1000_is_written_with_four_digits_in_the_chart_and_the_year_facet(filters):
    # An incident mistyped as 0999 (which the forms accept): the chart's years, compared as text,
    # ran from "2021" to "999", none; the year facet linked to date_from=999-01-01, which every
    # date filter refuses.
    make_incident(date_start=date(999, 5, 1), date_end=date(999, 5, 1), people_count=3)
    make_incident(date_start=date(2021, 11, 20), date_end=date(2021, 11, 20), people_count=50)
    client = Client()

    page = client.get(f"/statistics/?group_by=year&{filters}")
    chart = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page.text)[1])
    assert chart["labels"] == [f"{year:04d}" for year in range(999, 2022)]
    assert chart["people"][0] == 3 and chart["people"][-1] == 50
    by_month = client.get(f"/statistics/?group_by=month&{filters}").context["table"]["results"]
    assert [row["group"] for row in by_month] == ["0999-05", "2021-11"]

    browse = client.get(f"/?{filters}")
    facet = _facet(browse.context, "year")
    assert [(value["label"], value["select"]["date_from"]) for value in facet["values"]] == [
        ("0999", "0999-01-01"),
        ("2021", "2021-01-01"),
    ]
    chosen = client.get("/", facet["values"][0]["select"] | {"cursor": ""})
    assert chosen.status_code == 200
    assert [incident.date_start.year for incident in chosen.context["page"].incidents] == [999]


@pytest.mark.django_db
def test_the_statistics_table_says_how_many_incidents_give_no_figure():
    # "80 people in 3 incidents" read as complete where two of the three gave no number.
    unknown = {"people_count": None, "count_qualifier": "unknown"}
    make_incident(people_count=80, date_start=date(2023, 5, 2), date_end=date(2023, 5, 2))
    make_incident(**unknown, date_start=date(2023, 6, 1), date_end=date(2023, 6, 1))
    make_incident(**unknown, date_start=date(2022, 1, 1), date_end=date(2023, 12, 31), date_precision="year")
    make_incident(**unknown, confidential=True, date_start=date(2023, 6, 1), date_end=date(2023, 6, 1))
    row = r'<th scope="row">([^<]+)</th>\s*<td class="number">(\d+)</td>\s*<td class="number">(\d+)</td>'

    page = Client().get("/statistics/", {"group_by": "year"}).text
    assert '<th scope="col" class="number">No figure</th>' in page
    assert re.findall(row, page) == [
        ("2023", "2", "1"),
        ("Over more than one year", "1", "1"),
        ("All (each incident once)", "3", "2"),
    ]
    assert "how many of the incidents give no number of people at all" in page
    assert "Incidents with no figure add no one to them" in page  # the charts' caption
    # A reader who may see the confidential incident counts it too.
    seen = client_for("confidential").get("/statistics/", {"group_by": "year"}).text
    assert re.findall(row, seen)[-1] == ("All (each incident once)", "4", "3")

    embedded = Client().get("/ko/embed/statistics/", {"group_by": "year"}).text
    assert '<th scope="col" class="number">수치 없음</th>' in embedded
    assert re.findall(row, embedded)[-1] == ("전체 (사건별 1회)", "3", "2")
    chart = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', embedded)[1])
    assert chart["without_figure"] == [1, 1] and chart["incidents"] == [2, 1]


def test_statistics_table_counts_people_with_their_range(record):
    page = client_for("confidential").get("/statistics/?group_by=type").content.decode()
    assert "Forced repatriation" in page and "Arbitrary arrest or detention" in page
    assert '<caption id="statistics-caption">Incidents and people by Type</caption>' in page


def test_korean_pages_say_so_and_link_back_to_english(record):
    page = Client().get(f"/ko/incidents/{record.public_id}/?").content.decode()
    assert '<html lang="ko">' in page
    assert "출처" in page
    assert f'href="/incidents/{record.public_id}/' in page


def test_only_embed_routes_may_be_framed_by_other_sites(record):
    client = Client()
    for address in ("/embed/statistics/?group_by=country", "/embed/map/?country=CN"):
        response = client.get(address)
        assert response.status_code == 200
        assert "X-Frame-Options" not in response
        assert "frame-ancestors *" in response["Content-Security-Policy"]
        assert "default-src 'self'" in response["Content-Security-Policy"]
    for address in ("/", f"/incidents/{record.public_id}/", "/statistics/", "/map/"):
        response = client.get(address)
        assert response["X-Frame-Options"] == "DENY"
        assert "frame-ancestors *" not in response.get("Content-Security-Policy", "")


def test_every_page_and_embed_names_the_site_s_icon(record):
    # The embeds had no icon link, so each load of one asked /favicon.ico: a 404 in the log.
    icon = '<link rel="icon" href="/static/public/favicon.svg" type="image/svg+xml">'
    client = Client()
    for address in (
        "/",
        f"/incidents/{record.public_id}/",
        "/map/",
        "/statistics/",
        "/embed/map/",
        "/embed/statistics/?group_by=country",
        "/ko/embed/map/",
        "/embed/map/?date_from=29/08/2023",
    ):
        assert icon in client.get(address).text, address


def test_the_statistics_page_offers_an_embed_snippet_for_its_filters(record):
    page = Client().get("/statistics/?group_by=country&country=CN").content.decode()
    # Escaped twice: the snippet a reader copies from the box is itself escaped HTML.
    assert '&lt;iframe src="http://testserver/embed/statistics/?group_by=country&amp;amp;country=CN"' in page
    embedded = Client().get("/embed/statistics/?group_by=country&country=CN").content.decode()
    assert "China" in embedded and "Pyongyang" not in embedded


def test_the_vendored_files_collect_for_production(settings, tmp_path):
    # Production's manifest storage follows every file a stylesheet or script names (Leaflet's
    # images and source map) and fails on a missing one, as `collectstatic` would at deployment.
    settings.STATIC_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    assert {"public/map.js", "vendor/leaflet/leaflet.js", "vendor/world-atlas/countries-110m.json"} <= manifest.keys()


def test_a_translator_adds_a_language_with_its_catalog_alone(tmp_path):
    for locale in ("zh_Hans", "ko"):
        (tmp_path / locale / "LC_MESSAGES").mkdir(parents=True)
        (tmp_path / locale / "LC_MESSAGES" / "django.po").touch()
    assert catalog_languages(tmp_path) == [("en", "English"), ("ko", "한국어"), ("zh-hans", "简体中文")]


def untranslated_entries(catalog: Path) -> list[str]:
    """The messages of `catalog` (a .po file as `make messages` writes it) that its language's pages
    show in English: those with an empty translation, and those gettext marked fuzzy (their English
    changed since they were translated, or gettext guessed them from a similar message), which
    `compilemessages` leaves out. Entries are separated by a blank line; "#~" ones are obsolete."""
    found = []
    for entry in catalog.read_text(encoding="utf-8").split("\n\n"):
        msgid = re.search(r'^msgid "(.*)"$', entry, re.MULTILINE)
        if msgid is None:
            continue
        fuzzy = re.search(r"^#,.*\bfuzzy\b", entry, re.MULTILINE)
        # An empty msgstr that no continuation line ("…") follows.
        empty = re.search(r'^msgstr(\[\d+\])? ""(?!\n")', entry, re.MULTILINE)
        if fuzzy or empty:
            found.append(entry)
    return found


def test_every_message_of_every_catalog_is_translated(settings):
    catalogs = list(Path(settings.LOCALE_PATHS[0]).glob("*/LC_MESSAGES/django.po"))
    assert catalogs
    assert {str(catalog): untranslated_entries(catalog) for catalog in catalogs} == {
        str(catalog): [] for catalog in catalogs
    }


def test_untranslated_and_fuzzy_messages_are_found(tmp_path):
    catalog = tmp_path / "django.po"
    catalog.write_text(
        '# Header\nmsgid ""\nmsgstr ""\n"Language: ko\\n"\n\n'
        'msgid "Map"\nmsgstr "지도"\n\n'
        'msgid ""\n"A message long enough "\n"to wrap."\nmsgstr ""\n"줄이 바뀔 만큼 "\n"긴 메시지."\n\n'
        'msgid "Statistics"\nmsgstr ""\n\n'
        '#, fuzzy, python-format\nmsgid "%(count)s incidents"\nmsgstr "사건 %(count)s"\n\n'
        'msgid "%(total)s match."\nmsgid_plural "%(total)s match."\nmsgstr[0] ""\n\n'
        '#~ msgid "Gone"\n#~ msgstr ""\n',
        encoding="utf-8",
    )
    found = untranslated_entries(catalog)
    assert [entry.splitlines()[-2] for entry in found] == [
        'msgid "Statistics"',
        'msgid "%(count)s incidents"',
        'msgid_plural "%(total)s match."',
    ]


def catalog_messages(catalog: Path) -> set[str]:
    """The msgids of `catalog`'s current (not obsolete) entries, joined across their lines."""
    messages = set()
    for entry in catalog.read_text(encoding="utf-8").split("\n\n"):
        found = re.search(r'^msgid ((?:".*"\n?)+)', entry, re.MULTILINE)
        if found and not entry.lstrip().startswith("#~"):
            messages.add("".join(re.findall(r'"(.*)"', found.group(1))))
    return messages - {""}


def test_every_catalog_holds_every_message_the_code_and_templates_mark(settings, monkeypatch):
    # A message marked for translation but missing from a catalog shows in English on that language's
    # pages (the release downloads' refusal did): `make messages` adds it, a translator translates it.
    # The same makemessages `make messages` runs (its -i patterns), into a copy of the catalogs. The
    # copy sits in the project's own directory, and ./locale is passed over: makemessages writes each
    # file's messages into the first locale path whose parent holds the file, preferring any directory
    # called "locale" it walks through. The static files are passed over too: makemessages writes a
    # temporary `<name>.py` beside each text file it reads, which a test collecting the static files
    # at the same moment would list and then not find.
    committed = Path(settings.LOCALE_PATHS[0])
    with tempfile.TemporaryDirectory(dir=settings.BASE_DIR, prefix=".catalog-check-") as copy:
        shutil.copytree(committed, copy, dirs_exist_ok=True)
        settings.LOCALE_PATHS = [copy]
        monkeypatch.chdir(settings.BASE_DIR)
        call_command(
            "makemessages",
            all=True,
            no_location=True,
            ignore_patterns=[".venv/*", "staticfiles/*", "static/*", "templates/admin/*", "locale"],
            verbosity=0,
        )
        missing = {
            str(catalog): catalog_messages(Path(copy, catalog.relative_to(committed))) - catalog_messages(catalog)
            for catalog in committed.glob("*/LC_MESSAGES/django.po")
        }
    assert missing and all(not messages for messages in missing.values()), f"run `make messages`: {missing}"


def test_every_catalog_is_compiled_so_no_machine_needs_gettext(settings):
    catalogs = list(Path(settings.LOCALE_PATHS[0]).glob("*/LC_MESSAGES/django.po"))
    assert catalogs
    assert [catalog for catalog in catalogs if not catalog.with_suffix(".mo").exists()] == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "dates, english, korean",
    [
        # Several whole months read as their first month alone ("July 2021"), several years as the
        # first year, and an unknown date lost the years it lies in, which the date filter reads.
        ((date(2021, 7, 1), date(2021, 9, 30), "month"), "July 2021 – September 2021", "2021년 7월 – 2021년 9월"),
        ((date(2021, 12, 1), date(2022, 2, 28), "month"), "December 2021 – February 2022", "2021년 12월 – 2022년 2월"),
        ((date(2021, 7, 1), date(2021, 7, 31), "month"), "July 2021", "2021년 7월"),
        ((date(2019, 1, 1), date(2020, 12, 31), "year"), "2019 – 2020", "2019 – 2020"),
        ((date(2019, 1, 1), date(2019, 12, 31), "year"), "2019", "2019"),
        ((date(2018, 3, 1), date(2022, 12, 31), "unknown"), "Date unknown (2018 – 2022)", "날짜 미상 (2018 – 2022)"),
        ((date(2023, 2, 1), date(2023, 11, 30), "unknown"), "Date unknown (2023)", "날짜 미상 (2023)"),
        # A Day recorded over several days read "Around 3 October 2023" in the API and the CSV.
        (
            (date(2023, 10, 3), date(2023, 10, 9), "day"),
            "3 October 2023 – 9 October 2023",
            "2023년 10월 3일 – 2023년 10월 9일",
        ),
        ((date(2023, 10, 3), date(2023, 10, 3), "day"), "3 October 2023", "2023년 10월 3일"),
        (
            (date(2023, 10, 2), date(2023, 10, 8), "week"),
            "Week of 2 October 2023 – 8 October 2023",
            "2023년 10월 2일 – 2023년 10월 8일 주간",
        ),
        (
            (date(2023, 8, 29), date(2023, 9, 18), "range"),
            "29 August 2023 – 18 September 2023",
            "2023년 8월 29일 – 2023년 9월 18일",
        ),
    ],
)
def test_every_door_says_an_incidents_whole_date_range_as_the_pages_do(dates, english, korean):
    start, end, precision = dates
    incident = make_incident(title="Dated incident", date_start=start, date_end=end, date_precision=precision)
    for prefix, label in (("", english), ("/ko", korean)):
        page = Client().get(f"{prefix}/incidents/{incident.public_id}/").content.decode()
        assert f"<dd>{label}</dd>" in page
        browse = Client().get(f"{prefix}/").content.decode()
        assert f">{label}</td>" in browse
        # The map's popups, in the reader's language (on /ko/map/ they were in English).
        (drawn,) = json.loads(_body(Client().get(f"{prefix}/map/incidents.geojson")))["features"]
        assert drawn["properties"]["dates"] == label
    # The data's label is the English page's, in the API, the CSV and the GeoJSON download alike.
    assert Client().get(f"/api/v1/incidents/{incident.public_id}/").json()["date_label"] == english
    (row,) = csv.DictReader(io.StringIO(_body(Client().get("/incidents.csv"))))
    assert row["date_label"] == english
    (feature,) = json.loads(_body(Client().get("/ko/incidents.geojson")))["features"]
    assert feature["properties"]["date_label"] == english


@pytest.fixture
def public_rate(settings):
    """Three requests a minute per anonymous address on the public site, as TRACKER_PUBLIC_ANON_RATE
    would set it."""
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "public": "3/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


def test_an_anonymous_reader_past_the_public_rate_is_told_when_to_come_back(public_rate):
    make_incident()
    reader = Client(REMOTE_ADDR="192.0.2.7")
    # Pages, map data and the GeoJSON download count alike.
    assert [reader.get(path).status_code for path in ("/", "/map/incidents.geojson", "/incidents.geojson")] == [
        200,
        200,
        200,
    ]
    refused = reader.get("/statistics/")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    page = html.unescape(refused.content.decode())
    assert "This site answers at most 3 requests every 60 seconds from one address" in page
    assert "요청이 너무 많습니다" in html.unescape(reader.get("/ko/").content.decode())
    # Every other address keeps its own count.
    assert Client(REMOTE_ADDR="192.0.2.8").get("/statistics/").status_code == 200


def test_an_embed_past_the_public_rate_is_refused_in_a_page_its_frame_may_show(public_rate):
    # Each visitor of a site that frames an embed loads it from their own address.
    visitor = Client(REMOTE_ADDR="192.0.2.7")
    for _ in range(3):
        assert visitor.get("/embed/statistics/").status_code == 200
    refused = visitor.get("/embed/map/")
    assert refused.status_code == 429
    assert "frame-ancestors *" in refused["Content-Security-Policy"]
    assert Client(REMOTE_ADDR="192.0.2.8").get("/embed/map/").status_code == 200


def test_the_addresses_of_one_ipv6_network_share_the_public_rate(public_rate):
    for address in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"):
        assert Client(REMOTE_ADDR=address).get("/").status_code == 200
    assert Client(REMOTE_ADDR="2001:db8:1:2::4").get("/").status_code == 429
    assert Client(REMOTE_ADDR="2001:db8:1:3::1").get("/").status_code == 200


def test_signed_in_readers_are_not_counted_by_the_public_rate(public_rate):
    reader = client_for("staff")
    assert [reader.get("/", REMOTE_ADDR="192.0.2.7").status_code for _ in range(5)] == [200] * 5
    # Their address's anonymous readers have their whole rate still.
    anonymous = Client(REMOTE_ADDR="192.0.2.7")
    assert [anonymous.get("/").status_code for _ in range(4)] == [200, 200, 200, 429]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/?country=CN&country=KP", "country"),
        ("/?date_from=2020-01-01&date_from=2024-01-01", "date_from"),
        ("/statistics/?group_by=year&group_by=country", "group_by"),
        ("/embed/statistics/?group_by=year&group_by=country", "group_by"),
        ("/map/?min_people=1&min_people=2", "min_people"),
    ],
)
def test_a_page_refuses_a_parameter_of_one_value_given_twice_naming_it(path, refused):
    """`country=CN&country=KP` listed, counted and mapped North Korea's incidents alone (the last
    value), and `group_by=year&group_by=country` grouped by country: the reader asked for both."""
    response = Client().get(path)
    assert response.status_code == 400
    assert [error["parameter"] for error in response.context["errors"]] == [refused]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/statistics/", "/map/", "/embed/statistics/", "/embed/map/"])
def test_a_page_passes_over_a_parameter_it_does_not_read(path):
    """A shared link carries `utm_source`, `fbclid`, … (given twice, too): the page reads its own."""
    make_incident(title="Published")
    assert Client().get(f"{path}?utm_source=a&utm_source=b&fbclid=x&verification=alleged").status_code == 200


def sent_by_the_filter_form(page: str, **typed) -> dict[str, list[str]]:
    """What the filter form of `page` sends when its reader types `typed` and presses "Show
    incidents": each of its inputs with its value, hidden ones included."""
    form = re.search(r'<form class="filters".*?</form>', page, re.S).group(0)
    sent: dict[str, list[str]] = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name:
            sent.setdefault(name.group(1), []).append(html.unescape(value.group(1)) if value else "")
    sent.update({name: [value] for name, value in typed.items()})
    return {name: values for name, values in sent.items() if any(values)}


@pytest.mark.parametrize("path", ["/", "/map/"])
@pytest.mark.parametrize(
    ("query", "reader", "carried"),
    [
        # A search from a shared link to the corroborated incidents listed every incident again.
        ("min_origins=2", None, {"min_origins": ["2"]}),
        # A Viewer's search of the drafts mixed the published ones in.
        ("review_state=draft&review_state=in_review", roles.VIEWER, {"review_state": ["draft", "in_review"]}),
        (
            "verification=alleged&type=forced-repatriation",
            None,
            {"verification": ["alleged"], "type": ["forced-repatriation"]},
        ),
    ],
)
def test_a_search_keeps_every_filter_the_form_does_not_show(path, query, reader, carried):
    client = Client()
    if reader:
        client.force_login(make_user(reader))
    make_incident(title="Border arrests")

    page = client.get(f"{path}?{query}").content.decode()

    assert sent_by_the_filter_form(page, q="border") == {**carried, "q": ["border"]}


def test_the_statistics_link_to_the_map_keeps_the_filters():
    # The list's and the map's own links to the map kept them; the statistics' did not.
    page = Client().get("/statistics/?country=CN&group_by=type").content.decode()

    assert 'href="/map/?country=CN"' in page
