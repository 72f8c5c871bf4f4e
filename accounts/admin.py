import dataclasses

from axes.admin import AccessAttemptAdmin, AccessFailureLogAdmin
from axes.models import AccessAttempt, AccessFailureLog
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_variables
from django_otp.plugins.otp_static.admin import StaticDeviceAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.confirmation import confirmation_needed
from accounts.grants import (
    Powers,
    account_change_refusals,
    account_delete_refusal,
    account_password_refusal,
    account_powers,
    account_rename_refusal,
    failed_sign_ins_clearing_refusal,
    group_change_refusals,
    group_delete_refusal,
    powers_change_record,
    role_deletion_record,
    role_without_staff_refusals,
    second_factor_removal_refusal,
    staff_without_role,
)
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


class RefusedDeletionMixin:
    """Deleting, one record or a list's selection, only when `deletion_refusal` finds no reason
    not to; otherwise the list or the record's page says why and nothing is deleted. The check and
    the deletion are one transaction (the rules lock the rows they count)."""

    def deletion_refusal(self, request, records) -> str | None:
        raise NotImplementedError

    def delete_view(self, request, object_id, extra_context=None):
        with transaction.atomic():
            record = self.get_object(request, unquote(object_id))
            if record is not None and (refusal := self.deletion_refusal(request, [record])):
                self.message_user(request, refusal, messages.ERROR)
                return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", record.pk)
            return super().delete_view(request, object_id, extra_context)

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location=action_location)
        if "delete_selected" in actions:
            actions["delete_selected"] = dataclasses.replace(
                actions["delete_selected"], func=type(self)._delete_selected_refused
            )
        return actions

    def _delete_selected_refused(self, request, queryset):
        with transaction.atomic():
            if refusal := self.deletion_refusal(request, queryset):
                self.message_user(request, refusal, messages.ERROR)
                return None
            return delete_selected(self, request, queryset)


