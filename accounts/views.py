"""Pages for staff, styled like the admin: the second step of signing in, setting up an
authenticator app (a first one through an administrator's setup link), recovery codes, and their
own API tokens."""

import functools
import secrets
from base64 import b32encode
from urllib.parse import urlsplit

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.views import LogoutView, redirect_to_login
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice

from accounts.confirmation import identity_confirmed, identity_confirmed_now
from accounts.forms import CodeForm, ConfirmIdentityForm, CurrentAppCodeForm, RecoveryCodesForm, TokenForm
from accounts.lockout import attempts_in_turn, is_locked_out, lockout_response, sign_in_address_record
from accounts.models import ApiToken
from accounts.services import (
    AppCodeNeeded,
    AuthenticatorNeeded,
    SecondFactorThrottled,
    SetupLinkNeeded,
    authenticator_confirm,
    authenticator_replace_allowed,
    authenticator_start,
    recovery_codes_left,
    recovery_codes_replace,
    second_factor_check,
    second_factor_enrolled,
    sessions_end,
    setup_link_exposed,
    setup_link_find,
    setup_link_usable,
    token_create,
    token_revoke,
)

# The setup link this session opened (accounts.SetupLink's id), kept across the sign-in it leads to.
SETUP_LINK_SESSION_KEY = "accounts_setup_link"
# The unconfirmed authenticator app the setup page last showed in this session: {"id": TOTPDevice's
# id, "page": the random value that page posts back (PENDING_APP_FIELD)}. Its key is that page's
# alone (accounts.services.authenticator_start).
PENDING_APP_SESSION_KEY = "accounts_pending_app"
PENDING_APP_FIELD = "shown"


def page(request, template: str, context: dict, status: int = 200) -> TemplateResponse:
    return TemplateResponse(request, template, {**admin.site.each_context(request), **context}, status=status)


def next_url(request) -> str:
    """Where to go after this step: the `next` parameter when it stays on this site and is not this
    step's own page, else the admin. A setup link's sign-in names the setup page as `next`: passed
    on, it led from the new recovery codes back to that page, which then offered to replace the app
    just set up."""
    url = request.POST.get("next") or request.GET.get("next")
    if (
        url
        and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
        and urlsplit(url).path != request.path
    ):
        return url
    return reverse("admin:index")


def with_next(view_name: str, url: str) -> str:
    return f"{reverse(view_name)}?{urlencode({'next': url})}"


def staff_only(view):
    """Staff signed in on this session; anyone else goes to the admin's login. On the pages that
    finish signing in (accounts.middleware.SIGN_IN_VIEWS) a password accepted is enough; on the
    others the middleware has made a session that still owes its second factor anonymous, so it
    goes to the admin's login too, which sends it on to the second step.

    Never cached, as the admin's own pages (its admin_view): these show an authenticator app's
    key, recovery codes and new tokens, which no browser or proxy cache may keep. For the same
    reason a server error's report (tracker.log_filters) shows none of the local variables of these
    pages and of what they call: the key, the codes and the token are in them, and the password or
    code posted (in a form's repr, say), under names no list of secret names foresees."""

    @functools.wraps(view)
    @never_cache
    @sensitive_variables()
    def wrapper(request, *args, **kwargs):
        if not (request.user.is_active and request.user.is_staff):
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        return view(request, *args, **kwargs)

    return wrapper


@staff_only
def two_factor_verify(request):
    """The second step of signing in: a code from the authenticator app, or a recovery code."""
    user, destination = request.user, next_url(request)
    if user.is_verified():
        return redirect(destination)
    if not second_factor_enrolled(user):
        return redirect(with_next("accounts:two-factor-setup", destination))
    form = CodeForm(request.POST or None)
    if request.method == "POST":
        with attempts_in_turn(request, user.get_username()):
            # Checked before the code: a locked-out client may not try codes either.
            if is_locked_out(request, user.get_username()):
                return lockout_response(request)
            if form.is_valid():
                # A failure counted by django-axes may lock this client: its middleware then answers
                # with the lockout page instead of this one.
                try:
                    device = second_factor_check(request=request, user=user, code=form.cleaned_data["code"])
                except SecondFactorThrottled as throttled:
                    form.add_error("code", str(throttled))
                else:
                    if device is not None:
                        request.session.cycle_key()
                        otp_login(request, device)
                        sign_in_address_record(request=request, user=user)
                        return redirect(destination)
                    form.add_error(
                        "code", "That code is not right, or was already used. Type the code the app shows now."
                    )
    return page(request, "accounts/two_factor_verify.html", {"title": "Second step", "form": form, "next": destination})


