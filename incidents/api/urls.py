from django.conf import settings
from django.http import JsonResponse
from django.urls import path, re_path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.routers import APIRootView, DefaultRouter

from accounts.api import TokenRequestView, TokenViewSet
from incidents import converters  # noqa: F401  (registers <public_id:…>)
from incidents.api import merges, views
from incidents.api.parameters import ReadParametersOnlyMixin


class RootView(ReadParametersOnlyMixin, APIRootView):
    """The list of the API's lists (`/api/v1/`), which reads no parameter but `format`, like every view."""


router = DefaultRouter()
router.APIRootView = RootView
router.register("incidents", views.IncidentViewSet, basename="incident")
router.register("sources", views.SourceViewSet, basename="source")
router.register("organizations", views.OrganizationViewSet, basename="organization")
router.register("places", views.PlaceViewSet, basename="place")
router.register("incident-types", views.IncidentTypeViewSet, basename="incidenttype")
router.register("responses", views.ResponseViewSet, basename="response")
router.register("revisions", views.RevisionViewSet, basename="revision")
router.register("auth/tokens", TokenViewSet, basename="api-token-owned")
router.register("releases", views.ReleaseViewSet, basename="release")
router.register("duplicates", merges.DuplicatePairViewSet, basename="duplicate")


@csrf_exempt  # Like the API's views: it changes nothing, and a CSRF refusal would be an HTML page.
def not_found(request, *args, **kwargs):
    """Anything else under /api/v1/ (an id that is not a number, a typo) answers in JSON, like
    every other API error, rather than with Django's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("auth/token/", TokenRequestView.as_view(), name="api-token"),
    path("schema/", views.SchemaView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from its own URL: the Content-Security-Policy
    # runs no inline script. Swagger UI's stylesheet draws its icons as data: images, which cannot
    # run anything. No OPTIONS (405): DRF's metadata, rendered through the page's template, which
    # only a GET fills in, was a 500 to anyone (a browser's preflight, a scanner).
    path(
        "docs/",
        csp_override({**settings.SECURE_CSP, "img-src": [CSP.SELF, "data:"]})(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema", template_name="api/swagger_ui.html", metadata_class=None
            )
        ),
        name="api-docs",
    ),
    path("incidents/<public_id:public_id>/unmerge/", merges.IncidentUnmergeView.as_view(), name="incident-unmerge"),
    *router.urls,
    re_path(r"", not_found),
]
