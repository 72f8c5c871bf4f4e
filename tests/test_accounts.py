"""Accounts through their doors: the admin's sign-in with a second factor, the lockout after
failed attempts, API tokens, throttling by client, and the security headers.

Throttling and lockout across worker processes are tested through the real server in
tests/test_accounts_server.py; the browser flow in tests/test_browser.py."""

import hashlib
import importlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from base64 import b32encode
from datetime import timedelta

import pytest
import time_machine
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F
from django.test import Client
from django.utils import timezone
from django_otp.oath import TOTP, hotp
from django_otp.plugins.otp_static.models import StaticToken
from rest_framework.test import APIClient

from accounts.models import ApiToken, SetupLink
from accounts.services import (
    authenticator_confirm,
    authenticator_start,
    second_factor_enrolled,
    setup_link_create,
    token_create,
)
from incidents import roles
from incidents.models import ConfidentialAccess
from tests.api_support import API
from tests.factories import make_incident, make_user

PASSWORD = "correct horse battery staple"
SETUP_LINK = "/accounts/two-factor/setup/link/"


def app_code(device, steps_ahead: int = 0) -> str:
    """The code the authenticator app shows `steps_ahead` periods after the one whose code `device`
    last accepted as this object knows it (`enrol`'s device: the code that set it up); for a device
    that accepted none yet, `steps_ahead` periods from now.

    Counted from that period, not from the clock: django-otp moves a device's drift to the period
    of each code it accepts, so "one period ahead" is one ahead of the server's last accepted code.
    Counted from the clock, a code made as one 30-second period ended and checked as the next began
    was accepted without moving the drift, and the next one ("two periods ahead") was then refused
    as too far ahead: a rare failure of any test using two codes."""
    if device.last_t < 0:
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time() + steps_ahead * device.step
        return f"{totp.token():0{device.digits}d}"
    return f"{hotp(device.bin_key, device.last_t + steps_ahead, digits=device.digits):0{device.digits}d}"


def enrol(user):
    """`user` set up an authenticator app (a first one with a setup link, a later one in a session
    the current app verified): the device and the recovery codes."""
    current_app = user.totpdevice_set.filter(confirmed=True).first()
    setup_link_id = None if second_factor_enrolled(user) else setup_link_create(user=user)[0].pk
    device = authenticator_start(user=user)
    codes = authenticator_confirm(
        user=user, device=device, code=app_code(device), setup_link_id=setup_link_id, verified_by=current_app
    )
    return device, codes


def open_setup_link(client, user) -> str:
    """A setup link made for `user`, opened in `client`'s session; its key."""
    _, key = setup_link_create(user=user)
    client.post(SETUP_LINK, {"key": key})
    return key


def follow_setup_link(client, link: str):
    """What a browser does with a setup link: it loads the page before the `#`, all it sends, whose
    script then posts the key after it (the browser test runs the script)."""
    path, _, key = link.removeprefix("http://testserver").partition("#")
    page = client.get(path)
    assert page.status_code == 200 and key not in page.content.decode()
    return client.post(path, {"key": key})


def setup_key(page) -> str:
    """The key of the authenticator app that the setup page shows, without its spaces."""
    return re.search(r'<code id="setup-key">([A-Z2-7 ]+)</code>', page.content.decode())[1].replace(" ", "")


def shown_on(page) -> dict:
    """What the setup page's form posts to name the key it showed: a code confirms that key only
    while the page is the last one shown."""
    return {"shown": re.search(r'<input type="hidden" name="shown" value="([^"]+)">', page.content.decode())[1]}


def sign_in(client, user, password=PASSWORD):
    return client.post("/admin/login/", {"username": user.username, "password": password, "next": "/admin/"})


def second_step(client, code):
    return client.post("/accounts/two-factor/", {"code": code, "next": "/admin/"})


@pytest.fixture
def second_factor_on(settings):
    settings.REQUIRE_2FA = True