def setup_link_path(key: str) -> str:
    """Where a setup link leads: its key after the `#`, which a browser never sends, so that no
    access log (the server's, a proxy's) holds a link that still works. The page's script posts it
    (static/accounts/setup_link.js)."""
    return f"{reverse('accounts:setup-link')}#{key}"


@never_cache
# Its key, posted, is in the local variables of the view and of what it calls (staff_only).
@sensitive_variables()
def setup_link_open(request):
    """An administrator's setup link (`setup_link_path`). GET: the page that reads the key from the
    address and posts it. POST: the link is kept in this session, which then signs in with the
    password (if it has not) and sets up its first authenticator app. The link alone signs nobody in."""
    if request.method != "POST":
        return page(request, "accounts/setup_link_open.html", {"title": "Your setup link"})
    link = setup_link_find(request.POST.get("key", "").strip())
    if link is None:
        # Used, replaced by a newer one, expired, or never made: one answer for all.
        return setup_link_needed(request, title="This setup link does not work", status=404)
    signed_in = request.user
    if signed_in.is_authenticated and signed_in.pk != link.user_id:
        messages.error(
            request,
            "That setup link is for another account. Sign out, then open the link again and sign in with "
            "the account it was made for.",
        )
        return redirect("accounts:two-factor-setup")
    request.session[SETUP_LINK_SESSION_KEY] = link.pk
    setup = reverse("accounts:two-factor-setup")
    if signed_in.is_authenticated:
        return redirect(setup)
    return redirect_to_login(setup, reverse("admin:login"))


@never_cache
def setup_link_in_path(request, key: str):
    """A setup link with its key in the path: made before the key moved after the `#`
    (`…/two-factor/setup/<key>/`), or one whose `#` someone turned into a `/`. The path, key and all,
    is now in the access logs (the server's, a proxy's) and in Django's "Not Found" line, where
    whoever reads them could open the link at `setup_link_open`: it stops working, and the page says
    to ask for a new one. Opening it never led anywhere else."""
    setup_link_exposed(key)
    return setup_link_needed(request, title="This setup link does not work", status=404)


