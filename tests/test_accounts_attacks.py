"""An attacker's pass over signing in: sessions' keys across the steps of signing in, what a new
password ends, codes guessed and recovery codes spent at once, and what the answers tell about
whether an account exists."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.test import Client
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import token_create
from incidents import roles
from tests.api_support import API
from tests.factories import make_user
from tests.test_accounts import PASSWORD, app_code, enrol, second_step, sign_in

NEW_PASSWORD = "a new passphrase for 2027"


@pytest.fixture
def second_factor_on(settings):
    settings.REQUIRE_2FA = True


def wrong_code(device) -> str:
    return "000000" if app_code(device, 1) != "000000" else "111111"


@pytest.mark.usefixtures("second_factor_on")
class TestSessionKeys:
    def test_the_key_a_browser_had_before_signing_in_is_not_the_one_it_signs_in_with(self):
        # A key planted in the victim's browser (a cookie set from a sibling domain) must not become
        # a signed-in session the planter holds: neither after the password nor after the code.
        analyst, victim = make_user(roles.ANALYST), Client()
        device, _ = enrol(analyst)
        victim.get("/admin/login/")
        victim.post("/accounts/two-factor/setup/link/", {"key": "no such link"})
        planted = victim.session.session_key

        sign_in(victim, analyst)
        after_password = victim.session.session_key
        second_step(victim, app_code(device, 1))
        after_code = victim.session.session_key

        assert len({planted, after_password, after_code}) == 3
        planter = Client()
        planter.cookies["sessionid"] = after_password
        assert planter.get("/admin/").status_code == 302


@pytest.mark.usefixtures("second_factor_on")
class TestNewPassword:
    def test_a_new_password_on_the_admins_page_ends_the_other_sessions_and_every_token(self):
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        owner, elsewhere = Client(), Client()
        for client, code in ((owner, app_code(device, 1)), (elsewhere, codes[0])):
            sign_in(client, analyst)
            assert second_step(client, code)["Location"] == "/admin/"
        _, key = token_create(user=analyst, name="sync", second_factor=True)

        changed = owner.post(
            "/admin/password_change/",
            {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD, "code": codes[1]},
        )

        assert changed["Location"] == "/admin/password_change/done/"
        assert owner.get("/admin/").status_code == 200
        assert elsewhere.get("/admin/").status_code == 302
        assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get(f"{API}/incidents/").status_code == 401
        assert not ApiToken.objects.filter(user=analyst).exists()

    def test_a_stolen_session_and_password_do_not_set_a_new_password_without_a_current_code(self):
        # A phishing proxy between the analyst and the site captures both the password and the session
        # cookie the second factor verified; with them it set a new password, which signed the owner
        # out everywhere and kept the thief's session.
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        thief = Client()
        sign_in(thief, analyst)
        second_step(thief, app_code(device, 1))
        body = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}

        page = thief.get("/admin/password_change/").content.decode()
        refused = thief.post("/admin/password_change/", body)

        assert 'name="code"' in page
        assert refused.status_code == 200
        assert "Type the code your authenticator app shows now" in refused.content.decode()
        analyst.refresh_from_db()
        assert analyst.check_password(PASSWORD)
        # The owner, with the phone, changes it.
        changed = thief.post("/admin/password_change/", {**body, "code": app_code(device, 2)})
        assert changed["Location"] == "/admin/password_change/done/"

    def test_a_wrong_current_password_spends_no_code(self):
        analyst = make_user(roles.ANALYST)
        device, codes = enrol(analyst)
        client = Client()
        sign_in(client, analyst)
        second_step(client, app_code(device, 1))
        body = {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
        client.post("/admin/password_change/", {**body, "code": codes[0]})
        assert analyst.staticdevice_set.get().token_set.filter(token=codes[0]).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["recovery code", "app's code"])
def test_one_code_typed_in_two_browsers_at_once_signs_in_one(settings, kind):
    settings.REQUIRE_2FA = True
    analyst = make_user(roles.ANALYST)
    device, codes = enrol(analyst)
    code = codes[0].upper() if kind == "recovery code" else app_code(device, 1)
    # From two addresses, so that the lockout's turns (per account and address) do not order them.
    browsers = [Client(REMOTE_ADDR="203.0.113.9"), Client(REMOTE_ADDR="198.51.100.7")]
    for browser in browsers:
        sign_in(browser, analyst)
    answers = {}

    def type_code(browser):
        try:
            answers[browser] = second_step(browser, code)
        finally:
            connection.close()

    threads = [threading.Thread(target=type_code, args=(browser,)) for browser in browsers]
    # The row that records the code's use (the recovery code's, the app's last code) is held
    # meanwhile, so both requests reach it before either has written it: each found the code
    # unused, and both signed in, unless one waits for the other's check.
    with transaction.atomic():
        if kind == "recovery code":
            StaticToken.objects.select_for_update().get(device__user=analyst, token=codes[0])
        else:
            TOTPDevice.objects.select_for_update().get(pk=device.pk)
        for thread in threads:
            thread.start()
        time.sleep(2)
    for thread in threads:
        thread.join()

    assert sorted(answer.status_code for answer in answers.values()) == [200, 302]
    assert [browser.get("/admin/").status_code for browser in browsers].count(200) == 1
    if kind == "recovery code":
        assert not StaticToken.objects.filter(device__user=analyst, token=codes[0]).exists()


class TestWhatAnswersTell:
    def test_the_token_endpoint_answers_alike_for_a_missing_account_and_a_wrong_password(self):
        partner = make_user(None)
        answers = [
            APIClient().post(f"{API}/auth/token/", {"username": username, "password": "guess"})
            for username in (partner.username, "nobody-here")
        ]
        assert [answer.status_code for answer in answers] == [400, 400]
        assert answers[0].json() == answers[1].json()

    def test_the_admins_login_answers_alike_for_a_missing_account_a_wrong_password_and_one_not_staff(self):
        partner, analyst = make_user(None), make_user(roles.ANALYST)
        pages = [
            Client().post("/admin/login/", {"username": username, "password": password, "next": "/admin/"})
            for username, password in (
                ("nobody-here", "guess"),
                (analyst.username, "guess"),
                (partner.username, PASSWORD),
            )
        ]
        errors = [str(page.context["form"].errors) for page in pages]
        assert errors[0] == errors[1] == errors[2]

    def test_a_missing_account_is_locked_out_like_an_existing_one(self):
        answers = [
            APIClient().post(f"{API}/auth/token/", {"username": "nobody-here", "password": "guess"}).status_code
            for _ in range(6)
        ]
        assert answers == [400, 400, 400, 400, 429, 429]

    @pytest.mark.usefixtures("second_factor_on")
    def test_wrong_codes_from_many_sessions_of_one_address_are_counted_together(self):
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        statuses = []
        for _ in range(5):
            browser = Client()
            sign_in(browser, analyst)
            statuses.append(second_step(browser, wrong_code(device)).status_code)
        assert statuses == [200, 200, 200, 200, 429]
