from django.http import JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token
from rest_framework.routers import DefaultRouter

from incidents.api import views

router = DefaultRouter()
router.register("incidents", views.IncidentViewSet, basename="incident")
router.register("sources", views.SourceViewSet, basename="source")
router.register("organizations", views.OrganizationViewSet, basename="organization")
router.register("places", views.PlaceViewSet, basename="place")
router.register("incident-types", views.IncidentTypeViewSet, basename="incidenttype")
router.register("responses", views.ResponseViewSet, basename="response")
router.register("revisions", views.RevisionViewSet, basename="revision")


@csrf_exempt  # Like the API's views: it changes nothing, and a CSRF refusal would be an HTML page.
def not_found(request, *args, **kwargs):
    """Anything else under /api/v1/ (an id that is not a number, a typo) answers in JSON, like
    every other API error, rather than with Django's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
    re_path(r"", not_found),
]