@staff_only
def two_factor_setup(request):
    """Set up an authenticator app: scan the QR code, type the code the app shows. A first one
    needs the setup link this session opened (setup_link_open); a new one, a recent confirmation of
    who one is to begin it (accounts.confirmation), then the code the current app shows now
    (CurrentAppCodeForm), checked before the new app's."""
    user, destination = request.user, next_url(request)
    pending = request.session.get(PENDING_APP_SESSION_KEY)
    pending = pending if isinstance(pending, dict) else {}
    posted = request.POST.get(PENDING_APP_FIELD, "") if request.method == "POST" else ""
    page_shown = bool(posted and pending.get("page") and constant_time_compare(posted, pending["page"]))
    if second_factor_enrolled(user):
        if not user.is_verified():
            # Replacing the second factor needs the current one first, or a stolen password would do.
            return redirect(with_next("accounts:two-factor-verify", request.get_full_path()))
        if not authenticator_replace_allowed(user=user, verified_by=user.otp_device):
            messages.error(request, str(AppCodeNeeded()))
            return redirect("accounts:security")
        if not page_shown and not identity_confirmed(request):
            # Each showing of this page replaces the account's unconfirmed app, the owner's too: a
            # stolen session's cookie alone, showing it again and again, kept the owner's move to a
            # new phone from ever completing. Beginning one needs the password and a current code
            # (accounts.confirmation), which also gives the session a new key. A post of the page
            # last shown keeps its key and needs none: it asks for the current app's code anyway.
            return redirect(with_next("accounts:confirm", request.get_full_path()))
        setup_link_id = None
    else:
        setup_link_id = request.session.get(SETUP_LINK_SESSION_KEY)
        if not setup_link_usable(user=user, setup_link_id=setup_link_id):
            return setup_link_needed(request)
    # A code confirms only the key of the page it was typed on, and only while that page is the last
    # one shown: each showing of the page (a GET, or a post of another page) begins a new app, which
    # replaces the one not yet confirmed. Kept per session alone, whoever held the owner's session
    # cookie for a moment opened the page and read its key, which the owner's next visit to the page
    # showed them again, and which their current app's code then confirmed for the thief. A post
    # of the last page shown keeps its key (a mistyped code needs no new scan): its value came with
    # that page alone, which showed the key to whoever holds it. (The session is kept in the
    # database: its cookie does not carry the value.)
    device = authenticator_start(user=user, pending_id=pending.get("id") if page_shown else None)
    # False too when another session began an app since, which replaced (deleted) this page's.
    shown = page_shown and device.pk == pending.get("id")
    if not shown:
        pending = {"id": device.pk, "page": secrets.token_urlsafe(32)}
        request.session[PENDING_APP_SESSION_KEY] = pending
    form = CodeForm(request.POST or None)
    if not form.is_bound:
        # Read from step 1, the app to install, then the QR code and its key: focused on the code
        # (step 3), a screen reader began past them. A refused code takes the focus, its error read
        # with it (the field's description).
        del form.fields["code"].widget.attrs["autofocus"]
    # The current app's code is checked (used up, or counted by the lockout) only beside a new
    # app's code: asked for again, unchecked, when that is missing.
    # Nor beside a code of a key other than the last one shown, which is not checked.
    current_app_form = CurrentAppCodeForm(
        request.POST if shown and form.is_bound and form.is_valid() else None, request=request
    )
    if request.method == "POST" and form.is_valid() and not shown:
        form.add_error(
            "code",
            "This page's key was replaced: the setup page was opened again since (in another tab, or "
            "another browser). Scan the new QR code (or type its key), then type the code the app shows.",
        )
    elif request.method == "POST" and form.is_valid() and current_app_form.is_valid():
        try:
            codes = authenticator_confirm(
                user=user,
                device=device,
                code=form.cleaned_data["code"],
                setup_link_id=setup_link_id,
                # The app that accepted the code just typed, not the one that verified this session
                # (hours ago, perhaps for someone who stole its cookie since).
                verified_by=current_app_form.device,
            )
        except SecondFactorThrottled as throttled:
            form.add_error("code", str(throttled))
        except SetupLinkNeeded:
            # Used or replaced since the page was shown.
            return setup_link_needed(request)
        else:
            if codes is not None:
                request.session.pop(SETUP_LINK_SESSION_KEY, None)
                request.session.pop(PENDING_APP_SESSION_KEY, None)
                request.session.cycle_key()
                otp_login(request, device)
                sign_in_address_record(request=request, user=user)
                return page(
                    request,
                    "accounts/recovery_codes.html",
                    {"title": "Your recovery codes", "codes": codes, "next": destination},
                )
            message = (
                "That code does not match. Type the code the app shows now; if it still fails, check the phone's clock."
            )
            if current_app_form.code_needed:
                # The current app's code was accepted, and so used up: each code works once.
                message += " Type the next code of your current app too."
            form.add_error("code", message)
    secret = b32encode(device.bin_key).decode()
    context = {
        "title": "Set up your authenticator app",
        "form": form,
        "current_app_form": current_app_form,
        "next": destination,
        "shown_field": PENDING_APP_FIELD,
        "shown": pending["page"],
        "qr_code": qr_code_svg(device.config_url),
        # In groups of four, as authenticator apps show and accept it.
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "replacing": second_factor_enrolled(user),
    }
    return page(request, "accounts/two_factor_setup.html", context)


@require_GET
@never_cache
def signed_in(request):
    """Whom this browser's session opens the admin for, asked by every admin form before it sends
    (static/tracker_admin/sent_while_signed_in.js). A save sent after the session had ended (its
    working day over, a password changed elsewhere, signed out in another tab) was redirected to
    the sign-in page, and everything typed on the form was lost. So was a change to an account
    sent once the session's confirmation of who one is had run out (accounts.confirmation): it
    went to the confirmation page, and the form of an account's page checks `identity_confirmed`
    first. Answered whoever asks, and it tells nothing but what the browser's own cookie already
    holds (read with the session, no query of its own)."""
    if not admin.site.has_permission(request):
        return JsonResponse({"signed_in": False})
    return JsonResponse(
        {
            "signed_in": True,
            "username": request.user.get_username(),
            "identity_confirmed": identity_confirmed(request),
        }
    )


