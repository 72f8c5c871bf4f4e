from django.apps import AppConfig
from django.db.models.signals import post_migrate


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incident documentation"

    def ready(self):
        from incidents.roles import ensure_roles

        # Permissions exist only after migrate, so roles are (re)built after every migrate, idempotently.
        post_migrate.connect(ensure_roles, sender=self)