@pytest.mark.usefixtures("second_factor_on")
class TestSecondFactor:
    def test_a_password_alone_does_not_open_the_admin_to_staff(self):
        analyst, client = make_user(roles.ANALYST), Client()
        enrol(analyst)
        response = sign_in(client, analyst)
        assert response.status_code == 302
        assert response["Location"] == "/accounts/two-factor/?next=%2Fadmin%2F"
        assert client.get("/admin/").status_code == 302
        assert client.get("/admin/incidents/incident/").url.startswith("/admin/login/")

    def test_the_code_from_the_app_opens_the_admin(self):
        analyst, client = make_user(roles.ANALYST), Client()
        device, _ = enrol(analyst)
        sign_in(client, analyst)
        response = second_step(client, app_code(device, steps_ahead=1))
        assert (response.status_code, response["Location"]) == (302, "/admin/")
        assert client.get("/admin/").status_code == 200

    def test_a_wrong_code_is_refused_with_a_clear_message(self):
        analyst, client = make_user(roles.ANALYST), Client()
        device, _ = enrol(analyst)
        sign_in(client, analyst)
        wrong = "000000" if app_code(device, 1) != "000000" else "111111"
        response = second_step(client, wrong)
        assert response.status_code == 200
        assert "That code is not right" in response.content.decode()
        assert client.get("/admin/").status_code == 302

    def test_a_right_code_typed_while_codes_wait_after_wrong_ones_is_told_when_to_try_again(self, settings):
        # After a wrong code each device waits before it checks another, whoever types it: here 10
        # minutes (django-otp's factor; by default 1 second, doubling with each wrong code), longer
        # than this test takes.
        settings.OTP_TOTP_THROTTLE_FACTOR = settings.OTP_STATIC_THROTTLE_FACTOR = 600
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        thief, own = Client(REMOTE_ADDR="203.0.113.9"), Client(REMOTE_ADDR="198.51.100.7")
        sign_in(thief, analyst)
        wrong = "000000" if app_code(device, 1) != "000000" else "111111"
        assert "That code is not right" in second_step(thief, wrong).content.decode()
        sign_in(own, analyst)
        response = second_step(own, app_code(device, 1))
        page = response.content.decode()
        assert response.status_code == 200 and "That code is not right" not in page
        assert "The code was not checked: too many wrong codes were typed for this account recently" in page
        assert "Try again in 10 minutes." in page
        assert own.get("/admin/").status_code == 302
        # Ten minutes on, the app's code is checked and opens the admin.
        for devices in (analyst.totpdevice_set, analyst.staticdevice_set):
            devices.update(throttling_failure_timestamp=F("throttling_failure_timestamp") - timedelta(minutes=10))
        assert second_step(own, app_code(device, 1))["Location"] == "/admin/"
        assert own.get("/admin/").status_code == 200

    def test_setting_up_the_app_says_when_it_checks_a_code_again_after_a_wrong_one(self, settings):
        settings.OTP_TOTP_THROTTLE_FACTOR = 600
        analyst, client = make_user(roles.ANALYST), Client()
        open_setup_link(client, analyst)
        sign_in(client, analyst)
        setup_page = client.get("/accounts/two-factor/setup/")
        device = analyst.totpdevice_set.get(confirmed=False)
        wrong = "000000" if app_code(device) != "000000" else "111111"

        def set_up(code):
            return client.post("/accounts/two-factor/setup/", {"code": code, "next": "/admin/", **shown_on(setup_page)})

        assert "That code does not match" in set_up(wrong).content.decode()
        page = set_up(app_code(device)).content.decode()
        assert "The code was not checked" in page and "Try again in 10 minutes." in page
        analyst.totpdevice_set.update(
            throttling_failure_timestamp=F("throttling_failure_timestamp") - timedelta(minutes=10)
        )
        assert len(set_up(app_code(device)).context["codes"]) == 10

    def test_a_recovery_code_works_once(self):
        analyst = make_user(roles.ANALYST)
        _, codes = enrol(analyst)
        first, second = Client(), Client()
        sign_in(first, analyst)
        assert second_step(first, codes[0])["Location"] == "/admin/"
        sign_in(second, analyst)
        assert second_step(second, codes[0]).status_code == 200
        assert second.get("/admin/").status_code == 302
        assert StaticToken.objects.filter(device__user=analyst).count() == 9

    def test_a_recovery_code_copied_in_capitals_works(self):
        # The codes are shown in lower case; written down by hand, or typed on a phone that
        # capitalises, they were refused as wrong and counted towards the lockout.
        analyst, client = make_user(roles.ANALYST), Client()
        _, codes = enrol(analyst)
        sign_in(client, analyst)
        assert second_step(client, codes[0].upper())["Location"] == "/admin/"
        body = {"username": analyst.username, "password": PASSWORD, "otp": codes[1].capitalize()}
        assert APIClient().post(f"{API}/auth/token/", body).status_code == 200
        assert StaticToken.objects.filter(device__user=analyst).count() == 8
        assert not AccessAttempt.objects.exists()

    def test_a_recovery_code_does_not_make_the_app_wait(self):
        # The app was asked first and refused the recovery code as a wrong code of its own: the
        # owner's next app code was "not checked: too many wrong codes", and counted as a failed
        # sign-in towards the lockout.
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        body = {"username": analyst.username, "password": PASSWORD}
        assert APIClient().post(f"{API}/auth/token/", {**body, "otp": codes[0]}).status_code == 200

        assert APIClient().post(f"{API}/auth/token/", {**body, "otp": app_code(device, 1)}).status_code == 200
        device.refresh_from_db()
        assert device.throttling_failure_count == 0
        assert not AccessAttempt.objects.exists()

    def test_staff_without_a_second_factor_set_one_up_from_a_qr_code_drawn_here(self):
        analyst, client = make_user(roles.ANALYST), Client()
        open_setup_link(client, analyst)
        sign_in(client, analyst)
        setup_page = client.get("/accounts/two-factor/?next=/admin/", follow=True)
        page = setup_page.content.decode()
        assert setup_page.redirect_chain[-1][0] == "/accounts/two-factor/setup/?next=%2Fadmin%2F"
        # The QR code is markup in the page, not an image fetched from anywhere.
        assert re.search(r'<div class="qr-code" id="qr-code"[^>]*><svg', page) and "<img" not in page
        device = analyst.totpdevice_set.get(confirmed=False)
        response = client.post(
            "/accounts/two-factor/setup/", {"code": app_code(device), "next": "/admin/", **shown_on(setup_page)}
        )
        assert response.status_code == 200
        assert len(response.context["codes"]) == 10
        assert client.get("/admin/").status_code == 200

    def test_replacing_the_app_needs_the_current_second_factor_first(self):
        analyst, client = make_user(roles.ANALYST), Client()
        enrol(analyst)
        sign_in(client, analyst)
        response = client.get("/accounts/two-factor/setup/")
        assert response.url.startswith("/accounts/two-factor/?next=")
        assert analyst.totpdevice_set.count() == 1

    def test_a_session_a_recovery_code_verified_cannot_move_the_second_factor_to_a_new_app(self):
        # A recovery code signs in once without the phone. Moving to a new app from that session
        # deleted the owner's app and codes: a thief with the password and one code owned the
        # account's second factor for good, and the owner was locked out.
        analyst = make_user(roles.ANALYST)
        owners_device, codes = enrol(analyst)
        thief = Client()
        sign_in(thief, analyst)
        assert second_step(thief, codes[0])["Location"] == "/admin/"

        response = thief.get("/accounts/two-factor/setup/", follow=True)

        assert response.redirect_chain[-1][0] == "/accounts/"
        assert "needs your current authenticator app" in response.content.decode()
        assert list(analyst.totpdevice_set.all()) == [owners_device]
        refused = thief.post("/accounts/two-factor/setup/", {"code": app_code(owners_device, 1)})
        assert refused.status_code == 302 and list(analyst.totpdevice_set.all()) == [owners_device]
        owner = Client()
        sign_in(owner, analyst)
        assert second_step(owner, app_code(owners_device, 1))["Location"] == "/admin/"

    def test_a_stolen_session_cannot_move_the_second_factor_to_a_new_app_without_the_current_one(self, settings):
        # A session lasts a working day. Whoever stole the cookie of one the app verified set up
        # their own phone on it with its code alone, which deleted the owner's app and codes and
        # gave them new ones: the account's second factor for good, its owner locked out.
        settings.OTP_TOTP_THROTTLE_FACTOR = 0  # each code is checked, right after a wrong one too
        analyst = make_user(roles.ANALYST)
        owners_device, codes = enrol(analyst)
        owner = Client()
        sign_in(owner, analyst)
        second_step(owner, app_code(owners_device, 1))
        # Stolen just after its owner confirmed who they are (a new key), as a new app needs.
        confirm_identity(owner, code=app_code(owners_device, 2))
        thief = Client()
        thief.cookies = owner.cookies

        setup_page = thief.get("/accounts/two-factor/setup/")
        new_app = analyst.totpdevice_set.get(confirmed=False)
        wrong = "000000" if app_code(owners_device, 3) != "000000" else "111111"
        refusals = {
            current_code: thief.post(
                "/accounts/two-factor/setup/",
                {"code": app_code(new_app), "current-code": current_code, **shown_on(setup_page)},
            )
            for current_code in ("", wrong, codes[0])
        }
        assert list(analyst.totpdevice_set.filter(confirmed=True)) == [owners_device]
        assert "Code from your current app" in setup_page.content.decode()
        assert "Type the code your current authenticator app shows now." in refusals[""].content.decode()
        assert all("That code is not right" in refusals[code].content.decode() for code in (wrong, codes[0]))
        # A wrong code counts towards the lockout; a recovery code is no app's code, and is not spent.
        attempt = AccessAttempt.objects.get(username=analyst.username)
        assert attempt.failures_since_start == 2 and wrong not in attempt.post_data
        assert StaticToken.objects.filter(device__user=analyst, token=codes[0]).exists()

        moved = owner.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(new_app), "current-code": app_code(owners_device, 3), **shown_on(setup_page)},
        )
        assert len(moved.context["codes"]) == 10
        assert list(analyst.totpdevice_set.all()) == [new_app]

    def test_a_new_apps_key_is_shown_only_to_the_session_that_began_it(self, settings):
        # Every session of the account was shown the same unconfirmed app: whoever held a verified
        # session's cookie for a moment read its key, and when the owner later moved to a new phone
        # in their own session, they were shown that key, confirmed it, and the thief computed
        # the account's codes for good.
        settings.OTP_TOTP_THROTTLE_FACTOR = 0
        analyst = make_user(roles.ANALYST)
        owners_device, _ = enrol(analyst)
        owner = Client()
        sign_in(owner, analyst)
        second_step(owner, app_code(owners_device, 1))
        confirm_identity(owner, code=app_code(owners_device, 2))
        thief = Client()
        thief.cookies = owner.cookies
        stolen_key = setup_key(thief.get("/accounts/two-factor/setup/"))
        owner.post("/accounts/sign-out/")

        later = Client()
        sign_in(later, analyst)
        second_step(later, app_code(owners_device, 3))
        confirm_identity(later, code=app_code(owners_device, 4))
        later_page = later.get("/accounts/two-factor/setup/")
        shown_key = setup_key(later_page)
        new_app = analyst.totpdevice_set.get(confirmed=False)
        moved = later.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(new_app), "current-code": app_code(owners_device, 5), **shown_on(later_page)},
        )

        assert len(moved.context["codes"]) == 10
        assert shown_key != stolen_key
        assert b32encode(analyst.totpdevice_set.get(confirmed=True).bin_key).decode() == shown_key

    def test_a_code_confirms_only_the_key_its_session_was_shown(self, settings):
        # Two sessions each shown a key: the later one replaces the earlier's app, whose code then
        # confirms nothing (nor is the current app's code beside it checked); the earlier page shows
        # a new key, which its code then confirms.
        settings.OTP_TOTP_THROTTLE_FACTOR = 0
        analyst = make_user(roles.ANALYST)
        owners_device, _ = enrol(analyst)
        first, second = Client(), Client()
        for step, client in enumerate((first, second), start=1):
            sign_in(client, analyst)
            second_step(client, app_code(owners_device, step))
        for step, client in enumerate((first, second), start=3):
            confirm_identity(client, code=app_code(owners_device, step))
        first_page = first.get("/accounts/two-factor/setup/")
        first_key, first_app = setup_key(first_page), analyst.totpdevice_set.get(confirmed=False)
        second_key = setup_key(second.get("/accounts/two-factor/setup/"))

        refused = first.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(first_app), "current-code": app_code(owners_device, 5), **shown_on(first_page)},
        )

        assert second_key != first_key
        assert "This page&#x27;s key was replaced" in refused.content.decode()
        assert list(analyst.totpdevice_set.filter(confirmed=True)) == [owners_device]
        assert not AccessAttempt.objects.exists()  # the current app's code was not checked
        new_key = setup_key(refused)
        assert new_key not in (first_key, second_key)
        new_app = analyst.totpdevice_set.get(confirmed=False)
        moved = first.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(new_app), "current-code": app_code(owners_device, 5), **shown_on(refused)},
        )
        assert len(moved.context["codes"]) == 10
        assert list(analyst.totpdevice_set.all()) == [new_app]
        assert b32encode(new_app.bin_key).decode() == new_key

    def test_a_thief_with_the_owners_own_session_cookie_never_learns_the_key_the_owner_confirms(self, settings):
        # The pending app was the session's: a thief holding the cookie of the session the owner
        # goes on using opened the page and read its key, the owner's next visit to the page showed
        # them that key again, and their current app's code confirmed it for the thief. Each showing
        # of the page now makes a new key, and a code confirms only the key of the last page shown.
        settings.OTP_TOTP_THROTTLE_FACTOR = 0
        analyst = make_user(roles.ANALYST)
        owners_device, _ = enrol(analyst)
        owner = Client()
        sign_in(owner, analyst)
        second_step(owner, app_code(owners_device, 1))
        # Stolen while confirmed: a session not confirmed shows no setup page (TestStolenSession).
        confirm_identity(owner, code=app_code(owners_device, 2))
        thief = Client()
        thief.cookies = owner.cookies
        thiefs_page = thief.get("/accounts/two-factor/setup/")
        stolen_key, thiefs_app = setup_key(thiefs_page), analyst.totpdevice_set.get(confirmed=False)

        owners_page = owner.get("/accounts/two-factor/setup/")  # days later, the same session
        shown_key, new_app = setup_key(owners_page), analyst.totpdevice_set.get(confirmed=False)
        # The thief's page, and a post naming no page, confirm nothing and check no current code.
        for refused in (
            thief.post(
                "/accounts/two-factor/setup/",
                {"code": app_code(thiefs_app), "current-code": app_code(owners_device, 3), **shown_on(thiefs_page)},
            ),
            thief.post("/accounts/two-factor/setup/", {"code": app_code(new_app), "current-code": "000000"}),
        ):
            assert "This page&#x27;s key was replaced" in refused.content.decode()
            assert setup_key(refused) not in (stolen_key, shown_key)
        assert not AccessAttempt.objects.exists()
        assert list(analyst.totpdevice_set.filter(confirmed=True)) == [owners_device]
        # Those showings replaced the owner's key in turn: their page says so and shows a new one.
        refused = owner.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(new_app), "current-code": app_code(owners_device, 3), **shown_on(owners_page)},
        )
        assert "This page&#x27;s key was replaced" in refused.content.decode()
        owners_key, owners_app = setup_key(refused), analyst.totpdevice_set.get(confirmed=False)
        moved = owner.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(owners_app), "current-code": app_code(owners_device, 3), **shown_on(refused)},
        )

        assert len(moved.context["codes"]) == 10
        assert shown_key != stolen_key and owners_key not in (stolen_key, shown_key)
        assert b32encode(analyst.totpdevice_set.get(confirmed=True).bin_key).decode() == owners_key

    def test_a_new_app_ends_the_other_sessions_verification(self):
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        elsewhere, here = Client(), Client()
        sign_in(elsewhere, analyst)
        second_step(elsewhere, app_code(device, 1))
        assert elsewhere.get("/admin/").status_code == 200

        sign_in(here, analyst)
        _, codes = enrol(analyst)  # the device this session set up replaces the old one
        second_step(here, codes[0])
        assert here.get("/admin/").status_code == 200
        assert elsewhere.get("/admin/").status_code == 302

    def test_an_unverified_session_in_the_admin_is_sent_to_the_second_step(self):
        analyst, client = make_user(roles.ANALYST), Client()
        enrol(analyst)
        sign_in(client, analyst)
        response = client.get("/admin/incidents/incident/", follow=True)
        assert response.redirect_chain[-1][0] == "/accounts/two-factor/?next=%2Fadmin%2Fincidents%2Fincident%2F"
        assert "Second step" in response.content.decode()

    def test_a_password_alone_reads_the_public_pages_as_an_anonymous_visitor(self):
        # A thief with a reviewer's password, who may see confidential records once signed in.
        reviewer, thief = make_user(roles.REVIEWER, confidential=True), Client()
        enrol(reviewer)
        draft = make_incident(title="Informant's testimony", confidential=True, review_state="draft")
        make_incident(title="Confidential account", confidential=True)
        sign_in(thief, reviewer)
        assert_reads_as_anonymous(thief, draft)

    def test_async_code_sees_a_password_alone_as_anonymous_too(self):
        analyst, thief = make_user(roles.ANALYST), Client()
        enrol(analyst)
        sign_in(thief, analyst)
        request = thief.get("/").wsgi_request
        assert not async_to_sync(request.auser)().is_authenticated

    def test_a_session_whose_second_factor_was_replaced_reads_the_public_pages_as_anonymous(self):
        reviewer, elsewhere = make_user(roles.REVIEWER, confidential=True), Client()
        device, _ = enrol(reviewer)
        draft = make_incident(title="Informant's testimony", confidential=True, review_state="draft")
        make_incident(title="Confidential account", confidential=True)
        sign_in(elsewhere, reviewer)
        second_step(elsewhere, app_code(device, 1))
        assert elsewhere.get(f"/incidents/{draft.public_id}/").status_code == 200
        assert "Confidential account" in b"".join(elsewhere.get("/incidents.csv").streaming_content).decode()
        assert ConfidentialAccess.objects.filter(user=reviewer).exists()

        enrol(reviewer)  # a new authenticator app, set up from another browser
        assert_reads_as_anonymous(elsewhere, draft)

    def test_new_recovery_codes_end_the_sessions_an_old_code_verified(self):
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        thief, owner = Client(), Client()
        sign_in(thief, analyst)
        second_step(thief, codes[0])
        assert thief.get("/admin/").status_code == 200
        # The analyst notices the printed codes are gone and makes new ones on Sign-in security,
        # from a session that one of the old codes verified too.
        sign_in(owner, analyst)
        second_step(owner, codes[1])
        key_before = owner.session.session_key
        response = owner.post("/accounts/recovery-codes/", {"code": app_code(device, 1)})
        assert response.status_code == 200 and len(response.context["codes"]) == 10
        assert thief.get("/admin/").status_code == 302
        assert owner.get("/admin/").status_code == 200
        assert owner.session.session_key != key_before

    def test_new_recovery_codes_keep_a_session_the_app_verified(self):
        analyst, client = make_user(roles.ANALYST), Client()
        device, _ = enrol(analyst)
        sign_in(client, analyst)
        second_step(client, app_code(device, 1))
        # The app's next code: the one that signed in cannot be used again.
        codes = client.post("/accounts/recovery-codes/", {"code": app_code(device, 2)}).context["codes"]
        assert client.get("/admin/").status_code == 200
        other = Client()
        sign_in(other, analyst)
        assert second_step(other, codes[0])["Location"] == "/admin/"

    def test_a_session_owing_its_second_factor_can_sign_out(self):
        analyst, client = make_user(roles.ANALYST), Client()
        enrol(analyst)
        sign_in(client, analyst)
        assert client.post("/accounts/sign-out/").status_code == 302
        assert client.get("/accounts/two-factor/").url.startswith("/admin/login/")

    def test_session_use_of_the_api_needs_the_second_factor(self):
        analyst, client = make_user(roles.ANALYST), Client()
        device, _ = enrol(analyst)
        draft = make_incident(review_state="draft")
        sign_in(client, analyst)
        response = client.get(f"{API}/incidents/{draft.public_id}/")
        assert response.status_code == 401
        assert "second factor" in response.json()["detail"]
        second_step(client, app_code(device, 1))
        assert client.get(f"{API}/incidents/{draft.public_id}/").status_code == 200

    def test_the_token_endpoint_asks_staff_for_their_code(self):
        analyst, client = make_user(roles.ANALYST), APIClient()
        device, _ = enrol(analyst)
        body = {"username": analyst.username, "password": PASSWORD}
        refused = client.post(f"{API}/auth/token/", body)
        assert refused.status_code == 400 and "otp" in refused.json()
        answer = client.post(f"{API}/auth/token/", {**body, "otp": app_code(device, 1)})
        assert answer.status_code == 200 and answer.json()["token"].startswith("trk_")

    def test_the_token_endpoint_says_when_codes_are_checked_again_after_wrong_ones(self, settings):
        settings.OTP_TOTP_THROTTLE_FACTOR = settings.OTP_STATIC_THROTTLE_FACTOR = 600
        analyst, client = make_user(roles.ANALYST), APIClient()
        device, _ = enrol(analyst)
        body = {"username": analyst.username, "password": PASSWORD}
        wrong = "000000" if app_code(device, 1) != "000000" else "111111"
        refused = client.post(f"{API}/auth/token/", {**body, "otp": wrong})
        assert refused.status_code == 400 and "That code is not right" in refused.json()["otp"][0]
        refused = client.post(f"{API}/auth/token/", {**body, "otp": app_code(device, 1)})
        assert refused.status_code == 400
        assert (
            "The code was not checked" in refused.json()["otp"][0]
            and "Try again in 10 minutes." in refused.json()["otp"][0]
        )
        assert not ApiToken.objects.exists()

    def test_a_staff_token_reads_drafts_without_a_session(self):
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        draft = make_incident(review_state="draft")
        body = {"username": analyst.username, "password": PASSWORD, "otp": app_code(device, 1)}
        key = APIClient().post(f"{API}/auth/token/", body).json()["token"]
        assert bearer(key).get(f"{API}/incidents/{draft.public_id}/").status_code == 200

    def test_staff_without_a_second_factor_are_told_to_set_one_up_before_getting_a_token(self):
        analyst = make_user(roles.ANALYST)
        refused = APIClient().post(f"{API}/auth/token/", {"username": analyst.username, "password": PASSWORD})
        assert refused.status_code == 400
        message = refused.json()["otp"][0]
        assert "set up its second factor first" in message
        # A password alone no longer leads to the app's setup in the admin: the answer says whom to ask.
        assert "ask an administrator for a setup link" in message and "sign in to the admin" not in message

    def test_accounts_that_are_not_staff_need_no_second_factor(self):
        partner = make_user(None)
        answer = APIClient().post(f"{API}/auth/token/", {"username": partner.username, "password": PASSWORD})
        assert answer.status_code == 200


