"""Accounts' rules: who must pass a second factor, enrolling one (a first one with an administrator's
setup link), recovery codes, and API tokens.

Doors (the admin site, the pages in views.py, the API in api.py, signals) call these."""

import math
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.signals import user_login_failed
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp import devices_for_user, user_has_device
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.grants import account_control_refusal
from accounts.models import ApiToken, SetupLink, new_token_key, token_digest

# A token's last use is written at most this often: a partner's sync loop must not turn every
# read into a write.
LAST_USE_PRECISION = timedelta(minutes=1)


def second_factor_required(user) -> bool:
    """Staff must pass a second factor after their password (TRACKER_REQUIRE_2FA), and so must a
    superuser who is not staff: Django gives a superuser every permission (publishing, deleting
    through the API) whether or not staff, which a password alone must not open. Such an account
    cannot pass one (only staff sign in to the admin or use setup links), so it is shut out: the
    admin refuses to make it (accounts.admin), and only a shell or a bulk update could."""
    return bool(settings.REQUIRE_2FA and user.is_authenticated and (user.is_staff or user.is_superuser))


def second_factor_missing(user) -> bool:
    """`user` must pass a second factor and this session has not. django-otp's OTPMiddleware gives
    a session's user is_verified(); a user Django has just signed in (auth.login replaces
    request.user) has none yet and is not verified."""
    return second_factor_required(user) and not (hasattr(user, "is_verified") and user.is_verified())


def second_factor_enrolled(user) -> bool:
    """Runs queries: whether `user` has a confirmed authenticator app or recovery codes."""
    return user_has_device(user, confirmed=True)


class SecondFactorThrottled(Exception):
    """A device did not check the code: django-otp makes each device wait after a wrong code before
    it checks another (1 second after one, then 2, 4, 8… doubling with each), whoever typed them and
    from wherever. Said plainly, so that the owner whose right code meets an attacker's wait is not
    told that the code is wrong. Only someone who gave the password reaches a second factor."""

    def __init__(self, *, locked_until: datetime):
        self.locked_until = locked_until
        super().__init__(
            "The code was not checked: too many wrong codes were typed for this account recently. "
            f"Try again in {wait_in_words(locked_until - timezone.now())}."
        )


def wait_in_words(wait: timedelta) -> str:
    """Rounded up, so that whoever waits as long as it says is not refused again."""
    seconds = max(1, math.ceil(wait.total_seconds()))
    if seconds < 60:
        count, unit = seconds, "second"
    elif seconds < 60 * 60:
        count, unit = math.ceil(seconds / 60), "minute"
    else:
        # The lockout's wide bounds last up to a day: "24 hours", not "1440 minutes".
        count, unit = math.ceil(seconds / 3600), "hour"
    return f"{count} {unit}{'s' if count != 1 else ''}"


def device_locked_until(device: Device) -> datetime | None:
    """When `device` checks codes again after recent wrong ones, or None when it checks them now."""
    allowed, refusal = device.verify_is_allowed()
    return None if allowed else refusal["locked_until"]


def failed_sign_in_counted(request, user) -> None:
    """Counts a wrong password or code of `user`'s towards the lockout, as a failed sign-in:
    django-axes hears Django's user_login_failed signal. Once it locks this client, its middleware
    answers with the lockout page instead of the one that asked."""
    user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=request)


def second_factor_check(*, request, user, code: str, app_only: bool = False) -> Device | None:
    """The device that accepts `code` (a code from the app, or an unused recovery code, which is
    then spent; with `app_only`, a code from the app alone), or None when every device refused it;
    SecondFactorThrottled when none accepted it and one did not check it, waiting after wrong
    codes. Either counts as a failed login for the lockout (django-axes hears Django's
    user_login_failed signal), like a wrong password: codes typed during the wait count too, so
    typing faster than it brings a thief no more tries.

    Each device that could accept the code (code_fits_device) is asked on its own, as django-otp
    advises (its match_token does not tell a wait from a wrong code); their rows stay locked
    meanwhile, so concurrent codes see each other's failures."""
    # Recovery codes are made in lower case (StaticToken.random_token), and django-otp matches them
    # exactly: one copied by hand in capitals, or capitalised by a phone's keyboard, was refused as
    # wrong and counted towards the lockout. The app's codes are digits.
    code = "".join(code.split()).lower()
    waiting_until = []
    with transaction.atomic():
        for device in devices_for_user(user, for_verify=True):
            if not code_fits_device(device, code) or (app_only and not isinstance(device, TOTPDevice)):
                continue
            locked_until = device_locked_until(device)
            if locked_until is not None:
                waiting_until.append(locked_until)
            elif device.verify_token(code):
                return device
    failed_sign_in_counted(request, user)
    if waiting_until:
        # Every device checks the next code only once the last of them waits no more.
        raise SecondFactorThrottled(locked_until=max(waiting_until))
    return None


