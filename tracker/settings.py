"""Settings for Incident Tracker.

The environment is read here and nowhere else. Every variable is documented in the README; a bad
value raises ImproperlyConfigured naming the variable, so a misconfigured server fails at start-up
rather than at the first request.
"""

import os
from pathlib import Path

import dj_database_url
import orjson
import pghistory
import pgtrigger
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}.") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_rate(name: str, default: str) -> str | None:
    """A throttle rate such as `60/minute` (periods: second, minute, hour, day); `off` disables it."""
    raw = env_str(name, default).strip()
    if raw.lower() == "off":
        return None
    count, _, period = raw.partition("/")
    if not count.isdigit() or period not in {"second", "minute", "hour", "day"}:
        raise ImproperlyConfigured(f"{name} must look like 60/minute (second, minute, hour, day) or off; got {raw!r}.")
    return raw


DEBUG = env_bool("DJANGO_DEBUG", False)

# A development key only when DEBUG is on; production must provide its own.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_countries",
    "django_filters",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
    # pghistory.admin is left out: its site-wide event list ignores visible_to; each object's
    # admin History page shows its events instead (incidents/admin/base.py).
    "pghistory",
    "incidents",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # After authentication, so every database trigger row names the acting user.
    "pghistory.middleware.HistoryMiddleware",
]

ROOT_URLCONF = "tracker.urls"
WSGI_APPLICATION = "tracker.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL is the only supported database: the model relies on its constraints, arrays,
# full-text search, triggers (audit history) and COPY (CSV export).
DATABASE_URL = os.environ.get("DATABASE_URL")
if not DATABASE_URL:
    raise ImproperlyConfigured(
        "DATABASE_URL must be set (postgres://user:password@host:port/name). "
        "`make run` and `make test` start an embedded PostgreSQL and set it for you."
    )
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL (postgres://…).")
# No JIT compilation: on large tables the planner's cost of an ordinary list query crosses
# jit_above_cost, and compiling then takes 50-100 ms for a query that runs in a few.
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# `manage.py loaddata sample` loads the seed article's facts (fixtures/sample.json).
FIXTURE_DIRS = [BASE_DIR / "fixtures"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Serve static files without collectstatic in development and tests. Autorefresh too: pytest turns
# DEBUG off, and WhiteNoise would then warn (an error under pytest) that STATIC_ROOT does not exist.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "admin:login"

# Security: on by default outside DEBUG; a TLS-terminating proxy sets X-Forwarded-Proto.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Audit trail: database triggers record every insert, update and delete of every tracked model, so
# bulk updates, `queryset.update()` and raw SQL are recorded too; history rows cannot be altered.
# Code that writes many rows at once records their insert history itself, in one statement per
# table (incidents.services._record_inserts), and turns this setting on meanwhile
# (incidents.history.set_insert_triggers): the row-level insert triggers then do not even fire.
# pgtrigger.ignore() would still call each one, which then opens a subtransaction to read its own
# setting: 85 us a row, measured, most of a 100,000-row import's time.
INSERT_TRIGGERS_OFF_SETTING = "tracker.insert_triggers_off"
PGHISTORY_DEFAULT_TRACKERS = (
    pghistory.InsertEvent(
        condition=pgtrigger.Condition(f"current_setting('{INSERT_TRIGGERS_OFF_SETTING}', true) IS DISTINCT FROM 'on'")
    ),
    pghistory.UpdateEvent(),
    pghistory.DeleteEvent(),
)
PGHISTORY_APPEND_ONLY = True
# Only requests that may write carry the acting user into the history (HistoryMiddleware). Reads
# change nothing; tracking them opened a history context and inspected every SQL statement of
# every GET: 0.2 ms of the incident list's 1.3 ms outside PostgreSQL (bench/bench_api.py).
PGHISTORY_MIDDLEWARE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Installs the triggers that no migration holds (those on Response.incidents' auto-created table).
PGTRIGGER_INSTALL_ON_MIGRATE = True

# Incident Tracker's own settings.
# Window (in days) around an incident's dates within which another incident of the same type and
# place counts as a possible duplicate.
DUPLICATE_WINDOW_DAYS = env_int("TRACKER_DUPLICATE_WINDOW_DAYS", 7)
# Largest CSV file an import accepts, in bytes (about 150,000 exported incidents at the default).
IMPORT_MAX_BYTES = env_int("TRACKER_IMPORT_MAX_BYTES", 50 * 1024 * 1024)

# REST API under /api/v1/ (incidents/api/). Reads are open (visibility is decided by visible_to);
# writes need the model's add/change/delete permission. Throttled per client IP (anonymous) or per
# account, so one partner's sync loop cannot starve everyone else.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["incidents.api.permissions.ReadOrModelPermission"],
    "DEFAULT_RENDERER_CLASSES": [
        "incidents.api.renderers.JSONRenderer",
        "incidents.api.renderers.BrowsableAPIRenderer",
    ],
    # Timestamps end in "Z", as DRF's own encoder writes them; keys may be numbers, as with `json`.
    "ORJSON_RENDERER_OPTIONS": (orjson.OPT_UTC_Z, orjson.OPT_NON_STR_KEYS),
    "DEFAULT_PAGINATION_CLASS": "incidents.api.pagination.StableCursorPagination",
    "PAGE_SIZE": env_int("TRACKER_API_PAGE_SIZE", 50),
    "DEFAULT_THROTTLE_CLASSES": [
        "incidents.api.throttling.AnonymousClientThrottle",
        "incidents.api.throttling.AccountThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("TRACKER_API_ANON_RATE", "120/minute"),
        "user": env_rate("TRACKER_API_USER_RATE", "1200/minute"),
    },
    "EXCEPTION_HANDLER": "incidents.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "incidents.api.schema.TrackerAutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# The largest page a client may ask for with `page_size`.
API_MAX_PAGE_SIZE = env_int("TRACKER_API_MAX_PAGE_SIZE", 200)

SPECTACULAR_SETTINGS = {
    "TITLE": "Incident Tracker API",
    "DESCRIPTION": (
        "Incidents with uncertain dates and counts, each source's own claims, and the organizations and "
        "places involved. Anonymous readers see published, non-confidential records; staff see drafts; "
        "confidential records need the confidential permission. Hidden records answer 404."
    ),
    "VERSION": "1.0.0",
    # Requests and responses differ (ids in, objects out; server-owned fields read-only).
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from our own static files (drf-spectacular-sidecar), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Several models have a `kind`; each vocabulary gets its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "OrganizationKindEnum": "incidents.models.OrganizationKind",
        "PlaceKindEnum": "incidents.models.PlaceKind",
        "SourceKindEnum": "incidents.models.SourceKind",
        "ResponseKindEnum": "incidents.models.ResponseKind",
        "CountryEnum": "django_countries.countries",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "WARNING")},
}
