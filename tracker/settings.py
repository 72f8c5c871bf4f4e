"""Settings for Incident Tracker.

The environment is read here and nowhere else. Every variable is documented in the README; a bad
value raises ImproperlyConfigured naming the variable, so a misconfigured server fails at start-up
rather than at the first request.
"""

import errno
import logging
import os
import re
import tempfile
from datetime import timedelta
from pathlib import Path

import dj_database_url
import orjson
import pghistory
import pgtrigger
from django.conf.locale import LANG_INFO
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import URLValidator
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy, to_language

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


def env_int(name: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer; below `minimum` or above `maximum`, start-up stops naming the variable (a page size
    of 0, a negative statement timeout or a token lifetime past the year 9999 would otherwise fail
    every request that reads it, with a traceback)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer; got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be {minimum} or more; got {value}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be {maximum} or less; got {value}.")
    return value


# The longest span a lifetime or a window setting may give, in days: a century, well within what
# Python's dates reach from now (the year 9999) and what PostgreSQL's intervals hold.
MAX_SPAN_DAYS = 36_500

# The largest page an API list may be set to give (TRACKER_API_PAGE_SIZE, TRACKER_API_MAX_PAGE_SIZE):
# past a bigint, a page's LIMIT made every list a 500; a whole export is the CSV's job.
MAX_PAGE_SIZE = 10_000


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
    if not (count.isascii() and count.isdigit()) or period not in {"second", "minute", "hour", "day"}:
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
    # Django's admin on a site that also asks staff for their second factor (accounts/admin_site.py).
    "accounts.apps.TrackerAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_countries",
    "django_filters",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
    # pghistory.admin is left out: its site-wide event list ignores visible_to; each object's
    # admin History page shows its events instead (incidents/admin/base.py).
    "pghistory",
    "django_otp",
    "accounts.apps.AuthenticatorAppsConfig",
    "accounts.apps.RecoveryCodesConfig",
    "axes",
    # The background tasks' queue and results, in PostgreSQL (TASKS below).
    "django_tasks_db",
    "incidents",
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The public pages' language comes from their address (`/ko/…`); admin and API stay English.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Marks the user verified when this session passed the second factor (request.user.is_verified()).
    "django_otp.middleware.OTPMiddleware",
    # A staff session still owing its second factor is anonymous to every page but those that finish
    # signing in: the public pages and exports too, not only the admin and the API.
    "accounts.middleware.SecondFactorMiddleware",
    # What a signed-in reader is shown (confidential records among it) is kept by no cache.
    "tracker.cache_headers.SignedInAnswersNotStoredMiddleware",
    # A query string of too many parameters: the 400 of `tracker.bad_requests`, with DEBUG too.
    "tracker.bad_requests.QueryStringRefusalMiddleware",
    # Once the user is known: bounds the database time of an anonymous request (ANON_STATEMENT_TIMEOUT).
    "tracker.statement_timeout.AnonymousStatementTimeoutMiddleware",
    # A write PostgreSQL stopped for meeting another (a deadlock) answers 409 rather than 500.
    "tracker.write_conflicts.WriteConflictMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused for lockout into the lockout page (or JSON under /api/).
    "axes.middleware.AxesMiddleware",
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
# Django's psycopg connection pool on every alias, per process: a gunicorn worker's threads share
# up to DATABASE_POOL_SIZE connections (0 turns the pool off, for an external pooler such as
# PgBouncer; connections then persist DATABASE_CONN_MAX_AGE seconds). A request takes a connection
# at its first query and gives it back when it ends; waiting longer than DATABASE_POOL_TIMEOUT for one
# is an error. Session state does not travel with a pooled connection: the history context and the
# bulk writers' trigger switch are set per transaction (set_config(…, true)), never per session.
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 4, minimum=0)
# At most a day: a timeout past what a clock holds stopped the start-up with an OverflowError.
DATABASE_POOL_TIMEOUT = env_int("DATABASE_POOL_TIMEOUT", 10, minimum=1, maximum=24 * 60 * 60)
# Streaming replicas that serve web requests' reads (tracker/replicas.py), and how they are judged.
DATABASE_REPLICA_URLS = env_list("DATABASE_REPLICA_URLS", [])
DATABASE_REPLICA_MAX_LAG_SECONDS = env_int("DATABASE_REPLICA_MAX_LAG_SECONDS", 10, minimum=0)
DATABASE_REPLICA_CHECK_SECONDS = env_int("DATABASE_REPLICA_CHECK_SECONDS", 5, minimum=0)
DATABASE_REPLICA_CONNECT_TIMEOUT = env_int("DATABASE_REPLICA_CONNECT_TIMEOUT", 2, minimum=1)
# At most a day: a pin past what a cookie's date holds made every write a 500 ("year 33715").
DATABASE_REPLICA_PIN_SECONDS = env_int("DATABASE_REPLICA_PIN_SECONDS", 30, minimum=0, maximum=24 * 60 * 60)


