"""Throttles that read their rate from the settings when a request arrives, not when DRF is
imported, so a rate changed in settings (or a test's override) takes effect, and that count an
anonymous client by the address the lockout counts it by (`accounts.clients.client_ip`)."""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

from accounts.clients import client_ip


class CurrentRateMixin:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class ClientAddressMixin:
    def get_ident(self, request):
        return client_ip(request)


class AnonymousClientThrottle(ClientAddressMixin, CurrentRateMixin, AnonRateThrottle):
    """Anonymous clients, per IP address (TRACKER_API_ANON_RATE)."""


class PublicPageThrottle(AnonymousClientThrottle):
    """The public site's pages, map data, embeds and downloads, per anonymous client address
    (TRACKER_PUBLIC_ANON_RATE; `incidents.public.views.rate_limited`). Signed-in readers are
    not counted: they are known, and their statements unbounded, by account."""

    scope = "public"


class AccountThrottle(CurrentRateMixin, UserRateThrottle):
    """Signed-in clients, per account (TRACKER_API_USER_RATE). Anonymous clients are the anonymous
    throttle's alone: DRF's user throttle counts them too, by address, at the signed-in rate, which
    cost every anonymous request a second counter's read and write in the shared cache."""

    def get_cache_key(self, request, view):
        if not request.user.is_authenticated:
            return None
        return super().get_cache_key(request, view)


class ClientThrottle(ClientAddressMixin, CurrentRateMixin, SimpleRateThrottle):
    """Per account when signed in, otherwise per client address (NUM_PROXIES decides which
    X-Forwarded-For entry that is)."""

    def get_cache_key(self, request, view):
        ident = f"user-{request.user.pk}" if request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class ExportThrottle(ClientThrottle):
    """CSV exports (TRACKER_API_EXPORT_RATE): each reads every matching incident. Counted at every
    HTTP door of the export, the API's, the admin's and the public pages' alike, by the CSV
    response they share (`incidents.csv_views.incidents_csv_response`), not by DRF's view."""

    scope = "export"

    def uncount(self) -> None:
        """Take back the count `allow_request` just made: the export could not be prepared, and the
        client got nothing. Runs a cache write. No other request of the client's changes its count
        meanwhile: it has one download at a time (`incidents.exports.export_client_take`)."""
        if self.rate is None:
            return  # `off`: nothing was counted
        self.history.remove(self.now)
        self.cache.set(self.key, self.history, self.duration)


class SignInThrottle(ClientThrottle):
    """Sign-ins with a password (TRACKER_API_LOGIN_RATE), on top of the per-account lockout, counted
    alike at both doors that take one: the API's token request and the admin's login
    (`accounts.lockout.sign_in_throttled`). The lockout counts one account from one address; this
    counts every account from it, so that one password tried on every username is bounded at the
    admin's door as at the API's. Always by the address, whoever the session holds: a session past
    the password step (its second factor owed) was counted by its account, a fresh count of
    guesses for every password a thief holds."""

    scope = "login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
