"""A form typed while its analyst's sign-in ended is not lost.

The staff session lasts a working day (TRACKER_STAFF_SESSION_SECONDS), and ends sooner when the
password is changed elsewhere or the analyst signs out in another tab. A save sent after that was
redirected by the admin to its sign-in page, and everything typed on the form was gone. Each admin
form now asks the site first (accounts:signed-in) and, when the session no longer opens the admin
for the person who opened the page, keeps the page as it is and says so.
"""

import contextlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from incidents import roles
from incidents.models import Source
from tests.factories import make_user
from tests.test_accounts import enrol
from tests.test_browser import PASSWORD, browser_page, watch_for_csp_violations  # noqa: F401 (fixture)


def sign_in_keeping_cookies(page: Page, live_server, username: str) -> None:
    """Signs in as a person does in a second tab: the browser's other tabs keep their pages."""
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def sign_out(page: Page, live_server) -> None:
    page.goto(f"{live_server.url}/admin/")
    page.click("#logout-form button")
    expect(page.locator("#user-tools")).to_have_count(0)


def end_every_session() -> None:
    """The sessions' working day over, as the session table says it."""
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))


@pytest.fixture
def two_tabs(browser_page):  # noqa: F811 (the fixture imported above)
    tabs = browser_page.context.browser.new_context()
    first, second = tabs.new_page(), tabs.new_page()
    first.set_default_timeout(15_000)
    second.set_default_timeout(15_000)
    violations = [watch_for_csp_violations(first), watch_for_csp_violations(second)]
    yield first, second
    tabs.close()
    assert violations == [[], []], violations


def open_new_source_and_type(page: Page, live_server, title: str) -> None:
    page.goto(f"{live_server.url}/admin/incidents/source/add/")
    page.fill("#id_title", title)
    page.select_option("#id_kind", "testimony")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_save_after_the_sign_in_ended_keeps_the_page_and_is_sent_once_signed_in_again(two_tabs, live_server):
    page, other_tab = two_tabs
    make_user(roles.ANALYST, username="analyst")
    sign_in_keeping_cookies(page, live_server, "analyst")
    open_new_source_and_type(page, live_server, "Testimony typed past the end of the day")

    end_every_session()
    page.click("input[name=_continue]")

    notice = page.locator("#sent-while-signed-in [role=alert]")
    expect(notice).to_contain_text("Nothing was sent: this browser is no longer signed in.")
    expect(notice).to_be_focused()
    assert page.url == f"{live_server.url}/admin/incidents/source/add/"
    expect(page.locator("#id_title")).to_have_value("Testimony typed past the end of the day")
    assert not Source.objects.filter(title="Testimony typed past the end of the day").exists()
    assert notice.get_by_role("link", name="Sign in again in a new tab").get_attribute("target") == "_blank"

    sign_in_keeping_cookies(other_tab, live_server, "analyst")
    page.click("input[name=_continue]")

    # The button pressed is the one sent: "Save and continue editing" stays on the new source.
    expect(page.locator(".messagelist")).to_contain_text("You may edit it again below")
    source = Source.objects.get(title="Testimony typed past the end of the day")
    assert page.url == f"{live_server.url}/admin/incidents/source/{source.pk}/change/"
    expect(page.locator("#sent-while-signed-in")).to_have_count(0)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_save_is_not_sent_under_someone_elses_sign_in(two_tabs, live_server):
    # The session's owner is the one the history records: a form typed by one analyst and sent
    # under a colleague's sign-in (who signed in on the shared office computer meanwhile) would
    # have been recorded as the colleague's.
    page, other_tab = two_tabs
    make_user(roles.ANALYST, username="analyst")
    make_user(roles.ANALYST, username="colleague")
    sign_in_keeping_cookies(page, live_server, "analyst")
    open_new_source_and_type(page, live_server, "Testimony typed by the analyst")

    sign_out(other_tab, live_server)
    sign_in_keeping_cookies(other_tab, live_server, "colleague")
    page.click("input[name=_save]")

    notice = page.locator("#sent-while-signed-in [role=alert]")
    expect(notice).to_contain_text("this page was opened by analyst, and this browser is now signed in as colleague.")
    expect(page.locator("#id_title")).to_have_value("Testimony typed by the analyst")
    assert not Source.objects.filter(title="Testimony typed by the analyst").exists()

    sign_out(other_tab, live_server)
    sign_in_keeping_cookies(other_tab, live_server, "analyst")
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    source = Source.objects.get(title="Testimony typed by the analyst")
    created = apps.get_model("incidents", "SourceEvent").objects.get(pgh_obj=source)
    assert created.pgh_context.metadata["user"] == User.objects.get(username="analyst").pk


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_save_while_the_site_cannot_be_reached_keeps_the_page(two_tabs, live_server):
    # In the field: the connection drops while the analyst types. The browser's own error page
    # replaced the form, and what was typed was gone with it.
    page, _ = two_tabs
    make_user(roles.ANALYST, username="analyst")
    sign_in_keeping_cookies(page, live_server, "analyst")
    open_new_source_and_type(page, live_server, "Testimony typed offline")

    page.route("**/accounts/signed-in/", lambda route: route.abort("internetdisconnected"))
    page.click("input[name=_save]")

    expect(page.locator("#sent-while-signed-in [role=alert]")).to_contain_text(
        "Nothing was sent: the site could not be reached."
    )
    expect(page.locator("#id_title")).to_have_value("Testimony typed offline")
    assert not Source.objects.exists()

    page.unroute("**/accounts/signed-in/")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Source.objects.filter(title="Testimony typed offline").count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_signing_out_is_not_held_when_the_session_already_ended(two_tabs, live_server):
    page, _ = two_tabs
    make_user(roles.ANALYST, username="analyst")
    sign_in_keeping_cookies(page, live_server, "analyst")
    end_every_session()

    page.click("#logout-form button")

    # Sent at once: the admin answers a session already ended with its sign-in page.
    expect(page.locator("#id_username")).to_be_visible()
    expect(page.locator("#sent-while-signed-in")).to_have_count(0)


