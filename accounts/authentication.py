from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.middleware import SecondFactorPending
from accounts.services import TokenWithoutSecondFactor, token_authenticate


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as before, checked against the stored hash (accounts.ApiToken).

    A token is its own credential: its owner made it from a verified session or with a code, or, for
    an account that needs no second factor, with a password alone (refused once the account is staff)."""

    def authenticate_credentials(self, key):
        try:
            token = token_authenticate(key)
        except TokenWithoutSecondFactor as refusal:
            raise AuthenticationFailed(str(refusal)) from None
        if token is None:
            raise AuthenticationFailed(_("Invalid, expired or revoked token."))
        return token.user, token


class VerifiedSessionAuthentication(SessionAuthentication):
    """The admin's session, accepted by the API only once it passed the second factor when one is
    required: a stolen password alone reads nothing through the API either. Such a session is
    already anonymous here (accounts.middleware); this answers 401 saying where to finish rather
    than serve it as an anonymous reader."""

    def authenticate(self, request):
        # As SessionAuthentication reads it: a request that no middleware saw (the schema's
        # generation) has no user.
        if isinstance(getattr(request._request, "user", None), SecondFactorPending):
            raise AuthenticationFailed(_("Finish signing in with your second factor at /accounts/two-factor/."))
        return super().authenticate(request)
