"""A form of an account's page (or another record whose changes need a recent confirmation of who one
is) typed while that confirmation ran out: held in the browser with a notice, kept, and sent once
confirmed again (`static/tracker_admin/sent_while_signed_in.js`, `GET /accounts/signed-in/`)."""

import time

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from playwright.sync_api import expect

from accounts.confirmation import CONFIRMED_AT_SESSION_KEY
from incidents import roles
from tests.factories import make_user
from tests.test_browser import PASSWORD, browser_page, watch_for_csp_violations  # noqa: F401 (fixture)
from tests.test_signed_out_while_typing import sign_in_keeping_cookies, two_tabs  # noqa: F401 (fixture)

SIGNED_IN = "/accounts/signed-in/"


def confirmations_run_out() -> None:
    """Every session's confirmation of who one is made 11 minutes ago: one more than it lasts."""
    for session in Session.objects.all():
        store = SessionStore(session_key=session.session_key)
        if CONFIRMED_AT_SESSION_KEY in store:
            store[CONFIRMED_AT_SESSION_KEY] = time.time() - 11 * 60
            store.save()


def confirm_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/accounts/confirm/")
    page.fill("#id_password", PASSWORD)
    page.click("#confirm-form input[type=submit]")
    expect(page.locator("#confirm-form")).to_have_count(0)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_accounts_change_typed_past_the_confirmation_is_kept_and_sent_once_confirmed_again(two_tabs, live_server):  # noqa: F811
    # An administrator opens a colleague's account, is called away, and presses Save 11 minutes
    # later: the save went to "Confirm it is you", and the name typed was gone.
    page, _ = two_tabs
    make_user(roles.REVIEWER, is_superuser=True, username="administrator")
    colleague = make_user(roles.ANALYST, username="colleague")
    sign_in_keeping_cookies(page, live_server, "administrator")
    confirm_in(page, live_server)
    page.goto(f"{live_server.url}/admin/auth/user/{colleague.pk}/change/")
    page.fill("#id_first_name", "Min-ji")

    confirmations_run_out()
    page.click("input[name=_continue]")

    notice = page.locator("#sent-while-signed-in [role=alert]")
    expect(notice).to_contain_text("Nothing was sent: changing accounts, roles or second factors needs you to confirm")
    expect(notice).to_be_focused()
    assert page.url == f"{live_server.url}/admin/auth/user/{colleague.pk}/change/"
    expect(page.locator("#id_first_name")).to_have_value("Min-ji")
    colleague.refresh_from_db()
    assert colleague.first_name == ""

    with page.context.expect_page() as opened:
        notice.get_by_role("link", name="Confirm it is you in a new tab").click()
    new_tab = opened.value
    new_tab.fill("#id_password", PASSWORD)
    new_tab.click("#confirm-form input[type=submit]")
    expect(new_tab.locator("#confirm-form")).to_have_count(0)

    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    assert page.url == f"{live_server.url}/admin/auth/user/{colleague.pk}/change/"
    colleague.refresh_from_db()
    assert colleague.first_name == "Min-ji"


@pytest.mark.django_db
def test_the_check_tells_a_signed_in_session_whether_its_confirmation_lasts(client, django_assert_num_queries):
    administrator = make_user(roles.REVIEWER, is_superuser=True, username="administrator")
    client.force_login(administrator)
    assert client.get(SIGNED_IN).json() == {
        "signed_in": True,
        "username": "administrator",
        "identity_confirmed": False,
    }
    assert client.post("/accounts/confirm/", {"password": PASSWORD, "next": "/admin/"}).status_code == 302
    # The session's own row and the account's: the confirmation is read from the session, no query of its own.
    with django_assert_num_queries(2):
        assert client.get(SIGNED_IN).json()["identity_confirmed"] is True

    confirmations_run_out()
    assert client.get(SIGNED_IN).json()["identity_confirmed"] is False


@pytest.mark.django_db
def test_the_check_tells_an_anonymous_caller_nothing_and_costs_no_query(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get(SIGNED_IN)
    assert response.json() == {"signed_in": False}
    # A session that is not staff's, or owes its second factor, is told the same: nothing of it.
    client.force_login(make_user(None, username="reader"))
    assert client.get(SIGNED_IN).json() == {"signed_in": False}


@pytest.mark.django_db
def test_only_the_pages_of_confirmed_changes_hold_their_forms_for_a_confirmation(client):
    administrator = make_user(roles.REVIEWER, is_superuser=True, username="administrator")
    client.force_login(administrator)
    client.post("/accounts/confirm/", {"password": PASSWORD, "next": "/admin/"})
    colleague = make_user(roles.ANALYST)

    for path in (
        f"/admin/auth/user/{colleague.pk}/change/",
        f"/admin/auth/user/{colleague.pk}/delete/",
        f"/admin/auth/user/{colleague.pk}/password/",
        "/admin/auth/user/",
        "/admin/auth/group/add/",
    ):
        page = client.get(path).content.decode()
        assert "data-confirmation-needed" in page, path
        assert 'data-reason="unconfirmed"' in page, path
        assert 'href="/accounts/confirm/" target="_blank"' in page, path

    source_page = client.get("/admin/incidents/source/add/").content.decode()
    assert "data-confirmation-needed" not in source_page
    assert 'data-reason="unconfirmed"' not in source_page
