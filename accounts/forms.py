from django import forms
from django.contrib.admin.forms import AdminPasswordChangeForm
from django.core.exceptions import ValidationError
from django_otp.models import Device

from accounts.lockout import is_locked_out, lockout_message
from accounts.services import (
    SecondFactorThrottled,
    failed_sign_in_counted,
    second_factor_check,
    second_factor_enrolled,
)


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autofocus": True, "inputmode": "text"}),
    )


def current_code_field() -> forms.CharField:
    return forms.CharField(
        label="Current code",
        max_length=32,
        strip=True,
        help_text="The code your authenticator app shows now, or one of your unused recovery codes.",
        error_messages={
            "required": "Type the code your authenticator app shows now, or one of your unused recovery codes."
        },
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text"}),
    )


def current_code_check(request, code: str, *, app_only: bool = False) -> Device:
    """Runs queries: the device of the signed-in account that accepts `code`, checked as the second
    step of signing in checks it (second_factor_check: a wrong one counts towards the lockout and
    makes the devices wait), or a ValidationError on the form's `code`."""
    user = request.user
    # Before the code, as on the second step: a locked-out client may not try codes either.
    if is_locked_out(request, user.get_username()):
        raise ValidationError({"code": lockout_message(request)})
    # A failure counted by django-axes may lock this client: its middleware then answers with
    # the lockout page instead of this one.
    try:
        device = second_factor_check(request=request, user=user, code=code, app_only=app_only)
    except SecondFactorThrottled as throttled:
        raise ValidationError({"code": str(throttled)}) from throttled
    if device is None:
        raise ValidationError({"code": "That code is not right, or was already used. Type the code the app shows now."})
    return device


class CurrentCodeMixin:
    """A form's `code` field, when it has one (an account with a second factor), checked with
    current_code_check once everything else is valid: a refused token name or a wrong password
    must not spend a recovery code, nor count as a failed sign-in. Valid: `device` is the device
    that accepted the code, or None when none was asked."""

    # Whether one of the recovery codes does instead of the app's code.
    recovery_code_accepted = True
    device: Device | None = None

    @property
    def code_needed(self) -> bool:
        return "code" in self.fields

    def clean(self):
        cleaned_data = super().clean()
        if self.code_needed and not self.errors:
            self.device = current_code_check(
                self.request, cleaned_data["code"], app_only=not self.recovery_code_accepted
            )
        return cleaned_data


class FreshCodeForm(CurrentCodeMixin, forms.Form):
    """A current code from the account's second factor (the app's code, or one recovery code),
    asked on Sign-in security before the session makes long-lived credentials: an API token (90
    days) or new recovery codes (a second factor for good, which also ends the sessions the old
    codes verified). A session passed its second factor once and lasts a working day, so whoever
    steals its cookie would otherwise turn it into either without the phone; the API's token
    request asks for the code every time too.

    The code is checked as the second step of signing in checks it (second_factor_check): a wrong
    one counts towards the lockout and makes the devices wait. An account without a second factor
    (debug, TRACKER_REQUIRE_2FA off, none set up yet) is asked for none: it has no code to give.

    Valid: `device` is the device that accepted the code, or None when none was asked."""

    code = current_code_field()

    def __init__(self, data=None, *, request, auto_id: str, prefix: str | None = None):
        # Each form on the page names its own code field: two inputs may not share one id.
        super().__init__(data, auto_id=auto_id, prefix=prefix)
        self.request = request
        if not second_factor_enrolled(request.user):
            del self.fields["code"]


class RecoveryCodesForm(FreshCodeForm):
    def __init__(self, data=None, *, request):
        super().__init__(data, request=request, auto_id="recovery_codes_%s")


class TokenForm(FreshCodeForm):
    name = forms.CharField(label="What is it for?", max_length=100, help_text="For example “nightly sync”.")

    field_order = ["name", "code"]

    def __init__(self, data=None, *, request):
        super().__init__(data, request=request, auto_id="token_%s")


class CurrentAppCodeForm(FreshCodeForm):
    """The code the current authenticator app shows, asked before a new app replaces it
    (accounts.views.two_factor_setup), even in a session the app verified: replacing it deletes the
    owner's app and recovery codes and gives new ones, so whoever stole the session's cookie would
    otherwise own the account's second factor for good, without the phone, and lock its owner
    out. The app's alone: a recovery code signs in once without the phone, and may not move the
    second factor (accounts.services.authenticator_replace_allowed). Asked for nothing when there
    is no app to replace (a first one, set up with a setup link)."""

    recovery_code_accepted = False

    def __init__(self, data=None, *, request):
        # Beside the new app's code, which the same form posts as `code`.
        super().__init__(data, request=request, auto_id="id_%s", prefix="current")
        if self.code_needed:
            code = self.fields["code"]
            code.label = "Code from your current app"
            code.help_text = "The code your current authenticator app, the one being replaced, shows now."
            code.error_messages["required"] = "Type the code your current authenticator app shows now."


class ConfirmIdentityForm(FreshCodeForm):
    """Who one is, confirmed before changing accounts (accounts.confirmation): the password, and a
    current code when the account has a second factor (whoever stole a session's cookie has
    neither). A wrong password counts as a failed sign-in towards the lockout, as on the login
    page; the code is checked only after the right password, so a wrong password spends none."""

    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    field_order = ["password", "code"]

    def __init__(self, data=None, *, request):
        super().__init__(data, request=request, auto_id="id_%s")

    def clean_password(self):
        password = self.cleaned_data["password"]
        user = self.request.user
        if not user.check_password(password):
            failed_sign_in_counted(self.request, user)
            raise ValidationError("That is not your password.")
        return password


class CountedPasswordChangeForm(CurrentCodeMixin, AdminPasswordChangeForm):
    """The admin's password change, whose wrong current password counts as a failed sign-in towards
    the lockout (django-axes hears Django's user_login_failed signal), as a wrong password on the
    login page does: whoever stole a signed-in session's cookie could otherwise guess the password
    there without end, then set a new one, which ends the owner's other sessions. The admin's
    password change refuses a client locked out for the account before it reads the form
    (accounts.admin_site).

    An account with a second factor also gives a current code (the app's, or one recovery code),
    checked once everything else is valid (a wrong password spends none): a phishing proxy between
    the owner and the site captures the password and the session's cookie the second factor
    verified, and with both set a new password that signed the owner out everywhere."""

    def __init__(self, user, *args, request, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request
        if second_factor_enrolled(user):
            self.fields["code"] = current_code_field()

    def clean_old_password(self):
        try:
            return super().clean_old_password()
        except ValidationError:
            failed_sign_in_counted(self.request, self.user)
            raise
