from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_reference_data(sender, **kwargs):
    from incidents.models import IncidentType
    from incidents.roles import ensure_roles
    from incidents.vocabulary import ensure_incident_types

    ensure_incident_types(IncidentType)
    ensure_roles()


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incident documentation"

    def ready(self):
        # Permissions exist only after migrate, and `flush` (used between transactional tests) empties
        # every table; rebuilding roles and the type vocabulary after each, idempotently, covers both.
        post_migrate.connect(_ensure_reference_data, sender=self)
