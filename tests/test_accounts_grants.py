"""Who may give whom which powers in the admin's users and groups (accounts.grants): a user manager
(an analyst allowed to change users and groups, who confirmed who they are) gives only the roles
and permissions they hold, never to themselves; superuser status, the staff status of a superuser,
Confidential access, a role's permissions, the names of incidents.roles' roles and superusers'
accounts (their second factors and failed sign-ins too) are a superuser's; nobody deactivates or
deletes the last active superuser; each grant and removal is recorded."""

import re

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from accounts.grants import held_permissions
from accounts.models import SetupLink
from incidents import roles
from tests.api_support import API, client_for, incident_url
from tests.factories import make_incident, make_user
from tests.test_accounts import (  # noqa: F401 (a fixture)
    enrol,
    follow_setup_link,
    second_factor_on,
    signed_in_with_second_factor,
)
from tests.test_api_write import new_incident_body

User = get_user_model()

pytestmark = pytest.mark.usefixtures("second_factor_on")


def permission(label: str) -> Permission:
    app_label, codename = label.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def role(name: str) -> Group:
    return Group.objects.get(name=name)


def user_manager() -> User:
    """An analyst also allowed to manage accounts and roles, as a deployment might give a team lead."""
    manager = make_user(roles.ANALYST)
    for action in ("view", "add", "change", "delete"):
        manager.user_permissions.add(permission(f"auth.{action}_user"), permission(f"auth.{action}_group"))
    return manager


def superuser() -> User:
    return make_user(roles.REVIEWER, is_superuser=True)


def user_form(account, **changes) -> dict:
    """The users' admin change form of `account` as it shows it, with `changes`."""
    form = {
        "username": account.username,
        "email": account.email,
        "is_active": "on" if account.is_active else "",
        "is_staff": "on" if account.is_staff else "",
        "is_superuser": "on" if account.is_superuser else "",
        "groups": [group.pk for group in account.groups.all()],
        "user_permissions": [each.pk for each in account.user_permissions.all()],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        **changes,
    }
    return {name: value for name, value in form.items() if value != ""}


def change(client, account, **changes):
    return client.post(f"/admin/auth/user/{account.pk}/change/", user_form(account, **changes))


def errors_of(page, field: str) -> str:
    assert page.status_code == 200, page
    return " ".join(page.context["adminform"].form.errors[field])


def powers(account) -> tuple:
    account = User.objects.get(pk=account.pk)
    return (
        account.is_superuser,
        account.is_staff,
        account.is_active,
        sorted(account.groups.values_list("name", flat=True)),
        sorted(account.user_permissions.values_list("codename", flat=True)),
    )


def role_history(account) -> list[str]:
    entries = LogEntry.objects.filter(content_type__model="user", object_id=str(account.pk)).order_by("pk")
    return [entry.get_change_message() for entry in entries]


class TestNobodyChangesTheirOwnPowers:
    @pytest.mark.parametrize(
        ("field", "changes", "message"),
        [
            ("is_superuser", {"is_superuser": "on"}, "You cannot give yourself superuser status"),
            ("groups", {"groups": "confidential"}, "You cannot give yourself a role: another administrator must."),
            ("groups", {"groups": "reviewer"}, "You cannot give yourself a role: another administrator must."),
            ("groups", {"groups": []}, "You cannot take a role from yourself: another administrator must."),
            ("user_permissions", {"user_permissions": "delete_incident"}, "You cannot give yourself a permission"),
        ],
    )
    def test_a_user_manager_cannot_give_themselves_more(self, field, changes, message):
        manager = user_manager()
        client = signed_in_with_second_factor(manager, confirmed=True)
        held = [group.pk for group in manager.groups.all()]
        changes = {
            name: {
                "confidential": [*held, role(roles.CONFIDENTIAL_ACCESS).pk],
                "reviewer": [*held, role(roles.REVIEWER).pk],
                "delete_incident": [
                    *(each.pk for each in manager.user_permissions.all()),
                    permission("incidents.delete_incident").pk,
                ],
            }.get(value, value)
            if isinstance(value, str)
            else value
            for name, value in changes.items()
        }
        before = powers(manager)

        page = change(client, manager, **changes)

        assert message in errors_of(page, field)
        assert powers(manager) == before

    def test_a_superuser_cannot_take_their_own_superuser_or_staff_status(self):
        administrator, colleague = superuser(), superuser()
        client = signed_in_with_second_factor(administrator, confirmed=True)

        page = change(client, administrator, is_superuser="", is_staff="", groups=[])

        assert "You cannot take superuser status from yourself" in errors_of(page, "is_superuser")
        assert "You cannot take staff status from yourself" in errors_of(page, "is_staff")
        assert "another administrator must" in errors_of(page, "groups")
        assert powers(administrator) == (True, True, True, [roles.REVIEWER], [])
        assert colleague.is_superuser


