"""The schema a partner tool generates its client from says what the API answers: real answers over
awkward data, validated against the schema the server serves at /api/v1/schema/."""

import re

import pytest
from django.test import Client
from jsonschema import Draft202012Validator, FormatChecker

from incidents import roles
from incidents.models import DuplicatePair, IncidentRevision, Place
from tests.api_support import API, client_for, incident_url
from tests.factories import make_claim, make_incident, make_place, make_source, make_user
from tests.test_anonymous_costs import incidents_locked


def served_schema() -> dict:
    return client_for().get(f"{API}/schema/?format=json").json()


def as_json_schema(node, *, hidden: str):
    """An OpenAPI 3.0 schema as JSON Schema: `nullable` as a null alternative, each object closed to
    the properties it declares, those marked `hidden` (writeOnly in an answer) left out."""
    if isinstance(node, list):
        return [as_json_schema(item, hidden=hidden) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {}
    for key, value in node.items():
        if key in ("nullable", "readOnly", "writeOnly", "example"):
            continue
        if key == "properties":
            value = {name: prop for name, prop in value.items() if not prop.get(hidden)}
            converted[key] = {name: as_json_schema(prop, hidden=hidden) for name, prop in value.items()}
        elif key == "oneOf":
            # The `uri` format is not checked here, so "" would match both sides of a blank-or-URI.
            converted["anyOf"] = as_json_schema(value, hidden=hidden)
        elif key in ("exclusiveMaximum", "exclusiveMinimum"):
            if value:  # OpenAPI 3.0's boolean, JSON Schema's number
                converted[key] = node[key.replace("exclusiveM", "m")]
        else:
            converted[key] = as_json_schema(value, hidden=hidden)
    if "properties" in converted and "additionalProperties" not in converted:
        converted["additionalProperties"] = False
    if node.get("nullable"):
        converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


def answer_errors(schema: dict, path: str, method: str, response) -> list[str]:
    """Where `response` departs from what the schema declares for `path`'s `method` and its status."""
    declared = schema["paths"][path][method]["responses"].get(str(response.status_code))
    if declared is None:
        return [f"status {response.status_code} is not declared"]
    body_schema = declared["content"]["application/json"]["schema"]
    validator = Draft202012Validator(
        {
            **as_json_schema(body_schema, hidden="writeOnly"),
            "components": as_json_schema(schema["components"], hidden="writeOnly"),
        },
        format_checker=FormatChecker(),
    )
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(response.json())
    ]


