"""Filters of the log records LOGGING (tracker/settings.py) names."""

import logging


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