def database(url: str, variable: str, *, pool_timeout: int) -> dict:
    try:
        config = dj_database_url.parse(
            url,
            conn_max_age=0 if DATABASE_POOL_SIZE else env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    except ValueError as error:
        # dj-database-url's message names no variable; the URL itself, with its password, is not shown.
        raise ImproperlyConfigured(
            f"{variable} is not a postgres://user:password@host:port/name URL: {error}"
        ) from None
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(f"{variable} must point to PostgreSQL (postgres://…).")
    # A `/` in the password ends the host part: the user is then read as the host, the password's
    # start as the port, and the database's name holds the rest, `@host` included.
    if "@" in config["NAME"]:
        raise ImproperlyConfigured(
            f"{variable}: its database name holds an @; a / @ : # or ? in the password must be percent-encoded."
        )
    # Django's backend, which says in one line why the database cannot be reached (tracker/postgresql/).
    config["ENGINE"] = "tracker.postgresql"
    config["URL_VARIABLE"] = variable
    options = config.setdefault("OPTIONS", {})
    # No JIT compilation: on large tables the planner's cost of an ordinary list query crosses
    # jit_above_cost, and compiling then takes 50-100 ms for a query that runs in a few.
    options.setdefault("options", "-c jit=off")
    if DATABASE_POOL_SIZE:
        options["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": pool_timeout}
    return config


DATABASES = {"default": database(DATABASE_URL, "DATABASE_URL", pool_timeout=DATABASE_POOL_TIMEOUT)}
DATABASE_REPLICAS = [f"replica_{number}" for number in range(1, len(DATABASE_REPLICA_URLS) + 1)]
for alias, url in zip(DATABASE_REPLICAS, DATABASE_REPLICA_URLS, strict=True):
    DATABASES[alias] = database(url, "DATABASE_REPLICA_URLS", pool_timeout=DATABASE_REPLICA_CONNECT_TIMEOUT)
    DATABASES[alias]["OPTIONS"]["connect_timeout"] = DATABASE_REPLICA_CONNECT_TIMEOUT
    # Tests create their database on the primary only; the replica receives it by streaming, under
    # the same name (a test mirror takes the primary's database name, keeping its own host and port).
    DATABASES[alias]["TEST"] = {"MIRROR": "default"}
if DATABASE_REPLICAS:
    DATABASE_ROUTERS = ["tracker.replicas.PrimaryReplicaRouter"]
    # Before the session and authentication middleware, whose reads it routes too.
    sessions = MIDDLEWARE.index("django.contrib.sessions.middleware.SessionMiddleware")
    MIDDLEWARE.insert(sessions, "tracker.replicas.ReplicaReadsMiddleware")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# `manage.py loaddata sample` loads the seed article's facts (fixtures/sample.json).
FIXTURE_DIRS = [BASE_DIR / "fixtures"]

# Axes first: it refuses a locked-out account before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The dates forms read, in each language: Django's, less "09/10/2023", which it read as 10 September
# (tracker/formats). A language whose Django formats read numeric dates month first gets a module there.
FORMAT_MODULE_PATH = ["tracker.formats"]


def catalog_languages(locale_path: Path) -> list[tuple[str, str]]:
    """English, then each language that has a catalog under `locale_path`, named in its own words
    (Django's own list of languages): a translator adds a language with its `.po` file alone
    (`locale/zh_Hans/LC_MESSAGES/django.po` makes `/zh-hans/`), no line of code."""
    catalogs = sorted(locale_path.glob("*/LC_MESSAGES/django.po"))
    found = [to_language(catalog.parent.parent.name) for catalog in catalogs]
    return [("en", "English"), *((code, LANG_INFO.get(code, {}).get("name_local", code)) for code in found)]


# The public pages' languages.
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGES = catalog_languages(LOCALE_PATHS[0])
# Countries by the names their readers use, as django-countries' English does ("North Korea"):
# its Korean names North Korea by its official name, 조선민주주의인민공화국, where Korean readers
# and the NGOs that document it write 북한 (this project's catalog).
COUNTRIES_OVERRIDE = {"KP": gettext_lazy("North Korea")}
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# The public pages' stylesheets and scripts, and the npm libraries they use (see static/vendor/).
STATICFILES_DIRS = [BASE_DIR / "static"]
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

# Security: on by default outside DEBUG.
# How many reverse proxies stand in front of the app. Each appends the address it received from to
# X-Forwarded-For, so only the last PROXY_COUNT entries can be trusted: the client address (for
# throttling and lockout) is the one the outermost proxy saw, and anything a client wrote further
# left is ignored. 0 (the default): X-Forwarded-For and X-Forwarded-Proto are not read at all.
PROXY_COUNT = env_int("TRACKER_PROXY_COUNT", 0)
if PROXY_COUNT < 0:
    raise ImproperlyConfigured(f"TRACKER_PROXY_COUNT must be 0 or more; got {PROXY_COUNT}.")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Without a proxy, anyone could claim HTTPS with this header; the TLS-terminating proxy sets it.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PROXY_COUNT else None
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Every page, the admin, the API docs and the browsable API included, loads scripts, styles and
# images only from this site, and runs no inline script: an injected <script> does nothing.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    # The one inline style the browsable API writes (`float: right; margin-right: 10px`, on its
    # Filters and Extra Actions buttons), allowed by its hash alone: any other inline style stays blocked.
    "style-src-attr": [CSP.UNSAFE_HASHES, "'sha256-OfgyIBrd+/vP79JdFMYP+re4T+fIenvkrHPD2HZ8/cs='"],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
    "base-uri": [CSP.SELF],
    "object-src": [CSP.NONE],
}

