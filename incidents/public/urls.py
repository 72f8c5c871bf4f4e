"""The public pages, under each language's prefix (none for English): `/`, `/ko/`, …"""

from django.urls import path

from incidents import converters  # noqa: F401  (registers <public_id:…>)
from incidents.public import views

app_name = "public"

urlpatterns = [
    path("", views.browse, name="browse"),
    path("incidents/<public_id:public_id>/", views.incident, name="incident"),
    path("incidents/<public_id:public_id>.csv", views.incident_csv, name="incident-csv"),
    path("incidents.csv", views.incidents_csv, name="incidents-csv"),
    path("incidents.geojson", views.incidents_geojson, name="incidents-geojson"),
    path("map/", views.incident_map, name="map"),
    path("map/incidents.geojson", views.map_data, name="map-data"),
    path("statistics/", views.statistics, name="statistics"),
    # The only pages other sites may frame (see views.embeddable).
    path("embed/statistics/", views.embed_statistics, name="embed-statistics"),
    path("embed/map/", views.embed_map, name="embed-map"),
]
