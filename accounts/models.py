import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

# New tokens start with this, so a leaked one is recognisable (secret scanners, logs) as ours.
TOKEN_PREFIX = "trk_"


def token_digest(key: str) -> str:
    """The stored form of a token. A token is 32 random bytes, so a fast hash is enough: unlike a
    password, it cannot be guessed from a dictionary, and the digest must be found by an index."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_token_key() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiTokenQuerySet(models.QuerySet):
    def usable(self):
        """Tokens that still authenticate: not expired, of an active account."""
        return self.filter(expires_at__gt=timezone.now(), user__is_active=True)


class ApiToken(models.Model):
    """A credential for the API (`Authorization: Token …`), shown once when made.

    Hand-written rather than django-rest-knox: knox hashes and expires tokens, but has neither a
    name nor a last-use date, and its login views authenticate with its own classes; extending it
    for those needs a custom model, authentication class and views: more than this model."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. “nightly sync”.")
    # SHA-256 of the token, hex; the token itself is never stored.
    digest = models.CharField(max_length=64, unique=True, editable=False)
    # The token's first characters, so its owner can tell which one a list row is.
    hint = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField()
    # Whether its account passed a second factor to make it (a code sent with the password, or a
    # verified session). A token made with a password alone never serves an account that must pass
    # one (staff): made before the account became staff, or while the second factor was not required,
    # it would read drafts and confidential records without it (accounts.services.token_authenticate).
    second_factor = models.BooleanField(
        default=False,
        # In the database too: a token written there by SQL (migration 0002's) is one no second factor made.
        db_default=False,
        editable=False,
        help_text="Made after its account passed a second factor; staff accounts use only such tokens.",
    )
    # Whether that second factor was a recovery code: new recovery codes revoke the tokens an old
    # one made, as they end the second factor of the sessions an old one verified (whoever stole
    # the codes is out); a token the app made stays, as a session the app verified does.
    recovery_code = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Made with a recovery code; new recovery codes revoke it.",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="api_token_expires_after_creation"
            ),
            models.CheckConstraint(condition=~Q(name=""), name="api_token_named"),
        ]

    def __str__(self):
        return f"{self.name} ({self.hint}…)"

    @property
    def expired(self) -> bool:
        return self.expires_at <= timezone.now()


class SetupLinkQuerySet(models.QuerySet):
    def usable(self):
        """Links that still open a first setup: not used, not expired, for an active staff account."""
        return self.filter(
            used_at__isnull=True, expires_at__gt=timezone.now(), user__is_active=True, user__is_staff=True
        )


class SetupLink(models.Model):
    """What a staff member's first authenticator app is set up with, beside their password: made by
    an administrator (the admin's users, or `manage.py setup_link`), shown to them once, used once.
    Without it, whoever learned the password of someone not yet enrolled could enrol their own
    phone first and pass the second factor as them."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="setup_links")
    # SHA-256 of the link's key, hex, as an API token's: the key itself is never stored.
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", editable=False
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(editable=False)
    used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = SetupLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="setup_link_expires_after_creation"
            ),
        ]

    def __str__(self):
        return f"Setup link for {self.user} made {self.created_at:%Y-%m-%d %H:%M} UTC"


class SignInAddress(models.Model):
    """A client address (accounts.clients.client_ip: an IPv6 client's /64) from which an account
    finished signing in: its password, and its second factor when it has one. Such an address is
    familiar to the account for TRACKER_LOCKOUT_FAMILIAR_DAYS after the last time, and meets only
    the lockout of the account at that address, not the account's or the address's wide bounds
    (accounts.lockout): whoever keeps guessing an account's password from elsewhere cannot lock
    its owner out of the places the owner signs in from."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sign_in_addresses")
    address = models.GenericIPAddressField()
    last_signed_in_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Serves the lookup each sign-in attempt makes (is this address familiar to the account?)
            # and the upsert each finished sign-in makes.
            models.UniqueConstraint(fields=["user", "address"], name="sign_in_address_once_per_account"),
        ]

    def __str__(self):
        return f"{self.user} from {self.address}"