# Only staff sign in with a session (the admin's login refuses other accounts; API clients use
# tokens), so this is the staff session's lifetime: a working day by default rather than Django's
# two weeks. A password change ends every other session (Django's session auth hash); a new
# authenticator app, or new recovery codes, end the verification of the sessions the replaced
# device verified (django-otp forgets a device that no longer exists), which are then anonymous to
# every page but the sign-in ones (accounts.middleware).
SESSION_COOKIE_AGE = env_int(
    "TRACKER_STAFF_SESSION_SECONDS", 8 * 60 * 60, minimum=1, maximum=MAX_SPAN_DAYS * 24 * 60 * 60
)

# Background tasks (Django's django.tasks): rescoring possible duplicates after a write
# (incidents/duplicates.py). Queued in a table of the primary database (django-tasks-db), in the
# transaction's wake, and run by `manage.py db_worker` (README, "Deployment"): no other server.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

# Shared by every worker and server: the API's throttle counters live here. PostgreSQL by default
# (a table created by the accounts app's first migration), so no other server is needed; Redis
# when REDIS_URL is set.
REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    # Else the site started, and every request that counts a throttle was a 500 naming no variable.
    # The value is not shown: it may hold the server's password (redis://:password@host), as
    # DATABASE_URL's would (`database`), in a line that reaches the logs.
    raise ImproperlyConfigured(
        "REDIS_URL must start with redis://, rediss:// or unix:// (redis://cache.internal:6379/0); "
        "the value set is not shown, as it may hold a password."
    )
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {
            # Django's DatabaseCache, each write in one statement (tracker/cache.py).
            "BACKEND": "tracker.cache.PostgreSQLCache",
            "LOCATION": "tracker_cache",
            # Past this many live entries Django drops a third of them, throttle counts included:
            # room for every client of the last hour (the longest throttle period), well beyond the
            # default 300, which a few hundred addresses could flush.
            "OPTIONS": {"MAX_ENTRIES": 50_000},
        }
    )
}

