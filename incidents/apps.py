import pgtrigger.apps
from django.apps import AppConfig
from django.apps import apps as global_apps
from django.contrib.auth.signals import user_logged_out
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


def _forget_pending_import(sender, request, user, **kwargs):
    """Signing out ends what the session previewed: the file waiting to be imported goes with it
    (it waited for that session's confirmation; each sign-in previews afresh)."""
    from incidents.models import PendingImport

    if user is not None:
        PendingImport.objects.filter(user=user).delete()


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incident documentation"

    def ready(self):
        from incidents.trigger_migrations import install_triggers_once_migrated, render_no_model_at_each_trigger

        render_no_model_at_each_trigger()
        # pgtrigger's app is ready before this one (INSTALLED_APPS), its install connected.
        triggers = global_apps.get_app_config("pgtrigger")
        post_migrate.disconnect(pgtrigger.apps.install_on_migrate, sender=triggers)
        post_migrate.connect(install_triggers_once_migrated, sender=triggers)
        # Permissions exist only after migrate, and `flush` (used between transactional tests) empties
        # every table; rebuilding roles and the type vocabulary after each, idempotently, covers both.
        post_migrate.connect(_ensure_reference_data, sender=self)
        user_logged_out.connect(_forget_pending_import, dispatch_uid="incidents_forget_pending_import")
