"""URLs for the CSV admin tests: the project's admin, with IncidentCsvAdminMixin mixed into whatever
ModelAdmin the project registers for incidents (the integrator mixes it in for real)."""

from django.contrib import admin
from django.urls import path

from incidents.admin_csv import IncidentCsvAdminMixin
from incidents.models import Incident

site = admin.AdminSite(name="admin")
for model, model_admin in admin.site._registry.items():
    admin_class = type(model_admin)
    if model is Incident and not issubclass(admin_class, IncidentCsvAdminMixin):
        admin_class = type("IncidentCsvAdmin", (IncidentCsvAdminMixin, admin_class), {})
    site.register(model, admin_class)

urlpatterns = [path("admin/", site.urls)]
