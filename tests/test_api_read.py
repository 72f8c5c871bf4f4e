"""Reading through the API: what each reader sees, how lists page and filter, and what it costs."""

import base64
import json
from datetime import UTC, date, datetime, timedelta
from unittest.mock import ANY
from urllib.parse import urlencode

import orjson
import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import Exists, OuterRef
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from incidents import filters, roles, search
from incidents.api.pagination import StableCursorPagination
from incidents.api.renderers import JSONRenderer
from incidents.api.serializers import IncidentSerializer
from incidents.api.views import IncidentViewSet
from incidents.models import Incident, IncidentType, Involvement, Source, VictimGroup
from tests.api_support import API, client_for, incident_url, public_ids, results
from tests.factories import (
    incident_type,
    make_claim,
    make_incident,
    make_organization,
    make_place,
    make_source,
    make_user,
    place_chain,
    type_chain,
)

# Every kind of reader the API answers differently: none, an account without a role, staff without
# and with the confidential permission, a superuser.
READERS = ["anonymous", "registered", "viewer", "confidential", "superuser"]


def reader_account(reader: str):
    return {
        "anonymous": lambda: None,
        "registered": make_user,
        "viewer": lambda: make_user(roles.VIEWER),
        "confidential": lambda: make_user(roles.VIEWER, confidential=True),
        "superuser": lambda: make_user(is_superuser=True, is_staff=True),
    }[reader]()


@pytest.fixture
def world():
    """A published incident at a sensitive facility in Jilin, China, with a public claim, a
    confidential claim and a claim from a confidential source; plus a draft and a confidential one."""
    china = make_place(name="China", kind="country", latitude=35, longitude=103)
    jilin = make_place(name="Jilin", kind="province", parent=china, latitude=43.6, longitude=126.2)
    facility = make_place(
        name="Tumen detention centre", kind="facility", parent=jilin, latitude=42.9, longitude=129.5, sensitive=True
    )
    perpetrator = make_organization(name="Ministry of Public Security")
    publisher = make_organization(name="Human Rights Watch")
    informant = make_source(title="Informant testimony", confidential=True)
    report = make_source(title="HRW report", publisher=publisher)
    article = make_source(title="News article relaying HRW", cites=report)
    incident = make_incident(
        title="Repatriation of 80 women",
        description="Mostly women, sent back through Tumen.",
        places=[facility],
        people_count=80,
        people_count_min=70,
        people_count_max=90,
        count_qualifier="about",
        verification="corroborated",
    )
    Involvement.objects.create(incident=incident, organization=perpetrator, role="perpetrator")
    VictimGroup.objects.create(incident=incident, count=60, sex="female", age_group="adult", nationality="KP")
    make_claim(incident=incident, source=report, people_count=80, excerpt="China deported 80 North Koreans")
    make_claim(incident=incident, source=make_source(), people_count=120, confidential=True)
    make_claim(incident=incident, source=informant, people_count=200)
    return {
        "china": china,
        "jilin": jilin,
        "facility": facility,
        "perpetrator": perpetrator,
        "publisher": publisher,
        "informant": informant,
        "report": report,
        "article": article,
        "incident": incident,
        "draft": make_incident(title="Draft", review_state="draft", places=[jilin]),
        "confidential": make_incident(title="Secret", confidential=True, places=[jilin]),
    }