# Second factor: staff must pass a TOTP code (or a recovery code) after their password, on the
# admin and on session use of the API. On by default outside DEBUG; `make run` and the tests run
# with DEBUG on, so the sample login stays one step there.
REQUIRE_2FA = env_bool("TRACKER_REQUIRE_2FA", not DEBUG)
# The name an authenticator app shows beside the codes.
OTP_TOTP_ISSUER = env_str("TRACKER_2FA_ISSUER", "Incident Tracker")
RECOVERY_CODE_COUNT = 10
# A staff member's first authenticator app needs a setup link from an administrator
# (accounts.SetupLink), usable once within this many days.
SETUP_LINK_DAYS = env_int("TRACKER_SETUP_LINK_DAYS", 7, minimum=1, maximum=MAX_SPAN_DAYS)
# Changes to accounts, roles and second factors in the admin need the password (and a current code)
# typed within this many minutes (accounts.confirmation).
CONFIRMATION_MINUTES = env_int("TRACKER_CONFIRMATION_MINUTES", 10, minimum=1, maximum=24 * 60)
# The admin's device pages show no secret key, QR code or recovery code: whoever may see them
# could otherwise copy a colleague's second factor. Administrators only delete devices there.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Lockout (django-axes, counted in the database so every worker sees the same counts): after
# TRACKER_LOCKOUT_FAILURES failed logins (password, second factor, or API token request) for one
# account from one client address, none more than TRACKER_LOCKOUT_MINUTES after the one before,
# that account is locked for that client until TRACKER_LOCKOUT_MINUTES after the last failure.
# Admins unlock under "Axes" in the admin.
AXES_FAILURE_LIMIT = env_int("TRACKER_LOCKOUT_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(
    minutes=env_int("TRACKER_LOCKOUT_MINUTES", 15, minimum=1, maximum=MAX_SPAN_DAYS * 24 * 60)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# That lock alone bounds nothing against many addresses: a botnet had 5 guesses per address at one
# account, and one address 4 at each of thousands of accounts. Two wider bounds, counted over
# LOCKOUT_WINDOW from django-axes' log of failures (accounts.lockout.AttemptsHandler), refuse an
# address the account is not familiar with:
# - LOCKOUT_ACCOUNT_FAILURES failures at one account, from all addresses together;
# - LOCKOUT_ADDRESS_FAILURES failures from one address, at all accounts together.
# Familiar: the account finished signing in from there (its second factor too, when it has one)
# within LOCKOUT_FAMILIAR_DAYS (accounts.SignInAddress). A familiar address meets the per-address
# lock above only, so an attacker who keeps the account's wide bound reached cannot lock its owner
# out: the owner signs in from home or the office as before, while guesses from anywhere else wait
# (Microsoft's "smart lockout" of familiar and unfamiliar locations; NIST SP 800-63B 5.2.2, which
# bounds an account's failures at 100 and offers "IP addresses at which the subscriber has been
# successfully authenticated before" to keep the owner in). The trade-off: while an account is
# under such attack, its owner cannot sign in from a new address (travelling, a new provider)
# until the window's failures age out or an administrator clears them. The window is long (a day)
# because the bound is on guesses per window: 20 a day at one account, where the 15 minutes of the
# per-address lock would give a botnet 20 every 15 minutes, nearly 2,000 a day.
# Each bound at most MAX_FAILURES, a hundred times NIST's: past a bigint, the count's OFFSET
# (accounts.lockout) made every wrong password a 500.
MAX_FAILURES = 10_000
LOCKOUT_ACCOUNT_FAILURES = env_int("TRACKER_LOCKOUT_ACCOUNT_FAILURES", 20, minimum=1, maximum=MAX_FAILURES)
LOCKOUT_ADDRESS_FAILURES = env_int("TRACKER_LOCKOUT_ADDRESS_FAILURES", 30, minimum=1, maximum=MAX_FAILURES)
LOCKOUT_WINDOW = timedelta(hours=env_int("TRACKER_LOCKOUT_WINDOW_HOURS", 24, minimum=1, maximum=MAX_SPAN_DAYS * 24))
LOCKOUT_FAMILIAR_DAYS = env_int("TRACKER_LOCKOUT_FAMILIAR_DAYS", 30, minimum=1, maximum=MAX_SPAN_DAYS)
# A familiar address is spared the wide bounds, not every bound: someone who shares it (an office's
# or a household's address, a colleague) met only the lock above, 5 guesses every 15 minutes, 480 a
# day without end. Its failures at the account have a bound of their own over the same window,
# NIST SP 800-63B's 100, far above what an owner mistypes in a day.
LOCKOUT_FAMILIAR_FAILURES = env_int("TRACKER_LOCKOUT_FAMILIAR_FAILURES", 100, minimum=1, maximum=MAX_FAILURES)
# A correct password must not reset the count: a thief who has it could otherwise keep guessing
# the second factor, four codes at a time.
AXES_RESET_ON_SUCCESS = False
# The same client address as the throttles (X-Forwarded-For read through PROXY_COUNT proxies).
AXES_CLIENT_IP_CALLABLE = "accounts.clients.client_ip"
# The username typed, cut to the length django-axes's records hold (a longer one was a 500).
AXES_USERNAME_CALLABLE = "accounts.lockout.attempted_username"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# django-axes' database handler, whose clean-up of expired attempts waits for no other sign-in's.
AXES_HANDLER = "accounts.lockout.AttemptsHandler"
# The wide bounds above count this log's rows: it must stay on.
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# Never keep a typed code in the attempt records (axes always masks the password); `current-code`
# is the current app's code, asked beside a new app's (accounts.forms.CurrentAppCodeForm).
AXES_SENSITIVE_PARAMETERS = [
    "otp",
    "code",
    "current-code",
    "csrfmiddlewaretoken",
    # The admin's password change: a wrong current password counts, and its new one comes with it.
    "old_password",
    "new_password1",
    "new_password2",
]

# API tokens (accounts.ApiToken): stored as a hash, expire after this many days.
API_TOKEN_DAYS = env_int("TRACKER_API_TOKEN_DAYS", 90, minimum=1, maximum=MAX_SPAN_DAYS)
# At most this many unexpired tokens per account: each is a live credential, and the lists of one's
# tokens (Sign-in security, /api/v1/auth/tokens/) are one page. A script that asks for a new token
# at every run meets the limit rather than leaving hundreds of 90-day credentials behind.
API_TOKENS_PER_ACCOUNT = env_int("TRACKER_API_TOKENS_PER_ACCOUNT", 25, minimum=1, maximum=1000)
# An expired token stays listed this many days (its owner sees which program stopped working), then
# goes when the account next makes a token.
API_TOKEN_EXPIRED_LISTED_DAYS = 30

# Audit trail: database triggers record every insert, update and delete of every tracked model, so
# bulk updates, `queryset.update()` and raw SQL are recorded too; history rows cannot be altered.
# Code that writes many rows at once records their insert history itself, in one statement per
# table (incidents.services.record_events), and turns this setting on meanwhile
# (incidents.history.set_insert_triggers): the row-level insert triggers then do not even fire,
# nor do the statement triggers that keep the search words and export rows on insert, which such
# code refreshes once, after its last table (migrations 0028, 0034).
# pgtrigger.ignore() would still call each one, which then opens a subtransaction to read its own
# setting: 85 us a row, measured, most of a 100,000-row import's time.
INSERT_TRIGGERS_OFF_SETTING = "tracker.insert_triggers_off"
# Code that starts a new version of many incidents at once (those citing a source made confidential
# or public) records their update history itself, in one statement, and turns this setting on
# meanwhile (incidents.history.set_incident_update_triggers): the incidents' row-level update
# history trigger then does not fire, nor does the statement trigger that makes their export rows
# again on update, which such code has made in the same transaction (migration 0054). The history
# trigger writes one row at a time, planning the event table's generated columns again for each:
# 0.4 ms a row, measured, 2.0 s of a 5-6 s change for a source cited 5,000 times.
INCIDENT_UPDATE_TRIGGERS_OFF_SETTING = "tracker.incident_update_triggers_off"
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
DUPLICATE_WINDOW_DAYS = env_int("TRACKER_DUPLICATE_WINDOW_DAYS", 7, minimum=0, maximum=MAX_SPAN_DAYS)
# `manage.py backup` / `restore` (tracker/backup.py): the AES-256 key (URL-safe base64 of 32
# bytes; `manage.py backup --new-key` makes one), and where pg_dump/pg_restore are when the
# installation matching the server's version cannot be found on its own.
BACKUP_KEY = env_str("TRACKER_BACKUP_KEY", "")
PG_BIN_DIR = env_str("TRACKER_PG_BIN_DIR", "")
# Dataset releases (incidents/releases.py): who the citation names as author, and the data set's title.
RELEASE_AUTHOR = env_str("TRACKER_RELEASE_AUTHOR", "Incident Tracker contributors")
RELEASE_TITLE = env_str("TRACKER_RELEASE_TITLE", "Incident Tracker data set")


def env_data_license() -> dict[str, str] | None:
    """The terms a release may be reused under, as a Frictionless `licenses` entry: the SPDX id
    (TRACKER_DATA_LICENSE, e.g. CC-BY-4.0), its name and the address of its text; None when unset.
    Given in part, start-up stops naming what is missing: a release naming a licence without its
    text would tell a researcher little more than one naming none."""
    variables = {
        "name": "TRACKER_DATA_LICENSE",
        "title": "TRACKER_DATA_LICENSE_TITLE",
        "path": "TRACKER_DATA_LICENSE_URL",
    }
    license = {key: env_str(variable, "").strip() for key, variable in variables.items()}
    if not any(license.values()):
        return None
    if missing := [variables[key] for key, value in license.items() if not value]:
        raise ImproperlyConfigured(
            f"{', '.join(missing)} must be set with the other TRACKER_DATA_LICENSE variables "
            "(the licence's SPDX id, its name and the address of its text)."
        )
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", license["name"]):
        raise ImproperlyConfigured(f"TRACKER_DATA_LICENSE must be an SPDX id, e.g. CC-BY-4.0; got {license['name']!r}.")
    try:
        URLValidator(schemes=["http", "https"])(license["path"])
    except ValidationError:
        address = license["path"]
        raise ImproperlyConfigured(f"TRACKER_DATA_LICENSE_URL must be an http(s) address; got {address!r}.") from None
    return license


DATA_LICENSE = env_data_license()
# Largest CSV file an import accepts, in bytes (about 150,000 exported incidents at the default).
# At most 1 GiB: a file is read whole (`importers._read_rows` asks for a buffer of the limit), and
# 100 GB failed every import with a MemoryError naming no variable.
IMPORT_MAX_BYTES = env_int("TRACKER_IMPORT_MAX_BYTES", 50 * 1024 * 1024, minimum=1, maximum=1024**3)
# Most rows a CSV import accepts: checking holds them all at once, so this bounds its memory, about
# 20 KB per row that updates an incident and 3 KB per new one (README, "CSV import"; bench/README.md).
IMPORT_MAX_ROWS = env_int("TRACKER_IMPORT_MAX_ROWS", 25_000, minimum=1)
# CSV exports (and release files) read from the database at once from the web doors, across every
# worker and app server (slots held on the primary: `incidents.exports.export_slot_take`). Each holds
# a gunicorn thread and a database connection while its COPY writes the download's file (not while
# the client reads it: `incidents.exports.spooled`): below the threads of the deployment (2 workers
# x 4), so that exports, however many clients ask, leave threads to every other request.
EXPORTS_AT_ONCE = env_int("TRACKER_EXPORTS_AT_ONCE", 2)
if EXPORTS_AT_ONCE < 1:
    raise ImproperlyConfigured(f"TRACKER_EXPORTS_AT_ONCE must be 1 or more; got {EXPORTS_AT_ONCE}.")
# Where the web doors write each download before sending it (`incidents.exports.spooled`), so that
# no client's reading speed holds the database: anonymous files, unlinked as they are made. The
# system's temporary directory (TMPDIR, else /tmp) by default. Room for one export per web thread
# at once (README, "Deployment").
EXPORT_SPOOL_DIR = env_str("TRACKER_EXPORT_SPOOL_DIR", "") or None
if EXPORT_SPOOL_DIR is not None and not os.path.isdir(EXPORT_SPOOL_DIR):
    raise ImproperlyConfigured(f"TRACKER_EXPORT_SPOOL_DIR must be an existing directory; got {EXPORT_SPOOL_DIR!r}.")
if EXPORT_SPOOL_DIR is not None:
    # A file made and gone at once, as each download's is: a directory the server's account may not
    # write in (another's, or on a read-only filesystem) failed every export and release download
    # with a 500 whose traceback named the file, not the variable. A full disk is no reason to stop
    # (its downloads answer 503 until room comes back); O_TMPFILE takes no room anyway.
    try:
        tempfile.TemporaryFile(dir=EXPORT_SPOOL_DIR).close()
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise ImproperlyConfigured(
                f"TRACKER_EXPORT_SPOOL_DIR: cannot write a file in {EXPORT_SPOOL_DIR!r}: {error.strerror}."
            ) from None

# An incident's admin page posts some fifteen fields a claim (a few a victim group or organization
# involved): Django's default bound of 1,000 refused the Save of an incident with some 65 claims, a
# 400 page and the analyst's typing lost. 10,000 holds about 650. What bounds the work of reading a
# request's fields is its body's size instead, DATA_UPLOAD_MAX_MEMORY_SIZE (Django's 2.5 MB, about
# 100,000 such fields), and for a query string the server's bound on a request line.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# A request's files only where a view takes them (the admin's CSV import, up to IMPORT_MAX_BYTES),
# refused before they are written, and a multipart body no larger than 2.5 MB (Django's bound on
# its fields, DATA_UPLOAD_MAX_MEMORY_SIZE) plus that file: tracker/uploads.py.
FILE_UPLOAD_HANDLERS = [
    "tracker.uploads.BoundedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "tracker.uploads.RoomCheckedTemporaryFileUploadHandler",
]

# REST API under /api/v1/ (incidents/api/). Reads are open (visibility is decided by visible_to);
# writes need the model's add/change/delete permission. Throttled per client IP (anonymous) or per
# account, so one partner's sync loop cannot starve everyone else.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "accounts.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["incidents.api.permissions.ReadOrModelPermission"],
    "DEFAULT_PARSER_CLASSES": [
        "incidents.api.parsers.FiniteJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "incidents.api.renderers.JSONRenderer",
        "incidents.api.renderers.BrowsableAPIRenderer",
    ],
    # Timestamps end in "Z", as DRF's own encoder writes them; keys may be numbers, as with `json`.
    "ORJSON_RENDERER_OPTIONS": (orjson.OPT_UTC_Z, orjson.OPT_NON_STR_KEYS),
    "DEFAULT_PAGINATION_CLASS": "incidents.api.pagination.StableCursorPagination",
    "PAGE_SIZE": env_int("TRACKER_API_PAGE_SIZE", 50, minimum=1, maximum=MAX_PAGE_SIZE),
    "DEFAULT_THROTTLE_CLASSES": [
        "incidents.api.throttling.AnonymousClientThrottle",
        "incidents.api.throttling.AccountThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_rate("TRACKER_API_ANON_RATE", "120/minute"),
        "user": env_rate("TRACKER_API_USER_RATE", "1200/minute"),
        # The public site's pages, map data, embeds and downloads, per anonymous address: each may take
        # ANON_STATEMENT_TIMEOUT of the database, and a person reading them asks for a few a minute.
        "public": env_rate("TRACKER_PUBLIC_ANON_RATE", "120/minute"),
        # Each CSV export reads every matching incident: far fewer per client than list pages.
        "export": env_rate("TRACKER_API_EXPORT_RATE", "20/hour"),
        # Sign-ins with a password per client address (token requests and the admin's login together),
        # on top of the per-account lockout.
        "login": env_rate("TRACKER_API_LOGIN_RATE", "10/minute"),
    },
    "NUM_PROXIES": PROXY_COUNT,
    "EXCEPTION_HANDLER": "incidents.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "incidents.api.schema.TrackerAutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
# The most database time the statements of one anonymous request may take together, in milliseconds
# (0: no bound; the name is older, from when it bounded each statement apart); beyond it PostgreSQL
# cancels the statement running, or the next is not sent, and the request answers 503
# (tracker/statement_timeout.py). 3 s: the GeoJSON download of the newest 5,000 whole incidents, the
# heaviest request a page links to, takes 1.2-1.5 s of PostgreSQL at 1,000,000 incidents in its five
# statements (more on a busy machine), while a browse page with every facet chosen, whose walks
# took 6-7 s together, is stopped.
# PostgreSQL takes a statement_timeout of at most 2^31-1 ms (about 24 days).
ANON_STATEMENT_TIMEOUT = env_int("TRACKER_ANON_STATEMENT_TIMEOUT", 3000, minimum=0, maximum=2**31 - 1)
# What the anonymous requests of one client address may take of the database together in a minute
# (seconds; 0: no bound), beyond which they answer 429 until the minute ends. The bound above is per
# request and the rates count requests, so one address asking at the anonymous rate (120 a minute)
# for requests near the bound held six backends busy, more than this machine's two cores. 20 s: a
# third of one core; a person's pages take 0.05-0.2 s each (bench/README.md).
ANON_CLIENT_DATABASE_SECONDS = env_int("TRACKER_ANON_CLIENT_DATABASE_SECONDS", 20, minimum=0)
# The largest page a client may ask for with `page_size`: at least the page every list gives unasked.
API_MAX_PAGE_SIZE = env_int("TRACKER_API_MAX_PAGE_SIZE", 200, minimum=1, maximum=MAX_PAGE_SIZE)
if REST_FRAMEWORK["PAGE_SIZE"] > API_MAX_PAGE_SIZE:
    raise ImproperlyConfigured(
        f"TRACKER_API_MAX_PAGE_SIZE ({API_MAX_PAGE_SIZE}) must be at least TRACKER_API_PAGE_SIZE "
        f"({REST_FRAMEWORK['PAGE_SIZE']}), the page every list gives unasked."
    )

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

LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "WARNING").upper()
if LOG_LEVEL not in logging.getLevelNamesMapping():
    # Else logging's own ValueError ("Unable to configure logger 'django'"), naming no variable.
    raise ImproperlyConfigured(
        f"DJANGO_LOG_LEVEL must be one of {', '.join(logging.getLevelNamesMapping())}; got {LOG_LEVEL!r}."
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Django's own logger (its default: INFO, with a console handler of its own in debug) reaches the
    # root's handler like every other: at DJANGO_LOG_LEVEL, and once. Left as Django sets it, its
    # records ignored the level and printed twice in debug. (runserver's request lines, on
    # `django.server`, are unchanged.)
    "loggers": {
        "django": {"handlers": [], "level": LOG_LEVEL},
        "django.security.DisallowedHost": {"filters": ["refused_host_as_warning"]},
    },
    "filters": {"refused_host_as_warning": {"()": "tracker.log_filters.RefusedHostAsWarning"}},
}
# A server error's report (Django's mail to ADMINS, a log service's client that uses Django's filter) names
# no secret the request or the code held: no password, code, key or token, whatever page posted it.
DEFAULT_EXCEPTION_REPORTER_FILTER = "tracker.log_filters.SecretsHiddenReporterFilter"
