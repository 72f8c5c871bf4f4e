"""Deleting an account or a role keeps the record of who did what: an account whose acts a record
names is deactivated, not deleted; a role's deletion is recorded in each member's history."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse

from incidents import roles
from incidents.models import Release
from incidents.releases import release_create
from tests.api_support import client_for, incident_url
from tests.factories import make_incident, make_user
from tests.form_support import saved_unchanged
from tests.test_accounts import (  # noqa: F401 (a fixture)
    second_factor_on,
    signed_in_with_second_factor,
)
from tests.test_accounts_grants import TestWhatProtectsAnAccount as AccountProtection  # not collected again
from tests.test_accounts_grants import (
    delete_account,
    delete_in_admin,
    permission,
    role,
    superuser,
    user_form,
)

User = get_user_model()

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("second_factor_on")]

DEACTIVATE_INSTEAD = "Deactivate the account instead"


def _who_changed(page_html: str, changed_text: str) -> str:
    """The Who cell of the history row whose changes mention `changed_text`."""
    for row in re.findall(r"<tr>(.*?)</tr>", page_html, flags=re.S):
        if changed_text in row:
            return re.sub(r"<[^>]+>", "", re.search(r'class="history-user">(.*?)</td>', row, re.S)[1]).strip()
    raise AssertionError(f"no history row mentions {changed_text!r}")


@pytest.mark.parametrize("door", ["page", "action"])
def test_the_account_of_an_administrator_who_gave_roles_is_deactivated_not_deleted(door):
    # Django's LogEntry.user is CASCADE: deleting the account of the administrator who gave a role
    # deleted the record of that grant from the holder's History.
    granter, deleter = superuser(), superuser()
    holder = make_user(roles.VIEWER)
    granting = signed_in_with_second_factor(granter, confirmed=True)
    given = granting.post(
        f"/admin/auth/user/{holder.pk}/change/",
        user_form(holder, groups=[role(roles.VIEWER).pk, role(roles.ANALYST).pk]),
    )
    assert given.status_code == 302
    deleting = signed_in_with_second_factor(deleter, confirmed=True)

    page = delete_account(deleting, granter, door)

    assert DEACTIVATE_INSTEAD in page.content.decode()
    assert User.objects.filter(pk=granter.pk).exists()
    assert "Gave role: Analyst." in deleting.get(f"/admin/auth/user/{holder.pk}/history/").content.decode()


@pytest.mark.parametrize("door", ["page", "action"])
def test_an_accounts_deletion_names_no_confidential_incident_to_a_user_manager(door):
    # An analyst renamed a draft in the admin, which a Reviewer then made confidential; the analyst
    # left. Deleting the account listed its admin log entries, which go with it, each naming the
    # record it is about: a user manager without Confidential access read the confidential title.
    analyst = make_user(roles.ANALYST)
    incident = make_incident(title="Draft title", review_state="draft")
    url = reverse("admin:incidents_incident_change", args=[incident.pk])
    saved = saved_unchanged(signed_in_with_second_factor(analyst), url, title="Testimony of informant K at Tumen")
    assert saved.status_code == 302, saved.status_code
    type(incident).objects.filter(pk=incident.pk).update(confidential=True)
    analyst.groups.clear()
    manager = AccountProtection.helpdesk()
    manager.user_permissions.add(permission("accounts.view_setuplink"), permission("accounts.delete_setuplink"))
    client = signed_in_with_second_factor(manager, confirmed=True)

    if door == "page":
        page = client.get(f"/admin/auth/user/{analyst.pk}/delete/", follow=True)
    else:  # "Delete selected", before its confirmation is posted
        page = client.post(
            "/admin/auth/user/", {"action": "delete_selected", "_selected_action": [analyst.pk]}, follow=True
        )

    assert page.status_code == 200
    assert DEACTIVATE_INSTEAD in page.content.decode()
    assert "informant K" not in page.content.decode()
    assert User.objects.filter(pk=analyst.pk).exists()


@pytest.mark.parametrize("door", ["page", "action"])
def test_the_account_of_a_reviewer_who_froze_a_release_is_deactivated_not_deleted(door):
    # Release.created_by is SET_NULL, but the database refuses any UPDATE of a release: deleting
    # the account failed on that trigger, a server error.
    maker = make_user(roles.REVIEWER)
    release = release_create(user=maker)
    administrator = superuser()
    superuser()
    client = signed_in_with_second_factor(administrator, confirmed=True)
    client.raise_request_exception = False

    page = delete_account(client, maker, door)

    assert page.status_code == 200, page.status_code
    assert DEACTIVATE_INSTEAD in page.content.decode()
    assert Release.objects.get(pk=release.pk).created_by == maker


def test_an_account_that_made_no_recorded_change_is_deleted():
    newcomer = make_user(roles.VIEWER)
    administrator = superuser()
    superuser()
    client = signed_in_with_second_factor(administrator, confirmed=True)

    page = delete_account(client, newcomer, "page")

    assert DEACTIVATE_INSTEAD not in page.content.decode()
    assert not User.objects.filter(pk=newcomer.pk).exists()


@pytest.mark.parametrize("door", ["page", "action"])
def test_deleting_a_role_records_its_removal_in_each_members_history(door):
    # Django removes the memberships of a deleted role without a word in any member's History.
    administrator = superuser()
    team = Group.objects.create(name="Field team")
    member = make_user(roles.VIEWER)
    member.groups.add(team)
    client = signed_in_with_second_factor(administrator, confirmed=True)

    page = delete_in_admin(client, "/admin/auth/group/", team, door)

    assert page.status_code == 200
    assert not Group.objects.filter(pk=team.pk).exists()
    assert not member.groups.filter(name="Field team").exists()
    history = client.get(f"/admin/auth/user/{member.pk}/history/").content.decode()
    assert "Took role: Field team." in history


def test_an_incidents_history_says_an_author_whose_account_was_deleted_is_not_the_system():
    # The history keeps only the author's account id: once the account was deleted (outside the
    # admin, which refuses it), their changes read "(system)", the label of changes no one made.
    analyst = make_user(roles.ANALYST)
    incident = make_incident(title="Draft title", review_state="draft")
    edited = client_for(analyst).patch(
        incident_url(incident), {"title": "Renamed by the analyst", "version": 1}, format="json"
    )
    assert edited.status_code == 200, edited.content
    administrator = superuser()
    client = signed_in_with_second_factor(administrator, confirmed=True)
    history_url = f"/admin/incidents/incident/{incident.pk}/history/"
    assert DEACTIVATE_INSTEAD in delete_account(client, analyst, "page").content.decode()

    analyst_id = analyst.pk
    analyst.delete()

    who = _who_changed(client.get(history_url).content.decode(), "Renamed by the analyst")
    assert who == f"(deleted account #{analyst_id})"
    api_history = client_for(administrator).get(f"{incident_url(incident)}history/").json()["results"]
    assert f"(deleted account #{analyst_id})" in {entry["user"] for entry in api_history}