class TestIncidentRepresentation:
    def test_anonymous_reader_gets_the_full_public_record(self, world):
        body = client_for().get(incident_url(world["incident"])).json()
        assert body["public_id"] == world["incident"].public_id
        assert body["incident_type"] == "forced-repatriation"
        assert body["date_label"] == "29 August 2023"
        assert (body["people_count"], body["people_count_min"], body["people_count_max"]) == (80, 70, 90)
        assert body["count_qualifier"] == "about"
        assert body["verification"] == "corroborated"
        assert body["version"] == 1
        assert body["created_at"] and body["updated_at"]
        assert body["places"] == [
            {
                "id": world["facility"].pk,
                "name": "Tumen detention centre",
                "kind": "facility",
                "country": "CN",
                # Sensitive: the public sees the province's coordinates.
                "latitude": 43.6,
                "longitude": 126.2,
            }
        ]
        assert [(row["organization_name"], row["role"]) for row in body["involvements"]] == [
            ("Ministry of Public Security", "perpetrator")
        ]
        assert body["victim_groups"][0] | {"id": None} == {
            "id": None,
            "count": 60,
            "sex": "female",
            "age_group": "adult",
            "nationality": "KP",
            "description": "",
        }
        # Only the public claim: the confidential claim and the informant's are hidden, and the
        # claim range covers only what this reader may see.
        assert [(claim["source_title"], claim["people_count"]) for claim in body["claims"]] == [("HRW report", 80)]
        assert (body["claim_people_min"], body["claim_people_max"]) == (80, 80)
        assert body["created_by"] is None

    @pytest.mark.parametrize("reader", READERS)
    def test_every_incident_reads_the_same_in_the_list_as_in_its_detail(self, world, reader):
        # The list's page and the detail's one incident, each built by PostgreSQL in its own query.
        # Among them: empty collections, unknown counts and dates, a place without a country or
        # coordinates, a victim group without a nationality, and an incident with an author.
        bare = make_incident(title="Nothing known yet", people_count=None, count_qualifier="unknown")
        sparse = make_incident(
            title="Somewhere", places=[make_place(name="Unnamed crossing", country="")], created_by=make_user()
        )
        VictimGroup.objects.create(incident=sparse, count=None, description="unknown group")
        Involvement.objects.create(incident=sparse, organization=world["publisher"], role="reporter")
        # PostgreSQL writes the list's timestamps, Python the detail's: a whole second has no fraction.
        Incident.objects.filter(pk=bare.pk).update(created_at=datetime(2024, 5, 1, 8, 30, tzinfo=UTC))
        Incident.objects.filter(pk=sparse.pk).update(created_at=datetime(2024, 5, 1, 8, 30, 0, 250000, tzinfo=UTC))
        client = client_for(reader_account(reader))
        listed = results(client.get(f"{API}/incidents/?page_size=100"))
        assert {bare.public_id, sparse.public_id, world["incident"].public_id} <= {row["public_id"] for row in listed}
        for incident in listed:
            assert incident == client.get(f"{API}/incidents/{incident['public_id']}/").json()
        created = {row["public_id"]: row["created_at"] for row in listed}
        assert created[bare.public_id] == "2024-05-01T08:30:00Z"
        assert created[sparse.public_id] == "2024-05-01T08:30:00.250000Z"

    @pytest.mark.parametrize("reader", READERS)
    def test_every_listed_incident_reads_as_the_serializer_renders_it(self, world, reader):
        """The list and the detail are built by PostgreSQL (`projections`); `IncidentSerializer`, over
        the model instances the view loads with their prefetches, is the contract they keep: the same
        bytes for every incident of messy data, for every kind of reader."""
        secret = make_source(title="Secret testimony", confidential=True)
        relay = make_source(title="Relay of the secret", cites=secret)
        second_relay = make_source(title='Relay of a relay; "quoted"', cites=relay)
        chain = make_incident(title="Reported along a chain", places=[world["facility"], world["china"]])
        make_claim(incident=chain, source=second_relay, people_count=None, excerpt='Ünïcode \\ and "quotes"')
        make_claim(incident=chain, source=relay, people_count=5, people_count_min=3, confidential=True)
        make_claim(incident=chain, source=world["article"], people_count=7, people_count_max=9)
        hidden_only = make_incident(title="Only hidden claims", places=[world["jilin"]])
        make_claim(incident=hidden_only, source=world["informant"], people_count=12)
        bare = make_incident(title="Nothing known yet", people_count=None, count_qualifier="unknown")
        account = reader_account(reader)
        listed = client_for(account).get(f"{API}/incidents/?page_size=200")
        assert listed.status_code == 200
        rows = orjson.loads(listed.content)["results"]
        assert {chain.public_id, hidden_only.public_id, bare.public_id} <= {row["public_id"] for row in rows}

        request = Request(APIRequestFactory().get(f"{API}/incidents/"))
        request.user = account or AnonymousUser()
        view = IncidentViewSet(request=request, action="retrieve", format_kwarg=None, kwargs={})
        instances = {incident.public_id: incident for incident in view.representation_queryset()}
        rendered = JSONRenderer()
        for row in rows:
            serialized = IncidentSerializer(instances[row["public_id"]], context=view.get_serializer_context()).data
            assert rendered.render(row) == rendered.render(orjson.loads(rendered.render(serialized)))

    @pytest.mark.parametrize("writer", ["analyst", "confidential analyst", "superuser"])
    def test_a_write_answers_the_incident_as_its_detail_reads(self, world, writer):
        # Reads are built by PostgreSQL (projections), a write's answer by the serializer: one
        # contract, two paths. Drafts, so that an analyst's write applies rather than waiting as a revision.
        Incident.objects.filter(pk=world["incident"].pk).update(review_state="draft")
        bare = make_incident(title="Nothing known yet", people_count=None, count_qualifier="unknown")
        sparse = make_incident(
            title="Somewhere", places=[make_place(name="Unnamed crossing", country="")], created_by=make_user()
        )
        VictimGroup.objects.create(incident=sparse, count=None, description="unknown group")
        Involvement.objects.create(incident=sparse, organization=world["publisher"], role="reporter")
        Incident.objects.filter(pk__in=[bare.pk, sparse.pk]).update(review_state="draft")
        users = {
            "analyst": make_user(roles.ANALYST),
            "confidential analyst": make_user(roles.ANALYST, confidential=True),
            "superuser": make_user(is_superuser=True, is_staff=True),
        }
        client = client_for(users[writer])
        for incident in (world["incident"], bare, sparse):
            read = client.get(incident_url(incident))
            answer = client.patch(
                incident_url(incident), {"title": incident.title}, HTTP_IF_MATCH=read["ETag"], format="json"
            )
            assert answer.status_code == 200, answer.content
            assert answer.json() == client.get(incident_url(incident)).json()

    def test_confidential_reader_sees_every_claim_and_the_full_claim_range(self, world):
        reader = make_user(roles.VIEWER, confidential=True)
        body = client_for(reader).get(incident_url(world["incident"])).json()
        assert sorted(claim["people_count"] for claim in body["claims"]) == [80, 120, 200]
        assert (body["claim_people_min"], body["claim_people_max"]) == (80, 200)

    def test_staff_see_exact_coordinates_of_sensitive_places(self, world):
        body = client_for(make_user(roles.VIEWER)).get(incident_url(world["incident"])).json()
        assert (body["places"][0]["latitude"], body["places"][0]["longitude"]) == (42.9, 129.5)

    def test_registered_non_staff_reader_sees_coarsened_coordinates(self, world):
        body = client_for(make_user()).get(f"{API}/places/{world['facility'].pk}/").json()
        assert (body["latitude"], body["longitude"]) == (43.6, 126.2)

    def test_a_place_shows_its_nearest_public_ancestors_coordinates_at_any_depth(self):
        """The place and its two nearest ancestors are read by joins, the rest of the way up by the
        SQL function `place_public_coordinates`: both must show what the function alone shows."""
        levels = [  # (sensitive, own coordinates), from a country down to a place six levels below it
            (False, (40.0, 120.0)),
            (False, None),
            (True, (41.5, 121.5)),
            (False, None),
            (True, None),
            (True, (42.25, 122.75)),
            (False, (43.125, 123.5)),
        ]
        places, parent = [], None
        for depth, (sensitive, coordinates) in enumerate(levels):
            latitude, longitude = coordinates or (None, None)
            parent = make_place(
                name=f"Level {depth}", parent=parent, sensitive=sensitive, latitude=latitude, longitude=longitude
            )
            places.append(parent)
        incident = make_incident(places=places)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, CASE WHEN latitude IS NOT NULL AND NOT within_sensitive THEN ARRAY[latitude, longitude]"
                " ELSE place_public_coordinates(parent_id) END FROM incidents_place WHERE id = ANY(%s)",
                [[place.pk for place in places]],
            )
            by_function = {pk: [float(value) for value in coordinates] for pk, coordinates in cursor.fetchall()}
        # The last place is not sensitive, but it lies inside sensitive ones: its own would tell where they are.
        assert [by_function[place.pk] for place in places] == [[40.0, 120.0]] * 7
        for reader in (None, make_user()):
            client = client_for(reader)
            for place in places:
                body = client.get(f"{API}/places/{place.pk}/").json()
                assert [body["latitude"], body["longitude"]] == by_function[place.pk]
            (listed,) = results(client.get(f"{API}/incidents/"))
            assert listed == client.get(incident_url(incident)).json()
            assert {row["id"]: [row["latitude"], row["longitude"]] for row in listed["places"]} == by_function

    @pytest.mark.parametrize("hidden", ["draft", "confidential"])
    def test_hidden_incidents_answer_404_like_missing_ones(self, world, hidden):
        hidden_answer = client_for().get(incident_url(world[hidden]))
        missing_answer = client_for().get(f"{API}/incidents/INC-999999/")
        assert hidden_answer.status_code == missing_answer.status_code == 404
        assert hidden_answer.json() == missing_answer.json()

    def test_detail_carries_an_etag_built_from_the_version(self, world):
        response = client_for().get(incident_url(world["incident"]))
        assert response["ETag"] == '"public.1"'


