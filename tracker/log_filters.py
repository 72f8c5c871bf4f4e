"""Filters of the log records LOGGING (tracker/settings.py) names, and of the error reports
(DEFAULT_EXCEPTION_REPORTER_FILTER) that Django makes of a server error."""

import logging
import re

from django.views.debug import SafeExceptionReporterFilter


class RefusedHostAsWarning(logging.Filter):
    """A request naming a host this site does not serve (DJANGO_ALLOWED_HOSTS), as one WARNING line.

    Django logs each at ERROR with its full traceback. Behind a proxy that passes any host, internet
    scanners send such requests all day, and their tracebacks buried every real error. The line
    stays (it says which host): a deployment whose own host is missing from DJANGO_ALLOWED_HOSTS
    answers 400 to everyone, and these lines are how the operator finds out. The traceback says
    nothing more: it is always Django's host check. DJANGO_LOG_LEVEL=ERROR leaves them out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info = record.exc_text = None
        # Django's ERROR passed the logger's level already; the WARNING it has become must pass it too.
        return logging.getLogger(record.name).isEnabledFor(logging.WARNING)


class SecretsHiddenReporterFilter(SafeExceptionReporterFilter):
    """Django's report of a server error (the mail to ADMINS of its AdminEmailHandler, were one added
    to LOGGING; a log service's client that uses this filter) without the secrets the request held:
    the posted parameters, and the local variables, whose names say they hold one (a password, a
    second factor's code, a setup link's key, a token), as Django hides such settings.

    Django hides a request's parameters only where a view says which (`sensitive_post_parameters`),
    which none of the accounts' pages did: a 500 while confirming who one is reported the password,
    one while opening a setup link its key, which still worked; Django's own login view says so only
    once it runs, after the throttle and the lockout. By name, so a page added later is covered too;
    a harmless value under such a name (`country_code`) is hidden as well, which costs a report
    little. The pages that hold secrets under other names (a form's repr, a QR code's data) hide
    all their local variables (`accounts.views.staff_only`). Like Django's, inactive with DEBUG."""

    # Django's words for a secret setting, and those of the accounts' secrets (`code`, `codes`,
    # `current-code`, `qr_code`, `otp`).
    hidden_settings = re.compile(SafeExceptionReporterFilter.hidden_settings.pattern + "|CODE|OTP", flags=re.I)

    def get_post_parameters(self, request):
        parameters = super().get_post_parameters(request)
        if request is None or not self.is_active(request):
            return parameters
        secret = [name for name in parameters if self.hidden_settings.search(name)]
        if not secret:
            return parameters
        parameters = parameters.copy()
        for name in secret:
            parameters[name] = self.cleansed_substitute
        return parameters

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        if not self.is_active(request):
            return variables
        # A dictionary's values are hidden by their keys alike (a form's `cleaned_data`, a
        # serializer's `attrs`: {"password": …}).
        return [(name, self.cleanse_setting(name, value)) for name, value in variables]
