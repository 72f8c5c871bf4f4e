"""What a GeoJSON consumer can tell of a feature's points, and what the public pages cost a reader
on a slow connection."""

import gzip

import pytest
from django.test import Client

from incidents import roles
from tests.api_support import API, client_for
from tests.factories import make_incident, make_place, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_jilins():
    """An incident at Jilin the province, Jilin the city inside it, a sensitive facility in the
    city, and a place of no recorded coordinates whose name sorts first (the order of `places`)."""
    china = make_place(name="China", kind="country", latitude=35, longitude=103)
    province = make_place(name="Jilin", kind="province", parent=china, latitude=43.6, longitude=126.2)
    city = make_place(name="Jilin", kind="city", parent=province, latitude=43.84, longitude=126.55)
    facility = make_place(
        name="Jilin centre", kind="facility", parent=city, latitude=43.9, longitude=126.6, sensitive=True
    )
    unknown = make_place(name="A village", kind="village", parent=province)
    incident = make_incident(title="Repatriation from Jilin", places=[province, city, facility, unknown])
    return {"province": province, "city": city, "facility": facility, "unknown": unknown, "incident": incident}


def _points(feature) -> list[list[float]]:
    geometry = feature["geometry"]
    return [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]


GEOJSON_ADDRESSES = pytest.mark.parametrize(
    "address", [f"{API}/incidents/?format=geojson", "/incidents.geojson"], ids=["api", "public download"]
)


@GEOJSON_ADDRESSES
@pytest.mark.parametrize("reader", ["anonymous", "staff"])
def test_each_point_of_a_feature_says_which_place_it_is(two_jilins, address, reader):
    # A feature's geometry holds the points of its places that have coordinates, its `places` the
    # names of all of them: with "Jilin" twice, and a place without coordinates first, a consumer
    # (QGIS, a newsroom's map) could not tell which point was the province and which the city.
    user = make_user(roles.VIEWER) if reader == "staff" else None
    client = client_for(user) if address.startswith(API) else Client()
    if user and not address.startswith(API):
        client.force_login(user)
    (feature,) = client.get(address).json()["features"]
    detail = client_for(user).get(f"{API}/incidents/{two_jilins['incident'].public_id}/").json()

    labels = feature["properties"]["point_places"]

    # Each point is the place the JSON shows at those coordinates (coarsened alike for the public).
    shown = {place["id"]: [place["longitude"], place["latitude"]] for place in detail["places"]}
    assert len(labels) == len(_points(feature))
    assert [shown[label["id"]] for label in labels] == _points(feature)
    names = {place["id"]: place["name"] for place in detail["places"]}
    assert all(label["name"] == names[label["id"]] for label in labels)
    assert {label["id"] for label in labels} >= {two_jilins[name].pk for name in ("province", "city", "facility")}
    # Nothing else changed: `places` still names every place.
    assert sorted(feature["properties"]["places"]) == ["A village", "Jilin", "Jilin", "Jilin centre"]


def test_a_sensitive_places_point_is_where_the_public_page_shows_it(two_jilins):
    (feature,) = Client().get("/incidents.geojson").json()["features"]
    by_place = dict(
        zip([label["id"] for label in feature["properties"]["point_places"]], _points(feature), strict=True)
    )
    # The facility at its city's position, as the incident's page shows it; never its own.
    assert by_place[two_jilins["facility"].pk] == [126.55, 43.84]
    assert [126.6, 43.9] not in _points(feature)


# The pages a reader loads and the map's data, each read on every visit.
PUBLIC_ADDRESSES = pytest.mark.parametrize(
    "address",
    ["/", "/incident", "/map/", "/map/incidents.geojson", "/incidents.geojson", "/statistics/", "/embed/map/"],
)


def _address(address: str, incident) -> str:
    return f"/incidents/{incident.public_id}/" if address == "/incident" else address


@PUBLIC_ADDRESSES
def test_the_public_pages_and_map_data_are_sent_compressed(two_jilins, address):
    # Static files are compressed at collectstatic (WhiteNoise), but the pages and the map's data
    # went out as they were: 48 KB of map data for 200 incidents (2 KB gzipped), over a megabyte at
    # the map's 5,000, on every visit, to readers on slow mobile connections. The proxy the README
    # documents (nginx) compresses nothing by default, and application/geo+json not even with
    # `gzip on`.
    for number in range(60):
        make_incident(title=f"Repatriation of a family through Tumen, number {number}", places=[two_jilins["city"]])

    answer = Client().get(_address(address, two_jilins["incident"]), HTTP_ACCEPT_ENCODING="gzip, deflate, br")

    assert answer.status_code == 200
    assert answer.get("Content-Encoding") == "gzip", dict(answer.headers)
    assert "Accept-Encoding" in answer["Vary"]
    assert gzip.decompress(answer.content)


@pytest.mark.parametrize("path", ["/", "/statistics/", "/incidents.geojson"])
def test_a_signed_in_readers_page_is_not_compressed(two_jilins, path):
    # Her page may hold confidential records beside the words its address reflects (`q`): the
    # compressed length would tell an observer of the traffic whether guessed words match them
    # (BREACH), which Django's random padding only blurs.
    reader = Client()
    reader.force_login(make_user(roles.REVIEWER, confidential=True))

    answer = reader.get(f"{path}?q=Tumen", HTTP_ACCEPT_ENCODING="gzip, deflate, br")

    assert answer.status_code == 200
    assert "Content-Encoding" not in answer
    assert answer.has_header("ETag")


@PUBLIC_ADDRESSES
def test_a_public_page_read_again_unchanged_answers_304(two_jilins, address):
    # No ETag nor Last-Modified: a reader coming back to the map downloaded its data again in full.
    reader = Client()
    address = _address(address, two_jilins["incident"])
    first = reader.get(address)
    assert first.status_code == 200
    assert first.get("ETag"), dict(first.headers)

    again = reader.get(address, HTTP_IF_NONE_MATCH=first["ETag"])

    assert again.status_code == 304
    assert again.content == b""