class TestLinkedRecords:
    def test_a_public_source_citing_a_confidential_one_does_not_reveal_it(self, world):
        relay = make_source(title="Article relaying the informant", cites=world["informant"])
        public = client_for().get(f"{API}/sources/{relay.pk}/").json()
        insider = client_for(make_user(roles.VIEWER, confidential=True)).get(f"{API}/sources/{relay.pk}/").json()
        assert public["cites"] is None
        assert insider["cites"] == world["informant"].pk

    def test_confidential_sources_are_not_listed_and_answer_404(self, world):
        listed = {source["title"] for source in results(client_for().get(f"{API}/sources/"))}
        assert "Informant testimony" not in listed
        assert "HRW report" in listed
        assert client_for().get(f"{API}/sources/{world['informant'].pk}/").status_code == 404

    def test_source_notes_are_for_staff_only(self, world):
        world["report"].notes = "Called the author on 3 May."
        world["report"].save()
        assert client_for().get(f"{API}/sources/{world['report'].pk}/").json()["notes"] is None
        staff = client_for(make_user(roles.VIEWER)).get(f"{API}/sources/{world['report'].pk}/").json()
        assert staff["notes"] == "Called the author on 3 May."

    def test_a_response_lists_only_the_incidents_and_source_the_reader_may_see(self, world):
        from incidents.models import Response

        response = Response.objects.create(
            organization=world["publisher"], kind="statement", date=date(2023, 9, 1), source=world["informant"]
        )
        response.incidents.set([world["incident"], world["draft"], world["confidential"]])
        public = client_for().get(f"{API}/responses/{response.pk}/").json()
        assert (public["incidents"], public["source"]) == ([world["incident"].public_id], None)
        insider = client_for(make_user(roles.REVIEWER, confidential=True)).get(f"{API}/responses/{response.pk}/")
        assert len(insider.json()["incidents"]) == 3
        assert insider.json()["source"] == world["informant"].pk


def _many_incidents(count: int):
    place = make_place(name="Hyesan area", country="KP", parent=make_place(name="Ryanggang", country="KP"))
    for number in range(count):
        incident = make_incident(title=f"Bulk {number}", date_start=date(2022, 1, 1) + timedelta(days=number))
        incident.date_end = incident.date_start
        incident.places.set([place])
        make_claim(incident=incident)
        Involvement.objects.create(incident=incident, organization=make_organization(), role="perpetrator")
        VictimGroup.objects.create(incident=incident, count=3)