class DeleteOnlyDeviceAdminMixin(RefusedDeletionMixin):
    """A second factor is set up by its owner alone: a first app with an administrator's setup link,
    a later one with the current app's code, recovery codes beside an app (accounts.services). Here
    an administrator deletes one, lost with the phone, and nothing else: django-otp's admin added an
    app of a chosen key or recovery codes of chosen values to any account (one's own included, past
    the current app's code), and moved an app to another account. Only the second factor of an
    account one controls (accounts.grants.second_factor_removal_refusal)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def deletion_refusal(self, request, records):
        return second_factor_removal_refusal(actor=request.user, devices=records)


class AuthenticatorAppAdmin(DeleteOnlyDeviceAdminMixin, TOTPDeviceAdmin):
    pass


class RecoveryCodesAdmin(DeleteOnlyDeviceAdminMixin, StaticDeviceAdmin):
    pass


admin.site.unregister(TOTPDevice)
admin.site.register(TOTPDevice, AuthenticatorAppAdmin)
admin.site.unregister(StaticDevice)
admin.site.register(StaticDevice, RecoveryCodesAdmin)


class FailedSignInsClearingMixin(RefusedDeletionMixin):
    """Deleting what the lockout counts lifts it, which only whoever controls the account named may
    (accounts.grants.failed_sign_ins_clearing_refusal)."""

    def deletion_refusal(self, request, records):
        return failed_sign_ins_clearing_refusal(actor=request.user, usernames=[record.username for record in records])


class FailedSignInsAdmin(FailedSignInsClearingMixin, AccessAttemptAdmin):
    """django-axes' counts of failed sign-ins, by username and client; deleting one lifts the lock
    of its account at its address. Its access logs (successful sign-ins) count nothing: deleting
    them unlocks none."""


class FailedSignInsLogAdmin(FailedSignInsClearingMixin, AccessFailureLogAdmin):
    """django-axes' log of each failed sign-in, which the lockout's wide bounds count
    (accounts.lockout.wide_lockout_lifts_at): deleting an account's (or an address's) failures of
    the last TRACKER_LOCKOUT_WINDOW_HOURS lifts them."""


admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, FailedSignInsAdmin)
admin.site.unregister(AccessFailureLog)
admin.site.register(AccessFailureLog, FailedSignInsLogAdmin)


User = get_user_model()
admin.site.unregister(User)


class ActingUserFormMixin:
    """A form of the admin that knows who submits it (`actor`, set by `acted_by`): the rules of
    accounts.grants depend on it."""

    actor = None

    @classmethod
    def acted_by(cls, actor):
        return type(cls.__name__, (cls,), {"actor": actor})

    def add_refusals(self, refusals: dict) -> None:
        for field, messages_ in refusals.items():
            for message in messages_:
                self.add_error(field, message)


class StaffUserChangeForm(ActingUserFormMixin, UserChangeForm):
    api_only = forms.BooleanField(
        label="API only",
        required=False,
        help_text="A partner tool's account, kept without Staff status: it uses its roles through API tokens "
        "only, reads only what anyone may, and cannot sign in to the admin.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # An account already kept so was said to be: its edits are not asked again.
        account = self.instance
        self.fields["api_only"].initial = (
            account.pk is not None
            and not (account.is_staff or account.is_superuser)
            and (account.groups.exists() or account.user_permissions.exists())
        )

    def clean_username(self):
        username = self.cleaned_data["username"]
        if username != self.instance.get_username() and (refusal := account_rename_refusal(account=self.instance)):
            raise forms.ValidationError(refusal)
        return username

    def clean(self):
        cleaned_data = super().clean()
        if cleaned_data.get("is_superuser") and not cleaned_data.get("is_staff"):
            # accounts.services.second_factor_required: such an account could pass no second factor.
            self.add_error(
                "is_staff",
                "A superuser must be staff: Django gives a superuser every permission, which only the "
                "second factor that staff pass may open.",
            )
        self.powers_before = before = account_powers(self.instance)
        after = Powers(
            is_superuser=cleaned_data.get("is_superuser", before.is_superuser),
            is_staff=cleaned_data.get("is_staff", before.is_staff),
            is_active=cleaned_data.get("is_active", before.is_active),
            groups=frozenset(cleaned_data["groups"]) if "groups" in cleaned_data else before.groups,
            permissions=(
                frozenset(cleaned_data["user_permissions"])
                if "user_permissions" in cleaned_data
                else before.permissions
            ),
        )
        self.add_refusals(account_change_refusals(actor=self.actor, account=self.instance, before=before, after=after))
        self.add_refusals(
            role_without_staff_refusals(before=before, after=after, api_only=cleaned_data.get("api_only", False))
        )
        return cleaned_data


@admin.register(User)
class StaffUserAdmin(RefusedDeletionMixin, UserAdmin):
    """Django's users' admin, with setup links for the first authenticator app of staff. Its changes
    need a recent confirmation of who one is (accounts.admin_site.ConfirmedChangesMixin), and give
    or take only the powers accounts.grants allows, recording each."""

    form = StaffUserChangeForm
    actions = ["make_setup_links"]
    # "API only" beside Staff status, where the question arises (accounts.grants.role_without_staff_refusals).
    fieldsets = [
        (
            name,
            {
                **options,
                "fields": [
                    each
                    for field in options["fields"]
                    for each in ((field, "api_only") if field == "is_staff" else (field,))
                ],
            },
        )
        for name, options in UserAdmin.fieldsets
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # A box that only a change reads: a page that only reads showed "Api only: None".
        return [
            (name, {**options, "fields": [field for field in options["fields"] if field != "api_only"]})
            for name, options in fieldsets
        ]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        return form.acted_by(request.user) if issubclass(form, ActingUserFormMixin) else form

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        after = account_powers(form.instance)
        powers_change_record(
            actor=request.user, holder=form.instance, before=getattr(form, "powers_before", Powers()), after=after
        )
        if staff_without_role(after):
            self.message_user(
                request,
                f"{form.instance.get_username()} has Staff status but no role: they can sign in to the admin, "
                "which shows them nothing. Give them a role (Viewer, Analyst or Reviewer) under Groups.",
                messages.WARNING,
            )

    def deletion_refusal(self, request, records):
        return account_delete_refusal(actor=request.user, accounts=records)

    def user_change_password(self, request, id, form_url=""):
        """Another person's password, set after a recent confirmation and recorded (who, whose, when,
        in the admin's history: never the password). One's own goes to the admin's Change password,
        which asks for the current one and counts wrong ones towards the lockout: here, Django's form
        set a new one without it, and a stolen session's cookie took the account. Said of the
        account the address finds, not of its text: `01`, `+1` and `1 ` find account 1 too."""
        account = self.get_object(request, unquote(id))
        if account is not None and account.pk == request.user.pk:
            return redirect("admin:password_change")
        if (refused := confirmation_needed(request, self.model)) is not None:
            return refused
        if account is not None and (refusal := account_password_refusal(actor=request.user, account=account)):
            self.message_user(request, refusal, messages.ERROR)
            return redirect("admin:auth_user_change", account.pk)
        return super().user_change_password(request, id, form_url)

    def has_setup_link_permission(self, request):
        return request.user.has_perm("accounts.add_setuplink")

    @admin.action(description="Make authenticator setup links", permissions=["setup_link"])
    # The links' keys are in its local variables: a server error's report shows none of them.
    @method_decorator(sensitive_variables())
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


class RoleForm(ActingUserFormMixin, forms.ModelForm):
    def clean(self):
        cleaned_data = super().clean()
        self.permissions_before = frozenset(self.instance.permissions.all()) if self.instance.pk else frozenset()
        self.add_refusals(
            group_change_refusals(
                actor=self.actor,
                group=self.instance,
                name=cleaned_data.get("name"),
                permissions=cleaned_data.get("permissions"),
            )
        )
        return cleaned_data


admin.site.unregister(Group)


@admin.register(Group)
class RoleAdmin(RefusedDeletionMixin, GroupAdmin):
    """Django's groups' admin (the roles, incidents.roles), where only a superuser changes a role's
    permissions or the name of one of incidents.roles' roles, or deletes a role someone holds
    (accounts.grants): each changes the powers of every member at once. Each change of a role's
    permissions is recorded in its history."""

    form = RoleForm

    def get_form(self, request, obj=None, **kwargs):
        return super().get_form(request, obj, **kwargs).acted_by(request.user)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        powers_change_record(
            actor=request.user,
            holder=form.instance,
            before=Powers(permissions=form.permissions_before),
            after=Powers(permissions=frozenset(form.instance.permissions.all())),
        )

    def deletion_refusal(self, request, records):
        return group_delete_refusal(actor=request.user, groups=records)

    def delete_model(self, request, obj):
        role_deletion_record(actor=request.user, groups=[obj])
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        role_deletion_record(actor=request.user, groups=queryset)
        super().delete_queryset(request, queryset)