class TestGivingOthersPowers:
    def test_a_user_manager_cannot_make_an_account_they_control_superuser(self):
        manager, spare = user_manager(), make_user(None)
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = change(client, spare, is_superuser="on", is_staff="on")

        assert "Only a superuser may give or take superuser status." in errors_of(page, "is_superuser")
        assert powers(spare) == (False, False, True, [], [])

    @pytest.mark.parametrize(
        ("given", "message"),
        [
            (
                roles.CONFIDENTIAL_ACCESS,
                "Only a superuser may give or take Confidential access, as a role or a permission.",
            ),
            (roles.REVIEWER, "You may give or take only roles whose permissions you hold yourself, not Reviewer."),
        ],
    )
    def test_a_user_manager_gives_no_role_beyond_their_own(self, given, message):
        manager, colleague = user_manager(), make_user(roles.VIEWER)
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = change(client, colleague, groups=[role(roles.VIEWER).pk, role(given).pk])

        assert message in errors_of(page, "groups")
        assert powers(colleague)[3] == [roles.VIEWER]

    def test_a_user_manager_takes_no_role_from_a_colleague_who_holds_more(self):
        manager, colleague = user_manager(), make_user(roles.REVIEWER, confidential=True)
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = change(client, colleague, groups=[])

        assert (
            f"Only a superuser may change {colleague.username}'s account: it holds permissions you do not"
        ) in " ".join(page.context["adminform"].form.non_field_errors())
        assert powers(colleague)[3] == [roles.CONFIDENTIAL_ACCESS, roles.REVIEWER]

    @pytest.mark.parametrize("door", ["permission", "another_role"])
    def test_a_user_manager_with_confidential_access_cannot_pass_it_on(self, door):
        # Holding it is not deciding who needs to know: neither the permission itself nor a role
        # carrying it (Confidential access renamed, say) is theirs to give.
        manager, colleague = user_manager(), make_user(roles.ANALYST)
        manager.groups.add(role(roles.CONFIDENTIAL_ACCESS))
        helpers = Group.objects.create(name="Helpers")
        helpers.permissions.add(permission("incidents.view_confidential"))
        client = signed_in_with_second_factor(manager, confirmed=True)

        if door == "permission":
            field, page = (
                "user_permissions",
                change(client, colleague, user_permissions=[permission("incidents.view_confidential").pk]),
            )
        else:
            field, page = "groups", change(client, colleague, groups=[role(roles.ANALYST).pk, helpers.pk])

        assert "Only a superuser may give or take Confidential access" in errors_of(page, field)
        assert not User.objects.get(pk=colleague.pk).has_perm("incidents.view_confidential")

    def test_a_user_manager_gives_no_permission_they_do_not_hold(self):
        manager, colleague = user_manager(), make_user(roles.ANALYST)
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = change(client, colleague, user_permissions=[permission("incidents.delete_incident").pk])

        assert "You may give or take only permissions you hold yourself" in errors_of(page, "user_permissions")
        assert "Can delete incident" in errors_of(page, "user_permissions")
        assert powers(colleague)[4] == []

    def test_a_user_manager_gives_a_role_they_hold_and_it_is_recorded(self):
        manager, newcomer = user_manager(), make_user(None, is_staff=True)
        client = signed_in_with_second_factor(manager, confirmed=True)

        changed = change(client, newcomer, groups=[role(roles.VIEWER).pk, role(roles.ANALYST).pk])
        taken = change(client, User.objects.get(pk=newcomer.pk), groups=[role(roles.ANALYST).pk])

        assert (changed.status_code, taken.status_code) == (302, 302)
        assert powers(newcomer)[3] == [roles.ANALYST]
        recorded = LogEntry.objects.filter(object_id=str(newcomer.pk), content_type__model="user", user=manager)
        messages = [entry.get_change_message() for entry in recorded.order_by("pk")]
        assert "Gave roles: Analyst, Viewer." in messages and "Took role: Viewer." in messages
        assert all(entry.action_time is not None for entry in recorded)

    def test_a_superuser_gives_superuser_status_and_confidential_access_and_it_is_recorded(self):
        administrator, colleague = superuser(), make_user(roles.REVIEWER)
        client = signed_in_with_second_factor(administrator, confirmed=True)

        page = change(
            client,
            colleague,
            is_superuser="on",
            groups=[role(roles.REVIEWER).pk, role(roles.CONFIDENTIAL_ACCESS).pk],
            user_permissions=[permission("auth.view_user").pk],
        )

        assert page.status_code == 302
        assert powers(colleague) == (True, True, True, [roles.CONFIDENTIAL_ACCESS, roles.REVIEWER], ["view_user"])
        assert (
            "Gave superuser status. Gave role: Confidential access. Gave permission: "
            "Authentication and Authorization | user | Can view user."
        ) in role_history(colleague)


