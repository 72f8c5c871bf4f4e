from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and security"
    default = True

    def ready(self):
        # Connects the token revocation; registers the session scheme with the API schema.
        from accounts import schema, signals  # noqa: F401


class TrackerAdminConfig(admin_apps.AdminConfig):
    """Django's admin, on a site that asks staff for their second factor after the password."""

    default = False
    default_site = "accounts.admin_site.TrackerAdminSite"