def assert_reads_as_anonymous(client, draft):
    """`client`'s session sees what an anonymous visitor sees on the public pages and their exports,
    and reads nothing confidential under its account's name."""
    recorded = ConfidentialAccess.objects.count()
    assert client.get(f"/incidents/{draft.public_id}/").status_code == 404
    assert client.get(f"/incidents/{draft.public_id}.csv").status_code == 404
    exported = b"".join(client.get("/incidents.csv").streaming_content).decode()
    assert "Confidential account" not in exported and "Informant's testimony" not in exported
    assert "Confidential account" not in client.get("/").content.decode()
    assert "Confidential account" not in client.get("/incidents.geojson").content.decode()
    assert ConfidentialAccess.objects.count() == recorded


def test_administrators_reset_a_second_factor_without_seeing_its_secrets():
    administrator, analyst = make_user(roles.REVIEWER, is_superuser=True), make_user(roles.ANALYST)
    device, codes = enrol(analyst)
    client = Client()
    client.force_login(administrator)
    confirm_identity(client)
    # Where to look, said in the admin's menu (not django-otp's labels "Otp_Totp", "Otp_Static").
    index = client.get("/admin/").content.decode()
    assert "Second factor: authenticator apps" in index and "Second factor: recovery codes" in index
    page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/").content.decode()
    assert analyst.username in page and device.key not in page
    static = analyst.staticdevice_set.get()
    page = client.get(f"/admin/otp_static/staticdevice/{static.pk}/change/").content.decode()
    assert not any(code in page for code in codes)
    assert client.get(f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/").status_code == 403
    client.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
    assert not analyst.totpdevice_set.exists()


def signed_in_with_second_factor(user, *, confirmed: bool = False) -> Client:
    """`user`'s session that passed the second factor; `confirmed`: that then confirmed who it is,
    as changing accounts in the admin needs (accounts.confirmation)."""
    device, _ = enrol(user)
    client = Client()
    sign_in(client, user)
    # The next period's code: the one enrolling used cannot be used again.
    assert second_step(client, app_code(device, 1))["Location"] == "/admin/"
    if confirmed:
        confirm_identity(client, code=app_code(device, 2))
    return client


def confirm_identity(client, *, code: str | None = None):
    """The session's owner confirms who they are (their password, and a current code when they have
    a second factor), as the admin asks before changes to accounts, roles and second factors."""
    body = {"password": PASSWORD, "next": "/admin/", **({"code": code} if code else {})}
    assert client.post("/accounts/confirm/", body)["Location"] == "/admin/"


@pytest.mark.usefixtures("second_factor_on")
class TestSetupLinks:
    """A first authenticator app needs a setup link from an administrator beside the password: whoever
    learns the password of someone not yet enrolled cannot set up their own phone in that name."""

    def test_a_password_alone_cannot_set_up_a_first_app(self):
        analyst, client = make_user(roles.ANALYST), Client()
        sign_in(client, analyst)

        led_to = client.get("/accounts/two-factor/?next=/admin/", follow=True)
        posted = client.post("/accounts/two-factor/setup/", {"code": "123456", "next": "/admin/"})

        for response in (led_to, posted):
            assert response.status_code == 403
            assert "setup link" in response.content.decode() and "qr-code" not in response.content.decode()
        # No secret was made to show, and nothing opens the admin.
        assert not analyst.totpdevice_set.exists()
        assert client.get("/admin/").status_code == 302

    def test_an_administrator_makes_a_link_the_person_opens_then_signs_in(self):
        administrator, analyst = make_user(roles.REVIEWER, is_superuser=True), make_user(roles.ANALYST)
        admin_client, client = signed_in_with_second_factor(administrator, confirmed=True), Client()

        made = admin_client.post("/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [analyst.pk]})
        assert made.status_code == 200 and "no-store" in made["Cache-Control"]
        ((user, link),) = made.context["links"]
        # Its key comes after the "#", which a browser never sends: no access log holds a working link.
        assert user == analyst and link.startswith("http://testserver/accounts/two-factor/setup/link/#")
        # The link alone signs nobody in: it leads to the password.
        opened = follow_setup_link(client, link)
        assert opened.status_code == 302 and opened["Location"].startswith("/admin/login/?next=")
        assert client.get("/admin/").status_code == 302
        to_setup = client.post(
            "/admin/login/",
            {"username": analyst.username, "password": PASSWORD, "next": "/accounts/two-factor/setup/"},
            follow=True,
        )
        assert to_setup.redirect_chain[-1][0].startswith("/accounts/two-factor/setup/")
        assert "qr-code" in to_setup.content.decode()
        device = analyst.totpdevice_set.get(confirmed=False)
        response = client.post(
            "/accounts/two-factor/setup/", {"code": app_code(device), "next": "/admin/", **shown_on(to_setup)}
        )

        assert len(response.context["codes"]) == 10
        assert client.get("/admin/").status_code == 200
        assert SetupLink.objects.get(user=analyst).used_at is not None
        # Used: the link works no more, for anyone.
        assert follow_setup_link(Client(), link).status_code == 404
        links_page = admin_client.get("/admin/accounts/setuplink/").content.decode()
        assert analyst.username in links_page and administrator.username in links_page

    def test_after_the_recovery_codes_the_link_leads_to_the_admin_not_back_to_the_setup(self):
        # Each step passes on the `next` the one before gave: the link's sign-in named the setup page
        # itself, so "I have kept them: continue" led to it again, offering to replace the app just
        # set up (every new staff member met it on their first sign-in).
        analyst, client = make_user(roles.ANALYST), Client()
        _, key = setup_link_create(user=analyst)
        to_login = follow_setup_link(client, f"{SETUP_LINK}#{key}")
        login_page = client.get(to_login["Location"])
        signed_in = client.post(
            to_login["Location"],
            {"username": analyst.username, "password": PASSWORD, "next": login_page.context["next"]},
            follow=True,
        )
        device = analyst.totpdevice_set.get(confirmed=False)
        codes_page = client.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(device), "next": signed_in.context["next"], **shown_on(signed_in)},
        )

        assert len(codes_page.context["codes"]) == 10
        assert codes_page.context["next"] == "/admin/"
        assert client.get(codes_page.context["next"]).status_code == 200

    def test_the_first_administrator_signing_in_before_opening_a_link_is_told_the_command(self):
        # "Ask an administrator" was all the first administrator read, who has nobody to ask.
        administrator, analyst = make_user(roles.REVIEWER, is_superuser=True), make_user(roles.ANALYST)
        for account, told in ((administrator, True), (analyst, False)):
            client = Client()
            sign_in(client, account)
            page = client.get("/accounts/two-factor/setup/")
            assert page.status_code == 403
            command = f"python manage.py setup_link {account.username} --url http://testserver"
            assert (command in page.content.decode()) is told

    def test_a_link_is_for_its_account_only(self, caplog):
        analyst, colleague, client = make_user(roles.ANALYST), make_user(roles.ANALYST), Client()
        _, key = setup_link_create(user=colleague)
        sign_in(client, analyst)

        with caplog.at_level(logging.INFO):
            refused = client.post(SETUP_LINK, {"key": key}, follow=True)
        assert refused.status_code == 403
        assert "That setup link is for another account" in refused.content.decode()
        # Refused requests are logged with their address: this one's holds a link that still works.
        assert key not in caplog.text
        assert SetupLink.objects.usable().filter(user=colleague).exists()
        # Opened before signing in as someone else, it gives that account nothing either.
        other = Client()
        other.post(SETUP_LINK, {"key": key})
        sign_in(other, analyst)
        assert other.get("/accounts/two-factor/setup/").status_code == 403
        assert not analyst.totpdevice_set.exists()

    def test_a_newer_link_replaces_an_older_one_and_links_expire(self):
        analyst, client = make_user(roles.ANALYST), Client()
        _, older = setup_link_create(user=analyst)
        newer_link, newer = setup_link_create(user=analyst)

        assert client.post(SETUP_LINK, {"key": older}).status_code == 404
        SetupLink.objects.filter(pk=newer_link.pk).update(
            created_at=timezone.now() - timedelta(days=9), expires_at=timezone.now() - timedelta(days=2)
        )
        response = client.post(SETUP_LINK, {"key": newer})
        assert response.status_code == 404 and "does not work" in response.content.decode()

    def test_a_link_opened_then_replaced_no_longer_sets_up_the_app(self):
        analyst, client = make_user(roles.ANALYST), Client()
        open_setup_link(client, analyst)
        sign_in(client, analyst)
        setup_page = client.get("/accounts/two-factor/setup/")
        device = analyst.totpdevice_set.get(confirmed=False)
        setup_link_create(user=analyst)  # an administrator makes a new one meanwhile

        response = client.post(
            "/accounts/two-factor/setup/", {"code": app_code(device), "next": "/admin/", **shown_on(setup_page)}
        )

        assert response.status_code == 403
        assert not analyst.totpdevice_set.filter(confirmed=True).exists()

    def test_only_active_staff_get_links(self):
        visitor = make_user(None)
        client = signed_in_with_second_factor(make_user(roles.REVIEWER, is_superuser=True), confirmed=True)

        response = client.post(
            "/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [visitor.pk]}, follow=True
        )

        # Named as written (the admin's messages capitalise their first letter), and what to do.
        page = response.content.decode()
        assert f"The account {visitor.username} is not active staff" in page
        assert "Tick Active and Staff status on its page" in page
        assert not SetupLink.objects.filter(user=visitor).exists()

    def test_recovery_codes_are_no_first_second_factor(self, settings):
        # Codes alone would be a second factor set up with the password alone; with the setting
        # off (before a deployment turns it on) the page is open to a password holder.
        settings.REQUIRE_2FA = False
        analyst, client = make_user(roles.ANALYST), Client()
        sign_in(client, analyst)

        response = client.post("/accounts/recovery-codes/", follow=True)

        assert "Recovery codes come with an authenticator app: set one up first." in response.content.decode()
        assert not second_factor_enrolled(analyst) and not analyst.staticdevice_set.exists()

    def test_no_link_for_someone_with_a_second_factor_until_their_devices_are_deleted(self):
        administrator, analyst = make_user(roles.REVIEWER, is_superuser=True), make_user(roles.ANALYST)
        enrol(analyst)
        admin_client = signed_in_with_second_factor(administrator, confirmed=True)

        response = admin_client.post(
            "/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [analyst.pk]}, follow=True
        )

        # Named as the account is spelled: the admin's own messages capitalised "user2" as "User2".
        assert f"{analyst.username} has a second factor already" in response.content.decode()
        assert not SetupLink.objects.usable().filter(user=analyst).exists()
        with pytest.raises(CommandError, match="has a second factor already"):
            call_command("setup_link", analyst.username, stdout=io.StringIO())
        assert analyst.totpdevice_set.exists()

    def test_the_command_replaces_a_lost_second_factor(self):
        # The only administrator lost phone and recovery codes: nobody else can delete their devices.
        administrator = make_user(roles.REVIEWER, is_superuser=True, username="admin")
        lost_device, _ = enrol(administrator)
        output = io.StringIO()

        call_command("setup_link", "admin", "--delete-devices", "--url", "https://tracker.example.org", stdout=output)

        link = output.getvalue().splitlines()[0].removeprefix("https://tracker.example.org")
        client = Client()
        follow_setup_link(client, link)
        sign_in(client, administrator)
        setup = client.get("/accounts/two-factor/setup/")
        assert setup.status_code == 200 and "qr-code" in setup.content.decode()
        assert not administrator.totpdevice_set.filter(pk=lost_device.pk).exists()

    # ensure_admin takes the admin's address (…/admin/); the same --url given here makes a working link.
    @pytest.mark.parametrize("url", ["https://tracker.example.org/", "https://tracker.example.org/admin/"])
    def test_the_command_prints_a_link_for_the_first_administrator(self, url):
        administrator = make_user(roles.REVIEWER, is_superuser=True, username="admin")
        output = io.StringIO()
        call_command("setup_link", "admin", "--url", url, stdout=output)
        link = output.getvalue().splitlines()[0]
        assert link.startswith("https://tracker.example.org/accounts/two-factor/setup/link/#")
        client = Client()
        follow_setup_link(client, link.removeprefix("https://tracker.example.org"))
        sign_in(client, administrator)
        assert "qr-code" in client.get("/accounts/two-factor/setup/").content.decode()

    @pytest.mark.parametrize("url", ["", "tracker.example.org", "javascript:alert(1)"])
    def test_the_command_refuses_an_address_a_link_cannot_start_with_and_keeps_the_earlier_link(self, url):
        administrator = make_user(roles.REVIEWER, is_superuser=True, username="admin")
        call_command("setup_link", "admin", stdout=io.StringIO())
        earlier = list(administrator.setup_links.values_list("pk", flat=True))
        with pytest.raises(CommandError, match="--url: give an http:// or https:// address"):
            call_command("setup_link", "admin", "--url", url, stdout=io.StringIO())
        assert list(administrator.setup_links.values_list("pk", flat=True)) == earlier

    def test_the_command_refuses_an_unknown_account_and_one_that_is_not_staff(self):
        with pytest.raises(CommandError, match="No user is called 'nobody'"):
            call_command("setup_link", "nobody")
        make_user(None, username="visitor")
        with pytest.raises(CommandError, match="The account visitor is not active staff"):
            call_command("setup_link", "visitor")


