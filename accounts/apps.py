from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and security"
    default = True

    def ready(self):
        from accounts import signals  # noqa: F401  (connects the token revocation)


class TrackerAdminConfig(admin_apps.AdminConfig):
    """Django's admin, on a site that asks staff for their second factor after the password."""

    default = False
    default_site = "accounts.admin_site.TrackerAdminSite"
