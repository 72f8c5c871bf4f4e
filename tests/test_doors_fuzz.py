"""An attacker's pass over every door: every URL the project serves (walked from its URL
configuration, not listed by hand), asked by an anonymous visitor, an analyst without Confidential
access and a superuser, with malformed query strings (every parameter the door's filter set,
paginator or view reads, each given empty, garbage, negative, huge, non-finite, impossible dates,
unicode, NUL bytes, very long, repeated), unknown formats and orderings, ids of hidden records in
the path, and malformed bodies for the API's writes and the admin's forms.

Whatever is asked: never a 5xx; a 400 names the parameter or field at fault; and nothing a reader
may not see (the titles of a confidential incident and source, a confidential claim's excerpt, a
draft's title for the public, a sensitive place's exact coordinates for the public) appears in any
answer, error pages included. Deterministic (a hand-made list of values, no random draws, each
parameter given a few of them in turn: `spread`), so a failure repeats and the module stays about a
minute; each test lists every failure it meets, with the request that caused it. The fuzz found
the 500s and the bare 400s the named tests at the end pin."""

import html
import io
import json
import re
import traceback
from datetime import date
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.core.signals import got_request_exception
from django.db import transaction
from django.test import Client, override_settings
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from incidents import roles
from incidents.filters import IncidentFilterSet
from incidents.models import Response
from tests.api_support import client_for
from tests.factories import make_claim, make_incident, make_organization, make_place, make_source, make_user
from tests.test_api_write import new_incident_body

# Recognisable strings planted in what a reader may not see.
CONFIDENTIAL_CANARIES = ("CanaryConfidentialIncident", "CanaryConfidentialSource", "CanaryConfidentialExcerpt")
DRAFT_CANARY = "CanaryDraftIncident"
# A sensitive place's exact coordinates: the public sees those of the place containing it.
SENSITIVE_COORDINATES = ("42.123457", "129.876543")

NUL = "\x00"
BAD_VALUES = [
    "",
    "x",
    "-1",
    "0",
    "99999999999999999999",
    "1e400",
    "NaN",
    "2021-02-30",
    "2021-13",
    "2021-01-01T25:61:00+99:00",
    "북한 탈북민 ☃ \u202e",
    f"a{NUL}b",
    "x" * 5000,
    "[1, 2]",
    '{"a": 1}',
    "-",
    "*",
    "%",
    "__all__",
]
# The parameters every list reads beside its filter set's.
LIST_PARAMETERS = [
    "page",
    "page_size",
    "cursor",
    "ordering",
    "format",
    "q",
    "p",
    "o",
    "group_by",
    "since",
    "bom",
    "decision",
    "state",
]
UNKNOWN_ORDERINGS = ["password", "-confidential", "claims__excerpt", "?", "title,confidential"]


def every_url_pattern():
    """(route, name) of every URL pattern, with its namespace, walked from the root resolver."""

    def walk(resolver, prefix, namespace):
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), (f"{namespace}{pattern.name}" if pattern.name else None)

    return list(walk(get_resolver(), "", ""))


def parameter_names(route: str) -> list[str]:
    """The names of a route's parameters, `<int:pk>` and `(?P<pk>…)` alike."""
    return re.findall(r"<(?:\w+:)?(\w+)>", route.replace("(?P<", "<").replace(">[", ">"))


class Failures(list):
    def check(
        self, what: str, answer, *, forbidden: tuple[str, ...], parameter: str | None = None, baseline=None, related=()
    ):
        """Records what is wrong with `answer`: a 5xx, a canary in it, or a 400 not naming `parameter`
        where the same request without the bad value (`baseline`, its status) was no 400 itself (or
        naming a `related` field instead: a rule across fields, such as an exact count's figure)."""
        names = (parameter, *related)
        text = answer.fuzz_text
        if answer.status_code >= 500:
            error = getattr(answer, "exception_text", "").strip().splitlines()
            self.append(f"{what}: {answer.status_code} {error[-1] if error else ''}")
            return
        for canary in forbidden:
            if canary in text:
                self.append(f"{what}: {answer.status_code} shows {canary!r}")
        named = any(name in text for name in names if name)
        if answer.status_code == 400 and parameter and baseline != 400 and not named:
            self.append(f"{what}: 400 without naming {parameter!r}: {text[:300]}")


