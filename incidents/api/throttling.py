"""Throttles that read their rate from the settings when a request arrives, not when DRF is
imported, so a rate changed in settings (or a test's override) takes effect."""

from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle


class CurrentRateMixin:
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)


class AnonymousClientThrottle(CurrentRateMixin, AnonRateThrottle):
    """Anonymous clients, per IP address (TRACKER_API_ANON_RATE)."""


class AccountThrottle(CurrentRateMixin, UserRateThrottle):
    """Signed-in clients, per account (TRACKER_API_USER_RATE)."""