def test_without_the_setting_staff_sign_in_with_a_password_alone(settings):
    settings.REQUIRE_2FA = False
    analyst, client = make_user(roles.ANALYST), Client()
    assert sign_in(client, analyst)["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


class TestLockout:
    def test_five_wrong_passwords_lock_the_account_for_that_client(self):
        analyst, attacker = make_user(roles.ANALYST), Client(REMOTE_ADDR="203.0.113.9")
        for _ in range(4):
            assert sign_in(attacker, analyst, password="guess").status_code == 200
        locked = sign_in(attacker, analyst, password="guess")
        assert (locked.status_code, locked["Retry-After"]) == (429, "900")
        assert "Too many failed sign-in attempts" in locked.content.decode()
        # Even the right password is refused now, from that client.
        assert sign_in(attacker, analyst).status_code == 429
        attempt = AccessAttempt.objects.get(username=analyst.username)
        assert attempt.ip_address == "203.0.113.9" and attempt.failures_since_start >= 5
        assert "guess" not in attempt.post_data
        assert AccessFailureLog.objects.filter(username=analyst.username, locked_out=True).exists()
        # The analyst, elsewhere, still signs in.
        assert sign_in(Client(REMOTE_ADDR="198.51.100.7"), analyst)["Location"] == "/admin/"

    def test_an_ipv6_client_is_one_client_across_its_network(self):
        # Its provider gives a client a /64 to pick addresses from: each new address was five more
        # guesses. IPv4 written as IPv6 is the IPv4 client itself.
        analyst = make_user(roles.ANALYST)
        for host in range(1, 6):
            sign_in(Client(REMOTE_ADDR=f"2001:db8:0:7::{host}"), analyst, password="guess")
        assert sign_in(Client(REMOTE_ADDR="2001:db8:0:7:ffff::1"), analyst).status_code == 429
        assert AccessAttempt.objects.get(username=analyst.username).ip_address == "2001:db8:0:7::"
        assert sign_in(Client(REMOTE_ADDR="2001:db8:0:8::1"), analyst)["Location"] == "/admin/"

        reviewer = make_user(roles.REVIEWER)
        for _ in range(5):
            sign_in(Client(REMOTE_ADDR="203.0.113.9"), reviewer, password="guess")
        assert sign_in(Client(REMOTE_ADDR="::ffff:203.0.113.9"), reviewer).status_code == 429

    def test_behind_a_declared_proxy_an_address_written_with_its_port_is_one_client(self, settings):
        # Some proxies write the client's port after its address, or "unknown" for none: django-axes
        # was given the text as an address, and every failed sign-in answered 500.
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
        analyst = make_user(roles.ANALYST)

        def sign_in_through_proxy(forwarded_for, password="guess"):
            return sign_in(Client(HTTP_X_FORWARDED_FOR=forwarded_for), analyst, password)

        statuses = [sign_in_through_proxy(f"203.0.113.9:{port}").status_code for port in range(50001, 50006)]
        assert statuses == [200, 200, 200, 200, 429]
        token_request = {"username": analyst.username, "password": PASSWORD}
        assert (
            APIClient().post(f"{API}/auth/token/", token_request, HTTP_X_FORWARDED_FOR="203.0.113.9:1").status_code
            == 429
        )
        assert sign_in_through_proxy("[2001:db8:0:7::1]:443").status_code == 200
        assert sign_in_through_proxy("unknown").status_code == 200
        assert sign_in_through_proxy("203.0.113.10:50001", PASSWORD)["Location"] == "/admin/"
        counted_as = set(AccessAttempt.objects.values_list("ip_address", flat=True))
        assert counted_as == {"203.0.113.9", "2001:db8:0:7::", "127.0.0.1"}

    def test_an_administrator_unlocks_an_account_in_the_admin(self):
        analyst, administrator = make_user(roles.ANALYST), make_user(roles.REVIEWER, is_superuser=True)
        for _ in range(5):
            sign_in(Client(), analyst, password="guess")
        assert sign_in(Client(), analyst).status_code == 429
        admin_client = Client(REMOTE_ADDR="198.51.100.7")
        admin_client.force_login(administrator)
        confirm_identity(admin_client)
        attempt = AccessAttempt.objects.get(username=analyst.username)
        assert analyst.username in admin_client.get("/admin/axes/accessattempt/").content.decode()
        admin_client.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
        assert sign_in(Client(), analyst)["Location"] == "/admin/"

    def test_wrong_second_factor_codes_count_towards_the_lockout(self, settings):
        settings.REQUIRE_2FA = True
        analyst, client = make_user(roles.ANALYST), Client()
        device, _ = enrol(analyst)
        sign_in(client, analyst)
        wrong = "000000" if app_code(device, 1) != "000000" else "111111"
        statuses = [second_step(client, wrong).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        response = second_step(client, app_code(device, 1))
        assert response.status_code == 429 and "Too many failed sign-in attempts" in response.content.decode()
        assert client.get("/admin/").status_code == 302

    def test_wrong_current_passwords_on_the_password_change_count_towards_the_lockout(self):
        # A session cookie stolen from a signed-in analyst reached the admin's password change, which
        # checked the current password with nothing counting: guesses without end, until the right
        # one set a new password and ended the owner's sessions.
        analyst, thief = make_user(roles.ANALYST), Client(REMOTE_ADDR="203.0.113.9")
        thief.force_login(analyst)
        new = "a new passphrase for 2027"

        def change(current):
            return thief.post(
                "/admin/password_change/", {"old_password": current, "new_password1": new, "new_password2": new}
            )

        assert 'name="old_password"' in thief.get("/admin/password_change/").content.decode()
        statuses = [change(guess).status_code for guess in ("a", "b", "c", "d", "e")]
        assert statuses == [200, 200, 200, 200, 429]
        refused = change(PASSWORD)
        assert refused.status_code == 429 and "Too many failed sign-in attempts" in refused.content.decode()
        analyst.refresh_from_db()
        assert analyst.check_password(PASSWORD)
        attempt = AccessAttempt.objects.get(username=analyst.username)
        # Neither the guesses nor the new password they came with are kept in the attempt's record.
        assert attempt.ip_address == "203.0.113.9" and new not in attempt.post_data
        assert "old_password=" in attempt.post_data and "old_password=e" not in attempt.post_data
        # The owner, elsewhere, still changes it, with the current password.
        owner = Client(REMOTE_ADDR="198.51.100.7")
        owner.force_login(analyst)
        changed = owner.post(
            "/admin/password_change/", {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
        )
        assert changed["Location"] == "/admin/password_change/done/"

    def test_the_token_endpoint_locks_out_after_five_failures(self):
        partner, client = make_user(None), APIClient()
        for _ in range(4):
            assert client.post(f"{API}/auth/token/", {"username": partner.username, "password": "x"}).status_code == 400
        for password in ("x", PASSWORD):
            locked = client.post(f"{API}/auth/token/", {"username": partner.username, "password": password})
            # Retry-After as the schema declares on every 429: the whole cool-off (15 minutes).
            assert (locked.status_code, locked["Retry-After"]) == (429, "900")
            assert "Too many failed sign-in attempts" in locked.json()["detail"]
        assert not ApiToken.objects.exists()

    def test_a_username_longer_than_the_lockout_records_hold_is_refused_like_any_other(self):
        # The admin's login form and the token request bound no username: django-axes's insert of
        # a 256th character failed, and both doors answered 500.
        too_long = "a" * 300
        refused = Client().post("/admin/login/", {"username": too_long, "password": "guess"})
        assert refused.status_code == 200
        assert "Please enter the correct username and password" in refused.content.decode()
        response = APIClient().post(f"{API}/auth/token/", {"username": too_long, "password": "guess"})
        assert response.status_code == 400
        assert AccessAttempt.objects.get().username == too_long[:255]


def export_status(client, path: str, **extra) -> int:
    """The status of a CSV download, read to its end, after which the test client closes it as a
    server does, giving back its export slot."""
    response = client.get(path, **extra)
    if response.streaming:
        b"".join(response.streaming_content)
    return response.status_code


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


class TestTokens:
    def test_a_token_is_stored_only_as_its_hash(self):
        partner = make_user(None)
        answer = APIClient().post(
            f"{API}/auth/token/", {"username": partner.username, "password": PASSWORD, "name": "nightly sync"}
        )
        key = answer.json()["token"]
        token = ApiToken.objects.get()
        assert (token.name, token.digest) == ("nightly sync", hashlib.sha256(key.encode()).hexdigest())
        with connection.cursor() as cursor:
            cursor.execute("SELECT row_to_json(t)::text FROM accounts_apitoken t")
            assert key not in cursor.fetchone()[0]
        assert bearer(key).get(f"{API}/auth/tokens/").status_code == 200

    def test_a_token_expires_after_the_configured_days(self, settings):
        settings.API_TOKEN_DAYS = 30
        token, key = token_create(user=make_user(None), name="sync", second_factor=False)
        assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
        ApiToken.objects.filter(pk=token.pk).update(
            created_at=timezone.now() - timedelta(days=31), expires_at=timezone.now() - timedelta(days=1)
        )
        response = bearer(key).get(f"{API}/incidents/")
        assert response.status_code == 401 and "expired" in response.json()["detail"]

    def test_its_last_use_is_recorded(self):
        token, key = token_create(user=make_user(None), name="sync", second_factor=False)
        assert token.last_used_at is None
        bearer(key).get(f"{API}/incidents/")
        token.refresh_from_db()
        assert timezone.now() - token.last_used_at < timedelta(minutes=1)

    def test_owners_list_and_revoke_their_own_tokens_through_the_api(self):
        alice, bob = make_user(None), make_user(None)
        kept, alice_key = token_create(user=alice, name="laptop", second_factor=False)
        revoked, _ = token_create(user=alice, name="old server", second_factor=False)
        bobs, bob_key = token_create(user=bob, name="bob's", second_factor=False)
        client = bearer(alice_key)
        listed = client.get(f"{API}/auth/tokens/").json()
        assert [(row["name"], row["hint"]) for row in listed] == [("old server", revoked.hint), ("laptop", kept.hint)]
        assert "digest" not in listed[0] and "token" not in listed[0]
        assert client.delete(f"{API}/auth/tokens/{revoked.pk}/").status_code == 204
        # Someone else's token answers like a missing one, and keeps working.
        assert client.delete(f"{API}/auth/tokens/{bobs.pk}/").status_code == 404
        assert bearer(bob_key).get(f"{API}/auth/tokens/").status_code == 200
        assert list(ApiToken.objects.filter(user=alice)) == [kept]

    def test_revoking_a_token_of_thousands_of_digits_answers_404(self):
        # int() reads at most 4,300 digits: the number reached it, a 500.
        _, key = token_create(user=make_user(None), name="laptop", second_factor=False)
        assert bearer(key).delete(f"{API}/auth/tokens/{'9' * 5000}/").status_code == 404

    def test_a_new_password_revokes_every_token(self):
        partner = make_user(None)
        _, key = token_create(user=partner, name="sync", second_factor=False)
        partner.set_password("a new passphrase for 2027")
        partner.save()
        assert bearer(key).get(f"{API}/incidents/").status_code == 401

    def test_disabling_the_password_in_the_admin_revokes_every_token(self):
        # Django's way to shut an account's password ended its sessions, but its tokens kept
        # reading for their 90 days.
        partner, administrator = make_user(None), make_user(roles.REVIEWER, is_superuser=True)
        _, key = token_create(user=partner, name="sync", second_factor=False)
        admin_client = Client()
        admin_client.force_login(administrator)
        confirm_identity(admin_client)
        admin_client.post(
            f"/admin/auth/user/{partner.pk}/password/", {"usable_password": "false", "unset-password": "1"}
        )
        partner.refresh_from_db()
        assert not partner.has_usable_password()
        assert bearer(key).get(f"{API}/incidents/").status_code == 401
        assert not ApiToken.objects.filter(user=partner).exists()

    def test_signing_in_keeps_the_tokens(self):
        analyst = make_user(roles.ANALYST)
        _, key = token_create(user=analyst, name="sync", second_factor=True)
        sign_in(Client(), analyst)
        assert bearer(key).get(f"{API}/auth/tokens/").status_code == 200

    def test_making_an_account_staff_revokes_the_tokens_its_password_alone_made(self, settings):
        # A partner tool's token needs no second factor; once the account is staff (and given
        # Confidential access), that token would read drafts and confidential records without one.
        settings.REQUIRE_2FA = True
        partner = make_user(None)
        body = {"username": partner.username, "password": PASSWORD}
        key = APIClient().post(f"{API}/auth/token/", body).json()["token"]
        secret = make_incident(review_state="draft", confidential=True)
        partner.is_staff = True
        partner.save()
        partner.groups.add(*Group.objects.filter(name__in=[roles.VIEWER, roles.CONFIDENTIAL_ACCESS]))
        assert bearer(key).get(f"{API}/incidents/{secret.public_id}/").status_code == 401
        assert not ApiToken.objects.filter(user=partner).exists()

    def test_a_token_made_with_a_password_alone_never_serves_a_staff_account(self, settings):
        # However the account became staff: a bulk update sends no signal, so nothing revoked the
        # token; it is refused for what it is, a token no second factor made.
        settings.REQUIRE_2FA = True
        partner = make_user(None)
        key = APIClient().post(f"{API}/auth/token/", {"username": partner.username, "password": PASSWORD}).json()
        assert ApiToken.objects.get(user=partner).second_factor is False
        secret = make_incident(review_state="draft", confidential=True)
        type(partner).objects.filter(pk=partner.pk).update(is_staff=True)
        partner.groups.add(*Group.objects.filter(name__in=[roles.VIEWER, roles.CONFIDENTIAL_ACCESS]))

        refused = bearer(key["token"]).get(f"{API}/incidents/{secret.public_id}/")

        assert refused.status_code == 401
        assert refused.json() == {
            "detail": "This token was made without a second factor, which this account now needs: make a new "
            "token with your authenticator app's code."
        }
        partner.refresh_from_db()
        device, _ = enrol(partner)
        body = {"username": partner.username, "password": PASSWORD, "otp": app_code(device, 1)}
        new_key = APIClient().post(f"{API}/auth/token/", body).json()["token"]
        assert bearer(new_key).get(f"{API}/incidents/{secret.public_id}/").status_code == 200

    def test_a_token_made_in_a_session_that_passed_the_second_factor_serves_staff(self, settings):
        settings.REQUIRE_2FA = True
        analyst, client = make_user(roles.ANALYST), Client()
        device, _ = enrol(analyst)
        sign_in(client, analyst)
        second_step(client, app_code(device, 1))

        key = client.post("/accounts/tokens/", {"name": "spreadsheet", "code": app_code(device, 2)}).context["new_key"]

        assert ApiToken.objects.get(user=analyst).second_factor is True
        assert bearer(key).get(f"{API}/auth/tokens/").json()[0]["second_factor"] is True

    @pytest.mark.parametrize("door", ["setup_link command", "admin"])
    def test_deleting_a_lost_authenticator_app_revokes_the_tokens_it_made(self, settings, door):
        # A thief with the phone and the password makes a token; the administrator deletes the
        # lost app, as "Accounts and security" says. The sessions the app verified lose their
        # second factor; the token it made kept reading confidential records for 90 days.
        settings.REQUIRE_2FA = True
        analyst = make_user(roles.ANALYST, confidential=True)
        device, _ = enrol(analyst)
        body = {"username": analyst.username, "password": PASSWORD, "otp": app_code(device, 1)}
        thiefs_key = APIClient().post(f"{API}/auth/token/", body).json()["token"]
        secret = make_incident(review_state="draft", confidential=True)
        assert bearer(thiefs_key).get(f"{API}/incidents/{secret.public_id}/").status_code == 200

        if door == "admin":
            administrator = signed_in_with_second_factor(make_user(roles.REVIEWER, is_superuser=True), confirmed=True)
            administrator.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"})
        else:
            call_command("setup_link", analyst.username, "--delete-devices", stdout=io.StringIO())

        assert not analyst.totpdevice_set.exists()
        assert bearer(thiefs_key).get(f"{API}/incidents/{secret.public_id}/").status_code == 401
        assert not ApiToken.objects.filter(user=analyst).exists()

    def test_a_new_authenticator_app_revokes_the_tokens_the_old_one_made(self, settings):
        # Replacing the app ends the second factor of every other session; a token the old app made
        # is such a way in too.
        settings.REQUIRE_2FA = True
        analyst = make_user(roles.ANALYST)
        old_device, _ = enrol(analyst)
        body = {"username": analyst.username, "password": PASSWORD, "otp": app_code(old_device, 1)}
        old_key = APIClient().post(f"{API}/auth/token/", body).json()["token"]

        enrol(analyst)

        assert bearer(old_key).get(f"{API}/auth/tokens/").status_code == 401

    def test_new_recovery_codes_revoke_the_tokens_an_old_code_made(self, settings):
        # New codes end the second factor of the sessions an old code verified: whoever stole the
        # sheet of codes is out. A token made with a stolen code is such a way in too; one the app
        # made stays, as a session the app verified does.
        settings.REQUIRE_2FA = True
        analyst = make_user(roles.ANALYST, confidential=True)
        device, codes = enrol(analyst)
        body = {"username": analyst.username, "password": PASSWORD}
        owners_key = APIClient().post(f"{API}/auth/token/", {**body, "otp": app_code(device, 1)}).json()["token"]
        owner = Client()
        sign_in(owner, analyst)
        second_step(owner, app_code(device, 2))
        thiefs_key = APIClient().post(f"{API}/auth/token/", {**body, "otp": codes[0]}).json()["token"]
        thief = Client()
        sign_in(thief, analyst)
        second_step(thief, codes[1])
        thiefs_session_key = thief.post("/accounts/tokens/", {"name": "spreadsheet", "code": codes[2]}).context[
            "new_key"
        ]

        assert owner.post("/accounts/recovery-codes/", {"code": app_code(device, 3)}).status_code == 200

        assert bearer(thiefs_key).get(f"{API}/auth/tokens/").status_code == 401
        assert bearer(thiefs_session_key).get(f"{API}/auth/tokens/").status_code == 401
        assert [row["name"] for row in bearer(owners_key).get(f"{API}/auth/tokens/").json()] == ["API token"]

    def test_other_changes_to_a_staff_account_keep_its_tokens(self):
        analyst = make_user(roles.ANALYST)
        _, key = token_create(user=analyst, name="sync", second_factor=True)
        analyst.first_name = "Ana"
        analyst.save()
        assert bearer(key).get(f"{API}/auth/tokens/").status_code == 200

    def test_deactivating_the_account_revokes_every_token(self):
        partner = make_user(None)
        _, key = token_create(user=partner, name="sync", second_factor=False)
        partner.is_active = False
        partner.save()
        partner.is_active = True
        partner.save()
        assert bearer(key).get(f"{API}/incidents/").status_code == 401

    def test_an_account_made_active_again_starts_without_its_old_sessions(self, settings):
        # While an account is inactive Django reads its sessions as anonymous; made active again,
        # a session signed in before (a laptop left behind when the analyst left) read as them again.
        settings.REQUIRE_2FA = True
        analyst = make_user(roles.ANALYST)
        draft = make_incident(review_state="draft")
        old_session, other_account = (
            signed_in_with_second_factor(analyst),
            signed_in_with_second_factor(make_user(roles.VIEWER)),
        )
        assert old_session.get(f"{API}/incidents/{draft.public_id}/").status_code == 200

        analyst.is_active = False
        analyst.save()
        analyst.is_active = True
        analyst.save()

        assert old_session.get(f"{API}/incidents/{draft.public_id}/").status_code == 404
        assert old_session.get("/admin/")["Location"].startswith("/admin/login/")
        assert other_account.get("/admin/").status_code == 200
        # Signing in again works as before: the password, then the second step.
        assert sign_in(Client(), analyst)["Location"].startswith("/accounts/two-factor/")

    def test_a_superuser_needs_a_second_factor_whether_or_not_staff(self, settings):
        # Django gives a superuser every permission, staff or not: a password alone must not publish
        # or delete through a token.
        settings.REQUIRE_2FA = True
        superuser = make_user(None, is_superuser=True)
        published = make_incident()

        refused = APIClient().post(f"{API}/auth/token/", {"username": superuser.username, "password": PASSWORD})

        assert refused.status_code == 400 and "set up its second factor first" in refused.json()["otp"][0]
        assert not ApiToken.objects.exists()
        # A token its password alone made before: refused, and nothing deleted.
        _, key = token_create(user=superuser, name="sync", second_factor=False)
        assert bearer(key).delete(f"{API}/incidents/{published.public_id}/").status_code == 401
        assert type(published).objects.filter(pk=published.pk).exists()

    def test_making_an_account_superuser_revokes_the_tokens_its_password_alone_made(self, settings):
        settings.REQUIRE_2FA = True
        partner = make_user(None)
        _, key = token_create(user=partner, name="sync", second_factor=False)
        partner.is_superuser = True
        partner.save()
        assert not ApiToken.objects.filter(user=partner).exists()
        assert bearer(key).get(f"{API}/incidents/").status_code == 401

    def test_the_admin_refuses_a_superuser_who_is_not_staff(self, settings):
        settings.REQUIRE_2FA = True
        administrator = signed_in_with_second_factor(make_user(roles.REVIEWER, is_superuser=True), confirmed=True)
        partner = make_user(None)
        form = {
            "username": partner.username,
            "is_active": "on",
            "is_superuser": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        }

        page = administrator.post(f"/admin/auth/user/{partner.pk}/change/", form)

        assert page.status_code == 200
        assert "A superuser must be staff" in str(page.context["adminform"].form.errors["is_staff"])
        partner.refresh_from_db()
        assert not partner.is_superuser

    def test_staff_make_and_revoke_tokens_on_their_security_page(self):
        analyst, client = make_user(roles.ANALYST), Client()
        client.force_login(analyst)
        page = client.post("/accounts/tokens/", {"name": "spreadsheet"})
        key = page.context["new_key"]
        assert key in page.content.decode()
        token = ApiToken.objects.get(user=analyst)
        assert bearer(key).get(f"{API}/auth/tokens/").status_code == 200
        listing = client.get("/accounts/").content.decode()
        assert "spreadsheet" in listing and key not in listing
        client.post(f"/accounts/tokens/{token.pk}/revoke/")
        assert not ApiToken.objects.exists()

    def test_an_account_has_at_most_its_share_of_unexpired_tokens_through_every_door(self, settings):
        # Each token is a live credential for 90 days, and the lists of one's tokens are one page: a
        # script asking for a new token at every run left hundreds behind.
        settings.API_TOKENS_PER_ACCOUNT = 2
        analyst, client = make_user(roles.ANALYST), Client()
        expired, _ = token_create(user=analyst, name="last year", second_factor=False)
        ApiToken.objects.filter(pk=expired.pk).update(
            created_at=timezone.now() - timedelta(days=400), expires_at=timezone.now() - timedelta(days=31)
        )
        lately_expired, _ = token_create(user=analyst, name="last month", second_factor=False)
        ApiToken.objects.filter(pk=lately_expired.pk).update(
            created_at=timezone.now() - timedelta(days=100), expires_at=timezone.now() - timedelta(days=1)
        )
        token_create(user=analyst, name="laptop", second_factor=False)
        token_create(user=analyst, name="server", second_factor=False)
        refusal = "This account has 2 tokens that have not expired, the most it may have: revoke one"

        answer = APIClient().post(f"{API}/auth/token/", {"username": analyst.username, "password": PASSWORD})
        client.force_login(analyst)
        page = client.post("/accounts/tokens/", {"name": "spreadsheet"})

        assert answer.status_code == 400 and refusal in str(answer.json())
        assert page.status_code == 200 and not page.context["new_key"]
        assert refusal in page.content.decode().split('id="token-refused"')[1]
        # The token expired a month ago went with the first refused request; the one expired
        # yesterday stays listed, and counts for nothing.
        names = ["server", "laptop", "last month"]
        assert list(ApiToken.objects.filter(user=analyst).values_list("name", flat=True)) == names
        laptop = ApiToken.objects.get(name="laptop")
        client.post(f"/accounts/tokens/{laptop.pk}/revoke/")
        assert client.post("/accounts/tokens/", {"name": "spreadsheet"}).context["new_key"]

    def test_administrators_see_and_revoke_everyones_tokens(self):
        administrator = make_user(roles.REVIEWER, is_superuser=True)
        alice_token, alice_key = token_create(user=make_user(None), name="alice's sync", second_factor=False)
        bob_token, _ = token_create(user=make_user(None), name="bob's sync", second_factor=False)
        client = Client()
        client.force_login(administrator)
        listing = client.get("/admin/accounts/apitoken/").content.decode()
        assert "alice&#x27;s sync" in listing and "bob&#x27;s sync" in listing
        client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [alice_token.pk], "index": 0})
        assert list(ApiToken.objects.all()) == [bob_token]
        assert bearer(alice_key).get(f"{API}/incidents/").status_code == 401

    def test_tokens_made_before_hashing_keep_working_and_their_plaintext_is_dropped(self):
        partner = make_user(None)
        key = "0123456789abcdef0123456789abcdef01234567"  # DRF authtoken's format
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz, user_id integer)"
            )
            cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [key, partner.pk])
            cursor.execute(importlib.import_module("accounts.migrations.0002_hash_existing_tokens").HASH_AND_DROP)
            cursor.execute("SELECT to_regclass('authtoken_token')")
            assert cursor.fetchone()[0] is None
        assert bearer(key).get(f"{API}/auth/tokens/").json()[0]["name"] == "Token made before hashing"