@pytest.mark.django_db
def test_the_check_answers_whom_the_session_opens_the_admin_for(client):
    url = "/accounts/signed-in/"
    assert client.get(url).json() == {"signed_in": False}

    analyst = make_user(roles.ANALYST, username="analyst")
    client.force_login(analyst)
    response = client.get(url)
    assert response.json() == {"signed_in": True, "username": "analyst", "identity_confirmed": False}
    # Never kept by a browser or a proxy: the next check must ask the site again.
    assert "no-store" in response["Cache-Control"]
    assert client.post(url).status_code == 405

    end_every_session()
    assert client.get(url).json() == {"signed_in": False}


@pytest.mark.django_db
def test_the_check_counts_a_session_owing_its_second_factor_as_signed_out(client, settings):
    settings.REQUIRE_2FA = True
    analyst = make_user(roles.ANALYST, username="analyst")
    enrol(analyst)
    response = client.post("/admin/login/", {"username": "analyst", "password": PASSWORD})
    assert response.status_code == 302

    assert client.get("/accounts/signed-in/").json() == {"signed_in": False}


@pytest.mark.django_db
def test_only_a_page_of_a_signed_in_session_asks_before_sending(client):
    sign_in_page = client.get("/admin/login/").content.decode()
    assert "sent_while_signed_in.js" not in sign_in_page
    assert "sent-while-signed-in-notices" not in sign_in_page

    client.force_login(make_user(roles.ANALYST, username="analyst"))
    form_page = client.get("/admin/incidents/source/add/").content.decode()
    assert 'data-username="analyst"' in form_page
    assert 'id="sent-while-signed-in-notices"' in form_page


