from django.contrib import admin

from incidents import models

for model in (
    models.Organization,
    models.Place,
    models.IncidentType,
    models.Source,
    models.Incident,
    models.Claim,
    models.Response,
):
    admin.site.register(model)
