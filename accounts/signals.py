from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import is_password_usable
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete, post_init, post_save
from django.dispatch import receiver
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.lockout import sign_in_address_record
from accounts.services import recovery_code_tokens_revoke, second_factor_missing, sessions_end, tokens_revoke_all

# The powers an account had when it was read (staff, superuser, active), so that a save can tell it
# was given more, or was deactivated or made active again.
_LOADED_POWERS = "_accounts_loaded_powers"
# Whether its password could sign in when it was read, so that a save can tell it was disabled.
_LOADED_WITH_USABLE_PASSWORD = "_accounts_loaded_with_usable_password"


@receiver(post_init, sender=get_user_model())
def remember_powers_and_password(sender, instance, **kwargs):
    # From the instance's own values: an account read without the column (`.only()`) reads no query here.
    setattr(instance, _LOADED_POWERS, _powers(instance))
    # Unknown (not read) counts as usable: disabling it then revokes, whatever it was.
    setattr(instance, _LOADED_WITH_USABLE_PASSWORD, is_password_usable(instance.__dict__.get("password")))


def _powers(instance) -> dict:
    return {field: instance.__dict__.get(field) for field in ("is_staff", "is_superuser", "is_active")}


@receiver(post_save, sender=get_user_model())
def revoke_tokens_and_sessions(sender, instance, created, **kwargs):
    """A new password or a deactivated account revokes the account's API tokens, as Django ends
    its other sessions: whoever held the old credential loses every way in.

    So does making an account staff, or superuser: its tokens were made with its password alone
    (only staff, and superusers, pass a second factor), and would otherwise read drafts and, with
    Confidential access, confidential records without the second factor a staff token is made
    with (a stolen partner password's token, made before the promotion, kept reading).
    Authentication refuses such a token anyway, whatever made the account staff
    (accounts.services.token_authenticate); revoking it here also takes it out of the owner's and
    the administrators' lists.

    Deactivating an account or making it active again also ends its sessions: Django reads them as
    anonymous only while the account is inactive, and made active again, a session signed in
    before (on a laptop left behind by someone who left) read as them again.

    `_password` is how Django's own user model knows set_password() was called before this save
    (it then runs the password validators' password_changed); a hash upgraded at login is not a
    new password and leaves it unset. set_unusable_password() leaves it unset too: a password
    disabled (the admin's "Password-based authentication: Disabled", to shut an account's
    password) is told apart from the one read, and revokes the tokens as a new password does;
    Django ended the account's sessions (their hash is the password's), but its tokens kept
    reading until they expired."""
    loaded = getattr(instance, _LOADED_POWERS, {})
    made_staff = instance.is_staff and loaded.get("is_staff") is False
    made_superuser = instance.is_superuser and loaded.get("is_superuser") is False
    activity_changed = loaded.get("is_active") is not None and loaded["is_active"] != instance.is_active
    password_disabled = getattr(instance, _LOADED_WITH_USABLE_PASSWORD, True) and not instance.has_usable_password()
    setattr(instance, _LOADED_POWERS, _powers(instance))
    setattr(instance, _LOADED_WITH_USABLE_PASSWORD, instance.has_usable_password())
    if created:
        return
    if (
        not instance.is_active
        or made_staff
        or made_superuser
        or password_disabled
        or getattr(instance, "_password", None) is not None
    ):
        tokens_revoke_all(user=instance)
    if activity_changed:
        sessions_end(user=instance)


@receiver(post_delete, sender=TOTPDevice)
def revoke_tokens_on_authenticator_app_removed(sender, instance, **kwargs):
    """An authenticator app deleted (lost with the phone: the admin's TOTP devices, `setup_link
    --delete-devices`) or replaced by a new one revokes the account's API tokens, as it ends the
    second factor of the sessions it verified: whoever held the phone and the password made tokens
    with it that would otherwise keep reading, confidential records included, until they expire.

    Every door deletes through the ORM, which sends this signal for each device, a queryset's
    delete() included. An app never confirmed made no token."""
    if instance.confirmed:
        tokens_revoke_all(user=instance.user)


@receiver(post_delete, sender=StaticDevice)
def revoke_tokens_on_recovery_codes_removed(sender, instance, **kwargs):
    """Recovery codes replaced (Sign-in security, a new app) or deleted (the admin's Static devices,
    `setup_link --delete-devices`) revoke the tokens an old code made: whoever stole the codes
    made them, as the sessions an old code verified, which lose their second factor."""
    recovery_code_tokens_revoke(user=instance.user)


@receiver(user_logged_in)
def record_sign_in_address(sender, request, user, **kwargs):
    """A password accepted by the admin's login finishes signing in when the account needs no
    second factor: its address becomes familiar (accounts.lockout). One that needs it finishes on
    the second step (accounts.views), so a stolen password alone makes no address familiar."""
    if request is not None and not second_factor_missing(user):
        sign_in_address_record(request=request, user=user)
