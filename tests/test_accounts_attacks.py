"""An attacker's pass over signing in: sessions' keys across the steps of signing in, what a new
password ends, codes guessed and recovery codes spent at once, what the answers tell about
whether an account exists, guesses spread over many addresses or many accounts, and what a stolen
session may do to its owner's second factor and other sessions."""

import threading
import time
from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessFailureLog
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.services import token_create
from incidents import roles
from tests.api_support import API
from tests.factories import make_user
from tests.test_accounts import (
    PASSWORD,
    app_code,
    confirm_identity,
    enrol,
    second_step,
    shown_on,
    sign_in,
    signed_in_with_second_factor,
)
from tests.test_accounts_confirmation import administrator_session

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


def sign_in_from(address: str, user, password=PASSWORD) -> Client:
    """A browser at `address` that posted `user`'s username and `password` to the admin's login;
    `.answer` is what it was told."""
    browser = Client(REMOTE_ADDR=address)
    browser.answer = sign_in(browser, user, password)
    return browser


def token_request_from(address: str, username: str, password: str, **extra):
    return APIClient(REMOTE_ADDR=address).post(
        f"{API}/auth/token/", {"username": username, "password": password, **extra}
    )


@pytest.fixture
def narrow_wide_bounds(settings):
    # Six rather than the defaults (20 at an account, 30 from an address): the rule, in fewer requests.
    settings.LOCKOUT_ACCOUNT_FAILURES = 6
    settings.LOCKOUT_ADDRESS_FAILURES = 6


