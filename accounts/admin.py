from django.contrib import admin

from accounts.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every account's tokens, for administrators: deleting one revokes it. Tokens are made by their
    owners (Sign-in security, or the API), never here: only the owner ever sees the key."""

    list_display = ["name", "user", "hint", "created_at", "last_used_at", "expires_at"]
    list_select_related = ["user"]
    list_filter = ["expires_at", "last_used_at"]
    search_fields = ["name", "user__username", "hint"]
    readonly_fields = ["user", "name", "hint", "created_at", "last_used_at", "expires_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected tokens", permissions=["delete"])
    def revoke(self, request, queryset):
        count, _ = queryset.delete()
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.")
