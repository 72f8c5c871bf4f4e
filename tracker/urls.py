from django.conf.urls.i18n import i18n_patterns
from django.contrib import admin
from django.urls import include, path

from incidents.csv_views import IncidentCsvView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    # Before any `api/v1/` include, so the API's own routes cannot shadow it.
    path("api/v1/incidents.csv", IncidentCsvView.as_view(), name="incident-csv-export"),
    path("api/v1/", include("incidents.api.urls")),
]
# The public pages in every language, English without a prefix (`/`, `/ko/`): a page's address
# names its language, so a shared link opens in the language it was shared in.
urlpatterns += i18n_patterns(path("", include("incidents.public.urls")), prefix_default_language=False)

handler400 = "tracker.bad_requests.bad_request"