@pytest.fixture
def world():
    """A public incident with a confidential claim, a draft, a confidential incident with a
    confidential source, and a sensitive town inside a province, each with its canary."""
    province = make_place(name="Fuzz Province", kind="province", latitude=43.0, longitude=128.0)
    town = make_place(name="Fuzz Town", parent=province, sensitive=True, latitude=42.123457, longitude=129.876543)
    organization = make_organization(name="Fuzz Police")
    public = make_incident(title="Public fuzz incident", places=[town])
    public_source = make_source(title="Public fuzz source", publisher=organization)
    make_claim(incident=public, source=public_source, excerpt="public excerpt")
    hidden_source = make_source(title=CONFIDENTIAL_CANARIES[1], confidential=True)
    make_claim(incident=public, source=hidden_source, excerpt=CONFIDENTIAL_CANARIES[2], confidential=True)
    draft = make_incident(title=DRAFT_CANARY, review_state="draft", places=[town])
    confidential = make_incident(title=CONFIDENTIAL_CANARIES[0], confidential=True, places=[town])
    make_claim(incident=confidential, source=hidden_source, confidential=True)
    response = Response.objects.create(organization=organization, kind="statement", date=date(2023, 10, 1))
    response.incidents.set([confidential])
    return {
        "public": public,
        "draft": draft,
        "confidential": confidential,
        "hidden_source": hidden_source,
        "town": town,
        "organization": organization,
        "response": response,
    }


@pytest.fixture
def readers():
    """(name, client, what it must never show) for each kind of reader."""
    analyst = make_user(roles.ANALYST)
    superuser = User.objects.create_superuser("fuzz-root", password="correct horse battery staple")
    made = []
    for name, user, forbidden in [
        ("anonymous", None, (*CONFIDENTIAL_CANARIES, DRAFT_CANARY, *SENSITIVE_COORDINATES)),
        ("analyst", analyst, CONFIDENTIAL_CANARIES),
        ("superuser", superuser, ()),
    ]:
        client = Client(raise_request_exception=False)
        if user:
            client.force_login(user)
        made.append((name, client, forbidden))
    return made


@pytest.fixture
def failures():
    found = Failures()

    def keep(sender, request, **kwargs):
        request._fuzz_exception = traceback.format_exc()

    got_request_exception.connect(keep)
    yield found
    got_request_exception.disconnect(keep)


def ask(client, method: str, path: str, **kwargs):
    """The answer to one request, each from the same data: a write is rolled back after it."""
    # Throttles count in the cache: an attacker's thousand requests are each asked afresh.
    cache.clear()
    with transaction.atomic():
        answer = getattr(client, method)(path, **kwargs)
        # A streamed answer (a CSV export) is read where it was made, its failures included.
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        transaction.set_rollback(True)
    answer.fuzz_text = body.decode("utf-8", "replace")
    answer.exception_text = getattr(answer.wsgi_request, "_fuzz_exception", "")
    return answer


def spread(items: list, values: list, per_item: int) -> list[tuple]:
    """(item, value) pairs giving each item `per_item` of the values, each item starting where the
    previous one stopped: every value is sent, and the requests stay a few thousand (the module's
    bound of about a minute), where every value for every item would be tens of thousands."""
    return [
        (item, values[(index * per_item + step) % len(values)])
        for index, item in enumerate(items)
        for step in range(per_item)
    ]