def setup_link_needed(request, title: str = "Ask for a setup link", status: int = 403):
    context = {"title": title, "setup_link_days": settings.SETUP_LINK_DAYS}
    return page(request, "accounts/setup_link_needed.html", context, status=status)


def qr_code_svg(data: str):
    """The QR code as inline SVG markup, drawn here: the secret never leaves for an image service,
    and the Content-Security-Policy needs no image source but this site. Drawn on white: on the
    admin's dark theme its black squares stood on near-black, which no camera read."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathFillImage, box_size=8)
    return mark_safe(image.to_string(encoding="unicode"))


@staff_only
def security(request, new_token=None, new_key=None, token_form=None, recovery_codes_form=None):
    """The signed-in person's second factor, recovery codes and API tokens."""
    user = request.user
    context = {
        "title": "Sign-in security",
        "enrolled": second_factor_enrolled(user),
        "recovery_codes_left": recovery_codes_left(user),
        "recovery_codes_form": recovery_codes_form or RecoveryCodesForm(request=request),
        "tokens": ApiToken.objects.filter(user=user),
        "token_form": token_form or TokenForm(request=request),
        "new_token": new_token,
        "new_key": new_key,
    }
    return page(request, "accounts/security.html", context)


@require_POST
@staff_only
def recovery_codes_new(request):
    form = RecoveryCodesForm(request.POST, request=request)
    if not form.is_valid():
        return security(request, recovery_codes_form=form)
    verified_by = request.user.otp_device
    try:
        device, codes = recovery_codes_replace(user=request.user)
    except AuthenticatorNeeded as refusal:
        messages.error(request, str(refusal))
        return redirect("accounts:security")
    if isinstance(verified_by, StaticDevice):
        # This session passed with one of the codes just replaced, whose device is gone: it stays
        # verified by the new codes' device, under a new session key.
        request.session.cycle_key()
        otp_login(request, device)
    return page(
        request,
        "accounts/recovery_codes.html",
        {"title": "Your new recovery codes", "codes": codes, "next": reverse("accounts:security")},
    )


@require_POST
@staff_only
def sessions_end_others(request):
    """Sign out every other browser signed in to this account (a cookie stolen from one of them
    included), once this session's owner confirmed who they are: a stolen session must not sign its
    owner out everywhere."""
    if not identity_confirmed(request):
        messages.info(request, "Confirm it is you, then sign out the other sessions again.")
        return redirect(with_next("accounts:confirm", reverse("accounts:security")))
    ended = sessions_end(user=request.user, kept=request.session.session_key)
    messages.success(request, f"Signed out of {ended} other session{'s' if ended != 1 else ''}.")
    return redirect("accounts:security")


@require_POST
@staff_only
def token_new(request):
    form = TokenForm(request.POST, request=request)
    if not form.is_valid():
        return security(request, token_form=form)
    # The current code just typed made it, or (an account without a second factor) nothing did.
    try:
        token, key = token_create(
            user=request.user,
            name=form.cleaned_data["name"],
            second_factor=form.device is not None,
            recovery_code=isinstance(form.device, StaticDevice),
        )
    except ValidationError as refusal:
        form.add_error(None, refusal)
        return security(request, token_form=form)
    return security(request, new_token=token, new_key=key)


@require_POST
@staff_only
def token_revoke_view(request, token_id: int):
    if token_revoke(user=request.user, token_id=token_id):
        messages.success(request, "The token was revoked: it no longer works.")
    else:
        messages.error(request, "There is no such token among yours.")
    return redirect("accounts:security")


@staff_only
def confirm_identity(request):
    """Confirm who you are (accounts.confirmation) before changing accounts, then go back to `next`.
    Taken in turn with the account's other attempts from this client, refused while it is locked
    out here, as a sign-in is."""
    destination = next_url(request)
    form = ConfirmIdentityForm(request.POST or None, request=request)
    if request.method == "POST":
        username = request.user.get_username()
        with attempts_in_turn(request, username):
            if is_locked_out(request, username):
                return lockout_response(request)
            if form.is_valid():
                identity_confirmed_now(request)
                return redirect(destination)
    context = {
        "title": "Confirm it is you",
        "form": form,
        "next": destination,
        "minutes": settings.CONFIRMATION_MINUTES,
    }
    return page(request, "accounts/confirm_identity.html", context)


sign_out = LogoutView.as_view(next_page="admin:login")
