"""What caches may keep: a merged incident's redirect, which a merge's undo ends; what a signed-in reader is shown."""

import pytest
from django.test import Client
from django.utils.cache import get_max_age

from incidents import roles
from incidents.merges import incident_merge, incident_merge_undo
from incidents.models import DuplicatePair
from tests.api_support import API, client_for
from tests.factories import make_incident, make_user

pytestmark = pytest.mark.django_db


def _cached_for_good(response) -> bool:
    """A redirect a browser or a shared cache keeps with no end: a 301/308 with nothing in
    Cache-Control to bound it (RFC 9111 §4.2.2: heuristically cacheable; browsers keep 301s for good)."""
    if response.status_code not in (301, 308):
        return False
    directives = response.get("Cache-Control", "")
    bounded = "no-cache" in directives or "no-store" in directives or get_max_age(response) is not None
    return not bounded


# Where a merged incident's address leads to its survivor's.
MERGED_INCIDENT_ADDRESSES = pytest.mark.parametrize(
    "address",
    [
        lambda merged: f"/incidents/{merged.public_id}/",
        lambda merged: f"/incidents/{merged.public_id}.csv",
        lambda merged: f"{API}/incidents/{merged.public_id}/",
    ],
    ids=["public page", "public csv", "api detail"],
)


@MERGED_INCIDENT_ADDRESSES
def test_a_merged_incidents_redirect_is_not_cached_for_good_since_a_merge_can_be_undone(address):
    # A merge is undone by a Reviewer (README: "merge duplicates and undo merges"), and the merged
    # incident's address then names it again. Its redirect to the survivor was a bare 301: a
    # browser (or a cache in front) keeps it for good, so every reader who once followed it is
    # sent to the survivor for ever after the undo and never reads the incident again.
    reviewer = make_user(roles.REVIEWER)
    survivor = make_incident(title="80 sent back from Tumen")
    merged = make_incident(title="Repatriation at Tumen")
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    merge = incident_merge(user=reviewer, pair=pair, survivor=survivor.public_id)
    url = address(merged)
    reader = client_for(None) if url.startswith(API) else Client()

    redirected = reader.get(url)
    assert redirected.status_code in (301, 302, 303, 307, 308), redirected.status_code

    incident_merge_undo(user=reviewer, merge=merge)
    assert reader.get(url).status_code == 200  # the address names the incident again

    assert not _cached_for_good(redirected), dict(redirected.headers)


@pytest.mark.parametrize(
    "address",
    [
        lambda secret: "/incidents.geojson",
        lambda secret: "/map/incidents.geojson",
        lambda secret: f"/incidents/{secret.public_id}/",
    ],
    ids=["geojson download", "map data", "incident page"],
)
def test_what_a_confidential_reader_is_shown_on_the_public_site_is_not_left_in_caches(address):
    # Signed in with Confidential access, the public site's GeoJSON and pages hold confidential
    # incidents (and sensitive places' exact coordinates). The CSV download of the very same rows
    # is sent `Cache-Control: no-store` (csv_views.incidents_csv_response); these carry no
    # Cache-Control at all, so the browser (and any cache in front that ignores Vary, as most CDNs
    # do but for Accept-Encoding) may keep them and give them back after sign-out.
    keeper = make_user(roles.REVIEWER, confidential=True)
    secret = make_incident(confidential=True, title="Informant's account of Onsong")
    reader = Client()
    reader.force_login(keeper)

    shown = reader.get(address(secret))

    assert shown.status_code == 200
    assert secret.public_id.encode() in shown.content or b"Onsong" in shown.content
    directives = shown.get("Cache-Control", "")
    assert "no-store" in directives or "private" in directives, dict(shown.headers)


def test_the_csv_of_the_same_rows_is_not_stored():
    # The control: the CSV download of the same selection already says so.
    keeper = make_user(roles.REVIEWER, confidential=True)
    make_incident(confidential=True, title="Informant's account of Onsong")
    reader = Client()
    reader.force_login(keeper)

    shown = reader.get("/incidents.csv")

    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]


def test_the_api_read_with_a_token_is_not_stored():
    keeper = make_user(roles.REVIEWER, confidential=True)
    secret = make_incident(confidential=True, title="Informant's account of Onsong")

    shown = client_for(keeper).get(f"{API}/incidents/{secret.public_id}/")

    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]


def test_what_the_public_is_shown_may_be_cached():
    incident = make_incident(title="80 sent back from Tumen")

    for shown in (Client().get(f"/incidents/{incident.public_id}/"), client_for(None).get(f"{API}/incidents/")):
        assert shown.status_code == 200
        assert "no-store" not in shown.get("Cache-Control", "")
        assert "private" not in shown.get("Cache-Control", "")


def _confidential_merge():
    keeper = make_user(roles.REVIEWER, confidential=True)
    survivor = make_incident(confidential=True, title="Informant's account of Onsong")
    merged = make_incident(confidential=True, title="Informant's second account of Onsong")
    pair = DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9)
    incident_merge(user=keeper, pair=pair, survivor=survivor.public_id)
    return keeper, survivor, merged


@MERGED_INCIDENT_ADDRESSES
def test_a_confidential_merged_incidents_redirect_to_a_signed_in_reader_is_not_stored(address):
    # Answered only to a reader with Confidential access (the public gets 404), it names the
    # confidential survivor. Its view's `no-cache` (MERGED_REDIRECT_HEADERS) kept the middleware
    # from adding `private, no-store`.
    keeper, survivor, merged = _confidential_merge()
    url = address(merged)
    if url.startswith(API):
        reader, public = client_for(keeper), client_for(None)
    else:
        reader, public = Client(), Client()
        reader.force_login(keeper)

    assert public.get(url).status_code == 404  # the public is told nothing of it
    redirected = reader.get(url)
    assert redirected.status_code == 301, redirected.status_code
    assert survivor.public_id in redirected["Location"]

    directives = redirected.get("Cache-Control", "")
    assert "no-store" in directives and "private" in directives, dict(redirected.headers)