def concrete_paths(world) -> list[str]:
    """Each URL pattern made concrete with ids of visible and hidden records and garbage."""
    # A record's id (the public incident's: other tables' rows of that id too), the confidential
    # incident's and source's, an id past any column's range.
    numbers = [str(world["public"].pk), str(world["confidential"].pk), str(world["hidden_source"].pk), "9" * 20]
    candidates = {
        "public_id": [world[key].public_id for key in ("public", "draft", "confidential")]
        + ["INC-99999999999999999999"],
        "format": ["json"],
        "name": ["incident-tracker-2024.1", "incident-tracker-9999.99999999999999999999"],
        "file_name": ["incidents.csv"],
        "app_label": ["incidents"],
        "url": ["incidents/incident/x/"],
    }
    paths = set()
    for route, name in every_url_pattern():
        if name is None:
            continue
        variants = [{}]
        for parameter in parameter_names(route):
            values = candidates.get(parameter, numbers)
            variants = [{**variant, parameter: value} for variant in variants for value in values]
        for kwargs in variants:
            try:
                paths.add(reverse(name, kwargs=kwargs))
            except NoReverseMatch:
                continue
    return sorted(paths)


def test_every_get_with_hidden_ids_in_the_path(world, readers, failures):
    paths = concrete_paths(world)
    # Every pattern, the API's, the admin's, the public pages', the releases' files.
    assert len(paths) > 300, paths
    for path in paths:
        for reader, client, forbidden in readers:
            if reader == "anonymous" and path.startswith("/admin/") and not path.startswith("/admin/login"):
                continue  # The sign-in page, whatever the address: asked once below.
            if reader == "superuser" and not path.startswith("/admin/"):
                continue  # Sees everything: the analyst's answers elsewhere are the same code.
            failures.check(f"{reader} GET {path}", ask(client, "get", path), forbidden=forbidden)
    failures.check("anonymous GET /admin/…", ask(readers[0][1], "get", paths[-1]), forbidden=readers[0][2])
    assert not failures, "\n".join(failures)


def admin_changelist_parameters(client, path: str) -> set[str]:
    """The query parameters a changelist's own links set (its filters, orderings, date hierarchy),
    read from the page a superuser sees, with the admin's search, ordering and page."""
    page = client.get(path).content.decode()
    found = set()
    for query in re.findall(r'href="\?([^"#]*)"', page):
        found |= {pair.split("=")[0] for pair in query.replace("&amp;", "&").split("&") if pair}
    return found | {"q", "o", "p", "all", "_to_field"}


# What a request needs to reach what it reads (a statistic's grouping, an autocomplete's field).
BASE_QUERIES = {
    "/api/v1/incidents/stats/": {"group_by": "country"},
    "/api/v1/incidents/withdrawn/": {"since": "2020-01-01T00:00:00Z"},
    "/admin/autocomplete/": {"app_label": "incidents", "model_name": "claim", "field_name": "source", "term": "f"},
}
INCIDENT_LISTS = (
    "/api/v1/incidents/",
    "/api/v1/incidents/stats/",
    "/api/v1/incidents.csv",
    "/",
    "/incidents.csv",
    "/incidents.geojson",
    "/map/incidents.geojson",
    "/statistics/",
    "/embed/statistics/",
)


def list_targets(world, superuser_client) -> dict[str, list[str]]:
    """Every list (every URL without an id or a format in it) with the query parameters it reads:
    the incidents' filter set's and the paginator's for the incident lists, the links' of each
    admin changelist, the pagination's and the view's own for the other API lists."""
    targets = {}
    for path in concrete_paths(world):
        if re.search(r"/(\d+|INC-\d+|x)[/.]|incident-tracker-|\.(json|xyz)$|/add/$|^/accounts/|/admin/r/", path):
            continue
        if path in INCIDENT_LISTS:
            parameters = {*IncidentFilterSet.base_filters, "cursor", "page_size", "ordering", "format", "bom"}
        elif path.startswith("/admin/") and path.count("/") == 4 and path.endswith("/"):
            parameters = admin_changelist_parameters(superuser_client, path)
        elif path == "/admin/incidents/incident/export.csv":
            # What the list shows with the same query string.
            parameters = {*admin_changelist_parameters(superuser_client, "/admin/incidents/incident/"), "bom"}
        else:
            parameters = {*BASE_QUERIES.get(path, {}), "cursor", "page_size", "ordering", "format", "state", "q"}
        targets[path] = sorted(parameters)
    return targets


