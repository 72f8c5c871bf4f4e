from drf_spectacular.authentication import SessionScheme


class VerifiedSessionScheme(SessionScheme):
    """The API schema documents the verified session like Django's session cookie."""

    target_class = "accounts.authentication.VerifiedSessionAuthentication"