def code_fits_device(device: Device, code: str) -> bool:
    """False when `device` is an authenticator app and `code` is not one of its codes (that many
    digits): a recovery code. The app is not asked, since it would count the code as a wrong one of
    its own and wait after it; a code it could never accept brings a guesser nothing there."""
    return not isinstance(device, TOTPDevice) or (code.isdigit() and len(code) == device.digits)


@transaction.atomic
def authenticator_start(*, user, pending_id: int | None = None) -> TOTPDevice:
    """The authenticator-app device `user` is setting up on one page: `pending_id`, the one that
    page showed and is not confirmed yet (the caller keeps it with a value only that page posts),
    or a new one, which replaces any other unconfirmed one. Its secret is shown on that page alone
    until a code confirms it: every session of the account was shown the same unconfirmed app, so
    whoever held a signed-in session's cookie for a moment read its key, and owned the second factor
    once the owner, later and in their own session, moved to that app; kept per session, the same
    held for a thief with the cookie of the session the owner goes on using. The unconfirmed app of
    another page (or session) is deleted rather than kept, so an account has one at most: that page
    then makes a new one, whose key is not the one it showed (`pending_id` no longer names it)."""
    unconfirmed = TOTPDevice.objects.filter(user=user, confirmed=False)
    if pending_id is not None and (device := unconfirmed.filter(pk=pending_id).first()) is not None:
        return device
    unconfirmed.delete()
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


class SetupLinkNeeded(PermissionDenied):
    """A first authenticator app set up without a usable setup link (SetupLink)."""

    def __init__(self):
        super().__init__(
            "Setting up your first authenticator app needs a setup link from an administrator. "
            "Ask one to make you a new link, and open it."
        )


class AppCodeNeeded(PermissionDenied):
    """A new authenticator app asked for from a session that a recovery code verified."""

    def __init__(self):
        super().__init__(
            "Moving to a new phone needs your current authenticator app: sign in again with the code it shows. "
            "If you lost the phone, ask an administrator to delete your devices and make you a setup link."
        )


def authenticator_replace_allowed(*, user, verified_by: Device | None) -> bool:
    """Whether a session that `verified_by` verified may replace `user`'s authenticator app: only
    the app itself. A recovery code signs in once without the phone; letting it set up a new app
    (which deletes the old one and its codes) let whoever stole one code, with the password, own
    the account's second factor for good and lock its owner out."""
    return isinstance(verified_by, TOTPDevice) and verified_by.user_id == user.pk and verified_by.confirmed


@transaction.atomic
def authenticator_confirm(
    *, user, device: TOTPDevice, code: str, setup_link_id: int | None = None, verified_by: Device | None = None
) -> list[str] | None:
    """Confirm `device` with a code the app shows, or None when the code is wrong. A first second
    factor also needs `user`'s setup link `setup_link_id` (SetupLinkNeeded), which it uses up; a
    later one, a session the current app verified (`verified_by`; AppCodeNeeded).

    The new app replaces every earlier device and recovery code: sessions verified by those are
    no longer verified (django-otp drops a session's device once it is gone), so a second factor
    change signs staff out of every other browser. Returns the new recovery codes.
    SecondFactorThrottled when the device waits after wrong codes and did not check this one."""
    setup_link = None
    if not second_factor_enrolled(user):
        # Locked: two browsers confirming with one link cannot both use it.
        # (The link alone: `usable` joins the account, whose row other writes need.)
        setup_link = (
            SetupLink.objects.usable().select_for_update(of=("self",)).filter(pk=setup_link_id, user=user).first()
        )
        if setup_link is None:
            raise SetupLinkNeeded()
    elif not authenticator_replace_allowed(user=user, verified_by=verified_by):
        raise AppCodeNeeded()
    locked_until = device_locked_until(device)
    if locked_until is not None:
        raise SecondFactorThrottled(locked_until=locked_until)
    if not device.verify_token("".join(code.split())):
        return None
    if setup_link is not None:
        SetupLink.objects.filter(pk=setup_link.pk).update(used_at=timezone.now())
    TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    _, codes = recovery_codes_replace(user=user)
    return codes