READERS_OF = {
    # Anonymous visitors read the API and the public pages; the admin answers them its sign-in.
    "anonymous": lambda path: not path.startswith("/admin/"),
    # Staff without Confidential access where it matters: the API's lists, the incidents' admin.
    "analyst": lambda path: path.startswith(("/api/", "/admin/incidents/", "/admin/autocomplete/")),
    "superuser": lambda path: path.startswith("/admin/"),
}


@pytest.mark.parametrize("reader_index", [0, 1, 2], ids=["anonymous", "analyst", "superuser"])
def test_every_list_with_malformed_query_strings(world, readers, failures, reader_index):
    reader, client, forbidden = readers[reader_index]
    targets = list_targets(world, readers[2][1])
    assert {"/api/v1/incidents/", "/", "/admin/incidents/incident/", "/admin/autocomplete/"} <= set(targets)
    for path, parameters in targets.items():
        if not READERS_OF[reader](path):
            continue
        base = BASE_QUERIES.get(path, {})
        baseline = ask(client, "get", path, data=base).status_code
        values = [*BAD_VALUES, *(UNKNOWN_ORDERINGS if "o" in parameters or "ordering" in parameters else [])]
        for parameter, value in spread(parameters, values, per_item=2 if path in INCIDENT_LISTS else 1):
            if parameter in ("ordering", "o") and value not in UNKNOWN_ORDERINGS:
                value = UNKNOWN_ORDERINGS[len(value) % len(UNKNOWN_ORDERINGS)]
            answer = ask(client, "get", path, data={**base, parameter: value})
            failures.check(
                f"{reader} GET {path}?{urlencode({parameter: value[:40]})}",
                answer,
                forbidden=forbidden,
                parameter=parameter,
                baseline=baseline,
            )
        # The same parameter twice, and a list where one value is expected.
        for parameter in parameters[:2]:
            query = urlencode([*base.items(), (parameter, "1"), (parameter, "x"), (f"{parameter}[]", "2")])
            answer = ask(client, "get", f"{path}?{query}")
            failures.check(f"{reader} GET {path}?{query}", answer, forbidden=forbidden)
    assert not failures, "\n".join(failures)


# What a JSON body may hold where a field expects something else.
BAD_BODY_VALUES = [
    None,
    "",
    "x",
    -1,
    0,
    10**30,
    1e308,
    "1e400",
    "NaN",
    "2021-02-30",
    f"a{NUL}b",
    "x" * 5000,
    True,
    [],
    [None, {"a": [1]}],
    {"id": {"$gt": 0}},
    [[[[[]]]]],
]
# Bodies that are no JSON object at all, sent as application/json.
RAW_BODIES = ['{"title": 1e400}', "[]", '"x"', "1", "null", "{", "NaN", '{"a": Infinity}', "[" * 5000, '{"\\u0000": 1}']


def api_write_targets(world) -> list[tuple[str, str, dict]]:
    """(method, path, a valid body) for every API write: each resource's create, and the update of
    a record of it, the body made from what a superuser reads of that record."""
    public, town, organization = world["public"], world["town"], world["organization"]
    source = public.claims.filter(confidential=False).get().source
    creates = {
        "incidents": new_incident_body(
            title="Fuzzed",
            places=[town.pk],
            claims=[{"source": source.pk, "people_count": 40, "excerpt": "fuzzed"}],
            victim_groups=[{"count": 40, "sex": "female"}],
            involvements=[{"organization": organization.pk, "role": "perpetrator"}],
        ),
        "sources": {"title": "Fuzzed source", "kind": "news_article", "cites": source.pk, "publisher": organization.pk},
        "organizations": {"name": "Fuzzed organization", "kind": "ngo", "country": "CN"},
        "places": {"name": "Fuzzed place", "kind": "city", "parent": town.pk, "latitude": 42.0, "longitude": 129.0},
        "incident-types": {"slug": "fuzzed", "name": "Fuzzed"},
        "responses": {
            "organization": organization.pk,
            "kind": "statement",
            "date": "2023-10-01",
            "incidents": [public.public_id],
        },
    }
    records = {
        "incidents": public.public_id,
        "sources": source.pk,
        "organizations": organization.pk,
        "places": town.pk,
        "incident-types": public.incident_type_id,
        "responses": world["response"].pk,
    }
    targets = []
    for resource, body in creates.items():
        targets.append(("post", f"/api/v1/{resource}/", body))
        for method in ("put", "patch"):
            targets.append((method, f"/api/v1/{resource}/{records[resource]}/", body))
    return targets


