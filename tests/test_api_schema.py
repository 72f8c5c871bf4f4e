"""The OpenAPI schema is valid and the API keeps its promises: schemathesis sends generated
requests to every operation, anonymously and with a token, and fails on any server error or any
response (status, content type or body) the schema does not describe."""

from unittest import mock

import hypothesis
import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import ApiToken
from accounts.services import token_create
from incidents import roles
from incidents.models import DuplicatePair, Incident
from tests.api_support import API, client_for, incident_url
from tests.factories import make_incident, make_user
from tracker.wsgi import application

# Bounded to run in about two minutes on two cores: generated examples (valid and invalid data)
# per operation; the exhaustive coverage phase and stateful sequences are left to longer runs.
BOUNDED = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}})
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_schema_and_docs_are_served():
    schema = client_for().get(f"{API}/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/incidents/", "/api/v1/incidents/stats/", "/api/v1/incidents/{public_id}/history/"} <= set(paths)
    list_parameters = {parameter["name"] for parameter in paths["/api/v1/incidents/"]["get"]["parameters"]}
    assert {"date_from", "type", "country", "q", "ordering", "page_size", "cursor", "format"} <= list_parameters
    stats_parameters = {parameter["name"] for parameter in paths["/api/v1/incidents/stats/"]["get"]["parameters"]}
    assert {"group_by", "date_from", "country", "q"} <= stats_parameters
    assert "412" in paths["/api/v1/incidents/{public_id}/"]["patch"]["responses"]
    # A client says a place lies in no country as the admin's box does; it is never answered back.
    components = schema.json()["components"]["schemas"]
    for written in ("PlaceRequest", "PatchedPlaceRequest"):
        assert components[written]["properties"]["in_no_country"]["writeOnly"] is True
    assert "in_no_country" not in components["Place"]["properties"]
    docs = client_for().get(f"{API}/docs/")
    assert docs.status_code == 200
    # Swagger UI is served from the app's own static files, so the docs work without a CDN.
    assert b"/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs.content
    # OPTIONS (a browser's preflight, a scanner) rendered DRF's metadata through the page's
    # template, which only a GET fills in: a 500 to anyone.
    options = client_for().options(f"{API}/docs/")
    assert options.status_code == 405 and "GET" in options["Allow"]