class TestSuperusersAccounts:
    def test_a_user_manager_cannot_change_a_superusers_account(self):
        manager, administrator = user_manager(), superuser()
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = change(client, administrator, email="thief@example.org", is_staff="")

        assert "Only a superuser may change a superuser's account." in " ".join(
            page.context["adminform"].form.non_field_errors()
        )
        assert User.objects.get(pk=administrator.pk).email == "" and powers(administrator)[1]

    def test_a_user_manager_cannot_set_a_superusers_password(self):
        manager, administrator = user_manager(), superuser()
        client = signed_in_with_second_factor(manager, confirmed=True)
        new = "a new passphrase for 2027"

        page = client.post(
            f"/admin/auth/user/{administrator.pk}/password/",
            {"password1": new, "password2": new, "usable_password": "true"},
            follow=True,
        )

        assert "Only a superuser may set the password of a superuser&#x27;s account." in page.content.decode()
        assert not User.objects.get(pk=administrator.pk).check_password(new)

    @pytest.mark.parametrize("door", ["page", "action"])
    def test_a_user_manager_cannot_delete_a_superuser(self, door):
        manager, administrator = user_manager(), superuser()
        superuser()
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = delete_account(client, administrator, door)

        assert "Only a superuser may delete a superuser&#x27;s account." in page.content.decode()
        assert User.objects.filter(pk=administrator.pk).exists()

    def test_a_user_manager_cannot_set_the_password_of_a_colleague_who_holds_more(self):
        # Taking over a reviewer with Confidential access (its password, then a setup link for
        # its first app) gave its powers as surely as a grant.
        manager, reviewer = user_manager(), make_user(roles.REVIEWER, confidential=True)
        client = signed_in_with_second_factor(manager, confirmed=True)
        new = "a new passphrase for 2027"

        page = client.post(
            f"/admin/auth/user/{reviewer.pk}/password/",
            {"password1": new, "password2": new, "usable_password": "true"},
            follow=True,
        )

        assert (
            f"Only a superuser may set the password of {reviewer.username}&#x27;s account: it holds permissions you "
            "do not (incidents.delete_claim" in page.content.decode()
        )
        assert not User.objects.get(pk=reviewer.pk).check_password(new)

    def test_a_user_manager_makes_no_setup_link_for_a_colleague_who_holds_more(self):
        manager, reviewer = user_manager(), make_user(roles.REVIEWER, confidential=True)
        manager.user_permissions.add(permission("accounts.add_setuplink"))
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = client.post(
            "/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [reviewer.pk]}, follow=True
        )

        assert f"Only a superuser may make a setup link for {reviewer.username}&#x27;s account" in page.content.decode()
        assert not SetupLink.objects.filter(user=reviewer).exists()

    def test_a_link_made_before_the_account_held_more_than_its_maker_no_longer_works(self):
        # Onboarding: a user manager sets the newcomer's first password and makes their link; a
        # superuser then gives the account Confidential access. The manager, holding the password
        # and the unused link, could set up their own phone first: the link was checked only when made.
        manager, newcomer = user_manager(), make_user(roles.ANALYST)
        manager.user_permissions.add(permission("accounts.add_setuplink"))
        client = signed_in_with_second_factor(manager, confirmed=True)
        made = client.post("/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [newcomer.pk]})
        ((_, link),) = made.context["links"]
        newcomer.groups.add(Group.objects.get(name=roles.CONFIDENTIAL_ACCESS))

        opened = follow_setup_link(Client(), link)

        assert opened.status_code == 404
        # Nor once its maker is no longer active, though the account holds nothing more.
        other = make_user(roles.ANALYST)
        ((_, other_link),) = client.post(
            "/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [other.pk]}
        ).context["links"]
        User.objects.filter(pk=manager.pk).update(is_active=False)
        assert follow_setup_link(Client(), other_link).status_code == 404
        User.objects.filter(pk=manager.pk).update(is_active=True)
        assert follow_setup_link(Client(), other_link).status_code == 302


class TestADeactivatedAccountKeepsItsPowers:
    """Django answers no permission for an inactive account (has_perm, get_all_permissions): a
    deactivated Reviewer with Confidential access "held nothing the manager lacked", so a user
    manager deleted its second factor, set its password, made it active again (an API-only account,
    no second factor needed) and published with its token. What an account holds counts, active or
    not."""

    @staticmethod
    def former_reviewer() -> User:
        former = make_user(roles.REVIEWER, confidential=True)
        enrol(former)
        User.objects.filter(pk=former.pk).update(is_active=False)
        return User.objects.get(pk=former.pk)

    @staticmethod
    def manager() -> User:
        manager = TestWhatProtectsAnAccount.helpdesk()
        manager.user_permissions.add(permission("accounts.add_setuplink"))
        return manager

    def test_its_password_is_not_set(self):
        former = self.former_reviewer()
        client = signed_in_with_second_factor(self.manager(), confirmed=True)
        new = "a password the manager chose 42"

        page = client.post(
            f"/admin/auth/user/{former.pk}/password/",
            {"password1": new, "password2": new, "usable_password": "true"},
            follow=True,
        )

        assert (
            f"Only a superuser may set the password of {former.username}&#x27;s account: it holds permissions you "
            "do not (incidents.delete_claim" in page.content.decode()
        )
        assert not User.objects.get(pk=former.pk).check_password(new)

    def test_it_is_not_made_active_again(self):
        former = self.former_reviewer()
        client = signed_in_with_second_factor(self.manager(), confirmed=True)

        page = change(client, former, is_active="on", is_staff="", api_only="on")

        assert f"Only a superuser may change {former.username}&#x27;s account" in page.content.decode()
        assert powers(former)[2] is False

    @pytest.mark.parametrize("door", ["page", "action"])
    @pytest.mark.parametrize("device", ["app", "recovery codes"])
    def test_its_second_factor_is_not_removed(self, device, door):
        former = self.former_reviewer()
        record = former.totpdevice_set.get() if device == "app" else former.staticdevice_set.get()
        path = "/admin/otp_totp/totpdevice/" if device == "app" else "/admin/otp_static/staticdevice/"
        client = signed_in_with_second_factor(self.manager(), confirmed=True)

        page = delete_in_admin(client, path, record, door)

        assert f"Only a superuser may remove the second factor of {former.username}&#x27;s" in page.content.decode()
        assert type(record).objects.filter(pk=record.pk).exists()

    @pytest.mark.parametrize("door", ["page", "action"])
    def test_its_failed_sign_ins_are_not_cleared(self, door):
        former = self.former_reviewer()
        attempt = failed_sign_ins(former.username)
        client = signed_in_with_second_factor(self.manager(), confirmed=True)

        page = delete_in_admin(client, "/admin/axes/accessattempt/", attempt, door)

        assert f"Only a superuser may clear the failed sign-ins of {former.username}&#x27;s" in page.content.decode()
        assert AccessAttempt.objects.filter(pk=attempt.pk).exists()

    @pytest.mark.parametrize("door", ["page", "action"])
    def test_it_is_not_deleted(self, door):
        former = self.former_reviewer()
        client = signed_in_with_second_factor(self.manager(), confirmed=True)

        page = delete_account(client, former, door)

        assert f"Only a superuser may delete {former.username}&#x27;s account" in page.content.decode()
        assert User.objects.filter(pk=former.pk).exists()

    def test_no_setup_link_is_made_for_it(self):
        former = self.former_reviewer()
        client = signed_in_with_second_factor(self.manager(), confirmed=True)

        page = client.post(
            "/admin/auth/user/", {"action": "make_setup_links", "_selected_action": [former.pk]}, follow=True
        )

        assert f"Only a superuser may make a setup link for {former.username}&#x27;s" in page.content.decode()
        assert not SetupLink.objects.filter(user=former, used_at__isnull=True).exists()

    def test_a_deactivated_colleague_holding_no_more_stays_the_managers_to_make_active_again(self):
        colleague = make_user(roles.VIEWER, is_active=False)
        client = signed_in_with_second_factor(self.manager(), confirmed=True)

        answer = change(client, colleague, is_active="on")

        assert answer.status_code == 302
        assert powers(colleague)[2] is True

    def test_an_accounts_power_is_what_it_holds_for_whoever_acts_and_whoever_is_acted_on(self):
        # One measure for both sides of the comparison: roles' and own permissions, or all of them.
        manager, former = self.manager(), self.former_reviewer()
        assert "incidents.publish_incident" not in held_permissions(manager)
        assert {"incidents.publish_incident", "incidents.view_confidential"} <= held_permissions(former)
        assert held_permissions(superuser()) == {
            f"{app}.{code}" for app, code in Permission.objects.values_list("content_type__app_label", "codename")
        }


def failed_sign_ins(username: str) -> AccessAttempt:
    """The lockout's count of five wrong passwords for `username` from one address: locked."""
    return AccessAttempt.objects.create(
        username=username, ip_address="203.0.113.9", failures_since_start=5, user_agent="", get_data=""
    )


def failed_sign_in_logged(username: str) -> AccessFailureLog:
    """One wrong password for `username` in django-axes' log, which the lockout's wide bounds count."""
    return AccessFailureLog.objects.create(username=username, ip_address="203.0.113.9", user_agent="")


# What the lockout counts, each in its list of the admin: deleting either lifts a lock.
FAILED_SIGN_IN_RECORDS = {
    "attempts": (failed_sign_ins, "/admin/axes/accessattempt/"),
    "failure log": (failed_sign_in_logged, "/admin/axes/accessfailurelog/"),
}


class TestWhatProtectsAnAccount:
    """A second factor and the lockout's count of failed sign-ins protect an account: removing either
    is a step towards taking it over, which only whoever controls the account may take."""

    @staticmethod
    def helpdesk() -> User:
        """A user manager also allowed to delete second factors, for colleagues who lost their
        phone, and the lockout's records, for colleagues locked out."""
        manager = user_manager()
        for label in (
            "otp_totp.view_totpdevice",
            "otp_totp.delete_totpdevice",
            "otp_static.view_staticdevice",
            "otp_static.delete_staticdevice",
            "axes.view_accessattempt",
            "axes.delete_accessattempt",
            "axes.view_accessfailurelog",
            "axes.delete_accessfailurelog",
        ):
            manager.user_permissions.add(permission(label))
        return manager

    @pytest.mark.parametrize("door", ["page", "action"])
    @pytest.mark.parametrize("device", ["app", "recovery codes"])
    @pytest.mark.parametrize(
        ("owner", "message"),
        [
            ("superuser", "Only a superuser may remove the second factor of a superuser&#x27;s account."),
            ("holds more", "Only a superuser may remove the second factor of {username}&#x27;s account: it holds"),
        ],
        ids=["superuser", "holds_more"],
    )
    def test_a_helpdesk_removes_no_second_factor_of_an_account_holding_more(self, owner, message, device, door):
        account = superuser() if owner == "superuser" else make_user(roles.REVIEWER, confidential=True)
        app, _ = enrol(account)
        record = app if device == "app" else account.staticdevice_set.get()
        path = "/admin/otp_totp/totpdevice/" if device == "app" else "/admin/otp_static/staticdevice/"
        client = signed_in_with_second_factor(self.helpdesk(), confirmed=True)

        page = delete_in_admin(client, path, record, door)

        assert message.format(username=account.username) in page.content.decode()
        assert type(record).objects.filter(pk=record.pk).exists()

    @pytest.mark.parametrize("door", ["page", "action"])
    def test_a_helpdesk_removes_the_second_factor_of_a_colleague_holding_no_more(self, door):
        colleague = make_user(roles.VIEWER)
        app, _ = enrol(colleague)
        client = signed_in_with_second_factor(self.helpdesk(), confirmed=True)

        delete_in_admin(client, "/admin/otp_totp/totpdevice/", app, door)

        assert not colleague.totpdevice_set.exists()

    @pytest.mark.parametrize("records", FAILED_SIGN_IN_RECORDS)
    @pytest.mark.parametrize("door", ["page", "action"])
    def test_a_helpdesk_clears_no_failed_sign_ins_at_a_superusers_account(self, door, records):
        # Clearing them lets whoever is guessing the superuser's password go on guessing.
        administrator = superuser()
        client = signed_in_with_second_factor(self.helpdesk(), confirmed=True)
        make_record, list_path = FAILED_SIGN_IN_RECORDS[records]
        record = make_record(administrator.username)

        page = delete_in_admin(client, list_path, record, door)

        assert "Only a superuser may clear the failed sign-ins of a superuser&#x27;s account." in page.content.decode()
        assert type(record).objects.filter(pk=record.pk).exists()

    @pytest.mark.parametrize("username", ["colleague", "no account"])
    def test_a_helpdesk_clears_the_failed_sign_ins_at_a_colleague_holding_no_more_or_at_no_account(self, username):
        colleague = make_user(roles.VIEWER)
        client = signed_in_with_second_factor(self.helpdesk(), confirmed=True)
        attempt = failed_sign_ins(colleague.username if username == "colleague" else "nobody")

        delete_in_admin(client, "/admin/axes/accessattempt/", attempt, "action")

        assert not AccessAttempt.objects.filter(pk=attempt.pk).exists()


def delete_in_admin(client, list_path: str, record, door: str):
    """Deletes `record` in the admin's list at `list_path`: from its own page, or by the list's action."""
    if door == "page":
        return client.post(f"{list_path}{record.pk}/delete/", {"post": "yes"}, follow=True)
    body = {"action": "delete_selected", "_selected_action": [record.pk], "post": "yes"}
    return client.post(list_path, body, follow=True)


def delete_account(client, account, door):
    return delete_in_admin(client, "/admin/auth/user/", account, door)


class TestTheLastSuperuser:
    def test_it_cannot_be_deactivated(self):
        administrator = superuser()
        User.objects.filter(is_superuser=True).exclude(pk=administrator.pk).update(is_active=False)
        client = signed_in_with_second_factor(administrator, confirmed=True)

        page = change(client, administrator, is_active="")

        assert "This is the last active superuser" in errors_of(page, "is_active")
        assert powers(administrator)[2]

    @pytest.mark.parametrize("door", ["page", "action"])
    def test_it_cannot_be_deleted(self, door):
        administrator = superuser()
        User.objects.filter(is_superuser=True).exclude(pk=administrator.pk).update(is_active=False)
        client = signed_in_with_second_factor(administrator, confirmed=True)

        page = delete_account(client, administrator, door)

        assert "This would delete the last active superuser" in page.content.decode()
        assert User.objects.filter(pk=administrator.pk).exists()

    def test_another_superuser_can_be_deactivated_while_one_remains(self):
        administrator, colleague = superuser(), superuser()
        client = signed_in_with_second_factor(administrator, confirmed=True)

        assert change(client, colleague, is_active="").status_code == 302
        assert not powers(colleague)[2]


class TestRoles:
    def test_a_user_manager_cannot_change_a_roles_permissions(self):
        manager = user_manager()
        client = signed_in_with_second_factor(manager, confirmed=True)
        analyst = role(roles.ANALYST)
        before = set(analyst.permissions.all())

        page = client.post(
            f"/admin/auth/group/{analyst.pk}/change/",
            {
                "name": analyst.name,
                "permissions": [*(p.pk for p in before), permission("incidents.view_confidential").pk],
            },
        )

        assert "Only a superuser may change a role's permissions" in errors_of(page, "permissions")
        assert set(analyst.permissions.all()) == before
        assert not manager.has_perm("incidents.view_confidential")

    def test_a_user_manager_cannot_add_a_role_with_permissions(self):
        manager = user_manager()
        client = signed_in_with_second_factor(manager, confirmed=True)

        page = client.post(
            "/admin/auth/group/add/", {"name": "Deleters", "permissions": [permission("incidents.view_incident").pk]}
        )

        assert "Only a superuser may change a role's permissions" in errors_of(page, "permissions")
        assert not Group.objects.filter(name="Deleters").exists()

    @pytest.mark.parametrize("door", ["page", "action"])
    def test_a_user_manager_cannot_delete_a_role_someone_holds(self, door):
        manager = user_manager()
        client = signed_in_with_second_factor(manager, confirmed=True)
        reviewer = role(roles.REVIEWER)
        make_user(roles.REVIEWER)

        page = delete_in_admin(client, "/admin/auth/group/", reviewer, door)

        assert "Only a superuser may delete a role that accounts hold: Reviewer." in page.content.decode()
        assert Group.objects.filter(pk=reviewer.pk).exists()

    @pytest.mark.parametrize(
        ("door", "message"),
        [
            ("rename_a_role", "Only a superuser may rename Reviewer: each migrate gives the role named Reviewer"),
            ("take_a_roles_name", "Only a superuser may name a role Reviewer: each migrate gives the role named"),
            ("new_role_of_that_name", "Only a superuser may name a role Reviewer: each migrate gives the role named"),
        ],
        ids=["rename_a_role", "take_a_roles_name", "new_role_of_that_name"],
    )
    def test_a_user_manager_cannot_move_a_roles_name(self, door, message):
        # After each migrate the role named Reviewer holds a reviewer's permissions: Reviewer
        # renamed away, then Viewer (or a new role) named Reviewer, made its members reviewers.
        manager = user_manager()
        client = signed_in_with_second_factor(manager, confirmed=True)
        reviewer, viewer = role(roles.REVIEWER), role(roles.VIEWER)
        if door != "rename_a_role":
            Group.objects.filter(pk=reviewer.pk).update(name="Old reviewer")  # as a superuser may
        path, renamed = {
            "rename_a_role": (f"/admin/auth/group/{reviewer.pk}/change/", reviewer),
            "take_a_roles_name": (f"/admin/auth/group/{viewer.pk}/change/", viewer),
            "new_role_of_that_name": ("/admin/auth/group/add/", None),
        }[door]
        kept = [p.pk for p in renamed.permissions.all()] if renamed else []
        before = sorted(Group.objects.values_list("name", flat=True))

        page = client.post(
            path, {"name": "Old reviewer" if renamed == reviewer else roles.REVIEWER, "permissions": kept}
        )

        assert message in errors_of(page, "name")
        assert sorted(Group.objects.values_list("name", flat=True)) == before

    def test_a_superuser_renames_a_role_and_a_user_manager_renames_their_own(self):
        administrator, manager = superuser(), user_manager()
        helpers = Group.objects.create(name="Helpers")
        reviewer = role(roles.REVIEWER)
        superusers, managers = (
            signed_in_with_second_factor(administrator, confirmed=True),
            signed_in_with_second_factor(manager, confirmed=True),
        )
        kept = [p.pk for p in reviewer.permissions.all()]

        renamed = superusers.post(
            f"/admin/auth/group/{reviewer.pk}/change/", {"name": "Old reviewer", "permissions": kept}
        )
        own = managers.post(f"/admin/auth/group/{helpers.pk}/change/", {"name": "Helpdesk"})

        assert (renamed.status_code, own.status_code) == (302, 302)
        assert set(Group.objects.filter(pk__in=[reviewer.pk, helpers.pk]).values_list("name", flat=True)) == {
            "Old reviewer",
            "Helpdesk",
        }

    def test_a_superuser_changes_a_roles_permissions_and_it_is_recorded(self):
        administrator = superuser()
        client = signed_in_with_second_factor(administrator, confirmed=True)
        viewer = role(roles.VIEWER)
        kept = [p.pk for p in viewer.permissions.all()]

        page = client.post(
            f"/admin/auth/group/{viewer.pk}/change/",
            {"name": viewer.name, "permissions": [*kept, permission("incidents.submit_incident").pk]},
        )

        assert page.status_code == 302
        assert viewer.permissions.filter(codename="submit_incident").exists()
        recorded = LogEntry.objects.filter(content_type__model="group", object_id=str(viewer.pk), user=administrator)
        messages = [entry.get_change_message() for entry in recorded]
        assert "Gave permission: Incident documentation | incident | Can submit incidents for review." in messages


class TestARoleNeedsStaffStatus:
    """Only staff sign in to the admin: a role given to an account without Staff status saved without
    a word, and the colleague could not sign in. A partner tool's account, which uses its role
    through API tokens only, is kept so when its administrator ticks API only."""

    ROLE_REFUSED = "A role works in the admin only with Staff status: tick Staff status, or remove the role."

    def test_a_role_given_without_staff_status_is_refused_naming_the_field(self):
        client = signed_in_with_second_factor(superuser(), confirmed=True)
        colleague = make_user(None)

        page = change(client, colleague, groups=[role(roles.ANALYST).pk])

        assert self.ROLE_REFUSED in errors_of(page, "groups")
        assert "tick API only" in errors_of(page, "groups")
        assert powers(colleague) == (False, False, True, [], [])

    def test_a_permission_given_without_staff_status_is_refused_too(self):
        client = signed_in_with_second_factor(superuser(), confirmed=True)
        colleague = make_user(None)

        page = change(client, colleague, user_permissions=[permission("incidents.view_incident").pk])

        assert "A permission works in the admin only with Staff status" in errors_of(page, "user_permissions")
        assert powers(colleague)[4] == []

    def test_staff_status_taken_from_an_account_holding_a_role_is_refused_naming_it(self):
        client = signed_in_with_second_factor(superuser(), confirmed=True)
        colleague = make_user(roles.ANALYST)

        page = change(client, colleague, is_staff="")

        assert "Without Staff status this account cannot sign in to the admin" in errors_of(page, "is_staff")
        assert powers(colleague)[:2] == (False, True)

    def test_with_staff_status_the_role_is_given(self):
        client = signed_in_with_second_factor(superuser(), confirmed=True)
        colleague = make_user(None)

        page = change(client, colleague, is_staff="on", groups=[role(roles.ANALYST).pk])

        assert page.status_code == 302
        assert powers(colleague) == (False, True, True, [roles.ANALYST], [])

    def test_a_partner_tools_account_keeps_its_role_without_staff_status_once_said_and_is_not_asked_again(self):
        client = signed_in_with_second_factor(superuser(), confirmed=True)
        partner = make_user(None, username="sync-bot")

        given = change(client, partner, groups=[role(roles.ANALYST).pk], api_only="on")
        shown = client.get(f"/admin/auth/user/{partner.pk}/change/").content.decode()
        # Its page as shown, API only ticked, saved with another address.
        edited = change(client, User.objects.get(pk=partner.pk), email="sync@example.org", api_only="on")

        assert (given.status_code, edited.status_code) == (302, 302)
        assert powers(partner) == (False, False, True, [roles.ANALYST], [])
        assert re.search(r'<input[^>]*name="api_only"[^>]*checked', shown)
        assert User.objects.get(pk=partner.pk).email == "sync@example.org"

    def test_staff_without_a_role_is_saved_with_a_warning(self):
        client = signed_in_with_second_factor(superuser(), confirmed=True)
        newcomer, analyst = make_user(None, username="newcomer"), make_user(roles.ANALYST)
        warning = "newcomer has Staff status but no role: they can sign in to the admin, which shows them nothing."

        bare = change(client, newcomer, is_staff="on")
        warned_bare = messages_shown(client)
        # Confidential access alone opens no screen either.
        widened = change(client, User.objects.get(pk=newcomer.pk), groups=[role(roles.CONFIDENTIAL_ACCESS).pk])
        warned_widened = messages_shown(client)
        with_role = change(client, analyst, email="analyst@example.org")
        warned_with_role = messages_shown(client)

        assert (bare.status_code, widened.status_code, with_role.status_code) == (302, 302, 302)
        assert any(warning in message for message in warned_bare)
        assert any(warning in message for message in warned_widened)
        assert warned_with_role and not any("no role" in message for message in warned_with_role)
        assert powers(newcomer)[1] and User.objects.get(pk=analyst.pk).email == "analyst@example.org"

    def test_a_reader_of_accounts_reads_a_users_page(self):
        reader = make_user(roles.VIEWER)
        reader.user_permissions.add(permission("auth.view_user"))
        client = signed_in_with_second_factor(reader, confirmed=True)

        page = client.get(f"/admin/auth/user/{make_user(roles.ANALYST).pk}/change/")

        assert page.status_code == 200
        assert "field-api_only" not in page.content.decode()


def messages_shown(client) -> list[str]:
    """The messages the next page shows (and so takes): those of the saves before it."""
    return [str(message) for message in client.get("/admin/").context["messages"]]


def test_an_account_that_acted_keeps_its_name_and_one_that_never_did_is_renamed():
    """Renamed, an analyst's incidents showed staff another writer at the same version (a staff
    partner's copy kept the old name), and the history named the new one for changes made under
    the old."""
    analyst, newcomer = make_user(roles.ANALYST, username="jdoe"), make_user(roles.ANALYST, username="new")
    incident = client_for(analyst).post(f"{API}/incidents/", new_incident_body(), format="json")
    assert incident.status_code == 201, incident.content
    client = signed_in_with_second_factor(superuser(), confirmed=True)

    refused = change(client, analyst, username="j.doe")

    assert "made changes that the history records by this name" in errors_of(refused, "username")
    analyst.refresh_from_db()
    assert analyst.username == "jdoe"
    assert client_for(make_user(roles.REVIEWER)).get(incident["Location"]).json()["created_by"] == "jdoe"
    assert change(client, newcomer, username="newcomer").status_code == 302
    newcomer.refresh_from_db()
    assert newcomer.username == "newcomer"


def test_an_account_whose_confidential_reads_are_recorded_keeps_its_name():
    # The record of confidential reads names each reader by their account: renamed, it named
    # another for the reads made under the old name.
    reader = make_user(roles.VIEWER, confidential=True, username="reader")
    assert client_for(reader).get(incident_url(make_incident(confidential=True))).status_code == 200
    client = signed_in_with_second_factor(superuser(), confirmed=True)

    refused = change(client, reader, username="someone.else")

    assert "read confidential records" in errors_of(refused, "username")
    reader.refresh_from_db()
    assert reader.username == "reader"