@pytest.mark.usefixtures("second_factor_on")
class TestFreshCodeOnSignInSecurity:
    """A verified session lasts a working day: whoever steals its cookie must not turn it into a
    90-day API token, or into recovery codes of their own (a second factor for good), without a
    current code from the account's second factor."""

    def signed_in(self, analyst, code) -> Client:
        client = Client()
        sign_in(client, analyst)
        assert second_step(client, code)["Location"] == "/admin/"
        return client

    def test_a_stolen_session_without_a_code_makes_neither_a_token_nor_recovery_codes(self):
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        stolen = self.signed_in(analyst, app_code(device, 1))
        page = stolen.get("/accounts/").content.decode()
        assert 'id="recovery_codes_code"' in page and 'id="token_code"' in page

        for path, body in (("/accounts/tokens/", {"name": "exfiltration"}), ("/accounts/recovery-codes/", {})):
            refused = stolen.post(path, body)
            assert refused.status_code == 200, path
            assert (
                "Type the code your authenticator app shows now, or one of your unused recovery codes."
                in refused.content.decode()
            ), path

        assert not ApiToken.objects.exists()
        assert sorted(StaticToken.objects.filter(device__user=analyst).values_list("token", flat=True)) == sorted(codes)

    def test_the_apps_code_makes_a_token_and_new_recovery_codes(self):
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        client = self.signed_in(analyst, codes[0])

        key = client.post("/accounts/tokens/", {"name": "spreadsheet", "code": app_code(device, 1)}).context["new_key"]
        new_codes = client.post("/accounts/recovery-codes/", {"code": app_code(device, 2)}).context["codes"]

        token = ApiToken.objects.get(user=analyst)
        assert (token.second_factor, token.recovery_code) == (True, False)
        assert bearer(key).get(f"{API}/auth/tokens/").status_code == 200
        assert sorted(StaticToken.objects.filter(device__user=analyst).values_list("token", flat=True)) == sorted(
            new_codes
        )

    def test_a_code_checked_just_after_its_period_ended_leaves_the_next_code_good(self):
        # The app's next code read 0.05 s before a period ends, checked just after: the test
        # above failed so, now and then, when its first code met the end of a period.
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        client = self.signed_in(analyst, codes[0])
        period_end = (time.time() // device.step + 1) * device.step
        with time_machine.travel(period_end - 0.05, tick=False) as clock:
            code = app_code(device, 1)
            clock.shift(0.1)
            made = client.post("/accounts/tokens/", {"name": "spreadsheet", "code": code})
            renewed = client.post("/accounts/recovery-codes/", {"code": app_code(device, 2)})

        assert made.context["new_key"] and len(renewed.context["codes"]) == 10

    def test_a_recovery_code_makes_a_token_marked_as_its_and_is_used_up(self):
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        client = self.signed_in(analyst, app_code(device, 1))

        assert client.post("/accounts/tokens/", {"name": "spreadsheet", "code": codes[0]}).context["new_key"]

        token = ApiToken.objects.get(user=analyst)
        assert (token.second_factor, token.recovery_code) == (True, True)
        assert not StaticToken.objects.filter(device__user=analyst, token=codes[0]).exists()
        new_codes = client.post("/accounts/recovery-codes/", {"code": codes[1]}).context["codes"]
        assert len(new_codes) == 10 and client.get("/admin/").status_code == 200
        again = client.post("/accounts/tokens/", {"name": "another", "code": codes[0]})
        assert "That code is not right, or was already used." in again.content.decode()
        # The codes replaced revoked the token the recovery code made.
        assert not ApiToken.objects.filter(user=analyst).exists()

    def test_a_refused_token_name_spends_no_recovery_code(self):
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        client = self.signed_in(analyst, app_code(device, 1))

        refused = client.post("/accounts/tokens/", {"name": "x" * 101, "code": codes[0]})

        assert "Ensure this value has at most 100 characters" in refused.content.decode()
        assert StaticToken.objects.filter(device__user=analyst, token=codes[0]).exists()
        assert not AccessAttempt.objects.exists()

    def test_wrong_codes_count_towards_the_lockout(self):
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        client = self.signed_in(analyst, app_code(device, 1))
        wrong = "000000" if app_code(device, 2) != "000000" else "111111"

        statuses = [client.post("/accounts/tokens/", {"name": "sync", "code": wrong}).status_code for _ in range(5)]

        assert statuses == [200, 200, 200, 200, 429]
        # Locked out, a right code is not tried either.
        refused = client.post("/accounts/recovery-codes/", {"code": app_code(device, 2)})
        assert "Too many failed sign-in attempts" in refused.content.decode()
        assert not ApiToken.objects.exists() and "codes" not in refused.context
        device.refresh_from_db()
        assert device.throttling_failure_count >= 1

    def test_a_right_code_typed_while_codes_wait_after_wrong_ones_is_told_when_to_try_again(self, settings):
        settings.OTP_TOTP_THROTTLE_FACTOR = settings.OTP_STATIC_THROTTLE_FACTOR = 600
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        client = self.signed_in(analyst, app_code(device, 1))
        wrong = "000000" if app_code(device, 2) != "000000" else "111111"
        assert "That code is not right" in client.post("/accounts/recovery-codes/", {"code": wrong}).content.decode()

        response = client.post("/accounts/tokens/", {"name": "sync", "code": app_code(device, 2)})

        page = response.content.decode()
        assert response.status_code == 200 and "That code is not right" not in page
        assert "The code was not checked: too many wrong codes were typed for this account recently" in page
        assert "Try again in 10 minutes." in page
        assert not ApiToken.objects.exists()

    def test_accounts_without_a_second_factor_are_asked_for_no_code(self, settings):
        # Debug, the setting off, or no app set up yet: there is no code to give.
        settings.REQUIRE_2FA = False
        analyst, client = make_user(roles.ANALYST), Client()
        sign_in(client, analyst)
        assert 'name="code"' not in client.get("/accounts/").content.decode()

        assert client.post("/accounts/tokens/", {"name": "spreadsheet"}).context["new_key"]

        assert ApiToken.objects.get(user=analyst).second_factor is False


class TestThrottling:
    def test_x_forwarded_for_does_not_reset_the_anonymous_limit(self, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "2/minute"}}
        client = APIClient()
        statuses = [client.get(f"{API}/incidents/", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(3)]
        assert statuses == [200, 200, 429]

    def test_behind_a_declared_proxy_the_address_it_saw_is_counted(self, settings):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"anon": "2/minute"},
            "NUM_PROXIES": 1,
        }
        client = APIClient()

        def get(forwarded_for):
            return client.get(f"{API}/incidents/", HTTP_X_FORWARDED_FOR=forwarded_for).status_code

        # The proxy appends the address it received from; what the client wrote before it is ignored.
        assert [get(f"192.0.2.{n}, 203.0.113.5") for n in range(3)] == [200, 200, 429]
        assert get("203.0.113.5, 203.0.113.6") == 200

    def test_the_token_endpoint_is_throttled(self, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "3/minute"}}
        client = APIClient()
        statuses = [
            client.post(f"{API}/auth/token/", {"username": f"nobody{n}", "password": "x"}).status_code for n in range(4)
        ]
        assert statuses == [400, 400, 400, 429]

    def test_the_admins_login_counts_towards_the_same_sign_in_limit_as_the_token_endpoint(self, settings):
        # The lockout counts one account from one address: one password tried on every username
        # went through the admin's login as fast as it was sent, where token requests were limited.
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "3/minute"}}
        analyst, sprayer = make_user(roles.ANALYST), Client(REMOTE_ADDR="203.0.113.9")
        guesses = [
            sprayer.post("/admin/login/", {"username": f"nobody{n}", "password": "Spring2026"}) for n in range(2)
        ]
        assert [guess.status_code for guess in guesses] == [200, 200]
        token_request = {"username": "nobody", "password": "Spring2026"}
        assert APIClient(REMOTE_ADDR="203.0.113.9").post(f"{API}/auth/token/", token_request).status_code == 400

        refused = sign_in(sprayer, analyst)

        page = refused.content.decode()
        assert refused.status_code == 429 and "Too many sign-ins from your address" in page
        assert f"Try again in {refused['Retry-After']} seconds." in page
        assert APIClient(REMOTE_ADDR="203.0.113.9").post(f"{API}/auth/token/", token_request).status_code == 429
        assert sign_in(Client(REMOTE_ADDR="198.51.100.7"), analyst)["Location"] == "/admin/"

    def test_a_session_past_the_password_step_gets_no_sign_in_count_of_its_own(self, settings):
        # The admin's login counted such a session by its account, not its address: every password
        # a thief holds (its second factor owed) gave a fresh count of guesses at other accounts.
        settings.REQUIRE_2FA = True
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"login": "3/minute"}}
        analyst = make_user(roles.ANALYST)
        enrol(analyst)
        thief = Client(REMOTE_ADDR="203.0.113.9")
        assert sign_in(thief, analyst)["Location"].startswith("/accounts/two-factor/")
        token_request = {"username": "nobody", "password": "Spring2026"}
        statuses = [APIClient(REMOTE_ADDR="203.0.113.9").post(f"{API}/auth/token/", token_request) for _ in range(3)]
        assert [status.status_code for status in statuses] == [400, 400, 429]

        guesses = [
            thief.post("/admin/login/", {"username": f"colleague{n}", "password": "Spring2026"}) for n in range(3)
        ]

        assert [guess.status_code for guess in guesses] == [429] * 3
        assert not AccessFailureLog.objects.filter(username__startswith="colleague").exists()

    def test_exports_have_their_own_stricter_limit_per_client(self, settings):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"anon": "100/minute", "user": "100/minute", "export": "2/minute"},
        }
        client = APIClient()
        assert client.get(f"{API}/incidents.csv").status_code == 200
        assert client.get(f"{API}/incidents/?format=csv").status_code == 200
        assert client.get(f"{API}/incidents.csv").status_code == 429
        assert client.get(f"{API}/incidents/?format=csv").status_code == 429
        assert client.get(f"{API}/incidents/").status_code == 200
        # A signed-in analyst counts on their own account.
        _, key = token_create(user=make_user(roles.ANALYST), name="exports", second_factor=True)
        assert bearer(key).get(f"{API}/incidents.csv").status_code == 200

    def test_an_export_over_the_rate_is_told_when_to_come_back(self, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"export": "2/minute"}}
        client = APIClient()
        assert [export_status(client, f"{API}/incidents.csv") for _ in range(2)] == [200, 200]
        refused = client.get(f"{API}/incidents.csv")
        assert refused.status_code == 429
        assert 0 < int(refused["Retry-After"]) <= 60
        seconds = refused["Retry-After"]
        assert refused.json() == {
            "detail": f"Too many CSV exports from you (at most 2 per minute). Try again in {seconds} seconds."
        }

    def test_the_public_downloads_are_throttled_like_the_api_export(self, settings):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"anon": "100/minute", "user": "100/minute", "export": "2/minute"},
        }
        incident = make_incident()
        visitor = Client(REMOTE_ADDR="192.0.2.50")
        assert export_status(visitor, "/incidents.csv") == 200
        assert export_status(visitor, f"/incidents/{incident.public_id}.csv") == 200
        refused = visitor.get("/incidents.csv")
        assert refused.status_code == 429
        assert 0 < int(refused["Retry-After"]) <= 60
        assert refused["Content-Type"] == "text/plain; charset=utf-8"
        assert refused.content.decode().startswith("Too many CSV exports from you (at most 2 per minute).")
        assert export_status(visitor, f"/ko/incidents/{incident.public_id}.csv") == 429
        # One count per client whichever door it exports through; another client has its own.
        assert export_status(APIClient(REMOTE_ADDR="192.0.2.50"), f"{API}/incidents.csv") == 429
        assert export_status(Client(REMOTE_ADDR="192.0.2.51"), "/incidents.csv") == 200

    def test_the_throttles_count_an_ipv6_client_by_its_network(self, settings):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"anon": "3/minute", "user": "100/minute", "export": "100/minute"},
        }
        answers = [
            APIClient(REMOTE_ADDR=f"2001:db8:0:7::{host}").get(f"{API}/incidents/").status_code for host in range(1, 5)
        ]
        assert answers == [200, 200, 200, 429]
        assert APIClient(REMOTE_ADDR="2001:db8:0:8::1").get(f"{API}/incidents/").status_code == 200

    def test_behind_a_declared_proxy_the_public_downloads_count_the_address_it_saw(self, settings):
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"export": "2/minute"},
            "NUM_PROXIES": 1,
        }
        visitor = Client()

        def download(forwarded_for):
            return export_status(visitor, "/incidents.csv", HTTP_X_FORWARDED_FOR=forwarded_for)

        # What the client wrote before the proxy's entry does not make it another client.
        assert [download(f"192.0.2.{n}, 203.0.113.5") for n in range(3)] == [200, 200, 429]
        assert download("203.0.113.5, 203.0.113.6") == 200

    def test_the_admins_exports_count_on_the_staff_account_like_its_api_exports(self, settings):
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"export": "2/minute"}}
        incident = make_incident()
        analyst = make_user(roles.ANALYST)
        staff = Client()
        staff.force_login(analyst)
        assert export_status(staff, "/admin/incidents/incident/export.csv") == 200
        _, key = token_create(user=analyst, name="exports", second_factor=True)
        assert export_status(bearer(key), f"{API}/incidents.csv") == 200
        refused = staff.get("/admin/incidents/incident/export.csv")
        assert refused.status_code == 429
        assert refused.content.decode().startswith("Too many CSV exports from you (at most 2 per minute).")
        action = {"action": "export_selected_as_csv", "_selected_action": [incident.pk]}
        assert staff.post("/admin/incidents/incident/", action).status_code == 429
        colleague = Client()
        colleague.force_login(make_user(roles.ANALYST))
        assert export_status(colleague, "/admin/incidents/incident/export.csv") == 200


