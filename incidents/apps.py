from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


def _ensure_reference_data(sender, apps=global_apps, **kwargs):
    from incidents.roles import ensure_roles
    from incidents.vocabulary import ensure_incident_types

    # The model as the migrations left it (`flush` passes none: today's): a migrate back to an
    # earlier state (as a test of a data migration does) has a table without the columns added since.
    try:
        incident_type_model = apps.get_model("incidents", "IncidentType")
    except LookupError:  # migrated back before the app's tables
        incident_type_model = None
    if incident_type_model is not None:
        ensure_incident_types(incident_type_model)
    ensure_roles()


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incident documentation"

    def ready(self):
        # Permissions exist only after migrate, and `flush` (used between transactional tests) empties
        # every table; rebuilding roles and the type vocabulary after each, idempotently, covers both.
        post_migrate.connect(_ensure_reference_data, sender=self)