class TestListCost:
    # The incident list: 1 query, PostgreSQL building each incident's JSON with its places,
    # claims, involvements and victim groups. Other lists: 1 query for the page, plus one prefetch
    # of the visible incidents for responses. No COUNT(*): cursor pagination needs none.
    @pytest.mark.parametrize(
        ("path", "queries"),
        [
            ("incidents/", 1),
            ("sources/", 1),
            ("organizations/", 1),
            ("places/", 1),
            ("incident-types/", 1),
            ("responses/", 2),
        ],
    )
    def test_list_query_count_does_not_grow_with_page_size(self, path, queries, django_assert_num_queries):
        _many_incidents(12)
        from incidents.models import Response

        for number in range(12):
            make_place(parent=make_place())
            make_source(cites=make_source())
            response = Response.objects.create(
                organization=make_organization(), kind="statement", date=date(2023, 1, number + 1)
            )
            # Responses follow the incidents they respond to: anonymous readers see these.
            response.incidents.add(Incident.objects.filter(review_state="published", confidential=False).first())
        client = client_for()
        for page_size in (2, 10):
            with django_assert_num_queries(queries):
                answer = client.get(f"{API}/{path}?page_size={page_size}")
            assert len(results(answer)) == page_size

    def test_the_revisions_list_query_count_does_not_grow_with_its_revisions(self):
        # Each revision's differences and shown changes were read one revision at a time: queries
        # for its claims' sources, its places, each related record it names, the incident's
        # children... The Reviewers' queue lists up to 200.
        reviewer = client_for(make_user(roles.REVIEWER, confidential=True))
        detention = IncidentType.objects.exclude(slug="forced-repatriation").first()

        def propose(analyst):
            incident = make_incident(places=[make_place()])
            claim = make_claim(incident=incident)
            # Hidden from the proposer: accepting keeps it, and the differences show it on both sides.
            make_claim(incident=incident, source=make_source(title=f"Informant {incident.pk}"), confidential=True)
            VictimGroup.objects.create(incident=incident, count=3)
            body = {
                "version": 1,
                "title": "Edited",
                "incident_type": detention.slug,
                "places": [make_place().pk],
                "claims": [
                    {"id": claim.pk, "source": claim.source_id, "people_count": 40},
                    {"source": make_source().pk, "people_count": 30},
                ],
                "victim_groups": [{"count": 4, "sex": "female"}],
                "involvements": [{"organization": make_organization().pk, "role": "perpetrator"}],
            }
            assert client_for(analyst).patch(incident_url(incident), body, format="json").status_code == 202

        propose(make_user(roles.ANALYST))
        reviewer.get(f"{API}/revisions/")  # the first request's lookups that are cached after it
        counts, proposed = [], 1
        for more in (1, 6):
            for _ in range(more):
                propose(make_user(roles.ANALYST))
            proposed += more
            with CaptureQueriesContext(connection) as queries:
                listed = results(reviewer.get(f"{API}/revisions/?state=pending&page_size=50"))
            counts.append(len(queries))
            assert len(listed) == proposed
            for revision in listed:
                # The page, read together, says what each revision's own page says.
                alone = reviewer.get(f"{API}/revisions/{revision['id']}/").json()
                assert (revision["diff"], revision["changes"]) == (alone["diff"], alone["changes"])
                changed = {}
                for row in revision["diff"]:
                    changed.setdefault(row["field"], []).append((row["now"], row["proposed"]))
                assert set(changed) == {"Title", "Incident type", "Places", "Claims", "Victim groups", "Involvements"}
                assert changed["Incident type"] == [(ANY, str(detention))]
                # The claim hidden from the proposer is kept: not among what changes.
                assert len(changed["Claims"]) == 2 and "Informant" not in str(changed["Claims"])
        assert counts[0] == counts[1], counts

    def test_incident_detail_query_count(self, world, django_assert_num_queries):
        # The incident's JSON built by PostgreSQL, like a list's row (projections).
        with django_assert_num_queries(1):
            assert client_for().get(incident_url(world["incident"])).status_code == 200


