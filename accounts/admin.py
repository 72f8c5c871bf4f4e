from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import ValidationError
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.confirmation import confirmation_needed
from accounts.models import ApiToken, SetupLink
from accounts.services import setup_link_create
from accounts.views import setup_link_path


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every account's tokens, for administrators: deleting one revokes it. Tokens are made by their
    owners (Sign-in security, or the API), never here: only the owner ever sees the key."""

    list_display = ["name", "user", "hint", "second_factor", "created_at", "last_used_at", "expires_at"]
    list_select_related = ["user"]
    list_filter = ["expires_at", "last_used_at"]
    search_fields = ["name", "user__username", "hint"]
    readonly_fields = ["user", "name", "hint", "second_factor", "created_at", "last_used_at", "expires_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke the selected tokens", permissions=["delete"])
    def revoke(self, request, queryset):
        count, _ = queryset.delete()
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.")


@admin.register(SetupLink)
class SetupLinkAdmin(admin.ModelAdmin):
    """Who made a setup link for whom, and whether it was used; deleting an unused one revokes it.
    Links are made from the users' list (StaffUserAdmin), which shows the key once."""

    list_display = ["user", "created_by", "created_at", "expires_at", "used_at"]
    list_select_related = ["user", "created_by"]
    list_filter = ["created_at", "used_at"]
    search_fields = ["user__username", "created_by__username"]
    readonly_fields = ["user", "created_by", "created_at", "expires_at", "used_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class DeleteOnlyDeviceAdminMixin:
    """A second factor is set up by its owner alone: a first app with an administrator's setup link,
    a later one with the current app's code, recovery codes beside an app (accounts.services). Here
    an administrator deletes one, lost with the phone, and nothing else: django-otp's admin added an
    app of a chosen key or recovery codes of chosen values to any account (one's own included, past
    the current app's code), and moved an app to another account."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class AuthenticatorAppAdmin(DeleteOnlyDeviceAdminMixin, TOTPDeviceAdmin):
    pass


class RecoveryCodesAdmin(DeleteOnlyDeviceAdminMixin, StaticDeviceAdmin):
    pass


admin.site.unregister(TOTPDevice)
admin.site.register(TOTPDevice, AuthenticatorAppAdmin)
admin.site.unregister(StaticDevice)
admin.site.register(StaticDevice, RecoveryCodesAdmin)


User = get_user_model()
admin.site.unregister(User)


class StaffUserChangeForm(UserChangeForm):
    def clean(self):
        cleaned_data = super().clean()
        if cleaned_data.get("is_superuser") and not cleaned_data.get("is_staff"):
            # accounts.services.second_factor_required: such an account could pass no second factor.
            self.add_error(
                "is_staff",
                "A superuser must be staff: Django gives a superuser every permission, which only the "
                "second factor that staff pass may open.",
            )
        return cleaned_data


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    """Django's users' admin, with setup links for the first authenticator app of staff. Its changes
    need a recent confirmation of who one is (accounts.admin_site.ConfirmedChangesMixin)."""

    form = StaffUserChangeForm
    actions = ["make_setup_links"]

    def user_change_password(self, request, id, form_url=""):
        """Another person's password, set after a recent confirmation and recorded (who, whose, when,
        in the admin's history: never the password). One's own goes to the admin's Change password,
        which asks for the current one and counts wrong ones towards the lockout: here, Django's form
        set a new one without it, and a stolen session's cookie took the account."""
        if id == str(request.user.pk):
            return redirect("admin:password_change")
        if (refused := confirmation_needed(request, self.model)) is not None:
            return refused
        return super().user_change_password(request, id, form_url)

    def has_setup_link_permission(self, request):
        return request.user.has_perm("accounts.add_setuplink")

    @admin.action(description="Make authenticator setup links", permissions=["setup_link"])
    def make_setup_links(self, request, queryset):
        links, refused = [], []
        for user in queryset.order_by("username"):
            try:
                _, key = setup_link_create(user=user, created_by=request.user)
            except ValidationError as refusal:
                refused.extend(refusal.messages)
            else:
                links.append((user, request.build_absolute_uri(setup_link_path(key))))
        for message in refused:
            self.message_user(request, message, messages.WARNING)
        if not links:
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Setup links",
            "links": links,
            "setup_link_days": settings.SETUP_LINK_DAYS,
            "opts": self.opts,
        }
        response = TemplateResponse(request, "accounts/setup_links_made.html", context)
        # Shown once: no browser or proxy may keep the keys.
        add_never_cache_headers(response)
        return response
