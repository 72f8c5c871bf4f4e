"""The API's JSON, and the extra formats of the incident list chosen with `?format=` (DRF's URL
format override)."""

from drf_orjson_renderer.renderers import ORJSONRenderer
from rest_framework import renderers


def located(places: list[dict]) -> list[dict]:
    """The places that have a point in their incident's geometry, in its order."""
    return [place for place in places if place["latitude"] is not None]


def feature_geometry(places: list[dict]) -> dict | None:
    """RFC 7946 puts longitude first. The places' coordinates were already coarsened for readers
    who may not see sensitive locations, so the map shows exactly what the JSON shows."""
    positions = [[place["longitude"], place["latitude"]] for place in located(places)]
    if not positions:
        return None
    if len(positions) == 1:
        return {"type": "Point", "coordinates": positions[0]}
    return {"type": "MultiPoint", "coordinates": positions}


FEATURE_PROPERTIES = (
    "title",
    "incident_type",
    "date_start",
    "date_end",
    "date_label",
    "people_count",
    "people_count_min",
    "people_count_max",
    "count_qualifier",
    "verification",
    # A merged incident, which an incremental sync (`updated_since`) lists so that a copy follows the
    # merge, says where it went: without it, a map synced so drew it beside its survivor, and
    # counted its people twice.
    "merged_into",
)


def incident_feature(incident: dict) -> dict:
    """A GeoJSON Feature of an incident as the API represents it (`projections`); the public
    pages' map and GeoJSON download use it too."""
    return {
        "type": "Feature",
        "id": incident["public_id"],
        "geometry": feature_geometry(incident["places"]),
        "properties": {
            **{name: incident[name] for name in FEATURE_PROPERTIES},
            "places": [place["name"] for place in incident["places"]],
            # Which place each point is, in the geometry's order: `places` names them all, those
            # without a point too, and names repeat (Jilin the province, Jilin the city). A
            # sensitive place is named as the JSON and its incident's page name it, beside the
            # coarsened point they show it at.
            "point_places": [{"id": place["id"], "name": place["name"]} for place in located(incident["places"])],
        },
    }


class JSONRenderer(ORJSONRenderer):
    """JSON through orjson, which writes the incident list's rows, JSON texts built by PostgreSQL
    (`orjson.Fragment`, see `projections`), into the response as they are: decoding them only to
    encode them again took a tenth of the list's time."""


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's HTML pages for people exploring the API. The incident list hands it decoded incidents,
    which it indents field by field: given the list's JSON texts, orjson would write each incident
    as it is, on one unbroken line."""

    reads_results = True


class GeoJSONRenderer(JSONRenderer):
    """A page of incidents as a FeatureCollection; `next`/`previous` ride along as foreign members
    (RFC 7946 §6.1) so a map client pages exactly like a JSON client. Errors stay plain JSON."""

    media_type = "application/geo+json"
    format = "geojson"
    # It reads the incidents: the list hands it decoded ones rather than JSON texts.
    reads_results = True

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict) and "results" in data:
            data = {
                "type": "FeatureCollection",
                "features": [incident_feature(incident) for incident in data["results"]],
                "next": data["next"],
                "previous": data["previous"],
            }
        return super().render(data, accepted_media_type, renderer_context)
