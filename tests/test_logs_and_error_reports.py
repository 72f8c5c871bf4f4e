"""What reaches the server's logs and error reports, which the operator (or a contractor running the
server, or a log service) reads: no secret (a password, a code, a setup link's key) and nothing a
reader without Confidential access may not see."""

import logging
from base64 import b32encode
from unittest import mock

import pytest
from django.core import mail
from django.db import DatabaseError
from django.test import Client
from django.utils.log import AdminEmailHandler
from rest_framework.test import APIClient

from accounts.models import SetupLink
from accounts.services import setup_link_create
from incidents import roles
from tests.factories import make_user
from tests.test_accounts import PASSWORD, SETUP_LINK, follow_setup_link, signed_in_with_second_factor
from tests.test_settings import start_up


def test_a_setup_link_whose_key_reached_the_log_in_its_path_no_longer_works(caplog):
    # Links carried their key in the path (`/accounts/two-factor/setup/<key>/`) until it moved after
    # the `#`; such a link opened now answers 404, and Django logs the path, key and all.
    analyst = make_user(roles.ANALYST)
    _, key = setup_link_create(user=analyst)

    with caplog.at_level(logging.WARNING):
        opened = Client().get(f"/accounts/two-factor/setup/{key}/")
    assert opened.status_code == 404
    assert key in caplog.text

    # Whoever reads that line (or the access log's) may not set up their phone with it.
    assert follow_setup_link(Client(), f"{SETUP_LINK}#{key}").status_code == 404
    assert not SetupLink.objects.usable().filter(user=analyst).exists()


@pytest.fixture
def errors_mailed(settings):
    """The operator has Django mail its errors to them (ADMINS, and Django's AdminEmailHandler on
    `django.request`, with the HTML version that lists each frame's local variables), as Django's
    error reporting describes; a log service's client that uses Django's filter reports the same."""
    settings.ADMINS = ["ops@example.org"]
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    handler = AdminEmailHandler(include_html=True)
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)


def mailed_report() -> str:
    (message,) = mail.outbox
    return message.body + "".join(str(content) for content, _ in message.alternatives)


def server_error(client, path: str, data: dict, *, inside: str):
    """`client` posts `data` to `path`, and the server fails at `inside` (a database gone away)."""
    client.raise_request_exception = False
    with mock.patch(inside, side_effect=DatabaseError("the server closed the connection unexpectedly")):
        response = client.post(path, data)
    assert response.status_code == 500
    return response


@pytest.mark.usefixtures("errors_mailed")
class TestErrorReports:
    def test_a_server_error_while_confirming_who_one_is_mails_no_password(self):
        client = Client()
        client.force_login(make_user(roles.ANALYST))
        server_error(
            client,
            "/accounts/confirm/",
            {"password": PASSWORD, "next": "/admin/"},
            inside="accounts.views.identity_confirmed_now",
        )
        report = mailed_report()
        assert "identity_confirmed_now" in report and "password" in report
        assert PASSWORD not in report

    def test_a_server_error_before_the_admin_login_page_mails_no_password(self):
        # Django's login view hides its password from reports, but the throttle and lockout run first.
        analyst = make_user(roles.ANALYST)
        server_error(
            Client(),
            "/admin/login/",
            {"username": analyst.username, "password": PASSWORD, "next": "/admin/"},
            inside="accounts.admin_site.sign_in_throttled",
        )
        assert PASSWORD not in mailed_report()

    def test_a_server_error_while_opening_a_setup_link_mails_no_key(self):
        # The link is not used: its key, mailed, would still set up a phone for the account.
        _, key = setup_link_create(user=make_user(roles.ANALYST))
        server_error(Client(), SETUP_LINK, {"key": key}, inside="accounts.views.setup_link_find")
        assert key not in mailed_report()
        assert SetupLink.objects.usable().exists()

    def test_a_server_error_while_asking_for_an_api_token_mails_no_password(self):
        analyst = make_user(roles.ANALYST)
        body = {"username": analyst.username, "password": PASSWORD, "name": "nightly sync"}
        server_error(APIClient(), "/api/v1/auth/token/", body, inside="accounts.api.token_create")
        assert PASSWORD not in mailed_report()

    def test_a_server_error_while_showing_a_new_app_mails_no_secret_of_it(self):
        # The report's HTML lists each frame's local variables: the setup page holds the app's key.
        analyst, client = make_user(roles.ANALYST), Client()
        _, key = setup_link_create(user=analyst)
        client.post(SETUP_LINK, {"key": key})
        client.force_login(analyst)
        client.raise_request_exception = False
        with mock.patch("accounts.views.qr_code_svg", side_effect=DatabaseError("out of memory")):
            assert client.get("/accounts/two-factor/setup/").status_code == 500
        (device,) = analyst.totpdevice_set.all()
        secret = b32encode(device.bin_key).decode()
        report = mailed_report()
        assert "qr_code_svg" in report
        assert secret[:16] not in report.replace(" ", "")

    def test_a_server_error_while_making_setup_links_mails_none_of_them(self, settings):
        settings.REQUIRE_2FA = True
        administrator, analyst = make_user(roles.REVIEWER, is_superuser=True), make_user(roles.ANALYST)
        client = signed_in_with_second_factor(administrator, confirmed=True)
        client.raise_request_exception = False
        with mock.patch("accounts.admin.add_never_cache_headers", side_effect=DatabaseError("out of memory")):
            made = client.post("/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [analyst.pk]})
        assert made.status_code == 500
        assert "make_setup_links" in mailed_report()
        assert "/accounts/two-factor/setup/link/#" not in mailed_report()


def test_a_redis_address_refused_at_the_start_up_is_not_written_with_its_password():
    # Docker's links name the server `tcp://…`; the start-up's error reaches the service's log.
    result = start_up(REDIS_URL="tcp://:gUtT3r-s3cret@cache.internal:6379/0")
    assert result.returncode != 0
    assert "ImproperlyConfigured: REDIS_URL must start with redis://, rediss:// or unix://" in result.stderr
    assert "gUtT3r-s3cret" not in result.stderr