class TestPagination:
    def _walk(self, client, url):
        seen = []
        while url:
            page = client.get(url).json()
            seen += [incident["public_id"] for incident in page["results"]]
            url = page["next"]
        return seen

    def test_cursor_pages_visit_every_incident_once_newest_first(self):
        _many_incidents(7)
        walked = self._walk(client_for(), f"{API}/incidents/?page_size=3")
        assert len(walked) == len(set(walked)) == 7
        dates = [client_for().get(f"{API}/incidents/{public_id}/").json()["date_start"] for public_id in walked]
        assert dates == sorted(dates, reverse=True)

    def test_next_and_previous_walk_a_date_shared_by_more_incidents_than_the_offset_limit(self, monkeypatch):
        # 8,322 published incidents start on 1 January 2025 in the million-incident demo data; DRF's
        # cursor (a date and an offset capped at offset_cutoff) answered the same page forever after
        # the first 1,000 of them. Here 3 stand for the 1,000.
        monkeypatch.setattr(StableCursorPagination, "offset_cutoff", 3)
        for _ in range(9):
            make_incident(date_start=date(2025, 1, 1), date_end=date(2025, 1, 1))
        client = client_for()
        walked = self._walk(client, f"{API}/incidents/?page_size=2")
        assert len(walked) == len(set(walked)) == 9
        page = client.get(f"{API}/incidents/?page_size=2")
        while page.json()["next"]:
            page = client.get(page.json()["next"])
        backwards = [incident["public_id"] for incident in page.json()["results"]][::-1]
        while page.json()["previous"]:
            page = client.get(page.json()["previous"])
            backwards += [incident["public_id"] for incident in page.json()["results"]][::-1]
        assert backwards == walked[::-1]

    @pytest.mark.parametrize("ordering", ["people_count", "-people_count", "date_start", "updated_at", "-updated_at"])
    def test_every_ordering_pages_through_all_incidents_including_unknown_counts(self, ordering):
        for count in (None, 5, 5, 10, None, 1):
            make_incident(people_count=count, count_qualifier="unknown" if count is None else "exact")
        walked = self._walk(client_for(), f"{API}/incidents/?page_size=2&ordering={ordering}")
        assert len(walked) == len(set(walked)) == 6

    def test_people_count_ordering_sorts_by_the_best_estimate(self):
        for count in (30, 10, 20):
            make_incident(people_count=count)
        answer = client_for().get(f"{API}/incidents/?ordering=-people_count")
        assert [incident["people_count"] for incident in results(answer)] == [30, 20, 10]

    @pytest.mark.parametrize(
        ("query", "parameter"),
        [
            ("ordering=title", "ordering"),
            ("page_size=0", "page_size"),
            ("page_size=x", "page_size"),
            ("cursor=garbage", "cursor"),
            # A well-formed cursor whose position is not a date (p=1&o=9).
            ("cursor=cD0xJm89OQ==", "cursor"),
            # Characters base64 does not use, which it drops: no position, read as page 1 again (a
            # sync whose stored cursor was mangled looped), as was an empty cursor.
            ("cursor=***", "cursor"),
            ("cursor=%00", "cursor"),
            ("cursor=%25%25", "cursor"),
            ("cursor=", "cursor"),
        ],
    )
    def test_bad_paging_parameters_answer_400_naming_them(self, query, parameter):
        make_incident()
        answer = client_for().get(f"{API}/incidents/?{query}")
        assert answer.status_code == 400
        assert parameter in answer.json()

    @pytest.mark.parametrize("ordering", ["-people_count", "-date_start", "updated_at"])
    @pytest.mark.parametrize("position", ["[1e400, 1]", '["5", -1e400]', '["2023-01-01", 1e400]', '["5", 1.5]'])
    def test_a_cursor_holding_a_number_not_text_answers_400(self, ordering, position):
        # JSON's 1e400 is infinity to Python: int() of it in the lookup was a 500.
        make_incident()
        cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
        answer = client_for().get(f"{API}/incidents/", {"cursor": cursor, "ordering": ordering})
        assert answer.status_code == 400 and "cursor" in answer.json()

    @pytest.mark.parametrize(
        ("time", "status"),
        # UTC after the year 9999 or before the year 1: no time; an offset PostgreSQL does not take,
        # of a time that has a UTC, is read as that.
        [("9999-12-31T23:59:59-23:00", 400), ("0001-01-01T00:00:00+23:00", 400), ("2024-01-01T00:00:00+17:44", 200)],
    )
    def test_a_cursor_holding_a_time_postgresql_cannot_compare_is_read_in_utc(self, time, status):
        # Each was psycopg's DataError when the page was fetched: a 500, at every list whose order
        # starts with a time (an incremental sync's, the withdrawals; the history's cursor names
        # its event instead, whose time may be withheld).
        make_incident()
        pages = [
            (client_for(), f"{API}/incidents/", {"ordering": "updated_at"}, [time, "1"]),
            (client_for(), f"{API}/incidents/withdrawn/", {"since": "2000-01-01T00:00:00Z"}, [time, "1"]),
        ]
        for client, url, query, position in pages:
            cursor = base64.b64encode(urlencode({"p": json.dumps(position)}).encode()).decode()
            answer = client.get(url, {**query, "cursor": cursor})
            assert answer.status_code == status, (url, answer.content)
            assert status == 200 or "cursor" in answer.json()

    @pytest.mark.parametrize(
        ("path", "reader"),
        [("incidents/", None), ("sources/", None), ("responses/", None), ("incidents/{id}/history/", roles.VIEWER)],
    )
    def test_a_cursor_of_deeply_nested_json_answers_400(self, path, reader):
        # Python's JSON decoder recursed into the nested arrays: a RecursionError, a 500 for anyone.
        incident = make_incident()
        cursor = base64.b64encode(("p=" + "[" * 1500).encode()).decode()
        client = client_for(make_user(reader) if reader else None)
        answer = client.get(f"{API}/{path.format(id=incident.public_id)}", {"cursor": cursor})
        assert answer.status_code == 400 and "cursor" in answer.json()

    def test_a_cursor_holding_a_nul_answers_400(self):
        # The history's order ends with the event model's name, text: PostgreSQL's text cannot hold
        # a NUL, and psycopg's DataError for it was a 500.
        incident = make_incident()
        reviewer = make_user(roles.REVIEWER, confidential=True)
        position = '["2024-01-01T00:00:00+00:00", "1", "incidents.\\u0000"]'
        cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
        answer = client_for(reviewer).get(incident_url(incident, "history/"), {"cursor": cursor})
        assert answer.status_code == 400 and "cursor" in answer.json()

    @pytest.mark.parametrize(
        ("path", "query"),
        [("incidents/", {"ordering": "updated_at"}), ("incidents/withdrawn/", {"since": "2000-01-01T00:00:00Z"})],
    )
    @pytest.mark.parametrize("time", ["2024-01-01T00:00:00", "2024-01-01"])
    def test_a_cursor_holding_a_time_without_its_offset_answers_400(self, path, query, time):
        # A page's cursor writes its times with their offset. One without was read in the server's
        # time zone, with a warning for each request: a 500 wherever warnings are errors.
        make_incident()
        cursor = base64.b64encode(urlencode({"p": json.dumps([time, "1"])}).encode()).decode()
        answer = client_for().get(f"{API}/{path}", {**query, "cursor": cursor})
        assert answer.status_code == 400 and list(answer.json()) == ["cursor"]

    def test_page_size_above_the_limit_is_refused(self, settings):
        settings.API_MAX_PAGE_SIZE = 5
        assert client_for().get(f"{API}/incidents/?page_size=6").status_code == 400
        assert client_for().get(f"{API}/incidents/?page_size=5").status_code == 200


