"""What a researcher or journalist gets when they load the downloads into their tools: the API's
GeoJSON beside its JSON, and a release's files as its codebook and datapackage.json describe them."""

import csv
import io
import json

from django.core.management import call_command

from incidents.merges import incident_merge
from incidents.models import DuplicatePair
from tests.api_support import API, client_for
from tests.factories import make_claim, make_incident, make_place, make_source


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _released_files() -> dict[str, bytes]:
    listed = client_for().get(f"{API}/releases/").json()["results"][0]
    return {release_file["name"]: _body(client_for().get(release_file["url"])) for release_file in listed["files"]}


def _release(reviewer) -> dict[str, bytes]:
    call_command("release", user=reviewer.username, stdout=io.StringIO())
    return _released_files()


def _rows(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))


def test_a_synced_geojson_tells_a_merged_incident_from_its_survivor(reviewer):
    # A map kept in step with `updated_since` is handed the merged incident too, so that it can
    # follow the merge, as the JSON and CSV say (`merged_into`). The GeoJSON left that out: the
    # merged incident was an ordinary feature beside its survivor, its 80 people counted twice.
    border = make_place(name="Sinuiju", kind="city", country="KP", latitude=40.1, longitude=124.4)
    survivor = make_incident(title="Repatriation at Sinuiju", places=[border])
    merged = make_incident(title="The same repatriation, another report", places=[border])
    incident_merge(
        user=reviewer,
        pair=DuplicatePair.objects.create(incident_a=survivor, incident_b=merged, score=0.9),
        survivor=survivor.public_id,
    )
    since = "2000-01-01T00:00:00Z"
    listed = client_for().get(f"{API}/incidents/", {"updated_since": since}).json()["results"]
    mapped = json.loads(_body(client_for().get(f"{API}/incidents/", {"updated_since": since, "format": "geojson"})))
    assert {incident["public_id"]: incident["merged_into"] for incident in listed} == {
        survivor.public_id: None,
        merged.public_id: survivor.public_id,
    }
    assert {feature["id"]: feature["properties"].get("merged_into", "absent") for feature in mapped["features"]} == {
        survivor.public_id: None,
        merged.public_id: survivor.public_id,
    }


def test_the_codebook_says_how_a_source_knows_once(reviewer):
    incident = make_incident()
    make_claim(incident=incident, source=make_source(), source_connection="witness")
    codebook = _release(reviewer)["codebook.md"].decode()
    (line,) = [line for line in codebook.splitlines() if line.startswith("| `source_connection` |")]
    assert line.count("How the source knows") == 1, line


def test_the_codebook_says_whose_coordinates_a_place_without_its_own_shows(reviewer):
    # The public is shown, for a place whose coordinates are not recorded, those of the nearest
    # place containing it that has some (migration 0007): places.csv gives a village the
    # province's. The codebook and datapackage.json said only sensitive places were shown another's,
    # so a researcher took the province's centre for the village's.
    province = make_place(name="North Hamgyong", kind="province", country="KP", latitude=41.8, longitude=129.8)
    village = make_place(name="Unknown village", kind="other", parent=province)
    make_incident(places=[village])
    files = _release(reviewer)
    (row,) = [row for row in _rows(files["places.csv"]) if row["id"] == str(village.pk)]
    assert (row["latitude"], row["longitude"], row["sensitive"]) == ("41.800000", "129.800000", "false")
    package = json.loads(files["datapackage.json"])
    (places,) = [resource for resource in package["resources"] if resource["name"] == "places"]
    fields = {field["name"]: field for field in places["schema"]["fields"]}
    for name in ("latitude", "longitude"):
        assert "not recorded" in fields[name]["description"], fields[name]["description"]
    codebook = files["codebook.md"].decode()
    (line,) = [line for line in codebook.splitlines() if line.startswith("| `latitude` |")]
    assert "not recorded" in line


def test_the_release_tells_its_readers_that_na_is_namibia_not_a_missing_value(reviewer):
    # pandas reads `NA` as missing by default, whatever dtype it is told: a researcher loading
    # places.csv lost Namibia's country code without a word. Only an empty cell is missing
    # (Frictionless's default `missingValues`); the README said nothing of it.
    namibia = make_place(name="Namibia", kind="country", country="NA", latitude=-22.0, longitude=17.0)
    make_incident(places=[namibia])
    files = _release(reviewer)
    assert [row["country"] for row in _rows(files["places.csv"])] == ["NA"]
    readme = files["README.md"].decode()
    assert "Only an empty cell is a missing value" in readme
    assert "keep_default_na=False" in readme
