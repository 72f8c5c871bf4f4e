"""What a stolen session may change in the admin's accounts: one's own password only on the page
that asks for the current one, and the changes to accounts, roles and second factors only after
the session's owner confirmed who they are (password, and a current code when they have a second
factor) in the last minutes."""

import time

import pytest
from axes.models import AccessAttempt
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts.confirmation import CONFIRMED_AT_SESSION_KEY
from accounts.services import token_create
from incidents import roles
from tests.api_support import API
from tests.factories import make_user
from tests.test_accounts import PASSWORD, app_code, enrol, second_step, sign_in

CONFIRM = "/accounts/confirm/"
NEW_PASSWORD = "a new passphrase for 2027"


def administrator_session(*, second_factor: bool = False, **client_options):
    """A superuser's signed-in session (as whoever stole its cookie holds it), the account, and its
    authenticator app when `second_factor`."""
    administrator = make_user(roles.REVIEWER, is_superuser=True)
    client = Client(**client_options)
    device = None
    if second_factor:
        device, _ = enrol(administrator)
        sign_in(client, administrator)
        assert second_step(client, app_code(device, 1))["Location"] == "/admin/"
    else:
        client.force_login(administrator)
    return client, administrator, device


def confirm(client, password=PASSWORD, code=None, next_url="/admin/"):
    body = {"password": password, "next": next_url}
    if code is not None:
        body["code"] = code
    return client.post(CONFIRM, body)


def asked_to_confirm(response, path: str) -> bool:
    return (
        response.status_code == 302
        and response["Location"].startswith(f"{CONFIRM}?next=")
        and (path.replace("/", "%2F") in response["Location"])
    )


