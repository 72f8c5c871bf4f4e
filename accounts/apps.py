from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django_otp.plugins.otp_static.apps import DefaultConfig as StaticDevicesConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as TotpDevicesConfig


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


# django-otp's two plugins name no section: the admin's menu showed their labels, "OTP_TOTP" and
# "OTP_STATIC", beside the project's own sections. The same apps, named for what an administrator
# looks for there (a lost phone, spent recovery codes).
class AuthenticatorAppsConfig(TotpDevicesConfig):
    verbose_name = "Second factor: authenticator apps"


class RecoveryCodesConfig(StaticDevicesConfig):
    verbose_name = "Second factor: recovery codes"
