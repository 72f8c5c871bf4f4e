"""The roles analysts' organisations work with, as Django groups.

Viewer reads; Analyst enters and edits data and submits it for review but cannot publish or
delete; Reviewer also verifies, publishes, unpublishes and deletes. Seeing confidential records is a
separate group that any of them may be given, so a need-to-know decision never rides on a role.
"""

from django.contrib.auth.models import Group, Permission

# Models whose rows analysts work with; each gets the view/add/change/delete permissions.
DOMAIN_MODELS = [
    "incident",
    "claim",
    "victimgroup",
    "involvement",
    "incidentplace",
    "source",
    "organization",
    "place",
    "incidenttype",
    "response",
]

VIEWER = "Viewer"
ANALYST = "Analyst"
REVIEWER = "Reviewer"
CONFIDENTIAL_ACCESS = "Confidential access"


def _model_permissions(*actions: str) -> list[str]:
    return [f"{action}_{model}" for model in DOMAIN_MODELS for action in actions]


ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _model_permissions("view"),
    ANALYST: _model_permissions("view", "add", "change") + ["submit_incident"],
    REVIEWER: _model_permissions("view", "add", "change", "delete")
    + ["submit_incident", "publish_incident", "verify_incident"]
    # Who read which confidential records; shown only to those who also hold confidential access.
    + ["view_confidentialaccess"],
    CONFIDENTIAL_ACCESS: ["view_confidential"],
}


def ensure_roles() -> None:
    """Create or update the role groups so they hold exactly their permissions. Idempotent; runs
    after every migrate (post_migrate) and from `manage.py setup_roles`."""
    permissions = {
        permission.codename: permission for permission in Permission.objects.filter(content_type__app_label="incidents")
    }
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([permissions[codename] for codename in codenames])