@pytest.mark.usefixtures("narrow_wide_bounds")
class TestWideLockout:
    """The lock of an account at one address gave a botnet 5 guesses per address at one account,
    and one address 4 at each of thousands of accounts. An account's failures from every address,
    and an address's at every account, have bounds of their own; the addresses an account signed in
    from before meet only the lock at that address, so its owner is never locked out by others."""

    def test_guesses_from_many_addresses_at_one_account_are_stopped(self):
        analyst = make_user(roles.ANALYST)
        assert sign_in_from("198.51.100.7", analyst).answer["Location"] == "/admin/"

        statuses = [
            sign_in_from(f"203.0.113.{host}", analyst, password=f"guess {host}").answer.status_code
            for host in range(1, 6)
        ]
        # The token request counts with the admin's login: the sixth failure, at another door.
        sixth = token_request_from("203.0.113.6", analyst.username, "guess 6")
        assert statuses == [200] * 5 and sixth.status_code == 429

        # Even the right password is refused from any address the account has not signed in from,
        # for as long as the failures of the last day hold the bound reached.
        refused = sign_in_from("192.0.2.44", analyst).answer
        assert refused.status_code == 429
        assert "Too many failed sign-in attempts recently for this account" in refused.content.decode()
        assert "refused for 24 hours" in refused.content.decode()
        assert 23 * 3600 < int(refused["Retry-After"]) <= 24 * 3600
        assert token_request_from("192.0.2.45", analyst.username, PASSWORD).status_code == 429
        # Its owner, from where they signed in before, is not locked out.
        assert sign_in_from("198.51.100.7", analyst).answer["Location"] == "/admin/"

    def test_the_account_wide_bound_lifts_when_its_failures_age_out_of_the_window(self):
        partner = make_user(None)
        for host in range(1, 7):
            token_request_from(f"203.0.113.{host}", partner.username, "guess")
        assert token_request_from("192.0.2.44", partner.username, PASSWORD).status_code == 429
        with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
            assert token_request_from("192.0.2.44", partner.username, PASSWORD).status_code == 200

    def test_a_partner_tools_address_stays_open_to_its_token_requests(self):
        # A partner's script asks for its token from its server, which that success makes familiar.
        partner = make_user(None)
        assert token_request_from("198.51.100.20", partner.username, PASSWORD).status_code == 200
        for host in range(1, 7):
            token_request_from(f"203.0.113.{host}", partner.username, "guess")
        assert token_request_from("192.0.2.44", partner.username, PASSWORD).status_code == 429
        assert token_request_from("198.51.100.20", partner.username, PASSWORD).status_code == 200

    def test_guesses_from_one_address_at_many_accounts_are_stopped(self):
        colleague, analyst = make_user(roles.ANALYST), make_user(roles.ANALYST)
        # A colleague signs in from the office's address as every day.
        assert sign_in_from("203.0.113.9", colleague).answer["Location"] == "/admin/"

        # Someone at that address (or one that shares it) tries one password on many accounts.
        statuses = [
            token_request_from("203.0.113.9", f"staff-{number}", "Spring2026!").status_code for number in range(6)
        ]
        assert statuses == [400] * 5 + [429]

        # No other account may be tried from there: not even with its right password.
        assert sign_in_from("203.0.113.9", analyst).answer.status_code == 429
        # The colleague, who signs in from there, still does; and the analyst does from elsewhere.
        assert sign_in_from("203.0.113.9", colleague).answer["Location"] == "/admin/"
        assert sign_in_from("198.51.100.7", analyst).answer["Location"] == "/admin/"

    def test_a_familiar_address_still_meets_the_lock_at_that_address(self):
        analyst = make_user(roles.ANALYST)
        sign_in_from("198.51.100.7", analyst)
        statuses = [sign_in_from("198.51.100.7", analyst, password="guess").answer.status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        assert sign_in_from("198.51.100.7", analyst).answer.status_code == 429

    def test_guesses_from_a_familiar_address_meet_a_bound_of_their_own(self, settings):
        # Someone who shares the owner's address (an office's, a household's) met only the lock
        # there, five guesses every 15 minutes, without end.
        settings.LOCKOUT_FAMILIAR_FAILURES = 8
        analyst = make_user(roles.ANALYST)
        sign_in_from("198.51.100.7", analyst)
        sign_in_from("198.51.100.8", analyst)

        statuses = [sign_in_from("198.51.100.7", analyst, password="guess").answer.status_code for _ in range(5)]
        with time_machine.travel(timezone.now() + timedelta(minutes=16)):
            statuses += [sign_in_from("198.51.100.7", analyst, password="guess").answer.status_code for _ in range(3)]
            refused = sign_in_from("198.51.100.7", analyst).answer
            # The owner's other familiar address is not held by the guesses from this one.
            assert sign_in_from("198.51.100.8", analyst).answer["Location"] == "/admin/"

        assert statuses == [200] * 4 + [429] + [200, 200, 429]
        assert refused.status_code == 429
        assert (
            "Too many failed sign-in attempts recently for this account from your address" in refused.content.decode()
        )
        assert "places it signed in from before" not in refused.content.decode()
        assert 23 * 3600 < int(refused["Retry-After"]) <= 24 * 3600
        with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
            assert sign_in_from("198.51.100.7", analyst).answer["Location"] == "/admin/"

    @pytest.mark.usefixtures("second_factor_on")
    def test_a_password_alone_makes_no_address_familiar(self):
        # Whoever stole the password signs in with it from their own address, but never finishes:
        # that address stays strange to the account, and meets the account's wide bound.
        analyst = make_user(roles.ANALYST)
        enrol(analyst)
        thief = sign_in_from("203.0.113.9", analyst)
        assert thief.answer["Location"].startswith("/accounts/two-factor/")
        for host in range(1, 7):
            sign_in_from(f"192.0.2.{host}", analyst, password="guess")
        assert sign_in_from("203.0.113.9", analyst).answer.status_code == 429

    @pytest.mark.usefixtures("second_factor_on")
    def test_code_guesses_from_many_addresses_are_bounded_whatever_the_owners_right_codes(self, settings):
        # django-otp's wait after wrong codes starts again from nothing when the owner types a right
        # one: turned off here, the attacker's codes meet the lockout's counts alone, which nothing
        # the owner does resets.
        settings.OTP_TOTP_THROTTLE_FACTOR = 0
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        owner = sign_in_from("198.51.100.7", analyst)
        assert second_step(owner, app_code(device, 1))["Location"] == "/admin/"

        statuses = []
        for host in range(1, 8):
            # The attacker, who has the password, tries one code from each address of a botnet.
            attacker = sign_in_from(f"203.0.113.{host}", analyst)
            statuses.append(
                attacker.answer.status_code
                if attacker.answer.status_code == 429
                else second_step(attacker, wrong_code(device)).status_code
            )
            # The owner signs in between every guess, with the right code, from their usual address.
            owner = sign_in_from("198.51.100.7", analyst)
            assert second_step(owner, app_code(device, host + 1))["Location"] == "/admin/"
        assert statuses == [200] * 5 + [429, 429]

    @pytest.mark.usefixtures("second_factor_on")
    def test_code_guesses_from_one_address_stay_counted_across_the_owners_sign_ins(self, settings):
        settings.OTP_TOTP_THROTTLE_FACTOR = 0
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        attacker = sign_in_from("203.0.113.9", analyst)
        statuses = []
        for step in range(1, 6):
            statuses.append(second_step(attacker, wrong_code(device)).status_code)
            owner = sign_in_from("198.51.100.7", analyst)
            assert second_step(owner, app_code(device, step))["Location"] == "/admin/"
        assert statuses == [200, 200, 200, 200, 429]

    def test_an_administrator_lifts_the_account_wide_bound_by_deleting_its_failures(self):
        partner, administrator = make_user(None), make_user(roles.REVIEWER, is_superuser=True)
        for host in range(1, 7):
            token_request_from(f"203.0.113.{host}", partner.username, "guess")
        assert token_request_from("192.0.2.44", partner.username, PASSWORD).status_code == 429

        admin_client = Client(REMOTE_ADDR="198.51.100.8")
        admin_client.force_login(administrator)
        confirm_identity(admin_client)
        failures = AccessFailureLog.objects.filter(username=partner.username)
        admin_client.post(
            "/admin/axes/accessfailurelog/",
            {
                "action": "delete_selected",
                "_selected_action": list(failures.values_list("pk", flat=True)),
                "post": "yes",
            },
        )
        assert not failures.exists()
        assert token_request_from("192.0.2.44", partner.username, PASSWORD).status_code == 200


@pytest.mark.usefixtures("second_factor_on")
class TestStolenSession:
    """Whoever holds a signed-in session's cookie (a laptop left open, malware) has neither the
    password nor the phone."""

    def test_a_stolen_session_cannot_keep_replacing_the_owners_new_app(self, settings):
        # Each showing of the setup page begins a new app, replacing the one not yet confirmed: a
        # thief showing it again and again kept the owner's move to a new phone from completing.
        settings.OTP_TOTP_THROTTLE_FACTOR = 0
        analyst = make_user(roles.ANALYST)
        owners_device, _ = enrol(analyst)
        stolen, owner = Client(), Client()
        for step, session in enumerate((stolen, owner), start=1):
            sign_in(session, analyst)
            assert second_step(session, app_code(owners_device, step))["Location"] == "/admin/"
        confirm_identity(owner, code=app_code(owners_device, 3))
        owners_page = owner.get("/accounts/two-factor/setup/")
        new_app = analyst.totpdevice_set.get(confirmed=False)

        for _ in range(3):
            refused = stolen.get("/accounts/two-factor/setup/")
            assert refused["Location"].startswith("/accounts/confirm/?next=")
        assert list(analyst.totpdevice_set.filter(confirmed=False)) == [new_app]

        moved = owner.post(
            "/accounts/two-factor/setup/",
            {"code": app_code(new_app), "current-code": app_code(owners_device, 4), **shown_on(owners_page)},
        )
        assert len(moved.context["codes"]) == 10
        assert list(analyst.totpdevice_set.all()) == [new_app]

    def test_the_owner_signs_out_every_other_session_after_confirming(self):
        analyst = make_user(roles.ANALYST)
        device, _ = enrol(analyst)
        stolen, owner = Client(), Client()
        for step, session in enumerate((stolen, owner), start=1):
            sign_in(session, analyst)
            second_step(session, app_code(device, step))

        # Neither signs the other out without confirming who they are: not the thief, and the owner
        # is asked to confirm first.
        for session in (stolen, owner):
            asked = session.post("/accounts/sessions/end-others/")
            assert asked["Location"] == "/accounts/confirm/?next=%2Faccounts%2F"
        assert stolen.get("/admin/").status_code == owner.get("/admin/").status_code == 200

        confirm_identity(owner, code=app_code(device, 3))
        ended = owner.post("/accounts/sessions/end-others/", follow=True)
        assert "Signed out of 1 other session." in ended.content.decode()
        assert owner.get("/admin/").status_code == 200
        assert stolen.get("/admin/").status_code == 302


@pytest.mark.usefixtures("second_factor_on")
class TestListsAreNoOracleOfSecrets:
    """Django's lists take any lookup on their model's own fields in their address, whether or not
    a filter offers it: which rows a list shows then tells what a field it never shows holds."""

    def test_a_reader_of_authenticator_apps_cannot_read_anyones_key_through_the_lists_address(self):
        # `?key__lt=8` listed the superuser's app or not, by its key's first character: about 160
        # requests read the whole key, and with it every code of their app.
        administrator = make_user(roles.REVIEWER, is_superuser=True)
        device, _ = enrol(administrator)
        helpdesk = make_user(roles.ANALYST)
        helpdesk.user_permissions.add(Permission.objects.get(codename="view_totpdevice"))
        client = signed_in_with_second_factor(helpdesk)
        path = "/admin/otp_totp/totpdevice/"
        assert f"{path}{device.pk}/change/" in client.get(path).content.decode()

        below, above = chr(ord(device.key[0]) + 1), device.key[0]
        answers = [client.get(path, {"key__lt": prefix}) for prefix in (below, above)]
        answers += [client.get(path, {lookup: device.key}) for lookup in ("key", "key__exact", "key__startswith")]

        for answer in answers:
            assert answer.status_code == 400
            page = answer.content.decode()
            assert "This list offers no such filter: key" in page and device.key not in page
        assert len({answer.content.decode().replace("key__exact", "key").replace("key__startswith", "key")
                    .replace("key__lt", "key") for answer in answers}) == 1  # fmt: skip

    def test_a_reader_of_accounts_cannot_read_password_hashes_through_the_lists_address(self):
        # Django's users' list refuses these itself; the site's own refusal must not let them by.
        client, administrator, _ = administrator_session(second_factor=True)
        refused = client.get("/admin/auth/user/", {"password__startswith": administrator.password[:8]})
        assert refused.status_code == 400
        assert "This list offers no such filter: password__startswith" in refused.content.decode()

    def test_what_the_lists_filters_send_is_still_taken(self):
        client, administrator, _ = administrator_session(second_factor=True)
        reviewers = Group.objects.get(name=roles.REVIEWER)
        for path, query in (
            ("/admin/auth/user/", {"groups__id__exact": reviewers.pk, "is_superuser__exact": "1"}),
            ("/admin/auth/user/", {"is_active__exact": "1", "groups__isnull": "False"}),
            ("/admin/otp_totp/totpdevice/", {"confirmed__exact": "1", "created_at__gte": "2026-01-01 00:00:00+00:00"}),
            ("/admin/axes/accessattempt/", {"locked_out": "yes", "attempt_time__year": "2026"}),
            ("/admin/accounts/apitoken/", {"expires_at__isnull": "False"}),
        ):
            answer = client.get(path, query)
            assert answer.status_code == 200, (path, query, answer.status_code)
        listed = client.get("/admin/auth/user/", {"groups__id__exact": reviewers.pk}).context["cl"].result_list
        assert administrator in listed