def test_the_browsable_api_names_the_sites_icon():
    # Browsers asked every browsable API page's /favicon.ico: a 404 in the console, and a "Not Found"
    # line in the server's log for each page a reader opened.
    page = client_for().get(f"{API}/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    assert '<link rel="icon" href="/static/public/favicon.svg" type="image/svg+xml">' in page.content.decode()


def test_every_query_parameter_the_readme_names_is_described_in_the_docs():
    paths = client_for().get(f"{API}/schema/?format=json").json()["paths"]

    def parameters(path):
        return {parameter["name"]: parameter for parameter in paths[path]["get"]["parameters"]}

    # Filters whose type a class decorator gives lost their label, so the docs said nothing of them.
    for path in ("/api/v1/incidents/", "/api/v1/incidents/stats/", "/api/v1/incidents.csv"):
        described = parameters(path)
        assert described["place"]["description"] == "Place id, including places inside it"
        for name in ("type", "country", "source", "organization", "perpetrator", "min_origins"):
            assert described[name]["description"], (path, name)
    # Read by the views, not by a filter set: undocumented before.
    pairs = parameters("/api/v1/duplicates/")
    assert set(pairs["decision"]["schema"]["enum"]) == {
        "waiting",
        "pending",
        "same",
        "different",
        "unsure",
    }
    # The incident list's filters, said of either incident of a pair.
    assert "CN" in pairs["country"]["schema"]["enum"] and pairs["date_from"]["schema"]["format"] == "date"
    assert "either incident" in pairs["country"]["description"]
    assert "pending" in parameters("/api/v1/revisions/")["state"]["schema"]["enum"]


def test_the_schema_is_built_once_whatever_the_client_asks_for():
    # Building it took 0.4-0.8 s of CPU: anyone could make a worker do it twice a second.
    client = client_for()
    with mock.patch.object(
        SchemaGenerator, "get_schema", autospec=True, side_effect=SchemaGenerator.get_schema
    ) as built:
        answers = [
            client.get(f"{API}/schema/", query)
            for query in ({}, {"lang": "ko"}, {"version": "2"}, {"version": "3", "lang": "en"})
        ]
        json_answers = [client.get(f"{API}/schema/", {"format": "json", "lang": lang}) for lang in ("en", "ko")]
    assert built.call_count == 2  # YAML and JSON, once each
    assert {answer.content for answer in answers} == {answers[0].content}
    assert {answer.content for answer in json_answers} == {json_answers[0].content}
    assert json_answers[0].json()["info"]["version"] == "1.0.0"
    responses = json_answers[0].json()["paths"]["/api/v1/incidents/stats/"]["get"]["responses"]
    assert "parameters" in responses["503"]["content"]["application/json"]["schema"]["properties"]


def test_the_schema_declares_the_headers_clients_send_and_read():
    paths = client_for().get(f"{API}/schema/?format=json").json()["paths"]

    def header_parameters(path, method):
        return {parameter["name"] for parameter in paths[path][method]["parameters"] if parameter["in"] == "header"}

    def response_headers(path, method, status_code):
        return set(paths[path][method]["responses"][status_code].get("headers", {}))

    # Every record with a version: a read answers it as ETag; a change names it in If-Match (412).
    for record in (
        "incidents/{public_id}",
        "sources/{id}",
        "places/{id}",
        "organizations/{id}",
        "incident-types/{id}",
        "responses/{id}",
    ):
        path = f"/api/v1/{record}/"
        assert response_headers(path, "get", "200") == {"ETag"}, path
        for method in ("put", "patch", "delete"):
            assert "If-Match" in header_parameters(path, method), (path, method)
            assert {"409", "412"} <= set(paths[path][method]["responses"]), (path, method)
        for method in ("put", "patch"):
            assert response_headers(path, method, "200") == {"ETag"}, (path, method)
    assert response_headers("/api/v1/incidents/", "post", "201") == {"ETag", "Location"}
    for record in ("sources", "places", "organizations", "incident-types", "responses"):
        assert response_headers(f"/api/v1/{record}/", "post", "201") == {"Location"}, record
    assert response_headers("/api/v1/incidents/{public_id}/", "get", "301") == {"Location"}
    # A token is revoked whatever its state: no If-Match, so no 412.
    assert "If-Match" not in header_parameters("/api/v1/auth/tokens/{id}/", "delete")
    assert "412" not in paths["/api/v1/auth/tokens/{id}/"]["delete"]["responses"]
    # Any write may meet another at the same moment (tracker.write_conflicts), a POST too.
    assert "409" in paths["/api/v1/revisions/{id}/accept/"]["post"]["responses"]
    # Every throttled answer says when to come back; so does a download sent away by busy export
    # slots, but not a stopped anonymous statement, which must be narrowed instead.
    for path, methods in paths.items():
        for method in methods:
            assert response_headers(path, method, "429") == {"Retry-After"}, (path, method)
    for path in ("/api/v1/incidents/", "/api/v1/incidents.csv", "/api/v1/releases/{name}/files/{file_name}/"):
        assert response_headers(path, "get", "503") == {"Retry-After"}, path
    assert response_headers("/api/v1/incidents/stats/", "get", "503") == set()
    assert response_headers("/api/v1/releases/{name}/files/{file_name}/", "get", "206") == {"ETag"}
    # A download reads the headers that resume it or answer that the copy held is current.
    download = "/api/v1/releases/{name}/files/{file_name}/"
    assert header_parameters(download, "get") == {"Range", "If-Range", "If-None-Match", "If-Match"}
    assert {"304", "412", "416"} <= set(paths[download]["get"]["responses"])


def test_an_incident_is_written_in_json_alone_as_the_schema_says():
    # Its claims, places, victim groups and involvements are lists of objects: a form or multipart
    # body cannot hold them, and was offered all the same.
    paths = client_for().get(f"{API}/schema/?format=json").json()["paths"]
    for path, method in (("/api/v1/incidents/", "post"), ("/api/v1/incidents/{public_id}/", "patch")):
        assert list(paths[path][method]["requestBody"]["content"]) == ["application/json"]
    analyst = make_user(roles.ANALYST)
    incident = make_incident(review_state="draft", created_by=analyst)
    body = {"title": "Sent back from Tumen", "version": incident.version}

    for answer in (
        client_for(analyst).patch(incident_url(incident), body, format="multipart"),
        client_for(analyst).post(f"{API}/incidents/", body, format="multipart"),
    ):
        assert answer.status_code == 415, answer.content
        assert "multipart/form-data" in answer.json()["detail"]
    incident.refresh_from_db()
    assert incident.title != "Sent back from Tumen"


def test_the_csv_export_declares_the_401_it_answers_to_a_bad_token():
    # Its responses are declared by hand (JSON refusals beside a CSV body), and left the 401 out.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token revoked-or-expired")
    assert client.get(f"{API}/incidents.csv").status_code == 401

    responses = client_for().get(f"{API}/schema/?format=json").json()["paths"]["/api/v1/incidents.csv"]["get"]
    assert list(responses["responses"]["401"]["content"]) == ["application/json"]


def test_the_schema_says_which_operations_anyone_may_call_without_credentials():
    # Every read answered anonymous readers, but the schema asked a token or a session of each:
    # a generated client refused to read published incidents without one.
    paths = client_for().get(f"{API}/schema/?format=json").json()["paths"]
    open_reads = [
        ("/api/v1/incidents/", "get"),
        ("/api/v1/incidents/{public_id}/", "get"),
        ("/api/v1/incidents/stats/", "get"),
        ("/api/v1/incidents/withdrawn/", "get"),
        ("/api/v1/incidents.csv", "get"),
        ("/api/v1/sources/", "get"),
        ("/api/v1/places/{id}/", "get"),
        ("/api/v1/releases/", "get"),
    ]
    for path, method in open_reads:
        assert {} in paths[path][method]["security"], (path, method)
    published_incident = make_incident()
    assert client_for().get(f"{API}/incidents/{published_incident.public_id}/").status_code == 200
    # Writes, staff's reads and the account's own tokens still need credentials.
    for path, method in (
        ("/api/v1/incidents/", "post"),
        ("/api/v1/incidents/{public_id}/", "patch"),
        ("/api/v1/sources/{id}/", "delete"),
        ("/api/v1/incidents/{public_id}/history/", "get"),
        ("/api/v1/revisions/", "get"),
        ("/api/v1/duplicates/", "get"),
        ("/api/v1/auth/tokens/", "get"),
    ):
        assert {} not in paths[path][method]["security"], (path, method)


def test_an_edit_of_a_published_incident_answers_the_revision_the_schema_describes():
    # An Analyst's change of a published incident waits for a Reviewer: 202 with the proposed
    # revision, which the schema did not list (a generated client took it for an error).
    published_incident = make_incident()
    analyst = client_for(make_user(roles.ANALYST))
    answer = analyst.patch(
        f"{API}/incidents/{published_incident.public_id}/",
        {"title": "Proposed title", "version": published_incident.version},
        format="json",
    )

    assert answer.status_code == 202, answer.content
    schema = client_for().get(f"{API}/schema/?format=json").json()
    for method in ("put", "patch"):
        declared = schema["paths"]["/api/v1/incidents/{public_id}/"][method]["responses"]["202"]
        assert declared["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Revision"}
    revision = schema["components"]["schemas"]["Revision"]
    assert set(revision["required"]) <= set(answer.json()) <= set(revision["properties"])


def test_who_did_it_is_null_until_someone_did_and_the_schema_says_so():
    # A pending revision or pair has no decider yet, a merge not undone no undoer, a merge that
    # proposed nothing no revision, and a deleted account leaves its proposals without a proposer:
    # all answered null where the schema promised a string (or an id), and a generated client failed.
    survivor, merged = make_incident(title="80 sent back from Tumen"), make_incident(title="80 returned at Tumen")
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    analyst = make_user(roles.ANALYST)
    proposal = client_for(analyst).patch(
        f"{API}/incidents/{make_incident().public_id}/", {"title": "Proposed title", "version": 1}, format="json"
    )
    assert proposal.status_code == 202, proposal.content
    analyst.delete()
    reviewer = client_for(make_user(roles.REVIEWER))
    answers = {
        "DuplicatePair": reviewer.get(f"{API}/duplicates/{pair.pk}/").json(),
        "Revision": reviewer.get(f"{API}/revisions/{proposal.json()['id']}/").json(),
        "Merge": reviewer.post(f"{API}/duplicates/{pair.pk}/merge/", {}, format="json").json(),
    }

    nulls = {component: {name for name, value in body.items() if value is None} for component, body in answers.items()}
    assert nulls == {
        "DuplicatePair": {"decided_by", "decided_at"},
        "Revision": {"proposed_by", "decided_by", "decided_at"},
        "Merge": {"revision", "undone_by", "undone_at"},
    }
    components = client_for().get(f"{API}/schema/?format=json").json()["components"]["schemas"]
    for component, names in nulls.items():
        for name in names:
            assert components[component]["properties"][name].get("nullable"), (component, name)


@pytest.fixture
def api_schema(settings):
    # The sample data gives the generated requests real records to find, filter and count.
    call_command("loaddata", "sample", verbosity=0)
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None, "user": None}}
    # The real WSGI application closes the database connection after each request; the test's
    # transaction lives on that connection, so keep it open (as Django's test client does).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi(f"{API}/schema/?format=json", application, config=BOUNDED)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def insider_token():
    """The token of a reviewer with the confidential permission (every read and write is open to
    them), usable at each request: a generated `DELETE /api/v1/auth/tokens/{id}/` revokes the token
    it is sent with when the ids meet, and every later request then got 401 (which ids meet depends
    on the tests run before in the same database). Then a new reviewer and token: a new reviewer, as
    an account has at most API_TOKENS_PER_ACCOUNT tokens. Making them for every request instead
    took half of the test's time (a dozen queries each, for 1,375 requests)."""
    insider = {}

    def usable_token() -> str:
        token = insider.get("token")
        if token is None or not ApiToken.objects.usable().filter(pk=token.pk).exists():
            reviewer = make_user(roles.REVIEWER, confidential=True)
            insider["token"], insider["key"] = token_create(user=reviewer, name="schema tests", second_factor=True)
        return f"Token {insider['key']}"

    return usable_token


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_every_operation_honours_the_schema(case, insider_token):
    for headers in ({}, {"Authorization": insider_token()}):
        case.call_and_validate(headers=headers, checks=CHECKS)


@pytest.mark.parametrize("answer_format", ["json", "geojson", "csv"])
def test_every_format_of_the_incident_list_matches_its_schema(api_schema, answer_format):
    # Generated requests pick `format` at random; each format the list answers is checked here for sure
    # (a GeoJSON FeatureCollection was once described as a page of JSON, "results" required).
    case = api_schema["/api/v1/incidents/"]["GET"].Case(query={"format": answer_format})
    case.call_and_validate(checks=CHECKS)


def test_an_incident_read_sends_the_etag_its_schema_declares(api_schema):
    incident = Incident.objects.filter(review_state="published", confidential=False).first()
    case = api_schema["/api/v1/incidents/{public_id}/"]["GET"].Case(path_parameters={"public_id": incident.public_id})
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code == 200
    assert response.headers["etag"] == [f'"public.{incident.version}"']
