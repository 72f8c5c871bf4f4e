"""The second factor, enforced once for every page: a staff session whose password was accepted but
whose required second factor is missing (not yet passed, or its device since replaced) is an
anonymous visitor everywhere but on the pages that finish signing in.

Without this, the admin and the API refused such a session but every other page read
request.user as it was: a stolen password alone opened the public pages' drafts and confidential
records, and their exports recorded the reading under the victim's name."""

from django.contrib.auth.models import AnonymousUser
from django.urls import Resolver404, resolve
from django.utils.functional import SimpleLazyObject

from accounts.services import second_factor_missing

# What a session needs between its password and its second factor: the admin's login (which sends
# it on to the second step), the second step (a code from the app or a recovery code), setting up
# a first authenticator app and the setup link that allows it, and signing out.
SIGN_IN_VIEWS = frozenset(
    {
        "admin:login",
        "accounts:two-factor-verify",
        "accounts:two-factor-setup",
        "accounts:setup-link",
        "accounts:sign-out",
    }
)


class SecondFactorPending(AnonymousUser):
    """What a session that still owes its second factor is to every page but SIGN_IN_VIEWS: an
    anonymous visitor, which the API's session authentication tells where to finish signing in."""


class SecondFactorMiddleware:
    """After django-otp's OTPMiddleware, which tells whether the session passed a second factor."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        signed_in, signed_in_async = request.user, request.auser
        # Lazy like Django's own request.user: a page that never looks at the user costs no query.
        request.user = SimpleLazyObject(lambda: user_for_page(request, signed_in))

        async def auser():
            return user_for_page(request, await signed_in_async())

        request.auser = auser
        return self.get_response(request)


def user_for_page(request, user):
    """`user`, or an anonymous visitor when `user` still owes the second factor and this page is
    not one of those that finish signing in."""
    if second_factor_missing(user) and not is_sign_in_page(request):
        return SecondFactorPending()
    return user


def is_sign_in_page(request) -> bool:
    try:
        return resolve(request.path_info).view_name in SIGN_IN_VIEWS
    except Resolver404:
        return False
