from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import SessionAuthentication, TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from accounts.middleware import SecondFactorPending
from accounts.services import TokenWithoutSecondFactor, token_authenticate


class ApiTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as before, checked against the stored hash (accounts.ApiToken).

    A token is its own credential: its owner made it from a verified session or with a code, or, for
    an account that needs no second factor, with a password alone (refused once the account is staff)."""

    def authenticate(self, request):
        """DRF's reading of `Token <key>`; any other Authorization header is refused (401 naming
        the scheme read) rather than passed over: a token sent as `Bearer <key>`, as most APIs ask,
        was answered as an anonymous request, and a partner's sync silently copied the public data
        alone. A signed-in session is left to its own authentication: a browser behind a
        password-protected proxy sends `Authorization: Basic …` with every request."""
        header = get_authorization_header(request).split()
        if not header or header[0].lower() == self.keyword.lower().encode():
            return super().authenticate(request)
        if getattr(getattr(request._request, "user", None), "is_authenticated", False):
            return None
        scheme = header[0][:20].decode("latin-1")
        raise AuthenticationFailed(
            _(
                "The API reads a token sent as `Authorization: Token <key>`; an Authorization header "
                "of the %(scheme)s scheme is not read. Send your token so, or no Authorization header "
                "to read what the public may."
            )
            % {"scheme": scheme}
        )

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