def without_read_only(schema: dict, body, component: str):
    """`body` less every field the schema marks readOnly, in nested objects too: what a client
    generated from the schema sends back of what it read."""
    schemas = schema["components"]["schemas"]

    def resolved(node):
        while "$ref" in node or len(node.get("allOf", ())) == 1:
            node = schemas[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node["allOf"][0]
        return node

    def strip(value, node):
        node = resolved(node)
        if isinstance(value, dict) and "properties" in node:
            properties = node["properties"]
            return {
                key: strip(item, properties.get(key, {}))
                for key, item in value.items()
                if not properties.get(key, {}).get("readOnly")
            }
        if isinstance(value, list) and "items" in node:
            return [strip(item, node["items"]) for item in value]
        return value

    return strip(body, {"$ref": f"#/components/schemas/{component}"})


def test_a_revision_a_merge_proposed_in_confidence_reads_as_the_schema_says():
    # A merge decided while a claim was confidential withholds who proposed the survivor's new figures
    # and when: `created_at` came back null to Reviewers without Confidential access, where the
    # schema promised a date-time, and a generated client failed on the revisions' whole page.
    informant = make_source(title="Informant", kind="testimony", confidential=True)
    survivor = make_incident(title="80 sent back from Tumen", people_count=80)
    merged = make_incident(title="80 returned at Tumen", people_count=120)
    make_claim(incident=merged, source=informant, confidential=True, people_count=200)
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    keeper = make_user(roles.REVIEWER, confidential=True)
    merge = client_for(keeper).post(f"{API}/duplicates/{pair.pk}/merge/", {}, format="json")
    assert merge.status_code == 201, merge.content
    revision = IncidentRevision.objects.get(pk=merge.json()["revision"])

    reviewer = client_for(make_user(roles.REVIEWER))
    read = reviewer.get(f"{API}/revisions/{revision.pk}/")
    page = reviewer.get(f"{API}/revisions/")

    assert read.status_code == 200 and read.json()["created_at"] is None
    schema = served_schema()
    assert answer_errors(schema, "/api/v1/revisions/{id}/", "get", read) == []
    assert answer_errors(schema, "/api/v1/revisions/", "get", page) == []


def test_an_incident_read_is_written_back_without_its_read_only_fields():
    # An incident's places read as objects whose `id`, what a write names, the schema marked
    # read-only, and whose name, kind and country, which a write leaves as stored, writable: a
    # client that sent back what it read less the read-only fields sent places without ids, 400.
    china = make_place(name="China", kind="country", country="CN", latitude=35, longitude=103)
    sea = Place.objects.create(name="Yellow Sea", kind="other", country="")
    incident = make_incident(title="Boat returned", places=[china, sea], review_state="draft")
    make_claim(incident=incident, source=make_source())
    reviewer = client_for(make_user(roles.REVIEWER))
    read = reviewer.get(incident_url(incident))
    schema = served_schema()
    assert answer_errors(schema, "/api/v1/incidents/{public_id}/", "get", read) == []

    sent_back = without_read_only(schema, read.json(), "Incident")
    written = reviewer.put(incident_url(incident), {**sent_back, "title": "Boat returned at Nampo"}, format="json")

    assert written.status_code == 200, written.content
    assert [place["name"] for place in written.json()["places"]] == ["China", "Yellow Sea"]
    assert answer_errors(schema, "/api/v1/incidents/{public_id}/", "put", written) == []


def test_a_source_like_one_recorded_is_refused_in_the_shape_the_schema_declares():
    # The 409 names the recorded sources to choose from (`sources`), which the schema left out:
    # a generated client dropped them, and could say only that something conflicted.
    make_source(title="China returns 500 North Koreans", url="https://example.org/500")
    analyst = client_for(make_user(roles.ANALYST))

    refused = analyst.post(
        f"{API}/sources/",
        {"title": "China returns 500 North Koreans", "kind": "news_article", "url": "https://example.org/500"},
        format="json",
    )

    assert refused.status_code == 409, refused.content
    assert refused.json()["sources"][0]["field"] == "url"
    assert answer_errors(served_schema(), "/api/v1/sources/", "post", refused) == []


def test_every_query_parameter_an_operation_reads_is_declared():
    # Each operation refuses a parameter it does not read, naming those it reads: the schema must
    # declare the same ones, or a generated client cannot send them. `ordering` was left out of the
    # lists with one ordering, the list's `bom` (with format=csv) too, and the revisions' `state`
    # was read by a revision's page, accept and reject, undeclared (404 for another state).
    # `format`, DRF's override of the Accept header, is declared where it chooses among formats.
    make_incident()
    client = client_for(make_user(roles.REVIEWER, confidential=True))
    schema = served_schema()
    samples = {"{public_id}": "INC-000001", "{id}": "1", "{name}": "incident-tracker-2026.1", "{file_name}": "a.csv"}
    mismatched = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            url = re.sub(r"\{\w+\}", lambda name: samples[name.group()], path)
            declared = {
                parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "query"
            }
            reads = set()
            # The incident list reads other parameters as CSV (`bom`, and no page's).
            for query in ("", "format=csv&") if (method, path) == ("get", "/api/v1/incidents/") else ("",):
                answer = getattr(client, method)(f"{url}?{query}unknown_parameter=1", format="json")
                message = answer.json()["unknown_parameter"][0]
                reads |= set(re.search(r"reads (.*)\.$", message).group(1).split(", "))
            if reads - {"format"} != declared - {"format"}:
                mismatched[f"{method} {path}"] = (
                    sorted(reads - declared - {"format"}),
                    sorted(declared - reads - {"format"}),
                )
    assert mismatched == {}
    for path in ("/api/v1/incidents/", "/api/v1/incidents.csv"):
        (bom,) = (parameter for parameter in schema["paths"][path]["get"]["parameters"] if parameter["name"] == "bom")
        assert bom["schema"]["type"] == "boolean"
    assert client.get(f"{API}/incidents/", {"format": "csv", "bom": "true"}).status_code == 200


def test_an_accept_header_the_api_cannot_satisfy_is_answered_as_declared():
    # A partner tool that asks a JSON list for CSV (`Accept: text/csv`, as it asks the export) is
    # answered 406 before any view runs, a status the schema declared nowhere.
    make_incident()
    client = client_for(make_user(roles.VIEWER))
    schema = served_schema()

    for path in ("/api/v1/sources/", "/api/v1/incidents/", "/api/v1/incidents/stats/"):
        refused = client.get(path, {"group_by": "year"} if "stats" in path else {}, HTTP_ACCEPT="text/csv")
        assert refused.status_code == 406, (path, refused.content)
        assert answer_errors(schema, path, "get", refused) == [], path
    # The export and a release's files are sent whatever Accept says: no 406 declared there.
    for path in ("/api/v1/incidents.csv", "/api/v1/releases/{name}/zip/"):
        assert "406" not in schema["paths"][path]["get"]["responses"], path


@pytest.mark.django_db(transaction=True)
def test_an_anonymous_list_stopped_for_its_cost_names_its_parameters_as_declared(settings):
    # The list declared its 503 as a bare `detail` (busy export slots), where a stopped anonymous
    # request also names its query parameters, which a generated client then dropped.
    settings.ANON_STATEMENT_TIMEOUT = 200
    with incidents_locked():
        stopped = Client().get(f"{API}/incidents/", {"country": "CN"})

    assert stopped.status_code == 503
    assert stopped.json()["parameters"] == ["country"]
    assert answer_errors(served_schema(), "/api/v1/incidents/", "get", stopped) == []