class TestFilters:
    def test_date_range_overlap(self):
        july = make_incident(date_start=date(2021, 7, 1), date_end=date(2021, 7, 31), date_precision="month")
        make_incident(date_start=date(2021, 9, 1), date_end=date(2021, 9, 1))
        answer = client_for().get(f"{API}/incidents/?date_from=2021-07-15&date_to=2021-07-20")
        assert public_ids(answer) == {july.public_id}

    def test_type_includes_its_sub_types(self):
        parent = incident_type("arbitrary-detention")
        child = IncidentType.objects.create(slug="incommunicado", name="Incommunicado detention", parent=parent)
        detained = make_incident(incident_type=child)
        make_incident()
        assert public_ids(client_for().get(f"{API}/incidents/?type=arbitrary-detention")) == {detained.public_id}

    def test_country_and_place_include_places_inside(self, world):
        elsewhere = make_incident(places=[make_place(country="KP")])
        assert public_ids(client_for().get(f"{API}/incidents/?country=CN")) == {world["incident"].public_id}
        by_place = client_for().get(f"{API}/incidents/?place={world['china'].pk}")
        assert public_ids(by_place) == {world["incident"].public_id}
        assert public_ids(client_for().get(f"{API}/incidents/?country=KP")) == {elsewhere.public_id}

    def test_the_country_filter_holds_inside_another_query(self, world):
        # Its SQL names the incident by its query's alias, which changes when the query is nested.
        elsewhere = make_incident(places=[make_place(country="KP")])
        filterset = filters.IncidentFilterSet({"country": "CN"}, queryset=Incident.objects.all())
        assert filterset.is_valid()
        assert world["incident"] in filterset.qs and elsewhere not in filterset.qs
        # Incidents of a type that some incident in China has: the Korean one, of the same type.
        same_type = Incident.objects.filter(Exists(filterset.qs.filter(incident_type=OuterRef("incident_type"))))
        assert elsewhere in same_type

    @pytest.mark.parametrize("query", ["verification=verified&verification=alleged", "review_state=published"])
    def test_filters_on_the_incidents_own_columns_need_no_distinct(self, world, query):
        # DISTINCT over the page's representations made PostgreSQL build one for every match
        # before the LIMIT: 10 s for a page of drafts at 1,000,000 incidents.
        filterset = filters.IncidentFilterSet(QueryDict(query), queryset=Incident.objects.all())
        assert filterset.is_valid()
        assert not filterset.qs.query.distinct

    def test_people_bounds_and_verification(self, world):
        small = make_incident(people_count=5, verification="verified")
        assert public_ids(client_for().get(f"{API}/incidents/?max_people=10")) == {small.public_id}
        assert public_ids(client_for().get(f"{API}/incidents/?min_people=50")) == {world["incident"].public_id}
        assert public_ids(client_for().get(f"{API}/incidents/?verification=verified")) == {small.public_id}

    def test_source_includes_incidents_reported_by_sources_relaying_it(self, world):
        relayed = make_incident()
        make_claim(incident=relayed, source=world["article"])
        answer = client_for().get(f"{API}/incidents/?source={world['report'].pk}")
        assert public_ids(answer) == {world["incident"].public_id, relayed.public_id}

    def test_source_follows_a_long_chain_of_relays_in_one_statement(self, world, django_assert_num_queries):
        # One query a step of the chain: `?source=` of the original of 3,000 relays sent 3,002
        # statements (2.3 s), none long enough for an anonymous reader's bound to stop it. A chain of
        # 1,000 here: the count of statements is what this holds; at 3,000 the one statement, 0.1 s
        # on an idle machine, once passed the anonymous bound of 1 s on a loaded one.
        relays = [world["report"]]
        for number in range(1, 1000):
            relays.append(Source(title=f"Relay {number}", kind="news_article"))
        Source.objects.bulk_create(relays[1:])
        for number, relay in enumerate(relays[1:], start=1):
            relay.cites = relays[number - 1]
        Source.objects.bulk_update(relays[1:], ["cites"], batch_size=1000)
        relayed = make_incident()
        make_claim(incident=relayed, source=relays[-1])
        # Through a confidential relay the chain ends, as everywhere else, for readers who may not see it.
        hidden_relay = make_source(title="Confidential relay", cites=relays[-1], confidential=True)
        make_claim(incident=make_incident(), source=make_source(cites=hidden_relay))
        # The source asked for, among those the reader may see; its relays; the cursor page.
        with django_assert_num_queries(3):
            answer = client_for().get(f"{API}/incidents/?source={world['report'].pk}")
        assert public_ids(answer) == {world["incident"].public_id, relayed.public_id}

    @pytest.mark.parametrize("parameter", ["place", "type"])
    def test_place_and_type_follow_a_deep_tree_in_one_statement(self, parameter, django_assert_num_queries):
        # One query a level: `?place=` or `?type=` of the top of a chain 1,500 deep (stored before
        # places and types nested at most 10 levels) sent 1,500 statements, each too short for an
        # anonymous reader's bound to stop. A chain of 200 here: the count is what this holds.
        chain = place_chain(200) if parameter == "place" else type_chain(200)
        deepest = make_incident(places=[chain[-1]]) if parameter == "place" else make_incident(incident_type=chain[-1])
        make_incident(places=[make_place()])
        value = chain[0].pk if parameter == "place" else chain[0].slug
        # The place or type asked for; what lies below it; the cursor page.
        with django_assert_num_queries(3):
            answer = client_for().get(f"{API}/incidents/?{parameter}={value}")
        assert public_ids(answer) == {deepest.public_id}

    def test_organization_matches_involvement_or_publisher_of_a_cited_source(self, world):
        by_involvement = client_for().get(f"{API}/incidents/?organization={world['perpetrator'].pk}")
        by_publisher = client_for().get(f"{API}/incidents/?organization={world['publisher'].pk}")
        assert public_ids(by_involvement) == public_ids(by_publisher) == {world["incident"].public_id}

    @pytest.fixture(params=["collected", "tested_in_order"])
    def search_plan(self, request, monkeypatch, world):
        """A search collects few matches from the index and tests incidents in the list's order when
        there are many (see IncidentSearch.filter); both must find the same incidents. A bound of
        0 makes every search's matches many."""
        monkeypatch.setattr(search, "COLLECT_BELOW", {"collected": 10**9, "tested_in_order": 0}[request.param])

    @pytest.mark.parametrize("words", ["women", "deported", "Tumen detention"])
    def test_q_searches_title_description_claim_excerpts_and_place_names(self, world, words, search_plan):
        make_incident(title="Unrelated")
        assert public_ids(client_for().get(f"{API}/incidents/", {"q": words})) == {world["incident"].public_id}

    def test_q_does_not_match_words_only_in_hidden_claims(self, world, search_plan):
        make_claim(incident=make_incident(), source=world["informant"], excerpt="whispered codeword")
        assert public_ids(client_for().get(f"{API}/incidents/?q=codeword")) == set()
        insider = client_for(make_user(roles.VIEWER, confidential=True))
        assert len(public_ids(insider.get(f"{API}/incidents/?q=codeword"))) == 1

    def test_updated_since_lists_only_recent_changes(self, world):
        cutoff = timezone.now()
        world["incident"].title = "Corrected"
        world["incident"].save()
        answer = client_for().get(f"{API}/incidents/", {"updated_since": cutoff.isoformat()})
        assert public_ids(answer) == {world["incident"].public_id}

    @pytest.mark.parametrize(
        ("query", "parameter"),
        [
            ("date_from=notadate", "date_from"),
            ("date_to=2023-13-01", "date_to"),
            ("min_people=-1", "min_people"),
            ("max_people=many", "max_people"),
            # A count is whole: the decimal was truncated against the column (1.5 selected 1).
            ("min_people=1.5", "min_people"),
            ("max_people=2.5", "max_people"),
            ("type=unknown-type", "type"),
            ("country=XX", "country"),
            ("place=abc", "place"),
            ("source=999999", "source"),
            ("organization=999999", "organization"),
            ("verification=true", "verification"),
            ("updated_since=yesterday", "updated_since"),
        ],
    )
    def test_malformed_values_answer_400_naming_the_parameter(self, query, parameter):
        answer = client_for().get(f"{API}/incidents/?{query}")
        assert answer.status_code == 400
        assert list(answer.json()) == [parameter]

    @pytest.mark.parametrize("path", ["incidents/", "sources/"])
    @pytest.mark.parametrize("page_size", ["²", pytest.param("9" * 5000, id="5000-digits")])
    def test_a_page_size_in_other_digits_answers_400_naming_page_size(self, path, page_size):
        # "²" is a digit to str.isdigit() but not to int(), nor is a number of 5,000 digits.
        answer = client_for().get(f"{API}/{path}", {"page_size": page_size})
        assert answer.status_code == 400
        assert list(answer.json()) == ["page_size"]

    @pytest.mark.parametrize(
        "path",
        [f"{API}/incidents/", f"{API}/incidents/stats/?group_by=year&", f"{API}/incidents.csv", "/", "/statistics/?"],
    )
    def test_people_bounds_in_the_wrong_order_are_refused_naming_both(self, path):
        # As reversed dates are: an empty list (statistics of 0 incidents) would be taken for a fact.
        separator = "" if path.endswith(("?", "&")) else "?"
        answer = client_for().get(f"{path}{separator}min_people=10&max_people=5")
        assert answer.status_code == 400
        text = answer.content.decode() if not answer.streaming else b"".join(answer.streaming_content).decode()
        # The public pages name them as their form labels them, once.
        public_page = not path.startswith(API)
        assert ("At most (5): no count is both" if public_page else "min_people (10) is above max_people (5)") in text

    def test_every_malformed_parameter_is_named_at_once(self):
        answer = client_for().get(f"{API}/incidents/?min_people=-1&country=XX&date_to=2024-01-01&q=")
        assert answer.status_code == 400
        assert sorted(answer.json()) == ["country", "min_people"]

    def test_the_browsable_api_offers_every_filter_whichever_the_request_names(self, world):
        page = client_for().get(f"{API}/incidents/?country=CN", HTTP_ACCEPT="text/html")
        assert page.status_code == 200
        for name in filters.IncidentFilterSet.base_filters:
            assert f'name="{name}"' in page.content.decode()
        assert world["incident"].title in page.content.decode()

    def test_the_browsable_api_asks_for_records_by_id_rather_than_listing_them(self, world):
        # Listing every source the reader may see made the page 6 MB at a million incidents.
        sources = [make_source(title=f"Listed nowhere {number}") for number in range(3)]
        page = client_for().get(f"{API}/incidents/", HTTP_ACCEPT="text/html").content.decode()
        for name in ("source", "place", "organization"):
            assert f'<input type="number" name="{name}"' in page
            assert f'<select name="{name}"' not in page
        assert not any(source.title in page for source in sources)

    def test_filtering_on_a_confidential_source_reads_like_an_unknown_source(self, world):
        hidden = client_for().get(f"{API}/incidents/?source={world['informant'].pk}")
        unknown = client_for().get(f"{API}/incidents/?source=999999")
        assert hidden.status_code == unknown.status_code == 400
        assert hidden.json() == unknown.json()