def garbage_bodies(body: dict, world) -> list[tuple[str, dict]]:
    """(the field at fault, the body): each field given bad values (`spread`), each nested row's
    field too, and each id field the id of a record hidden from the analyst."""
    hidden = {"source": world["hidden_source"].pk, "cites": world["hidden_source"].pk}
    bodies = [(field, {**body, field: bad}) for field, bad in spread(list(body), BAD_BODY_VALUES, per_item=3)]
    for field, value in body.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for key, bad in spread(list(value[0]), BAD_BODY_VALUES, per_item=2):
                bodies.append((field, {**body, field: [{**value[0], key: bad}]}))
            bodies += [(field, {**body, field: [{**value[0], key: hidden[key]}]}) for key in value[0] if key in hidden]
        if field in hidden:
            bodies.append((field, {**body, field: hidden[field]}))
    if "incidents" in body:
        bodies.append(("incidents", {**body, "incidents": [world["confidential"].public_id]}))
    return bodies


# Who writes what: the analyst creates (the hidden ids are hidden from them), the superuser changes.
WRITERS_OF = {"analyst": ("post",), "superuser": ("put", "patch")}


@pytest.mark.parametrize("reader_index", [1, 2], ids=["analyst", "superuser"])
def test_every_api_write_with_malformed_bodies(world, readers, failures, reader_index):
    reader, client, forbidden = readers[reader_index]
    for method, path, body in api_write_targets(world):
        if method not in WRITERS_OF[reader] or (method == "put" and "/incidents/" not in path):
            continue
        if method != "post":
            body = {**body, "version": json.loads(ask(client, "get", path).fuzz_text).get("version")}
        baseline = ask(client, method, path, data=body, content_type="application/json").status_code
        for field, sent in garbage_bodies(body, world):
            answer = ask(client, method, path, data=json.dumps(sent), content_type="application/json")
            failures.check(
                f"{reader} {method.upper()} {path} {field}={json.dumps(sent[field])[:60]}",
                answer,
                forbidden=forbidden,
                parameter=field,
                related=list(sent),
                baseline=baseline,
            )
    # Bodies that are no object: one parser reads every write's.
    for path in ("/api/v1/incidents/", "/api/v1/auth/token/"):
        for raw in RAW_BODIES:
            answer = ask(client, "post", path, data=raw, content_type="application/json")
            failures.check(f"{reader} POST {path} body {raw[:40]!r}", answer, forbidden=forbidden)
    assert not failures, "\n".join(failures)


def form_fields(page: str) -> dict[str, str]:
    """The fields a form page posts back as its browser would: every input's, select's and
    textarea's name, with its value (a select's chosen option's)."""
    fields = {}
    for tag, name, rest in re.findall(r"<(input|select|textarea)\b[^>]*?\bname=\"([^\"]+)\"([^>]*)>", page):
        if tag == "input":
            if re.search(r'type="(submit|file|checkbox)"', rest):
                continue
            value = re.search(r'value="([^"]*)"', rest)
            fields[name] = value[1].replace("&amp;", "&") if value else ""
        else:
            fields[name] = ""
    return fields


def admin_form_targets(world) -> dict[str, list[str]]:
    """By reader: the add page of each of our models (the analyst, who may not see the hidden
    records whose ids it is sent), the change page of a confidential source and a sensitive place
    (the superuser; the incident's, half a second a request, is the add page's form)."""
    adds = [reverse(name) for _, name in every_url_pattern() if name and re.fullmatch(r"admin:incidents_\w+_add", name)]
    changes = [
        reverse(f"admin:incidents_{world[key]._meta.model_name}_change", args=[world[key].pk])
        for key in ("hidden_source", "town")
    ]
    return {"analyst": adds, "superuser": changes}