class AuthenticatorNeeded(PermissionDenied):
    """Recovery codes asked for by someone without an authenticator app set up."""

    def __init__(self):
        super().__init__("Recovery codes come with an authenticator app: set one up first.")


@transaction.atomic
def recovery_codes_replace(*, user) -> tuple[StaticDevice, list[str]]:
    """New single-use recovery codes for `user` and the new device that holds them. The earlier
    codes stop working, and their device is deleted rather than emptied: a session that one of
    them verified is no longer verified (django-otp drops a session's device once it is gone), so
    whoever used a stolen code is signed out of the second factor too. The session that asked for
    the new codes signs in again with the new device if the old one verified it (accounts.views).

    Only beside a confirmed authenticator app (AuthenticatorNeeded): codes alone are a second factor,
    and would be a first one made with the password alone, without a setup link."""
    if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        raise AuthenticatorNeeded()
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name="Recovery codes")
    codes = [StaticToken.random_token() for _ in range(settings.RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return device, codes


@transaction.atomic
def setup_link_create(*, user, created_by=None) -> tuple[SetupLink, str]:
    """A new setup link for staff member `user`'s first authenticator app, made by `created_by`
    (None: an operator at the server's shell), and its key, returned this once and never stored.
    It replaces the links made for `user` before. PermissionDenied unless `created_by` may make
    links; ValidationError for an account that is not active staff (only staff pass a second
    factor)."""
    if created_by is not None and not created_by.has_perm("accounts.add_setuplink"):
        raise PermissionDenied("You may not make setup links.")
    if created_by is not None and (
        refusal := account_control_refusal(actor=created_by, account=user, action="make a setup link for")
    ):
        # A link sets up the first app of an account whose password its maker may know: its powers.
        raise ValidationError(refusal)
    if not (user.is_active and user.is_staff):
        # The account's name comes after a word: the admin's messages capitalise their first letter,
        # and "Ana" named no account (names are case-sensitive). What to do follows what is wrong.
        raise ValidationError(
            f"The account {user.get_username()} is not active staff: only staff set up a second factor. "
            "Tick Active and Staff status on its page (and give it a role) first."
        )
    if second_factor_enrolled(user):
        # The link would lead to the second step, which asks for the current app's code.
        raise ValidationError(
            f"{user.get_username()} has a second factor already. If they lost it, delete their devices "
            "(TOTP devices and Static devices in the admin, or `manage.py setup_link --delete-devices`) first."
        )
    SetupLink.objects.filter(user=user, used_at__isnull=True).delete()
    key = secrets.token_urlsafe(32)
    now = timezone.now()
    link = SetupLink.objects.create(
        user=user,
        digest=token_digest(key),
        created_by=created_by,
        created_at=now,
        expires_at=now + timedelta(days=settings.SETUP_LINK_DAYS),
    )
    return link, key


@transaction.atomic
def second_factor_reset(*, user) -> None:
    """Delete `user`'s authenticator apps and recovery codes (lost with the phone): every session
    they verified is no longer verified, every API token of `user` is revoked (accounts.signals:
    whoever has the phone may have made one), and a new app needs a setup link."""
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()


def setup_link_find(key: str) -> SetupLink | None:
    """The usable setup link whose key is `key` (`_still_its_makers_to_make`). Runs a query, and
    those of the check for a link an administrator made."""
    link = SetupLink.objects.usable().filter(digest=token_digest(key)).select_related("created_by", "user").first()
    return link if link is not None and _still_its_makers_to_make(link) else None


def setup_link_exposed(key: str) -> None:
    """Revokes (deletes, as the admin revokes one) the unused setup link whose key is `key`, which
    was sent where logs keep it. Runs a query."""
    SetupLink.objects.filter(digest=token_digest(key), used_at__isnull=True).delete()


def setup_link_usable(*, user, setup_link_id: int | None) -> bool:
    """Whether `setup_link_id` is a usable setup link of `user` (`_still_its_makers_to_make`). Runs
    a query, and those of the check for a link an administrator made."""
    link = SetupLink.objects.usable().filter(pk=setup_link_id, user=user).select_related("created_by", "user").first()
    return link is not None and _still_its_makers_to_make(link)


def _still_its_makers_to_make(link: SetupLink) -> bool:
    """Whether whoever made `link` may still make it, as `setup_link_create` checked when they did:
    active, with the permission, and controlling the account as it is now
    (`account_control_refusal`). A user manager who made a newcomer's link, and set their first
    password, held an unused link once a superuser gave the account Confidential access: set up on
    the manager's phone, it held powers they may not give. A link made at the server's shell (no
    maker) always."""
    maker = link.created_by
    if maker is None:
        return True
    return (
        maker.is_active
        and maker.has_perm("accounts.add_setuplink")
        and account_control_refusal(actor=maker, account=link.user, action="make a setup link for") is None
    )


def recovery_codes_left(user) -> int:
    """Runs a query."""
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def token_create(*, user, name: str, second_factor: bool, recovery_code: bool = False) -> tuple[ApiToken, str]:
    """A new API token for `user` and its key, which is returned this once and never stored;
    `second_factor`: whether `user` passed one to make it; `recovery_code`: whether that was a
    recovery code (new codes then revoke the token: recovery_code_tokens_revoke). Raises
    ValidationError when the account has API_TOKENS_PER_ACCOUNT unexpired tokens already; drops its
    tokens expired more than API_TOKEN_EXPIRED_LISTED_DAYS ago."""
    now = timezone.now()
    tokens = ApiToken.objects.filter(user=user)
    tokens.filter(expires_at__lt=now - timedelta(days=settings.API_TOKEN_EXPIRED_LISTED_DAYS)).delete()
    with transaction.atomic():
        # Locks the account's row: two requests at once cannot both take the last place.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if tokens.filter(expires_at__gt=now).count() >= settings.API_TOKENS_PER_ACCOUNT:
            raise ValidationError(
                f"This account has {settings.API_TOKENS_PER_ACCOUNT} tokens that have not expired, the most it "
                "may have: revoke one it no longer uses (Sign-in security, or DELETE /api/v1/auth/tokens/{id}/), "
                "then make this one.",
                code="too_many_tokens",
            )
        key = new_token_key()
        token = ApiToken(
            user=user,
            name=name,
            digest=token_digest(key),
            hint=key[:8],
            created_at=now,
            expires_at=now + timedelta(days=settings.API_TOKEN_DAYS),
            second_factor=second_factor,
            recovery_code=recovery_code,
        )
        token.full_clean()
        token.save()
    return token, key


class TokenWithoutSecondFactor(Exception):
    """A token made with a password alone, for an account that must now pass a second factor."""


def token_authenticate(key: str) -> ApiToken | None:
    """Runs a query (two when the last use is recorded): the usable token whose key is `key`.
    Raises TokenWithoutSecondFactor for a token made without a second factor whose account must
    pass one: it was made before the account became staff (however that was done: the admin, a
    bulk update, a command), or while the second factor was not required."""
    token = ApiToken.objects.usable().select_related("user").filter(digest=token_digest(key)).first()
    if token is None:
        return None
    if second_factor_required(token.user) and not token.second_factor:
        raise TokenWithoutSecondFactor(
            "This token was made without a second factor, which this account now needs: make a new token "
            "with your authenticator app's code."
        )
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USE_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def token_revoke(*, user, token_id: int) -> bool:
    """Revoke `user`'s own token `token_id`; False when `user` has no such token (someone else's
    answers the same as a missing one)."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return bool(deleted)


def tokens_revoke_all(*, user) -> int:
    """Revoke every token of `user` (password changed, account deactivated, authenticator app removed)."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted


def sessions_end(*, user, kept: str | None = None) -> int:
    """End every session `user` signed in with, as a new password does, but the one whose key is
    `kept` (the owner's own, signing out everywhere else); returns how many.

    Django keeps no index from an account to its sessions (django-user-sessions adds one, by
    replacing the session backend and its admin: more than this needs, asked only when an account is
    deactivated or made active again), so each unexpired session is read: as many as were signed in
    within TRACKER_STAFF_SESSION_SECONDS, whoever they are."""
    user_id = user._meta.pk.value_to_string(user)
    unexpired = Session.objects.filter(expire_date__gt=timezone.now()).exclude(pk=kept)
    ended = [session.pk for session in unexpired.iterator() if session.get_decoded().get(SESSION_KEY) == user_id]
    deleted, _ = Session.objects.filter(pk__in=ended).delete()
    return deleted


def recovery_code_tokens_revoke(*, user) -> int:
    """Revoke `user`'s tokens made with a recovery code (the codes were replaced or deleted)."""
    deleted, _ = ApiToken.objects.filter(user=user, recovery_code=True).delete()
    return deleted