class TestGeoJSON:
    def test_incident_list_as_a_feature_collection_with_coarsened_points(self, world):
        answer = client_for().get(f"{API}/incidents/?format=geojson")
        assert answer.status_code == 200
        assert answer["Content-Type"] == "application/geo+json"
        collection = answer.json()
        assert collection["type"] == "FeatureCollection"
        (feature,) = collection["features"]
        assert feature["id"] == world["incident"].public_id
        # RFC 7946: longitude first; the sensitive facility shows the province's position.
        assert feature["geometry"] == {"type": "Point", "coordinates": [126.2, 43.6]}
        assert feature["properties"]["places"] == ["Tumen detention centre"]
        assert feature["properties"]["people_count"] == 80
        assert collection["next"] is None

    def test_filters_apply_and_errors_stay_json(self, world):
        assert client_for().get(f"{API}/incidents/?format=geojson&country=KP").json()["features"] == []
        answer = client_for().get(f"{API}/incidents/?format=geojson&date_from=x")
        assert answer.status_code == 400
        assert "date_from" in answer.json()

    def test_incident_without_coordinates_has_a_null_geometry(self):
        make_incident(places=[make_place(name="Somewhere")])
        (feature,) = client_for().get(f"{API}/incidents/?format=geojson").json()["features"]
        assert feature["geometry"] is None


def test_updated_since_with_an_offset_postgresql_does_not_take_answers_200():
    # Python accepts offsets up to a day, PostgreSQL only up to 15:59: found by schemathesis as a 500.
    answer = client_for().get(f"{API}/incidents/", {"updated_since": "1755-05-23T17:01:12.915+17:44"})
    assert answer.status_code == 200