ADMIN_BAD_VALUES = ["x", "-1", "99999999999999999999", "1e400", "NaN", "2021-02-30", f"a{NUL}b", "x" * 5000]


@pytest.mark.parametrize("reader_index", [1, 2], ids=["analyst", "superuser"])
def test_every_admin_form_with_malformed_fields(world, readers, failures, reader_index):
    reader, client, forbidden = readers[reader_index]
    hidden_ids = [str(world["hidden_source"].pk), str(world["confidential"].pk)]
    for path in admin_form_targets(world)[reader]:
        page = ask(client, "get", path)
        failures.check(f"{reader} GET {path}", page, forbidden=forbidden)
        if page.status_code != 200:
            continue
        fields = form_fields(page.fuzz_text)
        # The form's own fields and, on an add page, its inlines' first rows (the others are alike).
        rows = r"-[1-9]\d*-|__prefix__" if reader == "analyst" else r"-\d+-|__prefix__"
        fuzzed = [name for name in fields if not re.search(rf"csrfmiddlewaretoken|_FORMS$|{rows}", name)]
        for field, value in spread(fuzzed, [*ADMIN_BAD_VALUES, *hidden_ids], per_item=1):
            answer = ask(client, "post", path, data={**fields, field: value})
            failures.check(f"{reader} POST {path} {field}={value[:40]!r}", answer, forbidden=forbidden)
    assert not failures, "\n".join(failures)


def test_an_actions_address_with_a_format_suffix_answers_like_its_format_parameter(world):
    # The router gives every action a `.json` address beside `?format=json`; the actions took no
    # `format` argument, so each such address was a 500 for anyone (the statistics for anonymous).
    reviewer = make_user(roles.REVIEWER, confidential=True)
    anonymous, staff = APIClient(), APIClient()
    staff.force_authenticate(reviewer)
    stats = anonymous.get("/api/v1/incidents/stats.json", {"group_by": "year"})
    assert stats.status_code == 200
    assert stats.json() == anonymous.get("/api/v1/incidents/stats/", {"group_by": "year"}).json()
    since = {"since": "2020-01-01T00:00:00Z"}
    assert anonymous.get("/api/v1/incidents/withdrawn.json", since).status_code == 200
    history = f"/api/v1/incidents/{world['public'].public_id}/history"
    assert staff.get(f"{history}.json").json() == staff.get(f"{history}/").json()
    assert anonymous.get("/api/v1/releases/incident-tracker-2024.1/files/incidents.csv.json").status_code == 404
    for action in ("revisions/1/accept", "revisions/1/reject", "duplicates/1/merge"):
        assert staff.post(f"/api/v1/{action}.json", {}, format="json").status_code in (400, 404)


def test_a_body_nested_past_the_parsers_depth_is_a_400_naming_it():
    # A few kilobytes of "[" raised RecursionError in the JSON parser: a 500 on every write,
    # the token request's that anyone may send included.
    for path in ("/api/v1/auth/token/", "/api/v1/incidents/"):
        answer = client_for(make_user(roles.ANALYST)).post(path, "[" * 100_000, content_type="application/json")
        assert answer.status_code == 400
        assert "nested too deeply" in answer.json()["detail"]


def test_the_admins_autocomplete_refuses_a_nul_in_its_search(client):
    # Typing a%00b into a claim's source box sent the NUL to PostgreSQL's ILIKE: a 500.
    client.force_login(make_user(roles.ANALYST))
    query = {"app_label": "incidents", "model_name": "claim", "field_name": "source"}
    answer = client.get("/admin/autocomplete/", {**query, "term": "a\x00b"})
    assert answer.status_code == 200
    assert answer.json()["results"] == []


