"""The visibility matrix: every endpoint x every kind of reader x public, draft and confidential records.

Expectations are written out here, not derived from `visible_to`, so a change to the rule that
leaks (or hides) a record in any door fails a named case:
- public records: everyone;
- drafts: staff (viewer, analyst, reviewer, and the confidential-permitted viewer);
- confidential records (and their confidential source): only readers with the confidential permission.
"""

from datetime import date

import pytest

from incidents import roles
from incidents.models import Response
from tests.api_support import API, client_for
from tests.factories import make_claim, make_incident, make_organization, make_source, make_user

READERS = ["anonymous", "viewer", "analyst", "reviewer", "confidential"]
KINDS = ["public", "draft", "confidential"]
SEES = {
    "public": set(READERS),
    "draft": {"viewer", "analyst", "reviewer", "confidential"},
    "confidential": {"confidential"},
}
STAFF = {"viewer", "analyst", "reviewer", "confidential"}


def reader_client(reader: str):
    users = {
        "anonymous": None,
        "viewer": lambda: make_user(roles.VIEWER),
        "analyst": lambda: make_user(roles.ANALYST),
        "reviewer": lambda: make_user(roles.REVIEWER),
        "confidential": lambda: make_user(roles.VIEWER, confidential=True),
    }
    return client_for(users[reader]() if users[reader] else None)


@pytest.fixture
def records():
    """One incident of each kind, each with a claim from its own source (the confidential
    incident's source is confidential too), a unique search word, and a response naming it."""
    made = {}
    organization = make_organization()
    for kind in KINDS:
        incident = make_incident(
            title=f"Incident marker{kind}",
            review_state="draft" if kind == "draft" else "published",
            confidential=kind == "confidential",
            people_count={"public": 1, "draft": 10, "confidential": 100}[kind],
        )
        source = make_source(title=f"Source {kind}", confidential=kind == "confidential")
        make_claim(incident=incident, source=source, excerpt=f"excerptword{kind}")
        response = Response.objects.create(organization=organization, kind="statement", date=date(2023, 10, 1))
        response.incidents.set([incident])
        made[kind] = {"incident": incident, "source": source, "response": response}
    return made


def listed_ids(answer) -> set[str]:
    assert answer.status_code == 200, answer.content
    return {row["public_id"] for row in answer.json()["results"]}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", READERS)
class TestVisibilityMatrix:
    def test_incident_list(self, records, reader, kind):
        public_id = records[kind]["incident"].public_id
        assert (public_id in listed_ids(reader_client(reader).get(f"{API}/incidents/"))) == (reader in SEES[kind])

    def test_incident_detail_and_its_error_message(self, records, reader, kind):
        client = reader_client(reader)
        answer = client.get(f"{API}/incidents/{records[kind]['incident'].public_id}/")
        if reader in SEES[kind]:
            assert answer.status_code == 200
        else:
            missing = client.get(f"{API}/incidents/INC-999999/")
            assert (answer.status_code, answer.json()) == (404, missing.json())

    def test_geojson_list(self, records, reader, kind):
        answer = reader_client(reader).get(f"{API}/incidents/?format=geojson")
        ids = {feature["id"] for feature in answer.json()["features"]}
        assert (records[kind]["incident"].public_id in ids) == (reader in SEES[kind])

    def test_full_text_search(self, records, reader, kind):
        client = reader_client(reader)
        for word in (f"marker{kind}", f"excerptword{kind}"):
            found = listed_ids(client.get(f"{API}/incidents/", {"q": word}))
            assert (records[kind]["incident"].public_id in found) == (reader in SEES[kind])

    def test_filter_by_the_records_source(self, records, reader, kind):
        source = records[kind]["source"]
        answer = reader_client(reader).get(f"{API}/incidents/?source={source.pk}")
        if source.confidential and reader != "confidential":
            # A confidential source's id reads exactly like an id that does not exist.
            unknown = reader_client(reader).get(f"{API}/incidents/?source=999999")
            assert (answer.status_code, answer.json()) == (400, unknown.json())
        else:
            expected = {records[kind]["incident"].public_id} if reader in SEES[kind] else set()
            assert listed_ids(answer) == expected

    def test_statistics_count_it_only_when_visible(self, records, reader, kind):
        total = reader_client(reader).get(f"{API}/incidents/stats/?group_by=year").json()["total"]["people_count"]
        own = {"public": 1, "draft": 10, "confidential": 100}[kind]
        assert bool(total & own) == (reader in SEES[kind])

    def test_source_list_and_detail(self, records, reader, kind):
        client = reader_client(reader)
        source = records[kind]["source"]
        titles = {row["title"] for row in client.get(f"{API}/sources/").json()["results"]}
        visible = not source.confidential or reader == "confidential"
        assert (source.title in titles) == visible
        assert client.get(f"{API}/sources/{source.pk}/").status_code == (200 if visible else 404)

    def test_claims_inside_the_public_incident(self, records, reader, kind):
        if kind != "public":
            # The draft's and the confidential record's sources also make a claim on the public incident.
            make_claim(incident=records["public"]["incident"], source=records[kind]["source"])
        answer = reader_client(reader).get(f"{API}/incidents/{records['public']['incident'].public_id}/")
        titles = {claim["source_title"] for claim in answer.json()["claims"]}
        visible = kind != "confidential" or reader == "confidential"
        assert (records[kind]["source"].title in titles) == visible

    def test_a_response_is_seen_with_its_incident_only(self, records, reader, kind):
        # Responses follow the visibility of the incidents they respond to (ResponseQuerySet).
        response = records[kind]["response"]
        answer = reader_client(reader).get(f"{API}/responses/{response.pk}/")
        if reader in SEES[kind]:
            assert answer.json()["incidents"] == [records[kind]["incident"].public_id]
        else:
            assert answer.status_code == 404

    def test_history(self, records, reader, kind):
        answer = reader_client(reader).get(f"{API}/incidents/{records[kind]['incident'].public_id}/history/")
        if reader == "anonymous":
            assert answer.status_code == 401
        else:
            assert answer.status_code == (200 if reader in SEES[kind] else 404)