def waited_for(page: Page, requests: list, seconds: int = 15) -> None:
    """Until the page's routes have caught a request into `requests` (routes are run while the page
    waits)."""
    for _ in range(seconds * 10):
        if requests:
            return
        page.wait_for_timeout(100)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_second_press_while_the_check_is_pending_sends_the_form_once(browser_page, live_server):  # noqa: F811
    # On a slow connection the check takes its time, and nothing on the page shows that the press
    # was taken (a fetch shows no loading in the tab, as a form's navigation does): the analyst
    # presses Save again.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    sign_in_keeping_cookies(page, live_server, "analyst")
    open_new_source_and_type(page, live_server, "Testimony saved on a slow connection")

    checks, saves = [], []
    page.route("**/accounts/signed-in/", lambda route: checks.append(route))

    def slow_save(route):
        # The save reaches the site, whose answer is slow to come back.
        saves.append((route, route.fetch(max_redirects=0)))

    page.route("**/admin/incidents/source/add/", slow_save)
    page.click("input[name=_save]")
    page.click("input[name=_save]")
    waited_for(page, checks)
    page.wait_for_timeout(300)
    for check in checks:
        check.continue_()
    # A busy machine may take its time to send: the first save is waited for, then long enough
    # for a second one to come.
    waited_for(page, saves)
    page.wait_for_timeout(1000)
    for save, answer in saves:
        # A save the browser gave up waiting for, having sent the next, takes no answer.
        with contextlib.suppress(PlaywrightError):
            save.fulfill(response=answer)

    # Sent twice, the second save was refused as a duplicate of the first, and that refusal was
    # the page the analyst saw; a record without such a check was added twice.
    assert len(saves) == 1
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Source.objects.filter(title="Testimony saved on a slow connection").count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_check_answered_by_another_page_does_not_hold_the_save_back(browser_page, live_server):  # noqa: F811
    # What answers the check is not always the site: a proxy's or a hotel network's page of its
    # own. The README: "A check that fails for another reason (the site busy) does not hold the
    # save back." The answer, not JSON, stopped the script: the press did nothing, and said nothing.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    sign_in_keeping_cookies(page, live_server, "analyst")
    open_new_source_and_type(page, live_server, "Testimony saved behind a proxy")

    page.route(
        "**/accounts/signed-in/",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<html><p>Welcome</p></html>"),
    )
    page.click("input[name=_save]")

    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Source.objects.filter(title="Testimony saved behind a proxy").count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_check_never_answered_does_not_hold_the_form_for_ever(browser_page, live_server):  # noqa: F811
    # In the field, a connection can drop without a word: the check waits for minutes, the press
    # did nothing the analyst could see, and (once a press waits for the check under way) the
    # next press, back online, did nothing either.
    page = browser_page
    make_user(roles.ANALYST, username="analyst")
    sign_in_keeping_cookies(page, live_server, "analyst")
    open_new_source_and_type(page, live_server, "Testimony typed on a dropped line")

    unanswered = []
    page.route("**/accounts/signed-in/", lambda route: unanswered.append(route))
    page.click("input[name=_save]")
    expect(page.locator("#sent-while-signed-in [role=alert]")).to_contain_text(
        "Nothing was sent: the site could not be reached.", timeout=20_000
    )

    page.unroute("**/accounts/signed-in/")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Source.objects.filter(title="Testimony typed on a dropped line").count() == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_notice_of_someone_elses_sign_in_leads_to_signing_in_again(two_tabs, live_server):
    # "Sign in again in a new tab": the admin's sign-in page, opened by a browser signed in (as the
    # colleague), sends it to the admin's index; there was nowhere to sign in as oneself.
    page, other_tab = two_tabs
    make_user(roles.ANALYST, username="analyst")
    make_user(roles.ANALYST, username="colleague")
    sign_in_keeping_cookies(page, live_server, "analyst")
    open_new_source_and_type(page, live_server, "Testimony typed by the analyst")
    sign_out(other_tab, live_server)
    sign_in_keeping_cookies(other_tab, live_server, "colleague")
    other_tab.close()

    page.click("input[name=_save]")
    notice = page.locator("#sent-while-signed-in [role=alert]")
    expect(notice).to_contain_text("this browser is now signed in as colleague")
    with page.context.expect_page() as opened:
        notice.get_by_text("sign in again in a new tab", exact=False).click()
    new_tab = opened.value
    new_tab.fill("#id_username", "analyst", timeout=5_000)
    new_tab.fill("#id_password", PASSWORD)
    new_tab.click("input[type=submit]")
    expect(new_tab.locator("#user-tools")).to_contain_text("analyst")

    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert Source.objects.filter(title="Testimony typed by the analyst").count() == 1
