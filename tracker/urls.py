from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from incidents.csv_views import IncidentCsvView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    # Before any `api/v1/` include, so the API's own routes cannot shadow it.
    path("api/v1/incidents.csv", IncidentCsvView.as_view(), name="incident-csv-export"),
    path("api/v1/", include("incidents.api.urls")),
]