@pytest.mark.parametrize(("parameter", "value"), [("country", "zz"), ("confidential__exact", "maybe")])
def test_the_admins_csv_export_refuses_a_filter_value_naming_it(client, parameter, value):
    # The list answers these with a 400 naming the parameter; its export, made from the same query
    # string, let the refusal through: a 500.
    client.force_login(make_user(roles.ANALYST))
    answer = client.get("/admin/incidents/incident/export.csv", {parameter: value})
    assert answer.status_code == 400
    assert parameter in answer.content.decode()


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("/admin/incidents/source/add/", {"title": "Relay", "kind": "news_article", "publisher": "x"}),
        ("/admin/incidents/source/add/", {"title": "Relay", "kind": "news_article", "cites": "1e400"}),
        ("/admin/incidents/place/add/", {"name": "Camp", "kind": "city", "parent": "a\x00b"}),
        ("/admin/incidents/response/add/", {"kind": "statement", "date": "2023-10-01", "incidents": ["x", "NaN"]}),
    ],
)
def test_an_admin_form_sent_back_with_an_id_no_record_has_shows_its_error(client, path, sent):
    # The page drawn again showed each autocomplete's choice by looking it up: `x` for an id
    # raised the field's ValueError, a 500, where the form has its own error to show.
    client.force_login(make_user(roles.ANALYST))
    answer = client.post(path, sent)
    assert answer.status_code == 200
    assert 'class="errornote"' in answer.content.decode()


TOO_MANY_PARAMETERS = "&".join(f"p{number}=1" for number in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "The request sends more than 10,000 parameters or form fields."),
        ("/ko/", "요청의 매개변수 또는 양식 필드가 10,000개를 넘습니다."),
        ("/admin/login/", "The request sends more than 10,000 parameters or form fields."),
        # A lookup an accounts list does not offer: Django's own refusal, named here.
        ("/admin/accounts/apitoken/?user__password__startswith=p", "This list offers no such filter: "),
    ],
)
def test_a_request_django_refuses_before_any_page_gets_a_page_saying_why(client, path, expected):
    # Django answered these with a bare "Bad Request (400)" in English, whatever the door.
    client.force_login(User.objects.create_superuser("root", "root@example.org", "a long enough password"))
    answer = client.get(path if "?" in path else f"{path}?{TOO_MANY_PARAMETERS}")
    assert answer.status_code == 400
    page = answer.content.decode()
    assert expected in page and "Bad Request (400)" not in page
    if "startswith" in path:
        assert "user__password__startswith" in page and "=p" not in page


def test_an_api_request_django_refuses_before_any_view_gets_json_saying_why():
    analyst = client_for(make_user(roles.ANALYST))
    too_many = analyst.get(f"/api/v1/incidents/?{TOO_MANY_PARAMETERS}")
    too_large = analyst.post("/api/v1/incidents/", b" " * (3 * 1024 * 1024), content_type="application/json")
    for answer, detail in (
        (too_many, "The request sends more than 10,000 parameters or form fields."),
        (too_large, "The request's body is larger than 2.5 MB."),
    ):
        assert (answer.status_code, answer["Content-Type"]) == (400, "application/json")
        assert answer.json() == {"detail": detail}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/v1/incidents/", '{"detail": "The request sends more than 10,000 parameters or form fields."}'),
        ("/", "The request sends more than 10,000 parameters or form fields."),
    ],
)
def test_too_many_parameters_are_the_same_400_with_debug_on(path, expected):
    # Under `make run` (DJANGO_DEBUG=1) Django's debug page for the refusal read the parameters
    # again, failed the same way, and the server answered a bare 500.
    with override_settings(DEBUG=True):
        try:
            answer = Client(raise_request_exception=False).get(f"{path}?{TOO_MANY_PARAMETERS}")
        except Exception as error:  # every handler failed: runserver's bare 500
            pytest.fail(f"The refusal escaped every handler: {error!r}")
    assert answer.status_code == 400
    assert expected in answer.content.decode()


@pytest.fixture
def kept_bytes(monkeypatch):
    """How many bytes of uploaded files Django's handlers kept, in memory or on disk."""
    kept = []
    for handler in (MemoryFileUploadHandler, TemporaryFileUploadHandler):

        def counted(self, raw_data, start, receive=handler.receive_data_chunk):
            kept.append(len(raw_data))
            return receive(self, raw_data, start)

        monkeypatch.setattr(handler, "receive_data_chunk", counted)
    return kept