class TestOwnPassword:
    def test_ones_own_password_in_the_users_admin_leads_to_the_page_that_asks_for_the_current_one(self):
        # Django's users' admin set a new password without the current one: a stolen session's
        # cookie was enough to take the account, past the password change's lockout.
        thief, administrator, _ = administrator_session()
        path = f"/admin/auth/user/{administrator.pk}/password/"

        shown = thief.get(path)
        taken = thief.post(path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})

        assert (shown.status_code, shown["Location"]) == (302, "/admin/password_change/")
        assert (taken.status_code, taken["Location"]) == (302, "/admin/password_change/")
        administrator.refresh_from_db()
        assert administrator.check_password(PASSWORD)

    # The page compared its address's text with the account's id, and the lookup reads it as a
    # number: `01`, `+1` and `1 ` set one's own password without the current one (nor the current
    # code, nor the lockout's count of wrong ones), once the session had confirmed who it is.
    @pytest.mark.parametrize("spelling", ["{pk}", "0{pk}", "+{pk}", "{pk}%20"])
    def test_even_after_confirming_ones_own_password_needs_the_current_one(self, spelling):
        client, administrator, _ = administrator_session()
        confirm(client)
        path = f"/admin/auth/user/{spelling.format(pk=administrator.pk)}/password/"
        taken = client.post(path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
        assert taken["Location"] == "/admin/password_change/"
        administrator.refresh_from_db()
        assert administrator.check_password(PASSWORD)


class TestAnotherPersonsPassword:
    def test_it_needs_a_recent_confirmation_then_is_recorded_without_the_password(self):
        client, administrator, _ = administrator_session()
        colleague, colleagues_browser = make_user(roles.ANALYST), Client()
        colleagues_browser.force_login(colleague)
        _, key = token_create(user=colleague, name="sync", second_factor=True)
        path = f"/admin/auth/user/{colleague.pk}/password/"
        body = {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}

        refused = client.post(path, body)
        assert asked_to_confirm(refused, path)
        colleague.refresh_from_db()
        assert colleague.check_password(PASSWORD)

        assert confirm(client, next_url=path)["Location"] == path
        changed = client.post(path, body)
        assert changed["Location"] == f"/admin/auth/user/{colleague.pk}/change/"
        colleague.refresh_from_db()
        assert colleague.check_password(NEW_PASSWORD)
        entry = LogEntry.objects.get(object_id=str(colleague.pk), content_type__model="user")
        assert entry.user == administrator and "password" in entry.get_change_message().lower()
        assert NEW_PASSWORD not in entry.change_message
        # The colleague's sessions and tokens end with the old password.
        assert colleagues_browser.get("/admin/").status_code == 302
        assert APIClient(HTTP_AUTHORIZATION=f"Token {key}").get(f"{API}/incidents/").status_code == 401


@pytest.mark.parametrize(
    "change",
    ["own_email", "own_username", "own_role", "own_second_factor", "role_one_holds", "new_account", "unlock"],
)
def test_a_stolen_session_changes_no_account_without_confirming(settings, change):
    settings.REQUIRE_2FA = True
    thief, administrator, device = administrator_session(second_factor=True)
    confidential = Group.objects.get(name=roles.CONFIDENTIAL_ACCESS)
    user_form = {
        "username": administrator.username,
        "email": "",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "groups": [group.pk for group in administrator.groups.all()],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    own = f"/admin/auth/user/{administrator.pk}/change/"
    AccessAttempt.objects.create(
        username=administrator.username, ip_address="127.0.0.1", failures_since_start=3, user_agent="", get_data=""
    )
    path, body = {
        "own_email": (own, {**user_form, "email": "thief@example.org"}),
        "own_username": (own, {**user_form, "username": "thief"}),
        "own_role": (own, {**user_form, "groups": [*user_form["groups"], confidential.pk]}),
        "own_second_factor": (f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"}),
        "role_one_holds": (
            f"/admin/auth/group/{administrator.groups.get().pk}/change/",
            {"name": roles.REVIEWER, "permissions": [p.pk for p in confidential.permissions.all()]},
        ),
        "new_account": (
            "/admin/auth/user/add/",
            {"username": "spare", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
        ),
        "unlock": (
            "/admin/axes/accessattempt/",
            {"action": "delete_selected", "_selected_action": [AccessAttempt.objects.get().pk], "post": "yes"},
        ),
    }[change]

    shown, refused = thief.get(path), thief.post(path, body)

    assert asked_to_confirm(refused, path)
    if change != "unlock":
        assert asked_to_confirm(shown, path)
    administrator.refresh_from_db()
    assert administrator.username != "thief" and administrator.email == ""
    assert not administrator.groups.filter(pk=confidential.pk).exists()
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert not Group.objects.get(name=roles.REVIEWER).permissions.filter(codename="view_confidential").exists()
    assert not type(administrator).objects.filter(username="spare").exists()
    assert AccessAttempt.objects.exists()


@pytest.mark.usefixtures("second_factor_on")
class TestConfirming:
    def test_it_asks_for_the_password_and_a_current_code(self):
        client, administrator, device = administrator_session(second_factor=True)
        path = f"/admin/auth/user/{administrator.pk}/change/"
        page = client.get(f"{CONFIRM}?next={path}").content.decode()
        assert 'name="password"' in page and 'name="code"' in page

        without_code = confirm(client, next_url=path)
        assert without_code.status_code == 200
        assert client.get(path)["Location"].startswith(CONFIRM)

        assert confirm(client, code=app_code(device, 2), next_url=path)["Location"] == path
        assert client.get(path).status_code == 200

    def test_wrong_passwords_count_towards_the_lockout(self):
        client, administrator, device = administrator_session(second_factor=True, REMOTE_ADDR="203.0.113.9")
        statuses = [confirm(client, password=guess, code=app_code(device, 2)).status_code for guess in "abcde"]
        assert statuses == [200, 200, 200, 200, 429]
        refused = confirm(client, code=app_code(device, 2))
        assert refused.status_code == 429
        assert client.get(f"/admin/auth/user/{administrator.pk}/change/")["Location"].startswith(CONFIRM)
        # A wrong password spent no code: the code was not checked.
        assert AccessAttempt.objects.get(username=administrator.username).failures_since_start == 5

    def test_a_confirmation_lasts_minutes_not_the_session(self, settings):
        client, administrator, device = administrator_session(second_factor=True)
        path = f"/admin/auth/user/{administrator.pk}/change/"
        confirm(client, code=app_code(device, 2))
        assert client.get(path).status_code == 200
        session = client.session
        session[CONFIRMED_AT_SESSION_KEY] = time.time() - settings.CONFIRMATION_MINUTES * 60 - 1
        session.save()
        assert client.get(path)["Location"].startswith(CONFIRM)

    def test_confirming_gives_the_session_a_new_key(self):
        client, _, device = administrator_session(second_factor=True)
        before = client.cookies["sessionid"].value
        confirm(client, code=app_code(device, 2))
        assert client.cookies["sessionid"].value != before

    def test_reading_accounts_needs_no_confirmation(self):
        client, _, _ = administrator_session(second_factor=True)
        for path in (
            "/admin/auth/user/",
            "/admin/auth/group/",
            "/admin/otp_totp/totpdevice/",
            "/admin/axes/accessattempt/",
        ):
            assert client.get(path).status_code == 200, path


@pytest.fixture
def second_factor_on(settings):
    settings.REQUIRE_2FA = True


class TestDevicesInTheAdmin:
    """Authenticator apps and recovery codes are set up by their owners alone (a setup link, the
    current app's code: accounts.services); the admin deletes them, for a lost phone, and nothing
    else, even in a confirmed session."""

    def test_no_one_adds_recovery_codes_or_an_app_of_their_choosing_there(self, settings):
        settings.REQUIRE_2FA = True
        client, _, device = administrator_session(second_factor=True)
        confirm(client, code=app_code(device, 2))
        colleague = make_user(roles.ANALYST)

        for path in ("/admin/otp_static/staticdevice/add/", "/admin/otp_totp/totpdevice/add/"):
            assert client.get(path).status_code == 403, path
        added = client.post(
            "/admin/otp_static/staticdevice/add/",
            {
                "user": colleague.pk,
                "name": "Recovery codes",
                "confirmed": "on",
                "token_set-TOTAL_FORMS": "1",
                "token_set-INITIAL_FORMS": "0",
                "token_set-0-token": "chosenbyme",
            },
        )
        assert added.status_code == 403
        assert not colleague.staticdevice_set.exists()

    def test_no_one_moves_an_app_to_another_account_there(self, settings):
        settings.REQUIRE_2FA = True
        client, administrator, device = administrator_session(second_factor=True)
        confirm(client, code=app_code(device, 2))
        colleague = make_user(roles.ANALYST)
        path = f"/admin/otp_totp/totpdevice/{device.pk}/change/"

        client.post(path, {"user": colleague.pk, "name": "Authenticator app", "confirmed": "on"})

        device.refresh_from_db()
        assert device.user == administrator
        assert 'name="user"' not in client.get(path).content.decode()
