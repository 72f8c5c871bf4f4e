from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.services import second_factor_missing, token_authenticate


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as before, checked against the stored hash (accounts.ApiToken).

    A token is its own credential: its owner made it from a verified session or with a code."""

    def authenticate_credentials(self, key):
        token = token_authenticate(key)
        if token is None:
            raise AuthenticationFailed(_("Invalid, expired or revoked token."))
        return token.user, token


class VerifiedSessionAuthentication(SessionAuthentication):
    """The admin's session, accepted by the API only once it passed the second factor when one is
    required: a stolen password alone reads nothing through the API either."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None and second_factor_missing(result[0]):
            raise AuthenticationFailed(_("Finish signing in with your second factor at /accounts/two-factor/."))
        return result