def an_upload(size: int, name: str = "anything.bin") -> io.BytesIO:
    upload = io.BytesIO(b"x" * size)
    upload.name = name
    return upload


@pytest.mark.parametrize(
    "path", ["/api/v1/auth/token/", "/admin/login/", "/accounts/two-factor/setup/link/", "/", "/no-such-page/"]
)
@pytest.mark.parametrize(
    ("size", "refusal"),
    [(1024, "This address takes no file."), (12 * 1024 * 1024, "The request's body is larger than 2.5 MB.")],
)
def test_a_file_sent_where_no_view_takes_one_is_refused_unwritten(kept_bytes, path, size, refusal):
    # DATA_UPLOAD_MAX_MEMORY_SIZE leaves a multipart body's files out: one of any size, sent to a
    # door that reads its form (and to any page once a csrftoken cookie is sent, as CSRF's check
    # reads the form), went to a temporary file on the server's disk, anonymously.
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "a" * 32
    answer = client.post(path, {"username": "a", "password": "b", "file": an_upload(size)})

    if path == "/no-such-page/":
        assert answer.status_code == 404  # its form is not read at all
    elif path.startswith("/api/"):
        assert answer.status_code == 400
        assert refusal in answer.json()["detail"]
    else:
        assert answer.status_code == 400
        assert refusal in html.unescape(answer.content.decode())
    assert kept_bytes == []


def test_the_csv_import_takes_one_file_up_to_the_import_limit(client, kept_bytes, settings):
    client.force_login(make_user(roles.ANALYST))
    path = "/admin/incidents/incident/import/"
    csv = b"title,type,date_start,date_end\nA,forced-repatriation,2023-01-01,2023-01-01\n"
    settings.IMPORT_MAX_BYTES = len(csv)

    taken = client.post(path, {"file": io.BytesIO(csv)})
    assert taken.status_code == 200 and "Import 1 row" in taken.content.decode()
    kept_bytes.clear()

    for sent, refusal in (
        # Refused at the chunk that crosses the limit: none of it written.
        ({"file": io.BytesIO(csv + b"B")}, f"The file is larger than {len(csv):,} bytes, the largest this address"),
        # Refused from its Content-Length, before any of it is read.
        ({"file": an_upload(3 * 1024 * 1024)}, "The request's body is larger than 2.5 MB."),
        ({"file": io.BytesIO(csv), "other": io.BytesIO(csv)}, "This address takes one file, in the field “file”."),
        ({"attachment": io.BytesIO(csv)}, "This address takes one file, in the field “file”."),
    ):
        answer = client.post(path, sent)

        assert answer.status_code == 400
        assert refusal in html.unescape(answer.content.decode())
    assert sum(kept_bytes) <= 2 * len(csv)  # at most the first file part of the two, before the second


@pytest.mark.parametrize("who", ["anonymous", "viewer"])
@pytest.mark.parametrize(
    ("size", "refusal"),
    [(1024, "This address takes no file."), (3 * 1024 * 1024, "The request's body is larger than 2.5 MB.")],
)
def test_the_csv_import_takes_no_file_from_whoever_may_not_import(kept_bytes, who, size, refusal):
    # The handler let the file through because the address takes one, before admin_view found
    # nobody signed in (or the view found no import permission): a csrftoken cookie of the client's
    # own choosing had up to 2.5 MB + TRACKER_IMPORT_MAX_BYTES written to the server's disk.
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "a" * 32
    if who == "viewer":
        client.force_login(make_user(roles.VIEWER))
    answer = client.post(
        "/admin/incidents/incident/import/", {"csrfmiddlewaretoken": "a" * 32, "file": an_upload(size)}
    )

    assert answer.status_code == 400
    assert refusal in html.unescape(answer.content.decode())
    assert kept_bytes == []


def test_a_host_name_the_site_does_not_serve_gets_a_page_saying_so(client):
    answer = client.get("/", HTTP_HOST="tracker.example.evil")
    assert answer.status_code == 400
    assert "This server does not answer for the host name the request names." in answer.content.decode()
    assert "tracker.example.evil" not in answer.content.decode()