@pytest.mark.parametrize("updated_since", ["0001-01-01T00:00:00+23:00", "9999-12-31T23:59:59-23:00"])
def test_updated_since_whose_utc_time_is_beyond_the_calendar_answers_400_naming_it(updated_since):
    for address in (f"{API}/incidents/", f"{API}/incidents/stats/", "/statistics/"):
        answer = client_for().get(address, {"updated_since": updated_since, "group_by": "year"})
        assert answer.status_code == 400
        assert "updated_since" in answer.content.decode()


@pytest.mark.parametrize(("path", "parameter"), [("incidents/", "updated_since"), ("incidents/withdrawn/", "since")])
@pytest.mark.parametrize("time", ["2024-05-01T00:00:00", "2024-05-01"])
def test_a_sync_time_without_its_offset_answers_400_asking_for_one(path, parameter, time):
    # Read as UTC, a local time written by a script in Seoul was nine hours off: the sync missed or
    # repeated nine hours of changes, 200.
    answer = client_for(make_user(roles.ANALYST)).get(f"{API}/{path}", {parameter: time})
    assert answer.status_code == 400, answer.content
    (message,) = answer.json()[parameter]
    assert message.startswith("Give the time with its offset: 2023-10-09T14:30:00Z"), message


# --- Query parameters a door does not read, and single-valued ones given twice -------------------


@pytest.fixture
def china_and_korea():
    """A published incident of one person in China, one of two people in North Korea."""
    china = make_place(name="China", kind="country", country="CN", latitude=40.0, longitude=116.0)
    korea = make_place(name="North Korea", kind="country", country="KP", latitude=39.0, longitude=125.0)
    return {
        "one": make_incident(title="One person returned", people_count=1, places=[china]),
        "two": make_incident(title="Two people returned", people_count=2, places=[korea]),
    }


@pytest.mark.parametrize(
    ("path", "query", "unknown"),
    [
        # A misspelt filter answered every incident, as if unfiltered.
        (f"{API}/incidents/", {"contry": "CN"}, "contry"),
        (f"{API}/incidents/", {"min_peopel": "2"}, "min_peopel"),
        (f"{API}/incidents.geojson", {"bbox": "nan,nan,inf,inf"}, "bbox"),
        # The incidents' filters, asked of lists that have none.
        (f"{API}/places/", {"country": "CN"}, "country"),
        (f"{API}/sources/", {"q": "no such words"}, "q"),
        # The withdrawals do not follow a sync's filters (README, "Withdrawals say what left your
        # view, not what left a filter"): a 200 told the client they did.
        (f"{API}/incidents/withdrawn/", {"since": "2020-01-01T00:00:00Z", "country": "CN"}, "country"),
        # A record's detail is named by its address: no filter, no page, no DRF `fields`.
        (f"{API}/incidents/INC-000000/", {"fields": "title"}, "fields"),
        (f"{API}/incidents/INC-000000/", {"country": "KP"}, "country"),
        (f"{API}/auth/tokens/", {"cursor": "x"}, "cursor"),
    ],
)
def test_a_parameter_the_door_does_not_read_is_refused_naming_it(china_and_korea, path, query, unknown):
    path = path.replace("INC-000000", china_and_korea["one"].public_id)
    response = client_for(make_user(roles.ANALYST)).get(path, query)
    assert response.status_code == 400, response.content[:300]
    assert list(response.json()) == [unknown]
    assert "No such parameter here" in response.json()[unknown][0]


def test_the_parameters_the_doors_read_are_still_read(china_and_korea):
    client = client_for()
    # Filters, DRF's format, and the page's cursor, size and ordering.
    first = client.get(f"{API}/incidents/", {"country": "CN", "page_size": 1, "ordering": "people_count"})
    assert first.status_code == 200 and public_ids(first) == {china_and_korea["one"].public_id}
    assert client.get(f"{API}/incidents/", {"format": "geojson", "min_people": 2}).status_code == 200
    paged = client.get(f"{API}/incidents/", {"page_size": 1, "ordering": "people_count"})
    assert client.get(paged.json()["next"]).status_code == 200
    # The one repeatable filter reads every value.
    both = client.get(f"{API}/incidents/?verification=alleged&verification=corroborated&verification=verified")
    assert both.status_code == 200
    assert client.get(f"{API}/places/", {"page_size": 1, "format": "json"}).status_code == 200
    assert client.get(incident_url(china_and_korea["one"]), {"format": "json"}).status_code == 200


def test_a_single_valued_filter_given_twice_is_refused_naming_it(china_and_korea):
    """`?country=CN&country=KP` answered the North Korean incident alone (a QueryDict's last value), 200."""
    response = client_for().get(f"{API}/incidents/?country=CN&country=KP")
    assert response.status_code == 400
    assert response.json() == {"country": ["Given 2 times; give it once."]}


@pytest.mark.parametrize("parameter", ["page_size=200&page_size=1", "ordering=-date_start&ordering=date_start"])
def test_a_page_parameter_given_twice_is_refused_naming_it(china_and_korea, parameter):
    response = client_for().get(f"{API}/incidents/?{parameter}")
    assert response.status_code == 400
    assert list(response.json()) == [parameter.partition("=")[0]]


def test_every_api_view_refuses_the_parameters_it_does_not_read():
    """The refusal is the views' common base's (`ReadParametersOnlyMixin`), so no door of the API
    lags behind: every view under /api/v1/ has it, but the schema and its documentation page
    (drf-spectacular's, which read their own `lang` and `version`)."""
    from django.urls import URLResolver, get_resolver

    from incidents.api.parameters import ReadParametersOnlyMixin

    def views(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from views(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.callback

    api_views = {
        route: getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        for route, callback in views(get_resolver().url_patterns)
        if route.startswith("api/v1/") and route not in ("api/v1/schema/", "api/v1/docs/")
    }
    api_views = {route: view for route, view in api_views.items() if view is not None}
    assert len(api_views) > 20
    assert {route: view for route, view in api_views.items() if not issubclass(view, ReadParametersOnlyMixin)} == {}