class TestTransport:
    @pytest.mark.parametrize(
        "path", ["/admin/login/", "/accounts/two-factor/", f"{API}/docs/", f"{API}/incidents/", f"{API}/incidents.csv"]
    )
    def test_every_page_carries_the_content_security_policy(self, path):
        policy = Client().get(path, HTTP_ACCEPT="text/html")["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "unsafe-inline" not in policy

    def test_x_forwarded_proto_is_not_trusted_without_a_declared_proxy(self, settings):
        settings.SECURE_SSL_REDIRECT = True
        response = Client().get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
        assert response.status_code == 301 and response["Location"].startswith("https://")

    def test_no_cache_keeps_a_page_or_answer_that_shows_a_secret(self, settings):
        # The authenticator app's key, recovery codes and a new token are shown once: a browser's
        # or a proxy's cache must not keep them, as it keeps none of the admin's pages.
        settings.REQUIRE_2FA = True
        analyst, client = make_user(roles.ANALYST), Client()
        open_setup_link(client, analyst)
        sign_in(client, analyst)
        setup = client.get("/accounts/two-factor/setup/")
        assert "setup key" in setup.content.decode().lower()
        device = analyst.totpdevice_set.get(confirmed=False)
        shown = {
            "app key": setup,
            "first recovery codes": client.post(
                "/accounts/two-factor/setup/", {"code": app_code(device), **shown_on(setup)}
            ),
        }
        device.refresh_from_db()  # the period of the code it accepted, which app_code counts from
        new_codes = client.post("/accounts/recovery-codes/", {"code": app_code(device, 1)})
        shown["new recovery codes"] = new_codes
        code_for_token, code_for_answer = new_codes.context["codes"][:2]
        shown["token page"] = client.post("/accounts/tokens/", {"name": "spreadsheet", "code": code_for_token})
        shown["token answer"] = client.post(
            f"{API}/auth/token/", {"username": analyst.username, "password": PASSWORD, "otp": code_for_answer}
        )
        assert shown["token page"].context["new_key"]
        for secret, response in shown.items():
            assert response.status_code == 200, secret
            assert "no-store" in response.get("Cache-Control", ""), secret

    def test_staff_sessions_last_a_working_day(self):
        client = Client()
        sign_in(client, make_user(roles.ANALYST))
        assert client.session.get_expiry_age() == 8 * 60 * 60

    def test_a_new_password_ends_the_other_sessions(self):
        analyst, elsewhere = make_user(roles.ANALYST), Client()
        sign_in(elsewhere, analyst)
        analyst.set_password("a new passphrase for 2027")
        analyst.save()
        assert elsewhere.get("/admin/").status_code == 302


def production_settings(**environment) -> dict:
    """Settings as a production server reads them (DEBUG off), in a fresh interpreter."""
    script = (
        "import django, json; from django.conf import settings as s; django.setup(); print(json.dumps(["
        "s.REQUIRE_2FA, s.SECURE_PROXY_SSL_HEADER, s.REST_FRAMEWORK['NUM_PROXIES'], s.SESSION_COOKIE_AGE,"
        "s.CACHES['default']['BACKEND']]))"
    )
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 60,
        "DJANGO_SETTINGS_MODULE": "tracker.settings",
        **environment,
    }
    output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    required, proxy_header, proxies, session_age, cache = json.loads(output.stdout)
    return {
        "required": required,
        "proxy_header": proxy_header,
        "proxies": proxies,
        "session_age": session_age,
        "cache": cache,
    }


def test_production_requires_the_second_factor_and_trusts_no_proxy_header_by_default():
    assert production_settings() == {
        "required": True,
        "proxy_header": None,
        "proxies": 0,
        "session_age": 8 * 60 * 60,
        "cache": "tracker.cache.PostgreSQLCache",
    }


def test_a_declared_proxy_is_trusted_for_the_scheme_and_the_client_address():
    declared = production_settings(TRACKER_PROXY_COUNT="1", REDIS_URL="redis://127.0.0.1:6379/0")
    assert declared["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert declared["proxies"] == 1
    assert declared["cache"] == "django.core.cache.backends.redis.RedisCache"
