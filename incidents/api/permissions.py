from rest_framework.permissions import SAFE_METHODS, BasePermission, DjangoModelPermissions

from incidents.querysets import can_see_unpublished


class ReadOrModelPermission(DjangoModelPermissions):
    """Anyone may read (what they see is decided by `visible_to`); writing needs the model's
    add/change/delete permission, so analysts create and edit and only reviewers delete."""

    def has_permission(self, request, view):
        if request.method in SAFE_METHODS:
            return True
        return super().has_permission(request, view)


class StaffReader(BasePermission):
    """Internal views (the audit trail) are for staff who may read unpublished records."""

    message = "Only staff may read an incident's history."

    def has_permission(self, request, view):
        return can_see_unpublished(request.user)


class StaffRevisionsReader(StaffReader):
    message = "Only staff may read proposed revisions."
